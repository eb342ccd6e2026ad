//! `crac-jcmd`: jcmd's JDK.checkpoint for JVMs started by crac-java.

use crate::doc;
use anyhow::{bail, Context, Result};
use crac_shim_proto::{parse_exit_line, runtime_dir_candidates, socket_path, Request, BUSY};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

enum Action {
    List,
    Help,
    Version,
    Command {
        target: Target,
        command: Vec<String>,
        timeout: std::time::Duration,
    },
}

/// How long crac-jcmd waits for a JVM by default (a checkpoint of a large heap takes seconds).
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

enum Target {
    Pid(u32),
    /// A main class or jar: every crac-shim JVM whose command line has it.
    Name(String),
}

fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Action, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut positional: Vec<String> = Vec::new();
    let mut timeout = DEFAULT_TIMEOUT;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('t') | Long("timeout") => {
                let secs: f64 = parser.value()?.parse()?;
                if !(secs > 0.0 && secs < 1e6) {
                    return Err(lexopt::Error::Custom(
                        "--timeout takes a number of seconds above 0".into(),
                    ));
                }
                timeout = std::time::Duration::from_secs_f64(secs);
            }
            Short('l') | Long("list") => return Ok(Action::List),
            Short('h') | Long("help") => return Ok(Action::Help),
            Short('V') | Long("version") => return Ok(Action::Version),
            Value(v) => {
                positional.push(v.string()?);
                positional.extend(parser.raw_args()?.map(|a| a.to_string_lossy().into_owned()));
            }
            _ => return Err(arg.unexpected()),
        }
    }
    let Some(first) = positional.first() else {
        return Ok(Action::List);
    };
    let target = match first.parse::<u32>() {
        Ok(pid) => Target::Pid(pid),
        Err(_) if first.is_empty() || first.starts_with('-') => {
            return Err(lexopt::Error::Custom(
                format!("{first:?} is not a pid, main class or jar (see crac-jcmd -l)").into(),
            ))
        }
        Err(_) => Target::Name(first.clone()),
    };
    Ok(Action::Command {
        target,
        command: positional[1..].to_vec(),
        timeout,
    })
}

pub fn main() -> ! {
    let action = match parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crac-jcmd: {e}; see crac-jcmd --help");
            std::process::exit(2)
        }
    };
    let code = match run(action) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crac-jcmd: {e:#}");
            1
        }
    };
    std::process::exit(code)
}

fn run(action: Action) -> Result<i32> {
    match action {
        Action::Help => {
            print!("{}", doc::help(&doc::CRAC_JCMD));
            Ok(0)
        }
        Action::Version => {
            println!("crac-shim {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Action::List => {
            for (pid, cmdline) in list() {
                println!("{pid} {cmdline}");
            }
            Ok(0)
        }
        Action::Command {
            target,
            command,
            timeout,
        } => {
            let pids = match target {
                Target::Pid(pid) => vec![jvm_of_launcher(pid).unwrap_or(pid)],
                Target::Name(name) => {
                    let pids: Vec<u32> = list()
                        .into_iter()
                        .filter(|(_, cmdline)| {
                            cmdline
                                .split(' ')
                                .any(|w| w == name || w.ends_with(&format!("/{name}")))
                        })
                        .map(|(pid, _)| pid)
                        .collect();
                    if pids.is_empty() {
                        bail!("no crac-shim JVM runs {name} (see crac-jcmd -l)");
                    }
                    pids
                }
            };
            let mut worst = 0;
            for pid in pids {
                worst = worst.max(command_for(pid, &command, timeout)?);
            }
            Ok(worst)
        }
    }
}

fn command_for(pid: u32, command: &[String], timeout: std::time::Duration) -> Result<i32> {
    match command.first().map(String::as_str) {
        None => bail!("no command given: try crac-jcmd {pid} JDK.checkpoint"),
        Some("help") => {
            println!("{pid}:\nThe following commands are available:\nJDK.checkpoint [keep_running=true] [policy=FILE]\nhelp");
            Ok(0)
        }
        Some("JDK.checkpoint") => {
            let mut keep_running = false;
            let mut policy = None;
            for arg in &command[1..] {
                match arg.split_once('=') {
                    Some(("keep_running", "true")) => keep_running = true,
                    Some(("keep_running", "false")) => keep_running = false,
                    Some(("policy", file)) if !file.is_empty() => {
                        // Read by the JVM's user, for this checkpoint only (crac-shim's own).
                        let file = std::path::absolute(file)
                            .with_context(|| format!("policy={file}"))?;
                        policy = Some(file.display().to_string());
                    }
                    _ => bail!(
                        "JDK.checkpoint takes keep_running=true|false and policy=FILE (a resource-policies file for this checkpoint), not {arg:?}"
                    ),
                }
            }
            let request = match policy {
                Some(policy) => Request::CheckpointWithPolicy {
                    keep_running,
                    policy,
                },
                None if keep_running => Request::CheckpointKeepRunning,
                None => Request::Checkpoint,
            };
            send(pid, request, timeout)
        }
        Some(other) => {
            real_jcmd(pid, command).with_context(|| format!("{other} is not a crac-jcmd command"))
        }
    }
}

/// Other commands are the real jcmd's business.
fn real_jcmd(pid: u32, command: &[String]) -> Result<i32> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|v| !v.is_empty()) {
        candidates.push(PathBuf::from(home).join("bin/jcmd"));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        candidates.push(dir.join("jcmd"));
    }
    let jcmd = candidates
        .into_iter()
        .find(|p| p.is_file() && std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())) != me)
        .context("there is no jcmd to pass it to (install a JDK)")?;
    let status = std::process::Command::new(&jcmd)
        .arg(pid.to_string())
        .args(command)
        .status()
        .with_context(|| format!("cannot run {}", jcmd.display()))?;
    Ok(status.code().unwrap_or(1))
}

/// Where the control socket of `pid` is: in the first of its owner's places
/// (`runtime_dir_candidates`) that holds it, as seen from here or from inside the JVM's own
/// root (a container); else the first place, for the message.
fn runtime_dir_for(pid: u32) -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CRAC_SHIM_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let owner = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let xdg = (me == owner)
        .then(|| std::env::var("XDG_RUNTIME_DIR").ok())
        .flatten();
    let mut candidates = runtime_dir_candidates(owner, xdg.as_deref());
    // In a user namespace of its own (rootless Podman or Docker, unshare -U) the JVM's agent
    // knows its user by the id inside: its places are that user's, inside its root.
    if let Some(inside) = uid_inside(pid, owner).filter(|inside| *inside != owner) {
        candidates.extend(runtime_dir_candidates(inside, None));
    }
    let inner = innermost_pid(pid).unwrap_or(pid);
    let holds = |dir: &str| {
        std::fs::symlink_metadata(socket_path(dir, pid)).is_ok()
            || std::fs::symlink_metadata(format!("/proc/{pid}/root{}", socket_path(dir, inner)))
                .is_ok()
    };
    let found = candidates.iter().find(|d| holds(d));
    Some(PathBuf::from(found.unwrap_or(&candidates[0])))
}

/// A JVM in a container (a root of its own, perhaps a deeper PID namespace) and named by the
/// pid we see knows itself by the last pid of NSpid, and keeps its socket in its own /tmp,
/// reached through /proc/PID/root. (A copy restored in a namespace of crac-java's names its
/// socket by the pid we see: `path`.) Its pid there may belong to another JVM here, and its
/// /tmp to another user, so the socket counts only if the process listening on it is `pid`.
fn in_container(pid: u32, path: &str) -> Option<UnixStream> {
    let inner = innermost_pid(pid).unwrap_or(pid);
    let dir = Path::new(path).parent()?.to_str()?;
    let inside = format!("/proc/{pid}/root{}", socket_path(dir, inner));
    let stream = match as_owner_inside(pid) {
        Some(ns) => connect_in_userns(&ns, &inside)?,
        None => UnixStream::connect(&inside).ok()?,
    };
    let peer =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    (peer.pid() == pid as libc::pid_t).then_some(stream)
}

/// Root reaching a JVM in a user namespace where root is not mapped (rootless Podman or
/// Docker, unshare -U): its agent would see an unknown user (the overflow uid) and refuse.
/// Root joins the namespace as its root, the JVM's owner there, as `nsenter -U` does; the
/// namespace to join, when that is needed.
fn as_owner_inside(pid: u32) -> Option<std::fs::File> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || uid_inside(pid, 0).is_some() {
        return None;
    }
    std::fs::File::open(format!("/proc/{pid}/ns/user")).ok()
}

/// Connects to `path` from a child that has joined the user namespace `ns` as its root, and
/// takes the connection over (the socket keeps the credentials of its connect()).
fn connect_in_userns(ns: &std::fs::File, path: &str) -> Option<UnixStream> {
    use std::os::fd::AsFd;
    let (ours, theirs) = UnixStream::pair().ok()?;
    // SAFETY: crac-jcmd is single-threaded, so the child may do anything before it _exits.
    match unsafe { nix::unistd::fork() }.ok()? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let joined =
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWUSER).is_ok() && {
                    // May be denied in the namespace (unshare -r); the ids are what count.
                    let _ = nix::unistd::setgroups(&[]);
                    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).is_ok()
                        && nix::unistd::setresuid(0.into(), 0.into(), 0.into()).is_ok()
                };
            if let Some(stream) = joined.then(|| UnixStream::connect(path).ok()).flatten() {
                let fds = [std::os::fd::AsRawFd::as_raw_fd(&stream)];
                let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
                let _ = nix::sys::socket::sendmsg::<()>(
                    std::os::fd::AsRawFd::as_raw_fd(&theirs),
                    &[std::io::IoSlice::new(b"c")],
                    &cmsg,
                    nix::sys::socket::MsgFlags::empty(),
                    None,
                );
                // SAFETY: ending the child at once; the connection now lives in the parent.
                unsafe { libc::_exit(0) }
            }
            // SAFETY: ending the child at once.
            unsafe { libc::_exit(1) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            let mut buf = [0u8; 1];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let received = nix::sys::socket::recvmsg::<()>(
                std::os::fd::AsRawFd::as_raw_fd(&ours),
                &mut iov,
                Some(&mut cmsg),
                nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let _ = nix::sys::wait::waitpid(child, None);
            let fd = received.ok()?.cmsgs().ok()?.find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })?;
            // SAFETY: SCM_RIGHTS installed this descriptor for us alone.
            Some(UnixStream::from(unsafe {
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
            }))
        }
    }
}

/// `uid` (as we see it) as the user namespace of `pid` sees it, through its uid_map.
fn uid_inside(pid: u32, uid: u32) -> Option<u32> {
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|v| v.parse::<u32>().ok());
        let (inside, outside, count) = (f.next()??, f.next()??, f.next()??);
        (uid >= outside && uid - outside < count).then(|| inside + (uid - outside))
    })
}

fn innermost_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

fn send(pid: u32, request: Request, timeout: std::time::Duration) -> Result<i32> {
    let Some(dir) = runtime_dir_for(pid) else {
        bail!("no process with pid {pid}");
    };
    let path = socket_path(&dir.to_string_lossy(), pid);
    // A stopped or traced JVM cannot answer: said at once, the request never sent (it would
    // run whenever the JVM is resumed, long after anyone waits for it).
    if matches!(crate::supervise::process_state(pid), Some('T' | 't')) && has_agent(pid) {
        bail!(
            "{pid} is stopped (SIGSTOP, a debugger or job control) and cannot answer: resume it (kill -CONT {pid}) and ask again; nothing was sent"
        );
    }
    let deadline = std::time::Instant::now() + timeout;
    // A copy CRIU is still restoring has no agent mapped yet: it will have one in a moment.
    let was_ours = has_agent(pid) || being_restored(pid);
    let mut busy = false;
    loop {
        match exchange(pid, &path, &request, deadline, was_ours, busy)? {
            Some(code) => return Ok(code),
            None if std::time::Instant::now() < deadline => {
                busy = true;
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            None => bail!(
                "{pid} is still busy with another checkpoint after {} s (a checkpoint is under way); ask again later or give --timeout more",
                timeout.as_secs_f64()
            ),
        }
    }
}

/// A JVM that closed its socket or its connection without an answer may be on its way out
/// (its memory already gone, its process not yet): let it finish before saying what it did.
fn settle(pid: u32, deadline: std::time::Instant) {
    let ending = || {
        !has_agent(pid) && !matches!(crate::supervise::process_state(pid), None | Some('Z' | 'X'))
    };
    while ending() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Why a JVM that was a crac-shim JVM stopped answering, in its terms.
fn gone_or_silent(pid: u32, was_ours: bool, busy: bool, waited: &str) -> anyhow::Error {
    match crate::supervise::process_state(pid) {
        None | Some('Z' | 'X') if was_ours && busy => anyhow::anyhow!(
            "{pid} exited while another request's checkpoint ran: it was checkpointed (a checkpoint ends the JVM unless keep_running=true) or died"
        ),
        None | Some('Z' | 'X') if was_ours => {
            anyhow::anyhow!("{pid} died before it answered (killed during the checkpoint?)")
        }
        None | Some('Z' | 'X') => anyhow::anyhow!("no process with pid {pid}"),
        Some('T' | 't') => anyhow::anyhow!(
            "{pid} is stopped (SIGSTOP, a debugger or job control) and did not answer {waited}: resume it (kill -CONT {pid}) and ask again; the request is dropped, it will not run later"
        ),
        Some(_) if waited.is_empty() => anyhow::anyhow!(
            "{pid} hung up without an answer (its checkpoint ended abnormally; the JVM's output says why); it still runs: ask again"
        ),
        Some(_) => anyhow::anyhow!(
            "{pid} did not answer {waited}; give --timeout more if a checkpoint of a large heap is under way"
        ),
    }
}

/// One request: `None` when the JVM is busy with another checkpoint (ask again).
fn exchange(
    pid: u32,
    path: &str,
    request: &Request,
    deadline: std::time::Instant,
    was_ours: bool,
    busy: bool,
) -> Result<Option<i32>> {
    let within = || {
        format!(
            "within {:.0} s",
            deadline
                .saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
                .max(0.0)
        )
    };
    let mut stream = match connect(pid, path, deadline) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("permission denied on {path}: only the JVM's owner (or root) may control it")
        }
        Err(e) if e.get_ref().is_some_and(|i| i.is::<NoSocket>()) => bail!(
            "{pid} has the crac-shim agent but no control socket where its owner's would be ({path}, or its own /tmp in a container), and no checkpoint is under way: its stderr says why the agent could not listen"
        ),
        Err(_) if was_ours && being_restored(pid) => bail!(
            "{pid} is a copy still being restored (its control socket is not back yet); ask again in a moment"
        ),
        Err(_) if was_ours => {
            settle(pid, deadline);
            return Err(gone_or_silent(pid, was_ours, busy, "in time"));
        }
        Err(_) => bail!(
            "{pid} is not a crac-shim JVM (no control socket {path}); start it with crac-java -XX:CRaCCheckpointTo=DIR"
        ),
    };
    let remaining = deadline.saturating_duration_since(std::time::Instant::now());
    stream.set_read_timeout(Some(remaining.max(std::time::Duration::from_millis(1))))?;
    // A connection still waiting in the listener's queue when the agent closes its socket for
    // a checkpoint is reset unseen: the request never ran, so it is asked again like BUSY.
    let unseen = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ) && has_agent(pid)
    };
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    match stream.write_all(request.encode().as_bytes()) {
        Err(e) if unseen(&e) => return Ok(None),
        other => other.context("cannot send the request")?,
    }
    let mut lines = BufReader::new(stream).lines();
    let first = match lines.next() {
        Some(Err(e)) if unseen(&e) => return Ok(None),
        Some(Err(e)) if timed_out(&e) => return Err(gone_or_silent(pid, true, busy, &within())),
        Some(line) => line.context("the JVM's answer broke off")?,
        None => {
            settle(pid, deadline);
            return Err(gone_or_silent(pid, true, busy, ""));
        }
    };
    if format!("{first}\n") == BUSY {
        return Ok(None);
    }
    println!("{pid}:");
    for line in std::iter::once(Ok(first)).chain(lines) {
        let line = match line {
            Err(e) if timed_out(&e) => return Err(gone_or_silent(pid, true, busy, &within())),
            Err(_) => {
                settle(pid, deadline);
                return Err(gone_or_silent(pid, true, busy, "to the end"));
            }
            Ok(l) => l,
        };
        if let Some(code) = parse_exit_line(&line) {
            return Ok(Some(code));
        }
        println!("{line}");
    }
    settle(pid, deadline);
    Err(gone_or_silent(pid, true, busy, "to the end"))
}

/// Connects to the JVM's socket. A crac-shim JVM in the middle of a checkpoint has closed it
/// for the moment: wait for it to come back (until `deadline`) rather than call the JVM
/// something else.
fn connect(pid: u32, path: &str, deadline: std::time::Instant) -> std::io::Result<UnixStream> {
    // A JVM with the agent but no socket that nothing is dumping either (the agent could not
    // make its socket, or it lies where we cannot see): said after a short while, not after
    // the whole timeout.
    let mut unexplained = None::<std::time::Instant>;
    let mut path = path.to_string();
    loop {
        match UnixStream::connect(&path).or_else(|e| in_container(pid, &path).ok_or(e)) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(e),
            Err(e) => {
                if !(has_agent(pid) || being_restored(pid)) || std::time::Instant::now() >= deadline
                {
                    return Err(e);
                }
                if being_dumped(pid) || being_restored(pid) {
                    unexplained = None;
                } else if unexplained
                    .get_or_insert_with(std::time::Instant::now)
                    .elapsed()
                    > NO_SOCKET_GRACE
                {
                    return Err(std::io::Error::new(std::io::ErrorKind::NotFound, NoSocket));
                }
                // Where the socket is was judged by where it was a moment ago: one that was
                // away (a checkpoint just ended) may be back in another of the places.
                if let Some(dir) = runtime_dir_for(pid) {
                    path = socket_path(&dir.to_string_lossy(), pid);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// How long a JVM may be without its socket while nothing dumps it: the agent closes it
/// for a checkpoint only from the scan to the end of the dump, and CRIU traces the JVM for
/// most of that.
const NO_SOCKET_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug)]
struct NoSocket;

impl std::fmt::Display for NoSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no control socket")
    }
}

impl std::error::Error for NoSocket {}

/// CRIU (or a debugger) traces the JVM: a dump is under way.
fn being_dumped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|t| t.trim() != "0")
    })
}

/// A container's entry point `crac-java` stays pid 1 (the namespace's init) and runs the JVM
/// as its child; a restoring `crac-java` is the restored JVM's parent. Operators name the
/// pid they know (`docker exec C crac-jcmd 1 JDK.checkpoint`): it means that JVM.
fn jvm_of_launcher(pid: u32) -> Option<u32> {
    if has_agent(pid) {
        return None;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    if exe.file_name()? != "crac-java" {
        return None;
    }
    let jvms: Vec<u32> = crate::supervise::children(pid)
        .into_iter()
        .filter(|c| has_agent(*c))
        .collect();
    match jvms.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Whether `pid` is a copy CRIU is restoring right now: still CRIU's code (its executable is
/// CRIU's) under CRIU's ptrace, or under a restoring crac-java, before its memory (and our
/// agent in it) is back.
fn being_restored(pid: u32) -> bool {
    let exe_name = |p: &str| {
        std::fs::read_link(format!("/proc/{p}/exe"))
            .ok()
            .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let tracer = field("TracerPid:").filter(|t| t != "0");
    let parent = field("PPid:");
    let is_criu = |n: Option<String>| n.is_some_and(|n| n.starts_with("criu"));
    is_criu(tracer.as_deref().and_then(exe_name))
        || (is_criu(exe_name(&pid.to_string()))
            && parent
                .as_deref()
                .and_then(exe_name)
                .is_some_and(|n| n == "crac-java" || n.starts_with("criu")))
}

/// Whether the agent is mapped in `pid` (so it is a crac-shim JVM, maybe busy).
fn has_agent(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.contains("libcrac_shim_agent"))
}

/// The crac-shim JVMs we may control, as ps numbers them (restored copies and JVMs in
/// containers included): the processes with the agent mapped. (Socket names would not do: a
/// container's JVM names its socket by a pid of its own namespace.)
fn list() -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !has_agent(pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .skip(1)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        found.push((pid, words.join(" ")));
    }
    found.sort();
    found
}
