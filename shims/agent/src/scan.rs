//! The open-descriptor scan before every dump: classify each descriptor, decide by policy,
//! refuse or prepare (close/reopen), and undo the preparation afterwards.

use crate::sys::fd_key;
use crac_shim_proto::policy::{Action, Class, Family, Policy, SocketInfo, Subject};
use nix::sys::socket::{
    getpeername, getsockname, getsockopt, sockopt, SockaddrLike, SockaddrStorage,
};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::OnceLock;

/// One open descriptor and the verdict on it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub fd: RawFd,
    pub class: Class,
    pub path: String,
    pub flags: i32,
    /// FD_CLOEXEC, to give a reopened descriptor back.
    pub fd_flags: i32,
    pub addresses: Vec<String>,
    pub action: Action,
    /// The policy-file line of the rule that decided, when it asks for a notice.
    pub noticed_rule: Option<usize>,
    /// The rule that decided lets a reopened file have changed at restore (`allowChanges`).
    pub allow_changes: bool,
    pub size: u64,
    pub mtime: i64,
    pub offset: i64,
    /// On procfs, sysfs or a cgroup file system: contents made by the kernel as they are read,
    /// whose size and time say nothing about a change (a cgroup limit file a JVM in a
    /// container reads, in another container after the restore).
    pub generated: bool,
}

impl Entry {
    /// CRaC's line for a descriptor: `FD fd=N type=T path=P`.
    pub fn crac_line(&self) -> String {
        format!(
            "FD fd={} type={} path={}",
            self.fd,
            self.class.crac_type(),
            self.path
        )
    }

    /// Why it is refused, and what would make it checkpointable.
    pub fn refusal(&self) -> String {
        let (why, hint) = match self.class {
            Class::WriteFile => (
                "open for writing (not append-only): its contents and offset could not be trusted at restore",
                format!("close it in beforeCheckpoint, or a policy rule `type: file`, `path: {}`, `action: reopen` ({RULE_WHERE})", self.path),
            ),
            Class::AppendFile => (
                "open for appending: a log, or a journal whose copies would lose each other's writes",
                format!("if it is a log, the rule `type: file`, `path: {}`, `action: reopen` reopens it for appending in every copy, growth expected ({RULE_WHERE}); else close it in beforeCheckpoint", self.path),
            ),
            Class::ConnectedTcp => (
                "a connected TCP socket",
                "close it in beforeCheckpoint, or a policy rule `type: socket` with `action: ignore` (kept, CRIU --tcp-established) or `action: close` (restored closed)".to_string(),
            ),
            Class::UnixExternal => (
                "a unix socket connected to another process",
                "close it in beforeCheckpoint, or a policy rule with `action: close`".to_string(),
            ),
            Class::Device => (
                "a device",
                format!("close it in beforeCheckpoint, or a policy rule `path: {}` with `action: close`", self.path),
            ),
            _ => ("refused by the policy", "change the policy rule that matches it".to_string()),
        };
        match self.java_text() {
            // CRaC's text first (what tools and people grep for), then ours.
            Some(java) => format!("{java} ({}): {why}; {hint}", self.crac_line()),
            None => format!("{}: {why}; {hint}", self.crac_line()),
        }
    }

    /// How a CRaC JDK names the object behind this descriptor in its refusal: a file by its
    /// path, a connected TCP socket as java.net.Socket's `toString()`
    /// (`Socket[addr=/IP,port=N,localport=M]`).
    fn java_text(&self) -> Option<String> {
        // A file as CRaC names it: its path.
        if matches!(self.class, Class::WriteFile | Class::AppendFile) {
            return Some(self.path.clone());
        }
        if self.class != Class::ConnectedTcp {
            return None;
        }
        let split = |a: &str| -> Option<(String, String)> {
            let (ip, port) = a.rsplit_once(':')?;
            Some((ip.trim_matches(['[', ']']).to_string(), port.to_string()))
        };
        let (_, local_port) = split(self.addresses.first()?)?;
        let (peer_ip, peer_port) = split(self.addresses.get(1)?)?;
        Some(format!(
            "Socket[addr=/{peer_ip},port={peer_port},localport={local_port}]"
        ))
    }
}

/// Where a rule goes, for a program already running as for the next start.
const RULE_WHERE: &str = "in -Djdk.crac.resource-policies=FILE at the JVM's start, or for this running JVM: crac-jcmd PID JDK.checkpoint policy=FILE";

/// What is refused, one line each; files refused together in one directory (a data or spool
/// directory) are offered one rule for all of them.
pub fn refusals(entries: &[Entry]) -> Vec<String> {
    let refused: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.action == Action::Refuse)
        .collect();
    let dir_of = |e: &Entry| {
        std::path::Path::new(&e.path)
            .parent()
            .map(|d| d.to_path_buf())
    };
    refused
        .iter()
        .map(|e| {
            let mut line = e.refusal();
            let file = |c: Class| matches!(c, Class::WriteFile | Class::AppendFile);
            if file(e.class) {
                if let Some(dir) = dir_of(e) {
                    let together = refused
                        .iter()
                        .filter(|o| file(o.class) && dir_of(o).as_ref() == Some(&dir))
                        .count();
                    if together > 1 {
                        line.push_str(&format!(
                            " (one rule covers all {together} files in {0}: `type: file`, `path: {0}/*`)",
                            dir.display()
                        ));
                    }
                }
            }
            line
        })
        .collect()
}

/// The inode of the pipe that carries the agent's answer to Java across the dump: both of its
/// ends are ours, whatever a `type: pipe` rule says.
pub static AGENT_PIPE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Descriptors that were open when the agent started (handed down by the JVM's parent).
static INHERITED: OnceLock<Vec<(RawFd, u64, u64)>> = OnceLock::new();

/// At the JVM's start, as a CRaC JDK does: every inherited descriptor above 2 is closed unless
/// `-XX:CRaCIgnoredFileDescriptors` lists it (by number or path), so that a stray descriptor a
/// parent left open cannot refuse a checkpoint later. Listed ones stay, and are left alone by
/// the check.
pub fn close_unlisted_inherited(listed: &[String]) {
    for fd in open_fds() {
        if fd <= 2 {
            continue;
        }
        let path = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let kept = listed
            .iter()
            .any(|l| l.parse::<RawFd>().ok() == Some(fd) || (!path.is_empty() && *l == path));
        if !kept {
            // SAFETY: closing an inherited descriptor before anything in this process uses it
            // (the JVM does not exist yet).
            unsafe { libc::close(fd) };
        }
    }
}

pub fn remember_inherited() {
    let mut v = Vec::new();
    for fd in open_fds() {
        if fd > 2 {
            if let Some(st) = fstat(fd) {
                v.push((fd, st.st_dev, st.st_ino));
            }
        }
    }
    let _ = INHERITED.set(v);
}

fn open_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

pub fn fstat(fd: RawFd) -> Option<libc::stat> {
    crac_shim_proto::safepath::fstat(fd).ok()
}

const JVM_DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/full",
];

fn java_home() -> Option<String> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    Some(exe.parent()?.parent()?.to_string_lossy().into_owned())
}

fn addr(a: Option<SockaddrStorage>) -> Option<String> {
    let a = a?;
    if let Some(u) = a.as_unix_addr() {
        return u.path().map(|p| p.display().to_string());
    }
    // Java's sockets are dual-stack: show IPv4-mapped addresses as the IPv4 users wrote.
    if let Some(v6) = a.as_sockaddr_in6() {
        let v6 = std::net::SocketAddrV6::from(*v6);
        if let Some(v4) = v6.ip().to_ipv4_mapped() {
            return Some(format!("{v4}:{}", v6.port()));
        }
        return Some(v6.to_string());
    }
    (a.family().is_some()).then(|| a.to_string())
}

fn classify_socket(
    fd: BorrowedFd<'_>,
    addresses: &mut Vec<String>,
    info: &mut Option<SocketInfo>,
) -> Class {
    let raw = fd.as_raw_fd();
    let local_addr = getsockname::<SockaddrStorage>(raw).ok();
    let family = match local_addr.as_ref().and_then(|a| a.family()) {
        Some(nix::sys::socket::AddressFamily::Unix) => Family::Unix,
        Some(nix::sys::socket::AddressFamily::Inet) => Family::Inet4,
        Some(nix::sys::socket::AddressFamily::Inet6) => Family::Inet6,
        _ => Family::Other,
    };
    let local = addr(local_addr);
    let peer = addr(getpeername::<SockaddrStorage>(raw).ok());
    addresses.extend(local.clone());
    addresses.extend(peer.clone());
    // IPv4-mapped addresses are shown (and matched) as the IPv4 they are.
    let mapped = |a: &Option<String>| {
        a.as_deref()
            .is_some_and(|a| !a.starts_with('[') && a.contains('.'))
    };
    let family = if family == Family::Inet6 && (mapped(&local) || mapped(&peer)) {
        Family::Inet4
    } else {
        family
    };
    *info = Some(SocketInfo {
        family,
        local: local.clone(),
        remote: peer.clone(),
    });
    if getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
        return Class::ListeningSocket;
    }
    let domain = {
        let mut d: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: SO_DOMAIN writes an int into d.
        unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&mut d as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        d
    };
    match domain {
        libc::AF_UNIX => match getsockopt(&fd, sockopt::PeerCredentials) {
            Ok(c) if c.pid() != 0 && c.pid() as u32 != std::process::id() => Class::UnixExternal,
            _ => Class::UnixInternal,
        },
        libc::AF_INET | libc::AF_INET6 => {
            let stream = matches!(
                getsockopt(&fd, sockopt::SockType),
                Ok(nix::sys::socket::SockType::Stream)
            );
            if stream && peer.is_some() {
                Class::ConnectedTcp
            } else {
                Class::Other
            }
        }
        _ => Class::Other,
    }
}

/// Classifies every open descriptor except `exclude`, deciding by `policy`; those named in
/// `ignored` (by number or path: `-XX:CRaCIgnoredFileDescriptors`) are kept as they are.
pub fn scan(exclude: &[RawFd], policy: &Policy, ignored: &[String]) -> Vec<Entry> {
    let home = java_home().map(|h| format!("{h}/"));
    let inherited = INHERITED.get().map(Vec::as_slice).unwrap_or(&[]);
    let mut out = Vec::new();
    for fd in open_fds() {
        if exclude.contains(&fd) {
            continue;
        }
        let Some(st) = fstat(fd) else { continue };
        // SAFETY: the descriptor was open a moment ago; if another thread closes it while we
        // look, the calls below fail (or see what took its number), and it is skipped.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let path = fd_key(borrowed).unwrap_or_default();
        // SAFETY: F_GETFL only reads the descriptor's flags (-1 if it is no longer open).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // Opened and closed while we looked (HotSpot reads cgroup and /proc files from its
        // own threads, e.g. to size its compiler threads): not open, nothing to judge. Its
        // flags would read as -1, every bit set: "open for appending".
        if flags == -1 || !fstat(fd).is_some_and(|now| same_file(&now, &st)) {
            continue;
        }
        let access = flags & libc::O_ACCMODE;
        let mut addresses = Vec::new();
        let mut socket = None;
        let fmt = st.st_mode & libc::S_IFMT;
        let class = if fd <= 2 {
            Class::Stdio
        } else if inherited
            .iter()
            .any(|&(f, dev, ino)| f == fd && dev == st.st_dev && ino == st.st_ino)
        {
            Class::Inherited
        } else {
            match fmt {
                libc::S_IFSOCK => classify_socket(borrowed, &mut addresses, &mut socket),
                libc::S_IFIFO
                    if st.st_ino == AGENT_PIPE.load(std::sync::atomic::Ordering::Acquire) =>
                {
                    Class::JvmInternal
                }
                libc::S_IFIFO => Class::Pipe,
                libc::S_IFREG if path.starts_with("/memfd:") => Class::JvmInternal,
                libc::S_IFREG if access == libc::O_RDONLY => {
                    if home.as_deref().is_some_and(|h| path.starts_with(h)) {
                        Class::JdkFile
                    } else {
                        Class::ReadFile
                    }
                }
                // Logs (append-only) are shared by every copy: reopened, not private.
                libc::S_IFREG if flags & libc::O_APPEND != 0 => Class::AppendFile,
                libc::S_IFREG if crate::tempfiles::is_temp_file(&path, &st, fd) => Class::TempFile,
                libc::S_IFREG => Class::WriteFile,
                libc::S_IFDIR => Class::Directory,
                libc::S_IFCHR if JVM_DEVICES.contains(&path.as_str()) => Class::JvmInternal,
                libc::S_IFCHR | libc::S_IFBLK => Class::Device,
                _ if path.starts_with("anon_inode:") => Class::JvmInternal,
                _ => Class::Other,
            }
        };
        let subject = Subject {
            class,
            fd,
            path: &path,
            addresses: &addresses,
            socket: socket.as_ref(),
        };
        let is_ignored = ignored
            .iter()
            .any(|i| i.parse::<RawFd>().ok() == Some(fd) || *i == path);
        let rule = match class {
            _ if is_ignored => None,
            // Handled by the dump itself (placeholders) or never ours to judge.
            Class::Stdio | Class::JdkFile => None,
            // The JVM's own descriptors and inherited ones only by a rule that names raw
            // descriptors: a broad `type: file` rule must not close the JVM's insides.
            Class::JvmInternal | Class::Inherited => policy.rule_for(&subject).filter(|r| {
                r.kind.as_deref() == Some("filedescriptor")
                    || r.value.is_some()
                    || r.regex.is_some()
            }),
            _ => policy.rule_for(&subject),
        };
        let mut action = match (class, rule.and_then(|r| r.action)) {
            (_, Some(a)) => a,
            (Class::Stdio | Class::JdkFile | Class::JvmInternal | Class::Inherited, None) => {
                Action::Keep
            }
            _ if is_ignored => Action::Keep,
            (_, None) => class.default_action(),
        };
        // Only files can be reopened by path (CRaC: reopen is not for sockets or pipes), or
        // kept private (their contents copied).
        if matches!(action, Action::Reopen | Action::Private) && fmt != libc::S_IFREG {
            action = Action::Refuse;
        }
        let noticed_rule = rule
            .filter(|r| r.warn && action != Action::Refuse)
            .map(|r| r.line);
        let allow_changes = rule.is_some_and(|r| r.allow_changes);
        // SAFETY: lseek with SEEK_CUR only reads the offset; F_GETFD only reads flags.
        let (offset, fd_flags) = unsafe {
            (
                libc::lseek(fd, 0, libc::SEEK_CUR),
                libc::fcntl(fd, libc::F_GETFD),
            )
        };
        out.push(Entry {
            fd,
            // Only a file kept for reading is checked for changes at restore.
            generated: class == Class::ReadFile && is_generated(borrowed),
            class,
            path,
            flags,
            fd_flags,
            addresses,
            action,
            noticed_rule,
            allow_changes,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            offset,
        });
    }
    out
}

fn same_file(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

fn is_generated(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::statfs::{
        fstatfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, PROC_SUPER_MAGIC, SYSFS_MAGIC,
    };
    fstatfs(fd).is_ok_and(|fs| {
        [
            PROC_SUPER_MAGIC,
            SYSFS_MAGIC,
            CGROUP_SUPER_MAGIC,
            CGROUP2_SUPER_MAGIC,
        ]
        .contains(&fs.filesystem_type())
    })
}

/// True when CRIU itself reopens the file by path without checking its size: exactly
/// O_WRONLY|O_APPEND (a log). Such a file needs no placeholder.
pub fn criu_reopens(e: &Entry) -> bool {
    e.class == Class::AppendFile && e.flags & libc::O_ACCMODE == libc::O_WRONLY
}

/// Descriptors replaced for the dump (close, and reopen other than CRIU's own).
pub struct Prepared {
    pub reopen: Vec<Reopen>,
    /// What the policy closes: (number, FD_CLOEXEC state).
    pub closed: Vec<(RawFd, i32)>,
    pub private: Vec<crate::tempfiles::Private>,
    /// Files whose locks could not be taken again after the dump, and who holds them.
    pub lost_locks: Vec<String>,
}

pub struct Reopen {
    entry: Entry,
    /// Written at its end: continue at the end after the restore.
    at_end: bool,
    /// The program's locks on the file, released when the stand-in took its descriptor.
    locks: Vec<crate::locks::Held>,
}

/// Replaces what is to be closed by /dev/null (keeping the number taken), and what is to be
/// reopened by a second open file on the same path, so that what the program writes while
/// the dump is prepared still lands in the file at the right place. A file opened for
/// appending gets an O_WRONLY|O_APPEND stand-in, which CRIU reopens by path without checking
/// the size; one written in place a stand-in at its offset (which a restore of a file that may
/// have changed hands to CRIU itself: `inherit_file`).
pub fn prepare(entries: &[Entry]) -> std::io::Result<Prepared> {
    let mut closed = Vec::new();
    let mut reopen = Vec::new();
    let mut private = Vec::new();
    for e in entries {
        let (stand_in, at_end) = match e.action {
            Action::Private => {
                match crate::tempfiles::make_private(e) {
                    Ok(p) => private.push(p),
                    Err(err) => {
                        // The program gets back what was already made private.
                        crate::tempfiles::after_dump(private, false);
                        return Err(err);
                    }
                }
                continue;
            }
            // Connections are closed by CRIU itself at restore (--tcp-close): the program
            // keeps a socket that reports the peer gone, and closes it as it would.
            Action::Close if e.class == Class::ConnectedTcp => continue,
            // /dev/null while the JVM runs on into the dump (what it writes then is lost, as
            // it would be on a closed descriptor, but harmlessly: no copy of the program's own
            // open file may stay in the JVM, or CRIU would dump it); closed for good once the
            // dump is done (`reopen`).
            Action::Close => {
                closed.push((e.fd, e.fd_flags));
                (
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open("/dev/null")?,
                    false,
                )
            }
            Action::Reopen if !criu_reopens(e) => {
                let writable = e.flags & libc::O_ACCMODE != libc::O_RDONLY;
                // Only a file opened for appending is written at its end: one written in
                // place (a record rewritten at offset 0, a file written sequentially) keeps
                // its offset, or what the program writes before the dump would land at the end.
                let at_end = writable && e.flags & libc::O_APPEND != 0;
                let f = if at_end {
                    std::fs::OpenOptions::new().append(true).open(&e.path)?
                } else {
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .write(writable)
                        .open(&e.path)?;
                    // At the program's offset now (it wrote on since the scan); set again
                    // below once the stand-in holds its number.
                    // SAFETY: reading the program's offset; seeking a file we just opened.
                    unsafe {
                        let now = libc::lseek(e.fd, 0, libc::SEEK_CUR);
                        libc::lseek(
                            f.as_raw_fd(),
                            if now >= 0 { now } else { e.offset },
                            libc::SEEK_SET,
                        );
                    }
                    f
                };
                (f, at_end)
            }
            _ => continue,
        };
        let locks = if e.action == Action::Reopen {
            crate::locks::held_on(e.fd)
        } else {
            Vec::new()
        };
        // The program's own open file, held a moment longer: a write it makes between our
        // reading its offset and the swap still moves that offset, which the stand-in then
        // takes (no write of the program's can land behind the stand-in's offset).
        // SAFETY: dup of a descriptor the program owns; ours until dropped below.
        let original = unsafe { libc::dup(e.fd) };
        // SAFETY: dup2 onto a descriptor number the program owns; it keeps the number and its
        // close-on-exec state.
        unsafe {
            if libc::dup2(stand_in.as_raw_fd(), e.fd) < 0 {
                if original >= 0 {
                    libc::close(original);
                }
                return Err(std::io::Error::last_os_error());
            }
            libc::fcntl(e.fd, libc::F_SETFD, e.fd_flags);
        }
        if original >= 0 {
            // SAFETY: lseek on our dup of the program's former open file and on the stand-in
            // (no other holder writes through the former any more); then our dup is closed.
            unsafe {
                if !at_end && e.action == Action::Reopen {
                    let last = libc::lseek(original, 0, libc::SEEK_CUR);
                    if last >= 0 {
                        libc::lseek(stand_in.as_raw_fd(), last, libc::SEEK_SET);
                    }
                }
                libc::close(original);
            }
        }
        if e.action == Action::Reopen {
            reopen.push(Reopen {
                entry: e.clone(),
                at_end,
                locks,
            });
        }
    }
    Ok(Prepared {
        reopen,
        closed,
        private,
        lost_locks: Vec::new(),
    })
}

/// Reopens by path, with the original flags, what `prepare` stood in for: at the stand-in's
/// offset (which went on with the program's writes), or at the end for a file written at its
/// end. Returns the paths that could not be reopened.
pub fn reopen(prepared: &mut Prepared, restored: bool, dumped: bool) -> Vec<String> {
    close_for_good(prepared, dumped);
    let mut failed = crate::tempfiles::after_dump(std::mem::take(&mut prepared.private), restored);
    failed.extend(reopen_by_path(prepared));
    failed
}

/// After a dump (a restored copy, or a JVM that went on): what the policy closes is closed as
/// in a CRaC JDK, the number kept by a descriptor that can do nothing (O_PATH), so the
/// program's next read or write fails (EBADF: an IOException in Java). Without a dump it stays
/// on /dev/null (the program's own open file is gone since the stand-in took its number).
fn close_for_good(prepared: &mut Prepared, dumped: bool) {
    for (fd, fd_flags) in prepared.closed.drain(..) {
        if !dumped {
            continue;
        }
        let nothing = crac_shim_proto::safepath::openat(
            libc::AT_FDCWD,
            std::ffi::OsStr::new("/dev/null"),
            libc::O_PATH,
            0,
        );
        if let Ok(r) = nothing {
            // SAFETY: dup2 onto the program's number, which keeps its close-on-exec state.
            unsafe {
                libc::dup2(r.as_raw_fd(), fd);
                libc::fcntl(fd, libc::F_SETFD, fd_flags);
            }
        }
    }
}

fn reopen_by_path(prepared: &mut Prepared) -> Vec<String> {
    let mut failed = Vec::new();
    for r in &prepared.reopen {
        let e = &r.entry;
        // SAFETY: lseek on the stand-in the program's number holds.
        let offset = unsafe {
            libc::lseek(
                e.fd,
                0,
                if r.at_end {
                    libc::SEEK_END
                } else {
                    libc::SEEK_CUR
                },
            )
        };
        let flags = e.flags & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL);
        let Ok(path) = std::ffi::CString::new(e.path.as_str()) else {
            failed.push(format!("{} (not a valid path)", e.path));
            continue;
        };
        // SAFETY: valid C string; no mode needed without O_CREAT.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            failed.push(format!("{} ({})", e.path, std::io::Error::last_os_error()));
            continue;
        }
        // SAFETY: fd is ours; it replaces the stand-in on the program's number, which gets its
        // close-on-exec state back; then our temporary is closed.
        unsafe {
            if offset >= 0 && e.flags & libc::O_APPEND == 0 {
                libc::lseek(fd, offset, libc::SEEK_SET);
            }
            libc::dup2(fd, e.fd);
            libc::fcntl(e.fd, libc::F_SETFD, e.fd_flags);
            libc::close(fd);
        }
        if let Err(holder) = crate::locks::take_again(e.fd, &r.locks) {
            prepared.lost_locks.push(format!(
                "{} (held by {})",
                e.path,
                holder.map_or("another process".into(), |p| format!("pid {p}"))
            ));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fd: RawFd, class: Class, path: &str, action: Action) -> Entry {
        Entry {
            fd,
            class,
            path: path.into(),
            flags: libc::O_RDWR,
            fd_flags: 0,
            addresses: Vec::new(),
            action,
            noticed_rule: None,
            allow_changes: false,
            size: 0,
            mtime: 0,
            offset: 0,
            generated: false,
        }
    }

    #[test]
    fn a_connected_socket_is_named_as_java_names_it_first() {
        let mut e = entry(8, Class::ConnectedTcp, "socket:[77]", Action::Refuse);
        e.addresses = vec!["127.0.0.1:40000".into(), "127.0.0.1:5432".into()];
        let line = e.refusal();
        assert!(
            line.starts_with(
                "Socket[addr=/127.0.0.1,port=5432,localport=40000] (FD fd=8 type=socket"
            ),
            "{line}"
        );
    }

    #[test]
    fn files_refused_in_one_directory_are_offered_one_rule() {
        let entries = [
            entry(7, Class::WriteFile, "/srv/spool/a.dat", Action::Refuse),
            entry(8, Class::WriteFile, "/srv/spool/b.dat", Action::Refuse),
            entry(9, Class::WriteFile, "/srv/other.dat", Action::Refuse),
            entry(10, Class::ReadFile, "/srv/spool/c.dat", Action::Keep),
        ];
        let lines = refusals(&entries);
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].contains(
                "one rule covers all 2 files in /srv/spool: `type: file`, `path: /srv/spool/*`"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("all 2 files in /srv/spool"));
        assert!(!lines[2].contains("one rule"), "{}", lines[2]);
    }
}
