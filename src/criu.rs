//! Finding a CRIU that works here, building its command lines, and reading its logs.

use anyhow::{bail, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// CRIU 4.1 cannot dump TCP/UDP sockets on Linux >= 6.16, and Debian 12's 3.17 fails
/// `criu check` on recent kernels, so nothing older than 4.2 is used.
pub const MIN_VERSION: (u32, u32) = (4, 2);

const HOW_TO_GET: &str = "run scripts/setup (it builds CRIU 4.2 from Debian's source package) or set CRAC_CRIU_PATH to a criu >= 4.2";

#[derive(Debug, Clone)]
pub struct Criu {
    pub path: PathBuf,
    pub version: String,
    /// What crac-shim's own CRIU patches (shims/criu) add, as its `--version` lists them
    /// (`crac-shim-feature: NAME`); empty for any other CRIU, which then runs without them.
    pub features: Vec<String>,
}

impl Criu {
    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|f| f == name)
    }

    /// Which mode runs: crac-shim's patches this CRIU has, or none (the slower mode).
    pub fn mode(&self) -> String {
        if self.features.is_empty() {
            format!("CRIU {} without crac-shim's patches (slower: no probe cache as root where /run is not a tmpfs, threads waited for one by one; a copy's clocks leave out the time the image waited)", self.version)
        } else {
            format!(
                "CRIU {} with crac-shim's patches: {}",
                self.version,
                self.features.join(", ")
            )
        }
    }
}

/// The `crac-shim-feature:` lines of `criu --version`.
pub fn parse_features(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("crac-shim-feature:"))
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty() && !f.contains(char::is_whitespace))
        .collect()
}

/// Parses `criu --version` output ("Version: 4.2.1").
pub fn parse_version(output: &str) -> Option<(u32, u32, u32)> {
    let v = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?
        .trim();
    let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

type Version = (String, (u32, u32, u32), Vec<String>);

fn version_of(path: &Path) -> Result<Version, String> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = parse_version(&text)
        .ok_or_else(|| format!("{} does not look like CRIU (no version)", path.display()))?;
    Ok((format!("{}.{}.{}", v.0, v.1, v.2), v, parse_features(&text)))
}

/// Where to look, in CRaC's order: explicit, `CRAC_CRIU_PATH`, bundled next to us, PATH.
pub fn locate(explicit: Option<&Path>) -> Result<Criu> {
    let env = std::env::var_os("CRAC_CRIU_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some((p, source)) = explicit
        .map(|p| (p.to_path_buf(), "-XX:CRaCEngine"))
        .or(env.map(|p| (p, "CRAC_CRIU_PATH")))
    {
        return check(&p).map_err(|e| anyhow::anyhow!("{source}: {e}; {HOW_TO_GET}"));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("criu"));
            candidates.push(dir.join("../lib/crac-shim/criu"));
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        candidates.push(dir.join("criu"));
    }
    candidates.push(PathBuf::from("/usr/sbin/criu"));
    let mut rejected = Vec::new();
    for c in candidates.iter().filter(|c| c.is_file()) {
        match check(c) {
            Ok(criu) => return Ok(criu),
            Err(e) => rejected.push(e),
        }
    }
    if let Some(first) = rejected.first() {
        bail!("no usable CRIU: {first}; {HOW_TO_GET}");
    }
    bail!("CRIU not found; {HOW_TO_GET}")
}

/// `criu --version` costs a few milliseconds of every JVM start: remember the answer per
/// binary (path, size, mtime) in our private runtime directory.
fn cached_version_of(path: &Path) -> Result<Version, String> {
    let key = std::fs::metadata(path)
        .map(|m| format!("{} {} {}", path.display(), m.len(), m.mtime()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = crate::paths::runtime_dir();
    let cache = dir.join("criu-versions");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix(&key)?.strip_prefix(" = "))
        {
            // `4.2.1 +feature +feature`
            let mut words = v.split_whitespace();
            let version = words.next().unwrap_or_default();
            if let Some(parsed) = parse_version(&format!("Version: {version}")) {
                let features = words
                    .filter_map(|w| w.strip_prefix('+'))
                    .map(str::to_string)
                    .collect();
                return Ok((version.to_string(), parsed, features));
            }
        }
    }
    let found = version_of(path)?;
    if crate::paths::ensure_private(&dir).is_ok() {
        let tmp = dir.join(format!("criu-versions.{}", std::process::id()));
        let features: String = found.2.iter().map(|f| format!(" +{f}")).collect();
        if std::fs::write(&tmp, format!("{key} = {}{features}\n", found.0)).is_ok() {
            let _ = std::fs::rename(&tmp, &cache);
        }
    }
    Ok(found)
}

fn check(path: &Path) -> Result<Criu, String> {
    let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (version, v, features) = cached_version_of(&path)?;
    if (v.0, v.1) < MIN_VERSION {
        return Err(format!(
            "CRIU {version} at {} is too old (crac-shim needs {}.{} or later)",
            path.display(),
            MIN_VERSION.0,
            MIN_VERSION.1
        ));
    }
    Ok(Criu {
        path,
        version,
        features,
    })
}

/// True when we run CRIU without root: then with --unprivileged.
pub fn rootless() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() != 0 }
}

/// Options shared by dump and restore: the JVM is a job of somebody's shell (not a session
/// leader), and its control files use locks. CRIU locks the network around any TCP socket it
/// meets (even a closed one a server has not reaped yet) with iptables by default, which is
/// often missing; established connections are refused by our policy unless a rule keeps
/// them, so the lock is skipped.
fn common_args() -> Vec<String> {
    vec![
        "--shell-job".into(),
        "--file-locks".into(),
        "--network-lock".into(),
        "skip".into(),
    ]
}

/// `criu dump` of the JVM `pid` into `dir`; `external_unix` are the inodes of unix sockets
/// whose peers are outside the JVM on purpose (the checkpoint channel).
pub fn dump_args(
    pid: u32,
    dir: &Path,
    work_dir: &Path,
    log: &str,
    external_unix: &[u64],
    extra: &[String],
) -> Vec<String> {
    let mut a = vec![
        "dump".into(),
        "-t".into(),
        pid.to_string(),
        "-D".into(),
        dir.display().to_string(),
        "-W".into(),
        work_dir.display().to_string(),
    ];
    a.extend(["-o".into(), log.into(), "-v4".into()]);
    a.extend(common_args());
    // A server under load has connections in its accept queue at any moment: they are
    // dropped (the clients retry) rather than failing the dump.
    a.push("--skip-in-flight".into());
    // Deleted files still open or mapped (native libraries unpacked to the temp directory and
    // deleted once loaded: Netty, JNA, sqlite-jdbc, zstd-jni) go into the image whole. CRIU's
    // own limit (1 MiB) refuses most of them; ours is GHOST_LIMIT (the user's args override).
    a.push("--ghost-limit".into());
    a.push(GHOST_LIMIT.into());
    for ino in external_unix {
        a.push("--external".into());
        a.push(format!("unix[{ino}]"));
    }
    a.extend(extra.iter().cloned());
    a
}

/// `criu restore` of `dir`, detached, with the restored JVM as our sibling (so the caller
/// is its parent). `inherit` maps our descriptor numbers to image keys.
pub fn restore_args(
    dir: &Path,
    work_dir: &Path,
    log: &str,
    inherit: &[(i32, String)],
    extra: &[String],
) -> Vec<String> {
    let mut a = vec![
        "restore".into(),
        "-D".into(),
        dir.display().to_string(),
        "-W".into(),
        work_dir.display().to_string(),
    ];
    a.extend([
        "-o".into(),
        log.into(),
        "-v2".into(),
        "-d".into(),
        "-S".into(),
    ]);
    a.extend(common_args());
    for (fd, key) in inherit {
        a.push("--inherit-fd".into());
        a.push(format!("fd[{fd}]:{key}"));
    }
    a.extend(extra.iter().cloned());
    a
}

/// `criu lazy-pages`: serves the pages of a `restore --lazy-pages` from the image, writing a
/// zero byte to `status_fd` once it listens.
pub fn lazy_pages_args(dir: &Path, work_dir: &Path, status_fd: i32) -> Vec<String> {
    let mut a = vec![
        "lazy-pages".into(),
        "-D".into(),
        dir.display().to_string(),
        "-W".into(),
        work_dir.display().to_string(),
        "-o".into(),
        "lazy-pages.log".into(),
        "-v2".into(),
        "--status-fd".into(),
        status_fd.to_string(),
    ];
    a.extend(crate::privilege::criu_mode_args());
    a
}

/// The largest deleted-but-open file a checkpoint takes into the image (CRIU's `--ghost-limit`).
pub const GHOST_LIMIT: &str = "512M";

/// Errors CRIU logs while it probes the kernel (a container without /dev/net/tun, without
/// CAP_NET_ADMIN for veth or nftables) and then goes on: never the reason for a failure.
const ALWAYS_THERE: &str = "Can't setup RLIMIT_NOFILE";

/// How a CRIU that a signal ended is reported: the signal, not its log's last words.
pub fn killed_by(signal: i32) -> String {
    let name = nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"));
    format!("CRIU was killed by {name} (signal {signal}), by someone or something else (the OOM killer, a timeout, an operator)")
}

const PROBE_NOISE: &[&str] = &[
    "Can't setup RLIMIT_NOFILE",
    "Unable to create tun",
    "reported by netlink",
    "Unable to create a veth pair",
    "net: Unexpected error",
    "FAILED.",
];

/// The first line of a CRIU log that explains a failure: the first `Error` line, minus the
/// timestamp and source location, skipping the probes' noise, with what to do in our terms
/// where we know it.
pub fn first_error(log: &str) -> Option<String> {
    let errors = errors(log);
    let first = errors
        .iter()
        .find(|e| !PROBE_NOISE.iter().any(|n| e.contains(n)))
        // The sandbox's rlimit line is in every log, failed or not: it never explains one.
        .or_else(|| errors.iter().find(|e| !e.contains(ALWAYS_THERE)))?;
    Some(match advice(first) {
        Some(a) => format!("{first} ({a})"),
        None => first.clone(),
    })
}

/// What a CRIU error means for a crac-shim user.
fn advice(error: &str) -> Option<&'static str> {
    if error.contains("suspending seccomp failed") {
        Some("crac-java runs under a seccomp filter: in a container, run it with --security-opt seccomp=unconfined")
    } else if error.contains("SO_SNDBUFFORCE") {
        Some("CRIU's full mode needs CAP_NET_ADMIN here")
    } else if error.contains("half of stream unix connection")
        || error.contains("name-less external socket")
    {
        Some("a unix socket connected to another process: close it in beforeCheckpoint, or a resource policy rule `type: socket`, `family: unix`, `action: close`")
    } else if error.contains("Can't dump") && error.contains("inet socket") {
        Some("an open network socket: close it in beforeCheckpoint, or a resource policy rule `type: socket` with `action: close`")
    } else if error.contains("Can't dump file") && error.contains("of that type") {
        Some("a descriptor of a kind CRIU cannot save: close it in beforeCheckpoint, or a resource policy rule `type: filedescriptor` naming it with `action: close`")
    } else if error.contains("Can't dump ghost file") {
        Some("a deleted file is still open or mapped and larger than crac-shim's limit of 512 MiB for such files: raise it with -XX:CRaCEngineOptions=args=--ghost-limit=SIZE, or close the file before the checkpoint")
    } else {
        None
    }
}

fn errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("Error (") || l.contains("Error:"))
        .map(|l| match l.find("): ") {
            Some(i) if l.contains("Error (") => l[i + 3..].trim().to_string(),
            _ => l
                .trim()
                .trim_start_matches(|c: char| {
                    c == '(' || c.is_ascii_digit() || c == '.' || c == ')'
                })
                .trim()
                .to_string(),
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Key of a unix socket in `--external unix[N]`, from a `socket:[N]` descriptor key.
pub fn socket_inode(key: &str) -> Option<u64> {
    key.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("Version: 4.2.1\n"), Some((4, 2, 1)));
        assert_eq!(parse_version("Version: 3.17\nGitID: x"), Some((3, 17, 0)));
        assert_eq!(parse_version("nope"), None);
        let usable = |v: (u32, u32)| v >= MIN_VERSION;
        assert!(!usable((3, 17)) && !usable((4, 1)) && usable((4, 2)) && usable((5, 0)));
    }

    #[test]
    fn dump_command_marks_the_channel_external() {
        let a = dump_args(
            42,
            Path::new("/tmp/x"),
            Path::new("/tmp/w"),
            "dump.log",
            &[77],
            &["--tcp-close".into()],
        );
        let s = a.join(" ");
        assert!(s.starts_with("dump -t 42 -D /tmp/x -W /tmp/w -o dump.log"));
        assert!(
            s.contains("--shell-job")
                && s.contains("--external unix[77]")
                && s.ends_with("--tcp-close")
        );
    }

    #[test]
    fn restore_command_inherits_descriptors() {
        let a = restore_args(
            Path::new("/i"),
            Path::new("/w"),
            "r.log",
            &[(0, "pipe:[5]".into()), (9, "socket:[6]".into())],
            &[],
        );
        let s = a.join(" ");
        assert!(
            s.contains("-d -S")
                && s.contains("--inherit-fd fd[0]:pipe:[5]")
                && s.contains("--inherit-fd fd[9]:socket:[6]")
        );
    }

    #[test]
    fn a_log_of_noise_only_explains_nothing() {
        let log = "(00.001) Error (criu/util.c:1): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n";
        assert_eq!(first_error(log), None);
        assert!(killed_by(9).contains("SIGKILL"));
    }

    #[test]
    fn first_error_skips_noise() {
        let log = "(00.001) Warn (criu/x.c:1): meh\n(00.002) Error (criu/util.c:9): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n(00.003) Error (criu/files-reg.c:2131): File tmp/x has bad size 5 (expect 3)\n(00.004) Error (criu/cr-restore.c:1): Restoring FAILED.\n";
        assert_eq!(
            first_error(log).as_deref(),
            Some("File tmp/x has bad size 5 (expect 3)")
        );
        assert_eq!(first_error("all good"), None);
        let log = "(00.1) Error (criu/sk-unix.c:881): unix: Can't dump half of stream unix connection. name: /x; peer name: /y\n";
        assert!(first_error(log).unwrap().contains("`action: close`"));
        // A container's dump: the probes complain first, the seccomp refusal is the reason.
        let log = "(00.009) Error (criu/tun.c:85): tun: Unable to create tun: No such file or directory\n(00.012) Error (criu/libnetlink.c:54): -1 reported by netlink: Operation not permitted\n(00.012) Error (criu/net.c:4151): net: Unable to create a veth pair: -1\n(00.041) Error (compel/src/lib/ptrace.c:27): suspending seccomp failed: Operation not permitted\n(00.041) Error (criu/cr-dump.c:1975): Dumping FAILED.\n";
        let e = first_error(log).unwrap();
        assert!(
            e.starts_with("suspending seccomp failed") && e.contains("seccomp=unconfined"),
            "{e}"
        );
        assert_eq!(socket_inode("socket:[123]"), Some(123));
        assert_eq!(socket_inode("pipe:[1]"), None);
    }
}
