//! An image directory: CRIU's files plus our metadata, and the checks made before using one.

pub mod caps;
pub mod cpu;
pub mod inspect;
pub mod manifest;
pub mod needs;
pub mod pages;
pub mod target;

pub use target::prepare as prepare_target;

use anyhow::Result;
use crac_shim_proto::safepath::{self, Refusal};
use crac_shim_proto::{FORMAT_VERSION, METADATA_FILE};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a restore needs to know besides CRIU's images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub format: u32,
    pub pid: u32,
    pub java_home: String,
    /// libjvm.so as mapped at checkpoint: path, size, mtime (seconds).
    pub libjvm: Option<(String, u64, i64)>,
    /// CRIU keys of the placeholders on fds 0, 1 and 2.
    pub stdio: [String; 3],
    /// CRIU key of the agent's end of the checkpoint channel.
    pub channel: String,
    pub criu_version: String,
    pub perf_memfd: bool,
    pub created: u64,
    /// CRIU restore options some descriptors need (connected TCP sockets).
    pub restore_args: Vec<String>,
    /// Files kept open for reading: (size, mtime, path); they must not change.
    pub check_files: Vec<(u64, i64, String)>,
    /// Files a policy reopens for writing with `allowChanges: false`, as they were once the
    /// dump was done: (size, mtime, path). A restore against newer contents is refused.
    pub data_files: Vec<(u64, i64, String)>,
    /// Files a policy reopens for writing that may change (CRaC's way), recorded the same
    /// way: a restore that finds one changed or gone says so and goes on.
    pub reopen_files: Vec<(u64, i64, String)>,
    /// Addresses the program listens on (TCP): they must be free at restore.
    pub listens: Vec<String>,
    /// Logs (O_WRONLY|O_APPEND) that CRIU reopens by path: created if missing.
    pub append_files: Vec<String>,
    /// Files a policy reopens that may change (`allowChanges`), with their stand-in's access
    /// (`r` or `rw`): the restore opens them and hands them to CRIU (`--inherit-fd`), which
    /// would refuse their new size.
    pub inherit_files: Vec<(String, String)>,
    /// Where each of `inherit_files` was read or written to once the JVM was frozen: (offset,
    /// path). CRIU keeps no position for a file it inherits; the restore seeks there.
    pub file_offsets: Vec<(i64, String)>,
    /// `-XX:CRaCImageLabels`: (key, value) pairs a restore can require.
    pub labels: Vec<(String, String)>,
    /// Where and how the image was made, for `-XX:CRaCInspectImage`.
    pub host: String,
    pub kernel: String,
    pub jdk_version: String,
    /// The JVM's command line.
    pub command: Vec<String>,
    /// Names (never values) of the environment variables the JVM had: the values are in the
    /// image's memory.
    pub env_names: Vec<String>,
    /// Each descriptor at the checkpoint with the decision taken (`FD fd=N ... (class, action)`).
    pub descriptors: Vec<String>,
    /// The CPU the image was made on and what its code may use.
    pub cpu: cpu::Record,
    /// The terminal modes of the JVM's stdin at the checkpoint, if it was a terminal.
    pub termios: Option<String>,
    /// The capability sets the checkpointed JVM held (`None`: an image of an earlier build).
    pub caps: Option<caps::Sets>,
    /// When the image was finished, the JVM frozen (wall clock, ns since the epoch; 0: not
    /// recorded): a restore's clocks go on from there plus the time that passed.
    pub frozen_at_ns: u128,
    /// CRaC's test engine that made the directory (`simengine`, `pauseengine`); empty for
    /// an image CRIU made.
    pub engine: String,
    /// What the files of `check_files` and `data_files` held once the JVM was frozen, finer
    /// than their size and whole-second mtime (a write of the same size in the same second).
    pub file_states: Vec<FileState>,
    /// A preloaded allocator that takes memory it gave back to be zero (jemalloc, ...): its
    /// copies get their pages read, not mapped (`pages`). Empty: glibc's malloc.
    pub allocator: String,
}

/// A file as the dump left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// The contents' checksum, for files up to `FileState::SUMMED` bytes.
    pub checksum: Option<u64>,
    pub path: String,
}

/// Whether `file` lies on a file system whose contents the kernel makes up when read.
fn is_pseudo(file: &std::fs::File) -> bool {
    const PSEUDO: [i64; 9] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0xcafe_4a11, // bpf
        0x6265_6570, // configfs
    ];
    nix::sys::statfs::fstatfs(file).is_ok_and(|s| PSEUDO.contains(&s.filesystem_type().0))
}

impl FileState {
    /// Small files (configuration, a database's state) are told apart by their contents:
    /// reading them costs little, and a copy on another host keeps its contents, not its times.
    pub const SUMMED: u64 = 1 << 20;

    /// The file at `path` now, through `fd` when given (already opened safely).
    pub fn of(path: &str, file: &std::fs::File) -> std::io::Result<FileState> {
        let m = file.metadata()?;
        // Not the contents of what the kernel makes up as it is read (/proc, /sys, cgroup
        // files: HotSpot keeps a cgroup's memory.stat open), nor of an empty file.
        let checksum = if m.len() > 0 && m.len() <= Self::SUMMED && !is_pseudo(file) {
            let mut h = manifest::Hasher::default();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut &*file, &mut bytes)?;
            h.update(&bytes);
            Some(h.finish())
        } else {
            None
        };
        Ok(FileState {
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            checksum,
            path: path.to_string(),
        })
    }

    /// Whether `now` holds what `self` held: the same contents where they were summed, else
    /// the same size and modification time to the nanosecond.
    pub fn same_as(&self, now: &FileState) -> bool {
        if self.size != now.size {
            return false;
        }
        match (self.checksum, now.checksum) {
            (Some(a), Some(b)) => a == b,
            _ => self.mtime_ns == now.mtime_ns,
        }
    }

    fn encode(&self) -> String {
        let sum = self
            .checksum
            .map_or("-".to_string(), |c| format!("{c:016x}"));
        format!("{}:{}:{sum}:{}", self.size, self.mtime_ns, self.path)
    }

    fn decode(v: &str) -> Option<FileState> {
        let mut parts = v.splitn(4, ':');
        let size = parts.next()?.parse().ok()?;
        let mtime_ns = parts.next()?.parse().ok()?;
        let checksum = match parts.next()? {
            "-" => None,
            c => Some(u64::from_str_radix(c, 16).ok()?),
        };
        Some(FileState {
            size,
            mtime_ns,
            checksum,
            path: parts.next()?.to_string(),
        })
    }
}

impl Metadata {
    pub fn encode(&self) -> String {
        let mut out = format!(
            "# crac-shim image metadata\nformat={}\npid={}\njava_home={}\n",
            self.format, self.pid, self.java_home
        );
        if let Some((p, size, mtime)) = &self.libjvm {
            out.push_str(&format!(
                "libjvm={p}\nlibjvm_size={size}\nlibjvm_mtime={mtime}\n"
            ));
        }
        for (name, key) in ["stdin", "stdout", "stderr"].iter().zip(&self.stdio) {
            out.push_str(&format!("{name}={key}\n"));
        }
        out.push_str(&format!(
            "channel={}\ncriu_version={}\nperf_memfd={}\ncreated={}\n",
            self.channel, self.criu_version, self.perf_memfd, self.created
        ));
        for a in &self.restore_args {
            out.push_str(&format!("restore_arg={a}\n"));
        }
        for (size, mtime, path) in &self.check_files {
            out.push_str(&format!("check_file={size}:{mtime}:{path}\n"));
        }
        for (size, mtime, path) in &self.data_files {
            out.push_str(&format!("data_file={size}:{mtime}:{path}\n"));
        }
        for (size, mtime, path) in &self.reopen_files {
            out.push_str(&format!("reopen_file={size}:{mtime}:{path}\n"));
        }
        if let Some(c) = &self.caps {
            out.push_str(&format!("caps={}\n", c.encode()));
        }
        if self.frozen_at_ns > 0 {
            out.push_str(&format!("frozen_at_ns={}\n", self.frozen_at_ns));
        }
        if !self.engine.is_empty() {
            out.push_str(&format!("engine={}\n", self.engine));
        }
        if !self.allocator.is_empty() {
            out.push_str(&format!("allocator={}\n", self.allocator));
        }
        for f in &self.file_states {
            out.push_str(&format!("file_state={}\n", f.encode()));
        }
        for a in &self.listens {
            out.push_str(&format!("listen={a}\n"));
        }
        for p in &self.append_files {
            out.push_str(&format!("append_file={p}\n"));
        }
        for (offset, p) in &self.file_offsets {
            out.push_str(&format!("file_offset={offset}:{p}\n"));
        }
        for (access, p) in &self.inherit_files {
            out.push_str(&format!("inherit_file={access}:{p}\n"));
        }
        for (k, v) in &self.labels {
            out.push_str(&format!("label={}={}\n", escape(k), escape(v)));
        }
        for (key, value) in [
            ("host", &self.host),
            ("kernel", &self.kernel),
            ("jdk_version", &self.jdk_version),
        ] {
            out.push_str(&format!("{key}={}\n", escape(value)));
        }
        for (key, values) in [
            ("arg", &self.command),
            ("env_name", &self.env_names),
            ("descriptor", &self.descriptors),
        ] {
            for v in values {
                out.push_str(&format!("{key}={}\n", escape(v)));
            }
        }
        if let Some(t) = &self.termios {
            out.push_str(&format!("termios={t}\n"));
        }
        out.push_str(&self.cpu.encode());
        out
    }

    pub fn decode(text: &str) -> Result<Metadata, String> {
        let pairs: Vec<(&str, &str)> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split_once('='))
            .collect();
        let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        let all = |k: &'static str| -> Vec<String> {
            pairs
                .iter()
                .filter(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
                .collect()
        };
        let get = |k: &str| {
            map.get(k)
                .copied()
                .ok_or_else(|| format!("metadata lacks {k}"))
        };
        let num = |k: &str| {
            get(k)?
                .parse::<u64>()
                .map_err(|_| format!("metadata has a bad {k}"))
        };
        let format = num("format")? as u32;
        if format != FORMAT_VERSION {
            return Err(format!("image format {format} is not supported by this crac-shim (format {FORMAT_VERSION}); checkpoint again with this version"));
        }
        let libjvm = match map.get("libjvm") {
            Some(p) => Some((
                p.to_string(),
                num("libjvm_size")?,
                num("libjvm_mtime")? as i64,
            )),
            None => None,
        };
        Ok(Metadata {
            format,
            pid: num("pid")? as u32,
            java_home: get("java_home")?.to_string(),
            libjvm,
            stdio: [
                get("stdin")?.to_string(),
                get("stdout")?.to_string(),
                get("stderr")?.to_string(),
            ],
            channel: get("channel")?.to_string(),
            criu_version: map.get("criu_version").unwrap_or(&"").to_string(),
            perf_memfd: map.get("perf_memfd") == Some(&"true"),
            created: map.get("created").and_then(|v| v.parse().ok()).unwrap_or(0),
            restore_args: all("restore_arg"),
            check_files: all("check_file")
                .into_iter()
                .map(|v| {
                    parse_check_file(&v)
                        .ok_or_else(|| format!("metadata has a bad check_file {v:?}"))
                })
                .collect::<Result<_, _>>()?,
            data_files: all("data_file")
                .into_iter()
                .map(|v| {
                    parse_check_file(&v)
                        .ok_or_else(|| format!("metadata has a bad data_file {v:?}"))
                })
                .collect::<Result<_, _>>()?,
            reopen_files: all("reopen_file")
                .into_iter()
                .map(|v| {
                    parse_check_file(&v)
                        .ok_or_else(|| format!("metadata has a bad reopen_file {v:?}"))
                })
                .collect::<Result<_, _>>()?,
            listens: all("listen"),
            append_files: all("append_file"),
            file_offsets: all("file_offset")
                .iter()
                .filter_map(|v| {
                    let (offset, path) = v.split_once(':')?;
                    Some((offset.parse().ok()?, path.to_string()))
                })
                .collect(),
            inherit_files: all("inherit_file")
                .iter()
                .map(|v| {
                    v.split_once(':')
                        .map(|(a, p)| (a.to_string(), p.to_string()))
                        .ok_or_else(|| format!("metadata has a bad inherit_file {v:?}"))
                })
                .collect::<Result<_, _>>()?,
            labels: all("label")
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (unescape(k), unescape(v)))
                        .ok_or_else(|| format!("metadata has a bad label {l:?}"))
                })
                .collect::<Result<_, _>>()?,
            host: unescape(map.get("host").unwrap_or(&"")),
            kernel: unescape(map.get("kernel").unwrap_or(&"")),
            jdk_version: unescape(map.get("jdk_version").unwrap_or(&"")),
            command: all("arg").iter().map(|a| unescape(a)).collect(),
            env_names: all("env_name").iter().map(|a| unescape(a)).collect(),
            descriptors: all("descriptor").iter().map(|a| unescape(a)).collect(),
            cpu: cpu::Record::decode(&map),
            termios: map.get("termios").map(|t| t.to_string()),
            caps: map.get("caps").and_then(|c| caps::Sets::decode(c)),
            frozen_at_ns: map
                .get("frozen_at_ns")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            engine: map.get("engine").map(|e| e.to_string()).unwrap_or_default(),
            allocator: map
                .get("allocator")
                .map(|e| e.to_string())
                .unwrap_or_default(),
            file_states: all("file_state")
                .iter()
                .map(|v| {
                    FileState::decode(v)
                        .ok_or_else(|| format!("metadata has a bad file_state {v:?}"))
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Free text in a metadata line: newlines and backslashes escaped (and `=` in label keys).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('=', "\\e")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('e') => out.push('='),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `SIZE:MTIME:PATH` (the path may contain colons).
pub fn parse_check_file(v: &str) -> Option<(u64, i64, String)> {
    let mut parts = v.splitn(3, ':');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.to_string(),
    ))
}

/// An image directory held open: what was checked is what CRIU reads (through
/// `/proc/self/fd/N`), whatever becomes of the path meanwhile.
#[derive(Debug)]
pub struct Held {
    fd: OwnedFd,
}

impl Held {
    /// A path to the directory we hold, for reading it and for CRIU's `-D`.
    pub fn fs(&self) -> PathBuf {
        safepath::fd_path(&self.fd)
    }

    /// Lets `cmd` (CRIU) inherit the descriptor behind `fs()`; nothing else we start gets it.
    pub fn pass_to(&self, cmd: &mut std::process::Command) {
        pass_to(&self.fd, cmd);
    }
}

/// Lets `cmd` (CRIU) alone inherit `fd`, held by the caller until `cmd` has run: close-on-exec
/// is cleared in the child only, so nothing else we start gets it.
pub fn pass_to(fd: &OwnedFd, cmd: &mut std::process::Command) {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl is async-signal-safe; the caller keeps `fd` open until the child has
    // exec'd.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `p` with the prefix `from` replaced by `to`.
pub fn relocate(p: PathBuf, from: &Path, to: &Path) -> PathBuf {
    match p.strip_prefix(from) {
        Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
        Ok(rest) => to.join(rest),
        Err(_) => p,
    }
}

/// An image ready to restore: metadata read, ownership checked, process tree known.
#[derive(Debug)]
pub struct Image {
    /// As the user named it.
    pub dir: PathBuf,
    pub held: Held,
    pub meta: Metadata,
    /// Every pid and thread id in the image: all must be free to restore in this PID namespace.
    pub ids: Vec<u32>,
}

/// Why an image cannot be restored (checked before CRIU runs).
#[derive(Debug)]
pub enum OpenError {
    Unreadable(PathBuf, std::io::Error),
    NotADirectory(PathBuf),
    ForeignOwner {
        dir: PathBuf,
        owner: u32,
        you: u32,
    },
    WritableByOthers {
        dir: PathBuf,
        mode: u32,
    },
    /// A file inside the image that another user owns or could have written.
    UntrustedFile {
        file: PathBuf,
        owner: u32,
        mode: u32,
        you: u32,
    },
    /// The way to the image is not the user's alone (a directory others may write, or a link
    /// or directory of another user).
    Unsafe {
        dir: PathBuf,
        why: Refusal,
    },
    NoMetadata(PathBuf, std::io::Error),
    BadMetadata(PathBuf, String),
    JdkGone {
        dir: PathBuf,
        java_home: String,
        libjvm: String,
    },
    JdkChanged {
        dir: PathBuf,
        java_home: String,
        libjvm: String,
    },
    Incomplete(PathBuf, std::io::Error),
    Damaged(PathBuf, String),
    Files(PathBuf, manifest::Problem),
    MissingLabel {
        dir: PathBuf,
        wanted: String,
        has: Option<String>,
    },
    Cpu {
        dir: PathBuf,
        mismatch: cpu::Mismatch,
        exact: bool,
    },
    /// Files the program had open or mapped that are not on disk here.
    FilesGone {
        dir: PathBuf,
        missing: Vec<String>,
    },
    /// Capabilities the checkpointed program held that this restore cannot give back.
    Capabilities {
        dir: PathBuf,
        missing: Vec<String>,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use OpenError::*;
        match self {
            Unreadable(d, e) => write!(f, "cannot use {} as an image: {e}", d.display()),
            NotADirectory(d) => {
                write!(f, "{} is not a directory, so it is not a crac-shim image", d.display())
            }
            ForeignOwner { dir, owner, you } => write!(
                f,
                "{} belongs to uid {owner}, not to you (uid {you}): refusing to restore someone else's image; check it and chown -R it, or checkpoint again",
                dir.display()
            ),
            WritableByOthers { dir, mode } => write!(
                f,
                "{} is writable by others (mode {mode:o}): refusing to restore an image others could have altered; chmod 700 it",
                dir.display()
            ),
            UntrustedFile { file, owner, mode, you } => {
                if *mode & 0o170000 == 0o120000 {
                    write!(f, "{} is a symbolic link: refusing to restore an image whose files may lie elsewhere; replace it by the file it names", file.display())
                } else if owner != you {
                    write!(f, "{} belongs to uid {owner}, not to you (uid {you}): refusing to run memory another user could have written; check the image and chown -R it, or checkpoint again", file.display())
                } else {
                    write!(f, "{} is writable by others (mode {:o}): refusing to run memory others could have altered; chmod go-w it after checking the image, or checkpoint again", file.display(), mode & 0o7777)
                }
            }
            Unsafe { dir, why } => write!(
                f,
                "refusing to restore {}: {why}",
                dir.display()
            ),
            NoMetadata(d, e) => write!(
                f,
                "{0} is not a crac-shim image ({METADATA_FILE}: {e}); create one with crac-java -XX:CRaCCheckpointTo={0}",
                d.display()
            ),
            BadMetadata(d, e) => write!(f, "{}: {e}", d.display()),
            JdkGone { dir, java_home, libjvm } => write!(
                f,
                "{} cannot be restored here: the image was made with the JDK in {java_home}, whose {libjvm} is gone; install that JDK again or checkpoint with this one",
                dir.display()
            ),
            JdkChanged { dir, java_home, libjvm } => write!(
                f,
                "{} cannot be restored here: the JDK in {java_home} changed since the checkpoint ({libjvm} differs); checkpoint again with the JDK as it is now",
                dir.display()
            ),
            Incomplete(d, e) => write!(
                f,
                "{} is not a complete image (pstree.img: {e}); checkpoint again",
                d.display()
            ),
            Damaged(d, e) => write!(
                f,
                "{}/pstree.img is damaged ({e}); checkpoint again",
                d.display()
            ),
            Files(d, p) => write!(f, "{} cannot be restored: {p}", d.display()),
            MissingLabel { dir, wanted, has } => write!(
                f,
                "{} does not carry the required label {wanted} ({}); restore the image made for it, or change -XX:CRaCRequiredImageLabels",
                dir.display(),
                match has {
                    Some(h) => format!("it has {h}"),
                    None => "it has no such label".to_string(),
                }
            ),
            FilesGone { dir, missing } => write!(
                f,
                "{} cannot be restored here: {}, which the program used (open, mapped, or its working directory), is missing{}; put it back as it was, or checkpoint again where it is",
                dir.display(),
                missing[0],
                match missing.len() {
                    1 => String::new(),
                    n => format!(" (and {} more: -XX:CRaCInspectImage lists them)", n - 1),
                }
            ),
            Capabilities { dir, missing } => write!(
                f,
                "{} cannot be restored here: the checkpointed program held {}, which this restore cannot give back (crac-java's capability bounding set lacks {}; CRIU would wait forever); grant {} to the restore (docker run or podman run --cap-add {}), or checkpoint the program without {}",
                dir.display(),
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "it" } else { "them" },
                missing
                    .iter()
                    .map(|m| m.trim_start_matches("CAP_"))
                    .collect::<Vec<_>>()
                    .join(" --cap-add "),
                if missing.len() == 1 { "it" } else { "them" },
            ),
            Cpu { dir, mismatch, exact } => write!(
                f,
                "{} cannot be restored on this CPU: {mismatch}; {}",
                dir.display(),
                if mismatch.unknown {
                    "skip the check with -XX:+UnlockExperimentalVMOptions -XX:CheckCPUFeatures=skip (the JVM may then die of SIGILL), or checkpoint with -XX:CPUFeatures=native or generic"
                } else if *exact {
                    "restore on the same kind of CPU, or use -XX:CheckCPUFeatures=compatible"
                } else {
                    "restore on a CPU that has them, checkpoint with -XX:CPUFeatures=generic for an image that runs anywhere, or skip the check with -XX:+UnlockExperimentalVMOptions -XX:CheckCPUFeatures=skip (the JVM may then die of SIGILL)"
                }
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// What a restore asks of an image besides being whole and trusted.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// `-XX:+CRaCVerifyImage`: every checksum, not only sizes.
    pub verify: bool,
    /// `-XX:CRaCRequiredImageLabels`: (key, value); a missing value means any value.
    pub required_labels: Vec<(String, Option<String>)>,
    /// `-XX:CheckCPUFeatures`.
    pub cpu: cpu::Check,
}

pub fn open(dir: &Path, checks: &Checks) -> Result<Image, OpenError> {
    let held = check_trust(dir)?;
    let fs = held.fs();
    let meta = read_metadata(&fs, dir)?;
    check_jdk(dir, &meta)?;
    check_labels(dir, &meta, &checks.required_labels)?;
    if checks.cpu != cpu::Check::Skip {
        check_cpu(dir, &meta, checks.cpu, &cpu::Machine::here())?;
    }
    check_capabilities(dir, &meta)?;
    check_files(&fs, dir, checks.verify)?;
    let gone = files_gone(&fs, &meta).map_err(|e| {
        OpenError::Files(
            dir.to_path_buf(),
            manifest::Problem::Unreadable(dir.to_path_buf(), e),
        )
    })?;
    if !gone.is_empty() {
        return Err(OpenError::FilesGone {
            dir: dir.to_path_buf(),
            missing: gone,
        });
    }
    let pstree = std::fs::read(fs.join("pstree.img"))
        .map_err(|e| OpenError::Incomplete(dir.to_path_buf(), e))?;
    let ids = pstree_ids(&pstree).map_err(|e| OpenError::Damaged(dir.to_path_buf(), e))?;
    Ok(Image {
        dir: dir.to_path_buf(),
        held,
        meta,
        ids,
    })
}

/// The image is the restoring user's alone: directory, every file, and the way to it, walked
/// once (no link or directory another user could change) and then held open.
pub fn check_trust(dir: &Path) -> Result<Held, OpenError> {
    let path = || dir.to_path_buf();
    let euid = safepath::euid();
    let how = safepath::Walk {
        judge_last: false,
        ..Default::default()
    };
    let (fd, _) = safepath::open_dir_with(dir, euid, how).map_err(|why| match why {
        Refusal::Io(_, e) => OpenError::Unreadable(path(), e),
        Refusal::NotADirectory(_) => OpenError::NotADirectory(path()),
        why => OpenError::Unsafe { dir: path(), why },
    })?;
    let st = safepath::fstat(fd.as_raw_fd()).map_err(|e| OpenError::Unreadable(path(), e))?;
    // Root is no exception: root restoring an image another user could write would run that
    // user's memory as root.
    if st.st_uid != euid {
        return Err(OpenError::ForeignOwner {
            dir: path(),
            owner: st.st_uid,
            you: euid,
        });
    }
    if st.st_mode & 0o022 != 0 {
        return Err(OpenError::WritableByOthers {
            dir: path(),
            mode: st.st_mode & 0o777,
        });
    }
    let held = Held { fd };
    let fs = held.fs();
    check_files_trusted(&fs, euid).map_err(|e| match e {
        OpenError::UntrustedFile {
            file,
            owner,
            mode,
            you,
        } => OpenError::UntrustedFile {
            file: relocate(file, &fs, dir),
            owner,
            mode,
            you,
        },
        OpenError::Unreadable(p, e) => OpenError::Unreadable(relocate(p, &fs, dir), e),
        other => other,
    })?;
    Ok(held)
}

/// The files the image needs on disk that are not there; logs (made by the restore) and the
/// files the restore checks with its own words (read and data files) aside.
pub fn files_gone(fs: &Path, meta: &Metadata) -> Result<Vec<String>, String> {
    let exempt: Vec<String> = meta
        .append_files
        .iter()
        .cloned()
        .chain(meta.check_files.iter().map(|(_, _, p)| p.clone()))
        .chain(meta.data_files.iter().map(|(_, _, p)| p.clone()))
        .chain(meta.reopen_files.iter().map(|(_, _, p)| p.clone()))
        .chain(meta.inherit_files.iter().map(|(_, p)| p.clone()))
        .collect();
    Ok(needs::missing(&needs::files(fs)?, &exempt))
}

/// The capabilities the program held can be given back by a CRIU we start.
pub fn check_capabilities(dir: &Path, meta: &Metadata) -> Result<(), OpenError> {
    let (Some(sets), Some(bounding)) = (meta.caps, caps::our_bounding()) else {
        return Ok(());
    };
    let missing = caps::missing(&sets, bounding);
    if missing.is_empty() {
        return Ok(());
    }
    Err(OpenError::Capabilities {
        dir: dir.to_path_buf(),
        missing,
    })
}

/// Reads the metadata through `fs`, naming the image `shown`.
pub fn read_metadata(fs: &Path, shown: &Path) -> Result<Metadata, OpenError> {
    let text = std::fs::read_to_string(fs.join(METADATA_FILE))
        .map_err(|e| OpenError::NoMetadata(shown.to_path_buf(), e))?;
    Metadata::decode(&text).map_err(|e| OpenError::BadMetadata(shown.to_path_buf(), e))
}

/// Every file named in the manifest is there with its size (and, with `verify`, its checksum).
pub fn check_files(fs: &Path, shown: &Path, verify: bool) -> Result<(), OpenError> {
    let problem = |p: manifest::Problem| OpenError::Files(shown.into(), p.relocate(fs, shown));
    let entries = manifest::read(fs).map_err(problem)?;
    manifest::check(fs, &entries, verify).map_err(problem)
}

pub fn check_labels(
    dir: &Path,
    meta: &Metadata,
    required: &[(String, Option<String>)],
) -> Result<(), OpenError> {
    for (key, value) in required {
        let has = meta
            .labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        let ok = match (&has, value) {
            (Some(h), Some(v)) => h == v,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !ok {
            return Err(OpenError::MissingLabel {
                dir: dir.to_path_buf(),
                wanted: match value {
                    Some(v) => format!("{key}={v}"),
                    None => key.clone(),
                },
                has: has.map(|h| format!("{key}={h}")),
            });
        }
    }
    Ok(())
}

pub fn check_cpu(
    dir: &Path,
    meta: &Metadata,
    how: cpu::Check,
    here: &cpu::Machine,
) -> Result<(), OpenError> {
    cpu::check(&meta.cpu, here, how).map_err(|mismatch| OpenError::Cpu {
        dir: dir.to_path_buf(),
        mismatch,
        exact: how == cpu::Check::Exact,
    })
}

/// Every file CRIU will read (and every directory below the image) must be the restoring
/// user's, writable by nobody else, and not a symbolic link: CRIU runs what these files say.
fn check_files_trusted(dir: &Path, euid: u32) -> Result<(), OpenError> {
    let entries = std::fs::read_dir(dir).map_err(|e| OpenError::Unreadable(dir.into(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| OpenError::Unreadable(dir.into(), e))?;
        let file = entry.path();
        let m =
            std::fs::symlink_metadata(&file).map_err(|e| OpenError::Unreadable(file.clone(), e))?;
        if m.file_type().is_symlink() || m.uid() != euid || m.mode() & 0o022 != 0 {
            return Err(OpenError::UntrustedFile {
                file,
                owner: m.uid(),
                mode: m.mode(),
                you: euid,
            });
        }
        if m.is_dir() {
            check_files_trusted(&file, euid)?;
        }
    }
    Ok(())
}

/// The image's JVM code must be the same as when it was dumped: CRIU maps libjvm.so back.
pub fn check_jdk(dir: &Path, meta: &Metadata) -> Result<(), OpenError> {
    if let Some((libjvm, size, mtime)) = &meta.libjvm {
        let (dir, java_home, libjvm) = (dir.to_path_buf(), meta.java_home.clone(), libjvm.clone());
        let Ok(now) = std::fs::metadata(&libjvm) else {
            return Err(OpenError::JdkGone {
                dir,
                java_home,
                libjvm,
            });
        };
        if now.len() != *size || now.mtime() != *mtime {
            return Err(OpenError::JdkChanged {
                dir,
                java_home,
                libjvm,
            });
        }
    }
    Ok(())
}

const PSTREE_MAGIC: u32 = 0x5027_3030;

/// Reads the pids and thread ids from CRIU's pstree.img: a magic, then entries of a 32-bit
/// length and a protobuf `pstree_entry` (pid = 1, threads = 5).
pub fn pstree_ids(bytes: &[u8]) -> Result<Vec<u32>, String> {
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    // Images start with IMG_COMMON_MAGIC (0x54564319) then the type magic.
    let mut pos = 0;
    if u32_at(0) == Some(0x5456_4319) {
        pos = 4;
    }
    if u32_at(pos) != Some(PSTREE_MAGIC) {
        return Err("not a CRIU process-tree image".into());
    }
    pos += 4;
    let mut ids = Vec::new();
    while pos < bytes.len() {
        let len = u32_at(pos).ok_or("truncated entry header")? as usize;
        pos += 4;
        let entry = bytes.get(pos..pos + len).ok_or("truncated entry")?;
        pos += len;
        parse_entry(entry, &mut ids)?;
    }
    if ids.is_empty() {
        return Err("no process in the image".into());
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

pub(crate) fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

fn parse_entry(buf: &[u8], ids: &mut Vec<u32>) -> Result<(), String> {
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                let v = varint(buf, &mut pos)?;
                if field == 1 || field == 5 {
                    ids.push(u32::try_from(v).map_err(|_| "pid out of range")?);
                }
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let body = buf.get(pos..pos + len).ok_or("truncated field")?;
                pos += len;
                if field == 5 {
                    let mut p = 0;
                    while p < body.len() {
                        ids.push(
                            u32::try_from(varint(body, &mut p)?).map_err(|_| "tid out of range")?,
                        );
                    }
                }
            }
            5 => pos += 4,
            1 => pos += 8,
            _ => return Err(format!("unknown wire type {wire}")),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A protobuf varint, for building CRIU image entries in tests.
    pub(crate) fn put_varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn entry(pid: u32, threads: &[u32], packed: bool) -> Vec<u8> {
        let v = put_varint;
        let mut e = vec![0x08];
        v(pid.into(), &mut e);
        e.extend([0x10, 1]);
        if packed {
            let mut body = Vec::new();
            threads.iter().for_each(|t| v((*t).into(), &mut body));
            e.push(0x2a);
            v(body.len() as u64, &mut e);
            e.extend(body);
        } else {
            for t in threads {
                e.push(0x28);
                v((*t).into(), &mut e);
            }
        }
        e
    }

    fn image(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut img = 0x5456_4319u32.to_le_bytes().to_vec();
        img.extend(PSTREE_MAGIC.to_le_bytes());
        for e in entries {
            img.extend((e.len() as u32).to_le_bytes());
            img.extend(e);
        }
        img
    }

    #[test]
    fn pstree_lists_pids_and_threads() {
        let img = image(&[
            entry(300, &[300, 301, 302], false),
            entry(400, &[400, 70000], true),
        ]);
        assert_eq!(pstree_ids(&img).unwrap(), [300, 301, 302, 400, 70000]);
    }

    #[test]
    fn damaged_pstree_is_an_error_not_a_panic() {
        let img = image(&[entry(300, &[300], false)]);
        for cut in 0..img.len() {
            let _ = pstree_ids(&img[..cut]);
        }
        assert!(pstree_ids(b"garbage!").is_err());
        assert!(pstree_ids(&img[..img.len() - 1]).is_err());
    }

    #[test]
    fn metadata_round_trips_and_rejects_other_formats() {
        let m = Metadata {
            format: FORMAT_VERSION,
            pid: 4242,
            java_home: "/usr/lib/jvm/x".into(),
            libjvm: Some(("/usr/lib/jvm/x/lib/server/libjvm.so".into(), 123, 456)),
            stdio: ["pipe:[1]".into(), "pipe:[2]".into(), "pipe:[3]".into()],
            channel: "socket:[4]".into(),
            criu_version: "4.2.1".into(),
            perf_memfd: true,
            created: 99,
            restore_args: vec!["--tcp-established".into()],
            check_files: vec![(5, 7, "/a:b/c.jar".into())],
            listens: vec!["127.0.0.1:8080".into()],
            append_files: vec!["/var/log/x.log".into()],
            labels: vec![("app".into(), "a=b".into())],
            host: "h".into(),
            kernel: "6.1".into(),
            jdk_version: "17".into(),
            command: vec!["java".into(), "-cp".into(), "a\nb".into()],
            env_names: vec!["HOME".into()],
            descriptors: vec!["FD fd=3 type=regular path=/x (read-file, keep)".into()],
            cpu: cpu::Record {
                mode: "native".into(),
                model: "m".into(),
                flags: vec!["sse2".into()],
                glibc: vec![],
                jvm: vec!["sse2".into()],
            },
            termios: Some(format!("500,5,bf,8a3b,{}", "03".repeat(32))),
            data_files: vec![(7, 1700000000, "/srv/db/data.bin".into())],
            inherit_files: vec![("rw".into(), "/srv/db/lo:g".into())],
            caps: Some(caps::Sets {
                inheritable: 0,
                permitted: 1 << 40,
                ambient: 0,
            }),
            reopen_files: vec![(9, 1700000001, "/srv/db/notes.txt".into())],
            file_offsets: vec![(6, "/srv/db/lo:g".into())],
            engine: "pauseengine".into(),
            allocator: "libjemalloc.so.2".into(),
            frozen_at_ns: 1_796_403_510_123_456_789,
            file_states: vec![
                FileState {
                    size: 7,
                    mtime_ns: 1_700_000_000_123_456_789,
                    checksum: Some(0xfeed),
                    path: "/srv/db/da:ta.bin".into(),
                },
                FileState {
                    size: 1 << 30,
                    mtime_ns: 1,
                    checksum: None,
                    path: "/srv/big".into(),
                },
            ],
        };
        assert_eq!(Metadata::decode(&m.encode()), Ok(m.clone()));
        let other = m.encode().replace("format=2", "format=999");
        assert!(Metadata::decode(&other).unwrap_err().contains("format 999"));
        assert!(Metadata::decode("format=2\n")
            .unwrap_err()
            .contains("lacks"));
    }
}
