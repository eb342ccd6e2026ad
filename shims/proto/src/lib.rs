//! What the launcher, `crac-jcmd`, the dump helper and the preloaded agent say to each other.
//!
//! This crate is deliberately free of hooks (its only system dependency is libc's
//! declarations), so that both the launcher and the agent can link it without the launcher
//! interposing on its own `open`.

use std::fmt;

pub mod policy;
pub mod safepath;

/// Environment variables the launcher sets for the agent. The agent removes them (and its own
/// `LD_PRELOAD` entry) from the environment at start-up, so that programs the JVM starts do not
/// inherit them.
pub mod env {
    /// Marks a JVM started by `crac-java` with a checkpoint directory.
    pub const CHECKPOINT_TO: &str = "CRAC_SHIM_CHECKPOINT_TO";
    /// Absolute path of the `crac-java` binary, run by the agent as the dump helper.
    pub const LAUNCHER: &str = "CRAC_SHIM_LAUNCHER";
    /// Absolute path of the version-checked CRIU binary.
    pub const CRIU: &str = "CRAC_SHIM_CRIU";
    /// Extra CRIU arguments, separated by ASCII unit separators.
    pub const CRIU_ARGS: &str = "CRAC_SHIM_CRIU_ARGS";
    /// Absolute path of the agent library, so that it can be removed from `LD_PRELOAD`.
    pub const AGENT: &str = "CRAC_SHIM_AGENT";
    /// Directory holding the control sockets (one per JVM).
    pub const RUNTIME_DIR: &str = "CRAC_SHIM_RUNTIME_DIR";
    /// A resource-policies file for the descriptor scan.
    pub const POLICY: &str = "CRAC_SHIM_POLICY";
    /// Set to print every descriptor with its verdict at checkpoint.
    pub const PRINT_RESOURCES: &str = "CRAC_SHIM_PRINT_RESOURCES";
    /// Set to keep the JVM running after each checkpoint.
    pub const KEEP_RUNNING: &str = "CRAC_SHIM_KEEP_RUNNING";
    /// Set to print CRIU's command lines.
    pub const PRINT_COMMAND: &str = "CRAC_SHIM_PRINT_COMMAND";
    /// `-XX:CRaCIgnoredFileDescriptors`: descriptor numbers and paths the scan leaves alone,
    /// separated by ASCII unit separators.
    pub const IGNORED_FDS: &str = "CRAC_SHIM_IGNORED_FDS";
    /// `-XX:CRaCImageLabels`: `key=value` pairs, separated by ASCII unit separators.
    pub const LABELS: &str = "CRAC_SHIM_LABELS";
    /// `-XX:CPUFeatures` the JVM runs with (native, generic, ignore or a list).
    pub const CPU_FEATURES: &str = "CRAC_SHIM_CPU_FEATURES";
    /// Set by `-XX:-CRaCResetStartTime`: restored copies keep the JVM's first start time.
    pub const KEEP_START_TIME: &str = "CRAC_SHIM_KEEP_START_TIME";
    /// Every variable above, for scrubbing.
    pub const ALL: [&str; 14] = [
        CHECKPOINT_TO,
        LAUNCHER,
        CRIU,
        CRIU_ARGS,
        AGENT,
        RUNTIME_DIR,
        POLICY,
        PRINT_RESOURCES,
        KEEP_RUNNING,
        PRINT_COMMAND,
        IGNORED_FDS,
        LABELS,
        CPU_FEATURES,
        KEEP_START_TIME,
    ];
}

/// CRaC's test engines (`-XX:CRaCEngine=`), which need no CRIU: the launcher hands the agent
/// the engine's name where CRIU's path would go.
pub const SIM_ENGINE: &str = "simengine";
pub const PAUSE_ENGINE: &str = "pauseengine";

/// Separator for list values carried in one environment variable or field.
pub const LIST_SEPARATOR: char = '\u{1f}';

/// The hidden first argument that turns `crac-java` into the dump helper.
pub const HELPER_ARG: &str = "--crac-shim-internal-dump";

/// The helper's command line is `crac-java HELPER_ARG <channel fd> <client fd or -1>
/// <stdout placeholder read end> <stderr placeholder read end>`; its stdin, stdout and stderr
/// are the JVM's original ones, which the agent replaces by placeholders for the dump.
pub const NO_CLIENT: i32 = -1;

/// Largest message accepted on the control socket or the checkpoint channel.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// System property telling the Java API where the agent's control socket is.
pub const SOCKET_PROPERTY: &str = "jdk.crac.shim.socket";

/// Name of our metadata file inside an image directory.
pub const METADATA_FILE: &str = "crac-shim.meta";
/// Version of the image layout and metadata this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// Where the control sockets of `uid`'s JVMs may be, in the order the launcher tries them.
/// Root's are under /run, where only root can create anything, so nobody can take the name
/// first; another user's in `$XDG_RUNTIME_DIR` (`xdg`, when it is theirs) or
/// `/run/user/UID`; then `/tmp/crac-shim-UID` and, where another user took that name first
/// (any user can create in /tmp), `/tmp/crac-shim-UID.1` to `.9`: a planted directory is
/// never fatal, and crac-jcmd looks in the same places.
pub fn runtime_dir_candidates(uid: u32, xdg: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if uid == 0 {
        out.push("/run/crac-shim".to_string());
    } else {
        if let Some(x) = xdg.filter(|x| x.starts_with('/')) {
            out.push(format!("{}/crac-shim", x.trim_end_matches('/')));
        }
        let user_run = format!("/run/user/{uid}/crac-shim");
        if !out.contains(&user_run) {
            out.push(user_run);
        }
    }
    out.push(format!("/tmp/crac-shim-{uid}"));
    out.extend((1..10).map(|n| format!("/tmp/crac-shim-{uid}.{n}")));
    out
}

/// Creates `dir` with mode 0700, or checks that the existing one is a real directory owned by
/// `uid` that nobody else can enter (so nobody can plant a socket or a file in it first). Its
/// parent is walked (`safepath`): no link or directory another user could change.
pub fn ensure_private_dir(dir: &std::path::Path, uid: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (parent, _, name) =
        safepath::open_parent(dir, uid, None).map_err(|e| std::io::Error::other(e.to_string()))?;
    let c = std::ffi::CString::new(name.as_encoded_bytes())?;
    // SAFETY: `c` is valid for the call; `parent` is a descriptor we hold.
    if unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    let st = safepath::lstatat(parent.as_raw_fd(), &name)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR || st.st_uid != uid || st.st_mode & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} must be a directory owned by you (uid {uid}) with mode 0700; remove it or fix it",
            dir.display()
        )));
    }
    Ok(())
}

/// Path of the control socket of the JVM with (root namespace) pid `pid`.
pub fn socket_path(runtime_dir: &str, pid: u32) -> String {
    format!("{runtime_dir}/{pid}.sock")
}

/// What CRaC's placeholders in a checkpoint directory stand for, at one checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    pub pid: u32,
    /// The checkpoint's time, seconds since the epoch.
    pub time: u64,
    pub uuid: String,
    /// 1 for the first checkpoint of this JVM's line.
    pub generation: u32,
    /// The machine's boot, seconds since the epoch.
    pub boot_time: u64,
    /// The last restore (the JVM's start if it was never restored), seconds since the epoch.
    pub restore_time: u64,
    /// As Java's os.arch says it (amd64, aarch64).
    pub arch: String,
    /// A fingerprint of the CPU's feature flags (16 hex digits).
    pub cpu_features: String,
    pub cpus: u32,
    /// The maximum heap in bytes (0 if unknown).
    pub max_heap: u64,
}

/// Seconds since the epoch as ISO-8601 basic UTC (`20261202T025003Z`): no colons, so the
/// result is also a safe file name and Docker volume path.
pub fn iso8601(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A size as java options write it: the largest exact unit (`512m`, `2g`, `1536k`).
pub fn java_size(bytes: u64) -> String {
    const K: u64 = 1024;
    match bytes {
        0 => "0".into(),
        b if b % (K * K * K) == 0 => format!("{}g", b / (K * K * K)),
        b if b % (K * K) == 0 => format!("{}m", b / (K * K)),
        b if b % K == 0 => format!("{}k", b / K),
        b => b.to_string(),
    }
}

/// Expands CRaC's placeholders in a checkpoint directory: `%p` pid, `%t` time (ISO-8601
/// UTC), `%T` time (seconds since the epoch), `%b`/`%B` boot time (ISO/seconds), `%r`/`%R`
/// last restore (ISO/seconds), `%a` architecture, `%f` CPU features, `%u` a random UUID,
/// `%c` CPU count, `%m` maximum heap, `%g` generation, `%%` a percent sign. A width may come
/// between `%` and the letter (`%5p`), with a leading 0 to pad with zeros (`%08g`).
/// Anything else is left as written.
pub fn expand_placeholders(template: &str, v: &Placeholders) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let spec = &rest[at + 1..];
        let digits = spec.bytes().take_while(u8::is_ascii_digit).count();
        let (width, after) = spec.split_at(digits);
        let Some(letter) = after.chars().next() else {
            out.push_str(&rest[at..]);
            return out;
        };
        let value = match letter {
            'p' => v.pid.to_string(),
            't' => iso8601(v.time),
            'T' => v.time.to_string(),
            'b' => iso8601(v.boot_time),
            'B' => v.boot_time.to_string(),
            'r' => iso8601(v.restore_time),
            'R' => v.restore_time.to_string(),
            'a' => v.arch.clone(),
            'f' => v.cpu_features.clone(),
            'u' => v.uuid.clone(),
            'c' => v.cpus.to_string(),
            'm' => java_size(v.max_heap),
            'g' => v.generation.to_string(),
            '%' if digits == 0 => "%".to_string(),
            _ => {
                out.push('%');
                rest = spec;
                continue;
            }
        };
        let n: usize = width.parse().unwrap_or(0).min(64);
        let pad = n.saturating_sub(value.chars().count());
        let fill = if width.starts_with('0') { '0' } else { ' ' };
        (0..pad).for_each(|_| out.push(fill));
        out.push_str(&value);
        rest = &after[letter.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// A request on the control socket: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Checkpoint now (what `jcmd <pid> JDK.checkpoint` does).
    Checkpoint,
    /// Checkpoint now and keep running afterwards (this once).
    CheckpointKeepRunning,
    /// Checkpoint now with the rules of a resource-policies file (read by the JVM's user)
    /// ahead of those given at the JVM's start, this once: a refused descriptor of a program
    /// already warmed up is fixed without a restart.
    CheckpointWithPolicy { keep_running: bool, policy: String },
    /// Checkpoint for `jdk.crac.Core.checkpointRestore()` in this very JVM: the answer is a
    /// [`Message`] followed by an empty line, sent after the dump failed, or in the restored
    /// JVM (the connection is inside the process, so it is part of the image).
    /// `max_heap` is the JVM's maximum heap in bytes (CRaC's `%m`), 0 if Java did not say.
    CheckpointFromJava { max_heap: u64 },
    /// Describe the JVM (for listings).
    Describe,
}

impl Request {
    pub fn encode(&self) -> String {
        match self {
            Request::Checkpoint => "checkpoint\n".into(),
            Request::CheckpointKeepRunning => "checkpoint keep_running\n".into(),
            Request::CheckpointWithPolicy {
                keep_running,
                policy,
            } => format!("checkpoint-with keep_running={keep_running} policy={policy}\n"),
            Request::CheckpointFromJava { max_heap: 0 } => "checkpoint-java\n".into(),
            Request::CheckpointFromJava { max_heap } => {
                format!("checkpoint-java max_heap={max_heap}\n")
            }
            Request::Describe => "describe\n".into(),
        }
    }

    pub fn decode(line: &[u8]) -> Result<Request, DecodeError> {
        let line = std::str::from_utf8(line).map_err(|_| DecodeError::NotUtf8)?;
        match line.trim_end_matches(['\n', '\r']) {
            "checkpoint" => Ok(Request::Checkpoint),
            "checkpoint keep_running" => Ok(Request::CheckpointKeepRunning),
            "checkpoint-java" => Ok(Request::CheckpointFromJava { max_heap: 0 }),
            "describe" => Ok(Request::Describe),
            other if other.starts_with("checkpoint-with ") => {
                let rest = &other["checkpoint-with ".len()..];
                let (keep, policy) = rest
                    .split_once(" policy=")
                    .filter(|(_, p)| !p.is_empty())
                    .ok_or_else(|| DecodeError::UnknownRequest(truncate(other, 40).to_string()))?;
                let keep_running = match keep {
                    "keep_running=true" => true,
                    "keep_running=false" => false,
                    _ => return Err(DecodeError::UnknownRequest(truncate(other, 40).to_string())),
                };
                Ok(Request::CheckpointWithPolicy {
                    keep_running,
                    policy: policy.to_string(),
                })
            }
            other => match other
                .strip_prefix("checkpoint-java max_heap=")
                .and_then(|n| n.parse().ok())
            {
                Some(max_heap) => Ok(Request::CheckpointFromJava { max_heap }),
                None => Err(DecodeError::UnknownRequest(truncate(other, 40).to_string())),
            },
        }
    }
}

/// The whole answer to a checkpoint request while another one is under way: ask again.
/// `CRAC_SHIM_TIMING`: whoever sees a moment of a checkpoint or restore (the launcher, the
/// agent, the Java API) writes this line on stderr; `scripts/bench --breakdown` reads them.
/// The wall clock: the one the launcher, CRIU's log and a restored JVM (in a time namespace of
/// its own) share.
pub const TIMING_ENV: &str = "CRAC_SHIM_TIMING";

pub fn timing_line(event: &str) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("crac-shim: timing {event} {micros}\n")
}

pub const BUSY: &str = "busy\n";

/// The last line of every answer on the control socket: `exit N`, the status `crac-jcmd`
/// exits with. Lines before it are printed as they are.
pub fn exit_line(code: i32) -> String {
    format!("exit {code}\n")
}

/// Reads the status from an answer's last line.
pub fn parse_exit_line(line: &str) -> Option<i32> {
    line.trim_end().strip_prefix("exit ")?.parse().ok()
}

/// A message on the checkpoint channel: a kind and ordered `key=value` fields. Keys may repeat.
///
/// Wire form: the kind on the first line, then one `key=value` line per field; newlines and
/// backslashes in values are escaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

/// Kinds of channel messages.
pub mod kind {
    /// The dump request travels in a memfd passed with this message (any size arrives whole).
    pub const DUMP_IN_FD: &str = "dump_in_fd";
    /// Agent to helper: everything the dump needs (the JVM is ready to be dumped).
    pub const DUMP: &str = "dump";
    /// Helper to agent: the dump failed; the original stdio comes along as SCM_RIGHTS.
    pub const FAILED: &str = "failed";
    /// Helper to agent: the dump succeeded and the JVM keeps running (stdio comes along).
    pub const KEPT: &str = "kept";
    /// Restoring launcher to restored agent: the restore is done; here is what changed.
    pub const RESTORED: &str = "restored";
    /// Helper to agent, for CRaC's test engines (simengine, pauseengine): the JVM goes on as
    /// restored, in place (no image of memory was made; stdio comes along); the fields are
    /// those of a restore's greeting.
    pub const RESUMED: &str = "resumed";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooLarge(usize),
    NotUtf8,
    Empty,
    BadKind,
    BadField(String),
    BadEscape,
    UnknownRequest(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge(n) => write!(f, "message of {n} bytes exceeds {MAX_MESSAGE}"),
            DecodeError::NotUtf8 => write!(f, "message is not UTF-8"),
            DecodeError::Empty => write!(f, "empty message"),
            DecodeError::BadKind => write!(f, "message kind is not a plain word"),
            DecodeError::BadField(l) => write!(f, "malformed field line {l:?}"),
            DecodeError::BadEscape => write!(f, "bad escape in field value"),
            DecodeError::UnknownRequest(r) => write!(f, "unknown request {r:?}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Message {
    pub fn new(kind: &str) -> Message {
        Message {
            kind: kind.to_string(),
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Message {
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    pub fn push(&mut self, key: &str, value: impl fmt::Display) {
        self.fields.push((key.to_string(), value.to_string()));
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64);
        out.push_str(&self.kind);
        out.push('\n');
        for (k, v) in &self.fields {
            out.push_str(k);
            out.push('=');
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('\n');
        }
        out.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        Message::decode_any_size(bytes)
    }

    /// `decode` without the size limit, for what arrives whole from a trusted peer (the dump
    /// request, in a memfd).
    pub fn decode_any_size(bytes: &[u8]) -> Result<Message, DecodeError> {
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
        if text.is_empty() {
            return Err(DecodeError::Empty);
        }
        // Split on \n only: a value may end in \r, which str::lines would drop.
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        let kind = lines.next().ok_or(DecodeError::Empty)?;
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(DecodeError::BadKind);
        }
        let mut message = Message::new(kind);
        for line in lines {
            let (key, raw) = line
                .split_once('=')
                .filter(|(k, _)| {
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .ok_or_else(|| DecodeError::BadField(truncate(line, 40).to_string()))?;
            message.fields.push((key.to_string(), unescape(raw)?));
        }
        Ok(message)
    }
}

fn unescape(raw: &str) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            _ => return Err(DecodeError::BadEscape),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_awkward_values() {
        let m = Message::new(kind::RESTORED)
            .with("prop", "a=b\nc\\d")
            .with("prop", "")
            .with("pid", 42);
        let decoded = Message::decode(&m.encode()).unwrap();
        assert_eq!(decoded, m);
        assert_eq!(
            decoded.get_all("prop").collect::<Vec<_>>(),
            ["a=b\nc\\d", ""]
        );
        assert_eq!(decoded.get("pid"), Some("42"));
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert_eq!(Message::decode(b""), Err(DecodeError::Empty));
        assert_eq!(Message::decode(b"\xff\xfe"), Err(DecodeError::NotUtf8));
        assert_eq!(Message::decode(b"Dump\n"), Err(DecodeError::BadKind));
        assert!(matches!(
            Message::decode(b"dump\nnovalue\n"),
            Err(DecodeError::BadField(_))
        ));
        assert_eq!(
            Message::decode(b"dump\nk=\\x\n"),
            Err(DecodeError::BadEscape)
        );
        let huge = vec![b'a'; MAX_MESSAGE + 1];
        assert!(matches!(
            Message::decode(&huge),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn checkpoint_with_a_policy_round_trips() {
        let r = Request::CheckpointWithPolicy {
            keep_running: true,
            policy: "/etc/app/a policy.yaml".into(),
        };
        assert_eq!(Request::decode(r.encode().as_bytes()), Ok(r));
        assert!(Request::decode(b"checkpoint-with keep_running=maybe policy=/x\n").is_err());
        assert!(Request::decode(b"checkpoint-with keep_running=true policy=\n").is_err());
    }

    #[test]
    fn requests_decode() {
        assert_eq!(Request::decode(b"checkpoint\n"), Ok(Request::Checkpoint));
        assert_eq!(
            Request::decode(Request::Describe.encode().as_bytes()),
            Ok(Request::Describe)
        );
        assert!(Request::decode(b"rm -rf /\n").is_err());
        assert_eq!(parse_exit_line("exit 3\n"), Some(3));
        assert_eq!(parse_exit_line(&exit_line(0)), Some(0));
        assert_eq!(parse_exit_line("exit x"), None);
    }
}
