//! CPU features: what an image's code may use, recorded at checkpoint and checked before a
//! restore (CRaC's `-XX:CPUFeatures` and `-XX:CheckCPUFeatures`).
//!
//! Two programs in the image chose instructions from the CPU they started on: HotSpot (its JIT
//! and stubs) and glibc (its string and memory functions, chosen once at start). glibc's choice
//! is read exactly: `ld.so --list-diagnostics` prints its active CPUID words. HotSpot's is
//! derived from its flags: with `-XX:CPUFeatures=generic` crac-java turns off every feature a
//! flag can turn off, so only the x86-64 baseline and the few features HotSpot uses without a
//! flag remain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The x86-64 baseline every 64-bit x86 CPU has.
const BASELINE: &[&str] = &[
    "cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2", "syscall",
];

/// What HotSpot may use when its flags allow it, by /proc/cpuinfo name.
const HOTSPOT_USES: &[&str] = &[
    "pni",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "sse4a",
    "popcnt",
    "abm",
    "avx",
    "avx2",
    "fma",
    "bmi1",
    "bmi2",
    "aes",
    "pclmulqdq",
    "sha_ni",
    "adx",
    "erms",
    "fsrm",
    "f16c",
    "movbe",
    "cx16",
    "clflushopt",
    "clwb",
    "vaes",
    "vpclmulqdq",
    "gfni",
    "avx512f",
    "avx512dq",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512ifma",
    "avx512vbmi",
    "avx512vbmi2",
    "avx512_vnni",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx512_fp16",
    "rdtscp",
    "rdpid",
    "serialize",
];

/// Features HotSpot uses when present with no flag to turn them off.
const HOTSPOT_UNFLAGGED: &[&str] = &["erms", "fsrm", "clflushopt", "clwb"];

/// HotSpot flags that keep the JIT and stubs to the x86-64 baseline (all exist in JDK 17-25).
pub const GENERIC_JVM_FLAGS: &[&str] = &[
    "-XX:UseAVX=0",
    "-XX:UseSSE=2",
    "-XX:-UseAES",
    "-XX:-UseSHA",
    "-XX:-UseFMA",
    "-XX:-UseCLMUL",
    "-XX:-UsePopCountInstruction",
    "-XX:-UseBMI1Instructions",
    "-XX:-UseBMI2Instructions",
    "-XX:-UseCountLeadingZerosInstruction",
    "-XX:-UseCountTrailingZerosInstruction",
];

/// glibc's names (glibc.cpu.hwcaps) of what `generic` turns off, by /proc/cpuinfo name.
const GLIBC_NAMES: &[(&str, &str)] = &[
    ("avx", "AVX"),
    ("avx2", "AVX2"),
    ("avx512f", "AVX512F"),
    ("avx512dq", "AVX512DQ"),
    ("avx512bw", "AVX512BW"),
    ("avx512vl", "AVX512VL"),
    ("fma", "FMA"),
    ("bmi1", "BMI1"),
    ("bmi2", "BMI2"),
    ("abm", "LZCNT"),
    ("movbe", "MOVBE"),
    ("popcnt", "POPCNT"),
    ("sse4_1", "SSE4_1"),
    ("sse4_2", "SSE4_2"),
    ("ssse3", "SSSE3"),
    ("erms", "ERMS"),
    ("fsrm", "FSRM"),
    ("f16c", "F16C"),
    ("xsavec", "XSAVEC"),
];

/// Names of the CPUID bits glibc records (feature word, register, bit), for messages.
const CPUID_NAMES: &[(u32, u32, u32, &str)] = &[
    (0, 2, 0, "pni"),
    (0, 2, 1, "pclmulqdq"),
    (0, 2, 9, "ssse3"),
    (0, 2, 12, "fma"),
    (0, 2, 13, "cx16"),
    (0, 2, 19, "sse4_1"),
    (0, 2, 20, "sse4_2"),
    (0, 2, 22, "movbe"),
    (0, 2, 23, "popcnt"),
    (0, 2, 25, "aes"),
    (0, 2, 26, "xsave"),
    (0, 2, 28, "avx"),
    (0, 2, 29, "f16c"),
    (0, 2, 30, "rdrand"),
    (0, 3, 15, "cmov"),
    (0, 3, 23, "mmx"),
    (0, 3, 25, "sse"),
    (0, 3, 26, "sse2"),
    (1, 1, 3, "bmi1"),
    (1, 1, 5, "avx2"),
    (1, 1, 8, "bmi2"),
    (1, 1, 9, "erms"),
    (1, 1, 16, "avx512f"),
    (1, 1, 17, "avx512dq"),
    (1, 1, 18, "rdseed"),
    (1, 1, 19, "adx"),
    (1, 1, 29, "sha_ni"),
    (1, 1, 30, "avx512bw"),
    (1, 1, 31, "avx512vl"),
    (1, 2, 9, "vaes"),
    (1, 2, 10, "vpclmulqdq"),
    (1, 3, 4, "fsrm"),
];

/// `-XX:CPUFeatures` at checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Features {
    /// Whatever this CPU has (the default).
    Native,
    /// The x86-64 baseline, as far as flags and tunables reach.
    Generic,
    /// Baseline plus these /proc/cpuinfo names.
    List(Vec<String>),
    /// Record nothing to check.
    Ignore,
}

impl Features {
    pub fn parse(v: &str) -> Result<Features, String> {
        match v {
            "native" => Ok(Features::Native),
            "generic" => Ok(Features::Generic),
            "ignore" => Ok(Features::Ignore),
            list => {
                let names: Vec<String> = list
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_ascii_lowercase)
                    .collect();
                if names.is_empty()
                    || names
                        .iter()
                        .any(|n| !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                {
                    return Err(format!("-XX:CPUFeatures takes native, generic, ignore or a comma-separated list of /proc/cpuinfo flags, not {v:?}"));
                }
                Ok(Features::List(names))
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Features::Native => "native".into(),
            Features::Generic => "generic".into(),
            Features::Ignore => "ignore".into(),
            Features::List(l) => l.join(","),
        }
    }

    /// Extra JVM options, and a GLIBC_TUNABLES value, that keep the JVM to these features.
    pub fn restrictions(&self) -> (Vec<String>, Option<String>) {
        let keep: Vec<String> = match self {
            Features::Native | Features::Ignore => return (Vec::new(), None),
            Features::Generic => Vec::new(),
            Features::List(l) => l.clone(),
        };
        let has = |n: &str| keep.iter().any(|k| k == n);
        let mut jvm = Vec::new();
        let avx = if has("avx512f") {
            3
        } else if has("avx2") {
            2
        } else if has("avx") {
            1
        } else {
            0
        };
        let sse = if has("sse4_1") || has("sse4_2") {
            4
        } else if has("pni") || has("ssse3") {
            3
        } else {
            2
        };
        jvm.push(format!("-XX:UseAVX={avx}"));
        jvm.push(format!("-XX:UseSSE={sse}"));
        for (feature, flag) in [
            ("aes", "UseAES"),
            ("sha_ni", "UseSHA"),
            ("fma", "UseFMA"),
            ("pclmulqdq", "UseCLMUL"),
            ("popcnt", "UsePopCountInstruction"),
            ("bmi1", "UseBMI1Instructions"),
            ("bmi2", "UseBMI2Instructions"),
            ("abm", "UseCountLeadingZerosInstruction"),
            ("bmi1", "UseCountTrailingZerosInstruction"),
        ] {
            if !has(feature) {
                jvm.push(format!("-XX:-{flag}"));
            }
        }
        let off: Vec<String> = GLIBC_NAMES
            .iter()
            .filter(|(cpuinfo, _)| !has(cpuinfo))
            .map(|(_, glibc)| format!("-{glibc}"))
            .collect();
        (jvm, Some(format!("glibc.cpu.hwcaps={}", off.join(","))))
    }
}

/// One of glibc's CPUID words: feature index (0 = leaf 1, 1 = leaf 7...), register
/// (eax, ebx, ecx, edx), bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Word {
    pub index: u32,
    pub reg: u32,
    pub bits: u32,
}

/// What an image records of its CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// `-XX:CPUFeatures` at checkpoint (empty for images made before it was recorded).
    pub mode: String,
    pub model: String,
    /// The checkpointing CPU's /proc/cpuinfo flags.
    pub flags: Vec<String>,
    /// glibc's active CPUID words in the JVM.
    pub glibc: Vec<Word>,
    /// What HotSpot may use, by /proc/cpuinfo name.
    pub jvm: Vec<String>,
}

impl Record {
    /// What the JVM with pid `pid`, started with `features`, may use on this machine.
    pub fn of_jvm(pid: u32, features: &Features) -> Record {
        let here = Machine::here();
        let tunables = environ_var(pid, "GLIBC_TUNABLES");
        let ld_so = ld_so_of(pid);
        let glibc = ld_so
            .map(|ld| glibc_words(&ld, tunables.as_deref(), "active"))
            .unwrap_or_default();
        let flags: BTreeSet<&str> = here.flags.iter().map(String::as_str).collect();
        let jvm: Vec<String> = match features {
            Features::Ignore => Vec::new(),
            Features::Native => HOTSPOT_USES
                .iter()
                .chain(BASELINE)
                .filter(|f| flags.contains(*f))
                .map(|f| f.to_string())
                .collect(),
            Features::Generic | Features::List(_) => {
                let listed: Vec<String> = match features {
                    Features::List(l) => l.clone(),
                    _ => Vec::new(),
                };
                BASELINE
                    .iter()
                    .chain(HOTSPOT_UNFLAGGED)
                    .map(|f| f.to_string())
                    .chain(listed)
                    .filter(|f| flags.contains(f.as_str()))
                    .collect()
            }
        };
        let mut jvm = jvm;
        jvm.sort();
        jvm.dedup();
        Record {
            mode: features.name(),
            model: here.model,
            flags: here.flags,
            glibc: if *features == Features::Ignore {
                Vec::new()
            } else {
                glibc
            },
            jvm,
        }
    }

    pub fn encode(&self) -> String {
        let glibc: Vec<String> = self
            .glibc
            .iter()
            .map(|w| format!("{}.{}:{:x}", w.index, w.reg, w.bits))
            .collect();
        format!(
            "cpu_mode={}\ncpu_model={}\ncpu_flags={}\ncpu_glibc={}\ncpu_jvm={}\n",
            self.mode,
            self.model.replace('\n', " "),
            self.flags.join(" "),
            glibc.join(" "),
            self.jvm.join(" ")
        )
    }

    pub fn decode(map: &BTreeMap<&str, &str>) -> Record {
        let words = |k: &str| -> Vec<String> {
            map.get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        Record {
            mode: map.get("cpu_mode").unwrap_or(&"").to_string(),
            model: map.get("cpu_model").unwrap_or(&"").to_string(),
            flags: words("cpu_flags"),
            glibc: words("cpu_glibc")
                .iter()
                .filter_map(|w| parse_word(w))
                .collect(),
            jvm: words("cpu_jvm"),
        }
    }
}

fn parse_word(w: &str) -> Option<Word> {
    let (pos, bits) = w.split_once(':')?;
    let (index, reg) = pos.split_once('.')?;
    Some(Word {
        index: index.parse().ok()?,
        reg: reg.parse().ok()?,
        bits: u32::from_str_radix(bits, 16).ok()?,
    })
}

/// The CPU a restore runs on.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub model: String,
    pub flags: Vec<String>,
    /// What CPUID reports, in glibc's words.
    pub cpuid: Vec<Word>,
}

impl Machine {
    pub fn here() -> Machine {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let mut flags: Vec<String> = field("flags")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        flags.sort();
        Machine {
            model: field("model name"),
            flags,
            cpuid: cpuid_words(),
        }
    }
}

/// `-XX:CheckCPUFeatures` at restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Check {
    /// This CPU has everything the image may use (the default).
    #[default]
    Compatible,
    /// The same CPU features as the checkpointing CPU.
    Exact,
    Skip,
}

impl Check {
    pub fn parse(v: &str) -> Result<Check, String> {
        match v {
            "compatible" => Ok(Check::Compatible),
            "exact" => Ok(Check::Exact),
            "skip" => Ok(Check::Skip),
            _ => Err(format!(
                "-XX:CheckCPUFeatures takes compatible, exact or skip, not {v:?}"
            )),
        }
    }
}

/// Why this CPU cannot run the image: the features it lacks (or, for `exact`, has extra).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    /// The image was made with `-XX:CPUFeatures=ignore`: nothing to compare with.
    pub unknown: bool,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unknown {
            return write!(
                f,
                "the image was made with -XX:CPUFeatures=ignore, so what its code may use is unknown"
            );
        }
        if !self.missing.is_empty() {
            write!(
                f,
                "this CPU lacks {} that the image may use",
                self.missing.join(", ")
            )?;
        }
        if !self.extra.is_empty() {
            if !self.missing.is_empty() {
                write!(f, ", and ")?;
            }
            write!(
                f,
                "this CPU has {} that the image was not limited to",
                self.extra.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Checks `record` against the CPU `here`.
pub fn check(record: &Record, here: &Machine, how: Check) -> Result<(), Mismatch> {
    if how == Check::Skip || record.mode.is_empty() {
        return Ok(());
    }
    // As in CRaC: an image that recorded nothing passes only a skipped check.
    if record.mode == "ignore" {
        return Err(Mismatch {
            missing: Vec::new(),
            extra: Vec::new(),
            unknown: true,
        });
    }
    let have: BTreeSet<&str> = here.flags.iter().map(String::as_str).collect();
    if how == Check::Exact {
        // What the image was limited to (with generic, the generic set) against what a JVM
        // would use natively here, both in HotSpot's terms: a generic image is not exactly
        // this CPU's.
        let hotspot: BTreeSet<&str> = HOTSPOT_USES.iter().chain(BASELINE).copied().collect();
        let was: BTreeSet<&str> = record.jvm.iter().map(String::as_str).collect();
        let now: BTreeSet<&str> = have
            .iter()
            .copied()
            .filter(|f| hotspot.contains(f) || was.contains(f))
            .collect();
        let missing: Vec<String> = was.difference(&now).map(|s| s.to_string()).collect();
        let extra: Vec<String> = now.difference(&was).map(|s| s.to_string()).collect();
        if missing.is_empty() && extra.is_empty() {
            return Ok(());
        }
        return Err(Mismatch {
            missing,
            extra,
            unknown: false,
        });
    }
    let mut missing: BTreeSet<String> = record
        .jvm
        .iter()
        .filter(|f| !have.contains(f.as_str()))
        .cloned()
        .collect();
    // glibc's words are compared bit for bit with this CPU's CPUID (when both are known).
    if !here.cpuid.is_empty() {
        for w in &record.glibc {
            let now = here
                .cpuid
                .iter()
                .find(|c| c.index == w.index && c.reg == w.reg)
                .map_or(0, |c| c.bits);
            let lacking = w.bits & !now;
            for bit in 0..32 {
                if lacking & (1 << bit) != 0 {
                    missing.insert(
                        CPUID_NAMES
                            .iter()
                            .find(|(i, r, b, _)| *i == w.index && *r == w.reg && *b == bit)
                            .map_or_else(
                                || format!("cpuid word {}.{} bit {bit}", w.index, w.reg),
                                |(_, _, _, n)| n.to_string(),
                            ),
                    );
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Mismatch {
            missing: missing.into_iter().collect(),
            extra: Vec::new(),
            unknown: false,
        })
    }
}

/// What CPUID reports, in glibc's words (its feature index order: leaf 1, leaf 7, 0x80000001,
/// leaf 0xd subleaf 1, 0x80000007, 0x80000008, leaf 7 subleaf 1, 0x19, 0x14): read with the
/// instruction itself, which costs microseconds where asking ld.so costs milliseconds of a
/// restore.
#[cfg(target_arch = "x86_64")]
fn cpuid_words() -> Vec<Word> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // Leaves above the maximum read as the highest leaf's values: each is asked only when the
    // CPU has it.
    let (max, max_ext) = (__cpuid(0).eax, __cpuid(0x8000_0000).eax);
    let leaves: [(u32, u32); 9] = [
        (1, 0),
        (7, 0),
        (0x8000_0001, 0),
        (0xd, 1),
        (0x8000_0007, 0),
        (0x8000_0008, 0),
        (7, 1),
        (0x19, 0),
        (0x14, 0),
    ];
    let mut words = Vec::new();
    for (index, (leaf, sub)) in leaves.into_iter().enumerate() {
        let present = if leaf >= 0x8000_0000 {
            leaf <= max_ext
        } else {
            leaf <= max
        };
        if !present {
            continue;
        }
        let r = __cpuid_count(leaf, sub);
        for (reg, bits) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
            if bits != 0 {
                words.push(Word {
                    index: index as u32,
                    reg: reg as u32,
                    bits,
                });
            }
        }
    }
    words
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid_words() -> Vec<Word> {
    ld_so_of(std::process::id())
        .map(|ld| glibc_words(&ld, None, "cpuid"))
        .unwrap_or_default()
}

/// The dynamic loader a process runs with (as mapped), for its diagnostics.
fn ld_so_of(pid: u32) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
        })
        .map(str::to_string)
}

fn environ_var(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .filter_map(|e| std::str::from_utf8(e).ok())
        .find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
}

/// glibc's CPUID words (`cpuid` as the CPU says, `active` as glibc chose) from
/// `ld.so --list-diagnostics`, run with the given GLIBC_TUNABLES.
fn glibc_words(ld_so: &str, tunables: Option<&str>, kind: &str) -> Vec<Word> {
    let mut cmd = std::process::Command::new(ld_so);
    cmd.arg("--list-diagnostics").env_clear();
    if let Some(t) = tunables {
        cmd.env("GLIBC_TUNABLES", t);
    }
    let Ok(out) = cmd.output() else {
        return Vec::new();
    };
    parse_diagnostics(&String::from_utf8_lossy(&out.stdout), kind)
}

/// Lines like `x86.cpu_features.features[0x1].active[0x1]=0x218c0328`.
fn parse_diagnostics(text: &str, kind: &str) -> Vec<Word> {
    let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("x86.cpu_features.features[")?;
            let (index, rest) = rest.split_once("].")?;
            let rest = rest.strip_prefix(kind)?.strip_prefix('[')?;
            let (reg, value) = rest.split_once("]=")?;
            let w = Word {
                index: hex(index)?,
                reg: hex(reg)?,
                bits: hex(value)?,
            };
            (w.bits != 0).then_some(w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(jvm: &[&str], glibc: &[Word]) -> Record {
        Record {
            mode: "native".into(),
            model: "m".into(),
            flags: vec!["sse2".into(), "avx2".into()],
            glibc: glibc.to_vec(),
            jvm: jvm.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn compatible_names_what_this_cpu_lacks() {
        let here = Machine {
            model: "m".into(),
            flags: vec!["sse2".into(), "avx".into(), "avx2".into()],
            cpuid: vec![Word {
                index: 1,
                reg: 1,
                bits: 1 << 5,
            }],
        };
        assert_eq!(
            check(&record(&["sse2", "avx2"], &[]), &here, Check::Compatible),
            Ok(())
        );
        let e = check(&record(&["avx512f", "avx2"], &[]), &here, Check::Compatible).unwrap_err();
        assert_eq!(e.missing, ["avx512f"]);
        let glibc = [Word {
            index: 1,
            reg: 1,
            bits: (1 << 5) | (1 << 16) | (1 << 3),
        }];
        let e = check(&record(&["sse2"], &glibc), &here, Check::Compatible).unwrap_err();
        assert_eq!(e.missing, ["avx512f", "bmi1"]);
        assert!(check(&record(&["avx512f"], &glibc), &here, Check::Skip).is_ok());
        // Exact: what the image was limited to against what a JVM would use natively here.
        assert!(check(&record(&["sse2", "avx", "avx2"], &[]), &here, Check::Exact).is_ok());
        let e = check(&record(&["sse2", "avx2"], &[]), &here, Check::Exact).unwrap_err();
        assert_eq!(
            (e.missing.len(), e.extra.clone()),
            (0, vec!["avx".to_string()])
        );
        assert!(e.to_string().contains("has avx"));
        // A generic image is not exactly this CPU's.
        let mut generic = record(&["sse2"], &[]);
        generic.mode = "generic".into();
        assert!(check(&generic, &here, Check::Compatible).is_ok());
        assert!(check(&generic, &here, Check::Exact).is_err());
        // An image that recorded nothing passes only a skipped check.
        let mut ignored = record(&[], &[]);
        ignored.mode = "ignore".into();
        for how in [Check::Compatible, Check::Exact] {
            assert!(check(&ignored, &here, how).unwrap_err().unknown);
        }
        assert!(check(&ignored, &here, Check::Skip).is_ok());
    }

    #[test]
    fn generic_restricts_the_jvm_and_glibc() {
        let (jvm, tunables) = Features::Generic.restrictions();
        assert_eq!(jvm, GENERIC_JVM_FLAGS);
        let t = tunables.unwrap();
        assert!(t.starts_with("glibc.cpu.hwcaps=-AVX,-AVX2,") && t.contains("-POPCNT"));
        let (jvm, tunables) = Features::parse("avx2,popcnt").unwrap().restrictions();
        assert!(jvm.contains(&"-XX:UseAVX=2".to_string()));
        assert!(!jvm.contains(&"-XX:-UsePopCountInstruction".to_string()));
        assert!(!tunables.unwrap().contains("-AVX2,"));
        assert_eq!(Features::Native.restrictions(), (vec![], None));
        assert!(Features::parse("a b").is_err());
    }

    /// The instruction and glibc agree on the words that hold features.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn cpuid_words_match_glibc() {
        let Some(ld) = ld_so_of(std::process::id()) else {
            return;
        };
        let glibc = glibc_words(&ld, None, "cpuid");
        if glibc.is_empty() {
            return;
        }
        let ours = cpuid_words();
        // Leaf 1's ebx holds the APIC id of whichever CPU runs us, leaf 7's eax a count: not
        // features.
        let features = |w: &&Word| w.index <= 2 && w.reg != 0 && !(w.index == 0 && w.reg == 1);
        for w in glibc.iter().filter(features) {
            assert!(ours.contains(w), "{w:?} missing from {ours:?}");
        }
    }

    #[test]
    fn diagnostics_parse() {
        let text = "x86.cpu_features.features[0x1].active[0x1]=0x218c0328\nx86.cpu_features.features[0x1].cpuid[0x1]=0x219c07ab\nx86.cpu_features.features[0x2].active[0x0]=0x0\nother=1\n";
        assert_eq!(
            parse_diagnostics(text, "active"),
            [Word {
                index: 1,
                reg: 1,
                bits: 0x218c0328
            }]
        );
        assert_eq!(
            parse_diagnostics(text, "cpuid"),
            [Word {
                index: 1,
                reg: 1,
                bits: 0x219c07ab
            }]
        );
        let r = Record {
            mode: "generic".into(),
            model: "x y".into(),
            flags: vec!["a".into()],
            glibc: vec![Word {
                index: 0,
                reg: 2,
                bits: 0xff,
            }],
            jvm: vec!["sse2".into()],
        };
        let text = r.encode();
        let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        assert_eq!(Record::decode(&map), r);
    }
}
