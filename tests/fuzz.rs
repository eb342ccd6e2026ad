//! Bounded fuzzing of everything that reads untrusted bytes: the control protocol, channel
//! messages, policy files, image metadata, CRIU's process tree and the launcher's flags.
//!
//! A small mutation fuzzer (seeded, reproducible) over the corpus in tests/fuzz-corpus: the
//! property is "no panic, no hang" (each input is bounded). Runs for a bounded number of
//! iterations (CRAC_SHIM_FUZZ_ITERATIONS, default 20000 per target). A failing input is
//! written to target/fuzz-failures/ so that it can be added to the corpus.

use crac_shim::{cli, image};
use crac_shim_proto::policy::Policy;
use crac_shim_proto::{Message, Request};
use std::path::Path;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\n",
    b"=",
    b"\\",
    b"\\n",
    b"---",
    b":",
    b"%",
    b"\0",
    b"\xff",
    b"[",
    b"]",
    b"-XX:",
    b"CRaC",
    b"=/",
    b"socket:[",
    b"pipe:[",
    b"**",
    b"*",
    b"?",
    b"prop=",
    b"format=",
    b"\xe2\x82\xac",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(8) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i + 1);
                v.drain(i..i + n);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let word = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, word.iter().copied());
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i + 1).min(64);
                let chunk: Vec<u8> = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            4 => v.truncate(rng.below(v.len() + 1)),
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v.truncate(1 << 16);
    v
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    seeds.push(Vec::new());
    seeds
}

fn iterations() -> usize {
    std::env::var("CRAC_SHIM_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn fuzz(name: &str, target: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let seeds = corpus();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for i in 0..iterations() {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        if std::panic::catch_unwind(|| target(&input)).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{name}-{i}"));
            std::fs::write(&file, &input).unwrap();
            panic!("{name} panicked on the input saved in {}", file.display());
        }
    }
}

#[test]
fn control_requests() {
    fuzz("request", |b| {
        let _ = Request::decode(b);
    });
}

#[test]
fn channel_messages() {
    fuzz("message", |b| {
        if let Ok(m) = Message::decode(b) {
            // Whatever decodes encodes back to the same message.
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    });
}

#[test]
fn policy_files() {
    fuzz("policy", |b| {
        if let Ok(p) = Policy::parse(&String::from_utf8_lossy(b)) {
            let socket = crac_shim_proto::policy::SocketInfo {
                family: crac_shim_proto::policy::Family::Inet4,
                local: Some("127.0.0.1:80".to_string()),
                remote: Some("[::1]:9".to_string()),
            };
            let subject = crac_shim_proto::policy::Subject {
                class: crac_shim_proto::policy::Class::WriteFile,
                fd: 5,
                path: "/var/log/x/y.log",
                addresses: &["127.0.0.1:80".to_string()],
                socket: Some(&socket),
            };
            let _ = p.action(&subject);
        }
    });
}

#[test]
fn image_metadata() {
    fuzz("metadata", |b| {
        let _ = image::Metadata::decode(&String::from_utf8_lossy(b));
    });
}

#[test]
fn process_tree_images() {
    fuzz("pstree", |b| {
        let mut img = 0x5456_4319u32.to_le_bytes().to_vec();
        img.extend(0x5027_3030u32.to_le_bytes());
        img.extend(b);
        let _ = image::pstree_ids(&img);
        let _ = image::pstree_ids(b);
    });
}

#[test]
fn launcher_flags() {
    fuzz("args", |b| {
        let args: Vec<std::ffi::OsString> = b
            .split(|c| *c == b'\n')
            .map(|a| std::os::unix::ffi::OsStringExt::from_vec(a.to_vec()))
            .collect();
        let _ = cli::parse(args);
    });
}
