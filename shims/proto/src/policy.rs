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
    Directory,
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
            Class::ReadFile | Class::AppendFile | Class::WriteFile | Class::JdkFile => "regular",
            Class::Directory => "directory",
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
            Class::Directory => "directory",
            Class::Device => "device",
            Class::Other => "other",
        }
    }

    /// The default verdict: refuse what would break or silently change at restore.
    pub fn default_action(self) -> Action {
        match self {
            Class::WriteFile | Class::ConnectedTcp | Class::UnixExternal | Class::Device => {
                Action::Refuse
            }
            Class::AppendFile => Action::Reopen,
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
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Reopen => "reopen",
            Action::Close => "close",
            Action::Refuse => "refuse",
        }
    }

    /// CRaC's action words: close, reopen, ignore, error.
    fn parse(word: &str) -> Option<Action> {
        match word {
            "close" => Some(Action::Close),
            "reopen" => Some(Action::Reopen),
            "ignore" | "keep" => Some(Action::Keep),
            "error" | "refuse" => Some(Action::Refuse),
            _ => None,
        }
    }
}

/// One rule: every filter given must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub kind: Option<String>,
    pub path: Option<String>,
    pub address: Option<String>,
    pub action: Option<Action>,
}

/// What a rule is matched against.
pub struct Subject<'a> {
    pub class: Class,
    pub path: &'a str,
    /// For sockets: local and remote addresses as `ip:port` (or a unix path), if any.
    pub addresses: &'a [String],
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

impl Policy {
    /// Parses CRaC's format: `key: value` lines (`type`, `path`, `address`, `action`), rules
    /// separated by `---`, `#` comments.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        let mut current = Rule::default();
        let mut started_at = 0;
        let finish = |rule: Rule, line: usize, rules: &mut Vec<Rule>| -> Result<(), PolicyError> {
            if rule == Rule::default() {
                return Ok(());
            }
            if rule.action.is_none() {
                return Err(PolicyError {
                    line,
                    message: "rule has no action (close, reopen, ignore or error)".into(),
                });
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
                finish(std::mem::take(&mut current), started_at, &mut rules)?;
                continue;
            }
            if current == Rule::default() {
                started_at = n;
            }
            let (key, value) = line
                .split_once(':')
                .map(|(k, v)| (k.trim(), v.trim().trim_matches(['"', '\''])))
                .ok_or_else(|| PolicyError {
                    line: n,
                    message: format!("expected `key: value`, got {line:?}"),
                })?;
            match key {
                "type" => current.kind = Some(value.to_ascii_lowercase()),
                "path" => current.path = Some(value.to_string()),
                "address" | "localAddress" | "remoteAddress" => {
                    current.address = Some(value.to_string())
                }
                "action" => {
                    current.action = Some(Action::parse(value).ok_or_else(|| PolicyError {
                        line: n,
                        message: format!(
                            "unknown action {value:?} (close, reopen, ignore or error)"
                        ),
                    })?)
                }
                other => {
                    return Err(PolicyError {
                        line: n,
                        message: format!("unknown key {other:?}"),
                    })
                }
            }
        }
        finish(current, started_at, &mut rules)?;
        Ok(Policy { rules })
    }

    /// The action for `subject`: the first matching rule's, else the class default.
    pub fn action(&self, subject: &Subject<'_>) -> Action {
        for rule in &self.rules {
            if let Some(kind) = &rule.kind {
                let matches_kind = kind == subject.class.crac_type()
                    || kind == subject.class.name()
                    || (kind == "file" && subject.class.crac_type() == "regular");
                if !matches_kind {
                    continue;
                }
            }
            if let Some(p) = &rule.path {
                if !glob(p, subject.path) {
                    continue;
                }
            }
            if let Some(a) = &rule.address {
                if !subject.addresses.iter().any(|s| glob(a, s)) {
                    continue;
                }
            }
            if let Some(action) = rule.action {
                return action;
            }
        }
        subject.class.default_action()
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
            path,
            addresses,
        }
    }

    #[test]
    fn defaults_refuse_what_would_break() {
        let p = Policy::default();
        assert_eq!(
            p.action(&subject(Class::WriteFile, "/tmp/x", &[])),
            Action::Refuse
        );
        assert_eq!(
            p.action(&subject(Class::AppendFile, "/var/log/x", &[])),
            Action::Reopen
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
