//! Descriptor policies: what to do with each open descriptor at checkpoint time. Pure logic,
//! shared by the agent (which applies it) and tests; CRaC's `-Djdk.crac.resource-policies`
//! file format is accepted.

use std::fmt;

/// What an open descriptor is, as the scan classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Stdio,
    /// The JDK's own files (under java.home, read-only).
    JdkFile,
    /// epoll, eventfd, pipes, /dev/random and friends, memfds.
    JvmInternal,
    /// Open before the JVM started (handed down by the parent).
    Inherited,
    ListeningSocket,
    ConnectedTcp,
    /// A unix socket whose peer is in this process (or gone).
    UnixInternal,
    /// A unix socket connected to another process.
    UnixExternal,
    ReadFile,
    AppendFile,
    WriteFile,
    /// A file the JVM created in its temp directory and keeps open for writing.
    TempFile,
    Directory,
    /// A pipe or FIFO the program made (the JVM's own are JvmInternal).
    Pipe,
    Device,
    Other,
}

impl Class {
    /// CRaC's `type=` word for messages and policy rules.
    pub fn crac_type(self) -> &'static str {
        match self {
            Class::ListeningSocket
            | Class::ConnectedTcp
            | Class::UnixInternal
            | Class::UnixExternal => "socket",
            Class::ReadFile
            | Class::AppendFile
            | Class::WriteFile
            | Class::TempFile
            | Class::JdkFile => "regular",
            Class::Directory => "directory",
            Class::Pipe => "fifo",
            Class::Device => "character",
            Class::Stdio | Class::JvmInternal | Class::Inherited | Class::Other => "other",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Stdio => "stdio",
            Class::JdkFile => "jdk-file",
            Class::JvmInternal => "jvm-internal",
            Class::Inherited => "inherited",
            Class::ListeningSocket => "listening-socket",
            Class::ConnectedTcp => "connected-tcp",
            Class::UnixInternal => "unix-internal",
            Class::UnixExternal => "unix-external",
            Class::ReadFile => "read-file",
            Class::AppendFile => "append-file",
            Class::WriteFile => "write-file",
            Class::TempFile => "temp-file",
            Class::Directory => "directory",
            Class::Pipe => "pipe",
            Class::Device => "device",
            Class::Other => "other",
        }
    }

    /// The default verdict: refuse what would break or silently change at restore.
    pub fn default_action(self) -> Action {
        match self {
            // A file opened for appending may be a log or a journal (HSQLDB's redo log looks
            // like a log): data unless a rule says it is a log, as in a CRaC JDK.
            Class::WriteFile
            | Class::AppendFile
            | Class::ConnectedTcp
            | Class::UnixExternal
            | Class::Device => Action::Refuse,
            Class::TempFile => Action::Private,
            _ => Action::Keep,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// CRIU saves and restores it as it is.
    Keep,
    /// Closed (replaced by a placeholder) for the dump, reopened by path afterwards, with the
    /// same flags and, unless appending, the same offset.
    Reopen,
    /// Closed for the dump and left closed (a placeholder on /dev/null keeps the number).
    Close,
    /// The checkpoint is refused.
    Refuse,
    /// The file's contents at the checkpoint go into the image (in memory): every restored copy
    /// has its own, and takes the path back where nobody alive holds it (a crac-shim word).
    Private,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Reopen => "reopen",
            Action::Close => "close",
            Action::Refuse => "refuse",
            Action::Private => "private",
        }
    }

    /// CRaC's action words: close, reopen, ignore, error.
    fn parse(word: &str) -> Option<Action> {
        match word {
            "close" => Some(Action::Close),
            "reopen" => Some(Action::Reopen),
            "ignore" | "keep" => Some(Action::Keep),
            "error" | "refuse" => Some(Action::Refuse),
            "private" => Some(Action::Private),
            _ => None,
        }
    }
}

/// A socket's address family, as policy rules name it. Java's sockets are dual-stack: an
/// IPv6 socket whose addresses are IPv4-mapped counts as IPv4, as users wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet4,
    Inet6,
    Unix,
    Other,
}

/// What the scan knows of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    pub family: Family,
    /// `ip:port` (IPv6 as `[ip]:port`) or a unix socket's path.
    pub local: Option<String>,
    pub remote: Option<String>,
}

/// A `regex:` filter, compiled once when the policy is read.
#[derive(Debug, Clone)]
pub struct Pattern(String, regex_lite::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Pattern {}

/// One rule: every filter given must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Where the rule starts in the file (for messages).
    pub line: usize,
    pub kind: Option<String>,
    pub path: Option<String>,
    /// crac-shim's older key: a glob on either end's `ip:port`.
    pub address: Option<String>,
    pub family: Option<String>,
    pub local_address: Option<String>,
    pub remote_address: Option<String>,
    pub local_port: Option<String>,
    pub remote_port: Option<String>,
    pub local_path: Option<String>,
    pub remote_path: Option<String>,
    /// The descriptor's number.
    pub value: Option<i32>,
    pub regex: Option<Pattern>,
    pub action: Option<Action>,
    /// `warn: false` silences the notice printed when the rule closes, reopens or ignores.
    pub warn: bool,
    /// `allowChanges` (a crac-shim key), true unless the rule says false: a file this rule
    /// reopens for writing may have changed when a copy is restored, and is reopened at the
    /// saved offset all the same (as a CRaC JDK does, with a line naming it). `false` refuses
    /// such a restore instead (a program that would roll its data back).
    pub allow_changes: bool,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            line: 0,
            kind: None,
            path: None,
            address: None,
            family: None,
            local_address: None,
            remote_address: None,
            local_port: None,
            remote_port: None,
            local_path: None,
            remote_path: None,
            value: None,
            regex: None,
            action: None,
            warn: true,
            allow_changes: true,
        }
    }
}

/// What a rule is matched against.
pub struct Subject<'a> {
    pub class: Class,
    pub fd: i32,
    /// A file's path, or the kernel's description (`pipe:[N]`, `socket:[N]`, ...).
    pub path: &'a str,
    /// For sockets: local and remote addresses as `ip:port` (or a unix path), if any.
    pub addresses: &'a [String],
    pub socket: Option<&'a SocketInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// CRaC's `type:` words, and ours (a class name, `regular`, `directory`...).
const TYPES: &str = "file, pipe, socket or filedescriptor";
const FAMILIES: [&str; 8] = ["ipv4", "inet4", "ipv6", "inet6", "ip", "inet", "unix", "*"];

impl Policy {
    /// Parses CRaC's format: `key: value` lines, rules separated by `---`, `#` comments.
    /// Keys: `type` (file, pipe, socket, filedescriptor), `path`, `family`, `localAddress`,
    /// `remoteAddress`, `localPort`, `remotePort`, `localPath`, `remotePath`, `value`, `regex`,
    /// `action` (close, reopen, ignore, error) and `warn`; `address` is crac-shim's own.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        let mut current = Rule::default();
        let mut touched = false;
        let finish =
            |rule: Rule, touched: bool, rules: &mut Vec<Rule>| -> Result<(), PolicyError> {
                if !touched {
                    return Ok(());
                }
                let err = |message: String| PolicyError {
                    line: rule.line,
                    message,
                };
                if rule.action.is_none() {
                    return Err(err(
                        "rule has no action (close, reopen, ignore or error)".into()
                    ));
                }
                if rule.action == Some(Action::Reopen)
                    && matches!(rule.kind.as_deref(), Some("socket" | "pipe" | "fifo"))
                {
                    return Err(err(format!(
                        "action reopen is for files, not for type {}: use close or ignore",
                        rule.kind.as_deref().unwrap_or_default()
                    )));
                }
                rules.push(rule);
                Ok(())
            };
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if line == "---" {
                finish(std::mem::take(&mut current), touched, &mut rules)?;
                touched = false;
                continue;
            }
            if !touched {
                current.line = n;
                touched = true;
            }
            let err = |message: String| PolicyError { line: n, message };
            let (key, value) = line
                .split_once(':')
                .map(|(k, v)| (k.trim(), v.trim().trim_matches(['"', '\''])))
                .ok_or_else(|| err(format!("expected `key: value`, got {line:?}")))?;
            let text = || Some(value.to_string());
            match key {
                "type" => {
                    let kind = value.to_ascii_lowercase();
                    let known = [
                        "file",
                        "pipe",
                        "fifo",
                        "socket",
                        "filedescriptor",
                        "regular",
                    ]
                    .contains(&kind.as_str())
                        || ALL_CLASSES
                            .iter()
                            .any(|c| c.name() == kind || c.crac_type() == kind);
                    if !known {
                        return Err(err(format!("unknown type {value:?} ({TYPES})")));
                    }
                    current.kind = Some(kind);
                }
                "path" => current.path = text(),
                "address" => current.address = text(),
                "family" => {
                    let f = value.to_ascii_lowercase();
                    if !FAMILIES.contains(&f.as_str()) {
                        return Err(err(format!(
                            "unknown family {value:?} (ipv4, ipv6, ip or unix)"
                        )));
                    }
                    current.family = Some(f);
                }
                "localAddress" => current.local_address = text(),
                "remoteAddress" => current.remote_address = text(),
                "localPort" | "remotePort" => {
                    if value != "*" && value.parse::<u16>().is_err() {
                        return Err(err(format!(
                            "{key} must be a port number or *, not {value:?}"
                        )));
                    }
                    if key == "localPort" {
                        current.local_port = text();
                    } else {
                        current.remote_port = text();
                    }
                }
                "localPath" => current.local_path = text(),
                "remotePath" => current.remote_path = text(),
                "value" => {
                    current.value = Some(value.parse().map_err(|_| {
                        err(format!("value must be a descriptor number, not {value:?}"))
                    })?)
                }
                "regex" => {
                    let re = regex_lite::Regex::new(&format!("^(?:{value})$"))
                        .map_err(|e| err(format!("bad regex {value:?}: {e}")))?;
                    current.regex = Some(Pattern(value.to_string(), re));
                }
                "allowChanges" | "allowchanges" => {
                    current.allow_changes = match value.to_ascii_lowercase().as_str() {
                        "true" | "yes" => true,
                        "false" | "no" => false,
                        _ => {
                            return Err(err(format!(
                                "allowChanges must be true or false, not {value:?}"
                            )))
                        }
                    }
                }
                "warn" => {
                    current.warn = match value.to_ascii_lowercase().as_str() {
                        "true" | "yes" => true,
                        "false" | "no" => false,
                        _ => return Err(err(format!("warn must be true or false, not {value:?}"))),
                    }
                }
                "action" => {
                    current.action =
                        Some(Action::parse(&value.to_ascii_lowercase()).ok_or_else(|| {
                            err(format!(
                                "unknown action {value:?} (close, reopen, ignore or error)"
                            ))
                        })?)
                }
                other => return Err(err(format!("unknown key {other:?}"))),
            }
        }
        finish(current, touched, &mut rules)?;
        Ok(Policy { rules })
    }

    /// The first rule that matches `subject`, if any.
    pub fn rule_for(&self, subject: &Subject<'_>) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(subject))
    }

    /// The action for `subject`: the first matching rule's, else the class default.
    pub fn action(&self, subject: &Subject<'_>) -> Action {
        self.rule_for(subject)
            .and_then(|r| r.action)
            .unwrap_or_else(|| subject.class.default_action())
    }
}

const ALL_CLASSES: [Class; 15] = [
    Class::Stdio,
    Class::JdkFile,
    Class::JvmInternal,
    Class::Inherited,
    Class::ListeningSocket,
    Class::ConnectedTcp,
    Class::UnixInternal,
    Class::UnixExternal,
    Class::ReadFile,
    Class::AppendFile,
    Class::WriteFile,
    Class::Directory,
    Class::Pipe,
    Class::Device,
    Class::Other,
];

/// `ip:port` or `[ip]:port` split; None for a unix path.
fn ip_and_port(address: &str) -> Option<(&str, &str)> {
    if address.starts_with('/') || address.starts_with('@') {
        return None;
    }
    let (ip, port) = address.rsplit_once(':')?;
    Some((ip.trim_start_matches('[').trim_end_matches(']'), port))
}

impl Rule {
    fn matches(&self, s: &Subject<'_>) -> bool {
        if let Some(kind) = &self.kind {
            let t = s.class.crac_type();
            let matches_kind = match kind.as_str() {
                // CRaC's file covers directories too.
                "file" => t == "regular" || t == "directory",
                "pipe" => t == "fifo",
                "filedescriptor" => true,
                k => k == t || k == s.class.name(),
            };
            if !matches_kind {
                return false;
            }
        }
        let glob_opt = |pattern: &Option<String>, text: Option<&str>| match pattern {
            None => true,
            Some(p) => text.is_some_and(|t| p == "*" || glob(p, t)),
        };
        if !glob_opt(&self.path, Some(s.path)) {
            return false;
        }
        if self.value.is_some_and(|v| v != s.fd) {
            return false;
        }
        if let Some(Pattern(_, re)) = &self.regex {
            if !re.is_match(s.path) {
                return false;
            }
        }
        if let Some(a) = &self.address {
            if !s.addresses.iter().any(|x| glob(a, x)) {
                return false;
            }
        }
        let socket_filters = [
            &self.family,
            &self.local_address,
            &self.remote_address,
            &self.local_port,
            &self.remote_port,
            &self.local_path,
            &self.remote_path,
        ];
        if socket_filters.iter().all(|f| f.is_none()) {
            return true;
        }
        let Some(sock) = s.socket else {
            return false;
        };
        if let Some(f) = &self.family {
            let ok = match f.as_str() {
                "ipv4" | "inet4" => sock.family == Family::Inet4,
                "ipv6" | "inet6" => sock.family == Family::Inet6,
                "ip" | "inet" => matches!(sock.family, Family::Inet4 | Family::Inet6),
                "unix" => sock.family == Family::Unix,
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        fn inet(end: Option<&String>) -> Option<(&str, &str)> {
            end.and_then(|a| ip_and_port(a))
        }
        fn unix(end: Option<&String>) -> Option<&String> {
            end.filter(|a| ip_and_port(a).is_none())
        }
        // An address filter matches the IP alone, or `ip:port` as crac-shim wrote it before.
        let address_ok = |p: &Option<String>, end: Option<&String>| match p {
            None => true,
            Some(p) => {
                p == "*"
                    || inet(end).is_some_and(|(ip, _)| glob(p, ip))
                    || end.is_some_and(|a| glob(p, a))
            }
        };
        let port_ok = |p: &Option<String>, end: Option<&String>| match p {
            None => true,
            Some(p) => inet(end).is_some_and(|(_, port)| p == "*" || p == port),
        };
        address_ok(&self.local_address, sock.local.as_ref())
            && address_ok(&self.remote_address, sock.remote.as_ref())
            && port_ok(&self.local_port, sock.local.as_ref())
            && port_ok(&self.remote_port, sock.remote.as_ref())
            && glob_opt(
                &self.local_path,
                unix(sock.local.as_ref()).map(String::as_str),
            )
            && glob_opt(
                &self.remote_path,
                unix(sock.remote.as_ref()).map(String::as_str),
            )
    }
}

/// Shell-style glob: `*` within a path component, `**` across components, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = &p[2..];
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some(b'*') => {
                let rest = &p[1..];
                for i in 0..=t.len() {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    if t.get(i) == Some(&b'/') {
                        break;
                    }
                }
                false
            }
            Some(b'?') => !t.is_empty() && t[0] != b'/' && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(class: Class, path: &'a str, addresses: &'a [String]) -> Subject<'a> {
        Subject {
            class,
            fd: 3,
            path,
            addresses,
            socket: None,
        }
    }

    fn socket(family: Family, local: &str, remote: Option<&str>) -> SocketInfo {
        SocketInfo {
            family,
            local: Some(local.to_string()),
            remote: remote.map(str::to_string),
        }
    }

    fn on<'a>(class: Class, fd: i32, path: &'a str, sock: Option<&'a SocketInfo>) -> Subject<'a> {
        Subject {
            class,
            fd,
            path,
            addresses: &[],
            socket: sock,
        }
    }

    /// A policy file as CRaC's documentation writes them, accepted as it is.
    #[test]
    fn crac_documented_keys_and_types() {
        let text = "\
# sockets by family and port
type: socket
family: ipv4
localPort: 8080
action: close
---
type: socket
family: ip
remoteAddress: 10.0.0.*
remotePort: *
action: ignore
warn: false
---
type: socket
family: unix
remotePath: /run/*.sock
action: close
---
type: pipe
action: close
warn: false
---
type: filedescriptor
value: 7
action: ignore
---
type: filedescriptor
regex: anon_inode:\\[.*\\]
action: error
---
type: file
path: /data
action: close
";
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.rules.len(), 7);
        assert_eq!(p.rules[3].line, 19);
        assert!(!p.rules[1].warn && p.rules[0].warn);
        let server = socket(Family::Inet4, "127.0.0.1:8080", Some("127.0.0.1:5000"));
        let v6 = socket(Family::Inet6, "[::1]:8080", None);
        let remote = socket(Family::Inet4, "127.0.0.1:4000", Some("10.0.0.9:5432"));
        let unix = socket(Family::Unix, "", Some("/run/db.sock"));
        let rule = |s: &Subject<'_>| p.rule_for(s).map(|r| r.line);
        assert_eq!(
            rule(&on(Class::ConnectedTcp, 9, "socket:[1]", Some(&server))),
            Some(2)
        );
        assert_eq!(
            rule(&on(Class::ListeningSocket, 9, "socket:[1]", Some(&v6))),
            None
        );
        assert_eq!(
            rule(&on(Class::ConnectedTcp, 9, "socket:[2]", Some(&remote))),
            Some(7)
        );
        assert_eq!(
            rule(&on(Class::UnixExternal, 9, "socket:[3]", Some(&unix))),
            Some(14)
        );
        assert_eq!(rule(&on(Class::Pipe, 9, "pipe:[4]", None)), Some(19));
        assert_eq!(
            rule(&on(Class::Other, 7, "anon_inode:[eventfd]", None)),
            Some(23)
        );
        assert_eq!(
            rule(&on(Class::Other, 8, "anon_inode:[eventfd]", None)),
            Some(27)
        );
        assert_eq!(rule(&on(Class::Directory, 8, "/data", None)), Some(31));
        assert_eq!(rule(&on(Class::WriteFile, 8, "/data", None)), Some(31));
        assert_eq!(rule(&on(Class::WriteFile, 8, "/data/x", None)), None);
    }

    #[test]
    fn bad_crac_keys_say_where() {
        let line = |t: &str| Policy::parse(t).unwrap_err().line;
        assert_eq!(line("type: socket\nfamily: ipx\naction: close\n"), 2);
        assert_eq!(line("type: socket\nlocalPort: http\naction: close\n"), 2);
        assert_eq!(line("type: filedescriptor\nvalue: x\naction: close\n"), 2);
        assert_eq!(line("type: filedescriptor\nregex: (\naction: close\n"), 2);
        assert_eq!(line("type: file\nwarn: maybe\naction: close\n"), 2);
        assert_eq!(line("type: teapot\naction: close\n"), 1);
        assert_eq!(line("\n---\ntype: socket\naction: reopen\n"), 3);
    }

    #[test]
    fn defaults_refuse_what_would_break() {
        let p = Policy::default();
        assert_eq!(
            p.action(&subject(Class::WriteFile, "/tmp/x", &[])),
            Action::Refuse
        );
        // A log and a journal look the same from outside: a rule says which it is.
        assert_eq!(
            p.action(&subject(Class::AppendFile, "/var/log/x", &[])),
            Action::Refuse
        );
        assert_eq!(
            p.action(&subject(Class::ListeningSocket, "socket:[1]", &[])),
            Action::Keep
        );
        assert_eq!(
            p.action(&subject(Class::ConnectedTcp, "socket:[2]", &[])),
            Action::Refuse
        );
    }

    #[test]
    fn crac_policy_files_parse_and_match_in_order() {
        let text = "# logs\ntype: file\npath: /var/log/**\naction: reopen\n---\ntype: FILE\npath: /data/*.db\naction: ignore\n---\ntype: socket\naddress: 127.0.0.1:*\naction: close\n";
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.rules.len(), 3);
        assert_eq!(
            p.action(&subject(Class::WriteFile, "/var/log/app/x.log", &[])),
            Action::Reopen
        );
        assert_eq!(
            p.action(&subject(Class::WriteFile, "/data/a.db", &[])),
            Action::Keep
        );
        assert_eq!(
            p.action(&subject(Class::WriteFile, "/data/sub/a.db", &[])),
            Action::Refuse
        );
        let addrs = ["127.0.0.1:5555".to_string()];
        assert_eq!(
            p.action(&subject(Class::ConnectedTcp, "socket:[3]", &addrs)),
            Action::Close
        );
    }

    #[test]
    fn bad_policy_files_say_where() {
        assert_eq!(
            Policy::parse("type: file\naction: explode\n")
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(Policy::parse("type: file\npath: /x\n").unwrap_err().line, 1);
        assert!(Policy::parse("nonsense\n")
            .unwrap_err()
            .message
            .contains("key: value"));
        assert!(Policy::parse("colour: red\naction: close").is_err());
        assert_eq!(Policy::parse("\n# nothing\n---\n").unwrap().rules.len(), 0);
    }

    #[test]
    fn globs() {
        assert!(glob("/a/*.log", "/a/x.log"));
        assert!(!glob("/a/*.log", "/a/b/x.log"));
        assert!(glob("/a/**", "/a/b/c"));
        assert!(glob("/a/**/x", "/a/b/c/x"));
        assert!(glob("?.txt", "a.txt"));
        assert!(!glob("?.txt", "ab.txt"));
    }
}
