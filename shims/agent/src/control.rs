//! The control thread: a unix socket per JVM that `crac-jcmd` talks to.

use crate::checkpoint::{self, Outcome};
use crate::config::Config;
use crate::sys::warn;
use crac_shim_proto::{exit_line, socket_path, Message, Request, BUSY};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

/// How long a client may take to send its one-line request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

pub fn start(config: Config) {
    let spawned = std::thread::Builder::new()
        .name("crac-shim-control".into())
        .spawn(move || run(config));
    if let Err(e) = spawned {
        warn(&format!(
            "cannot start the control thread ({e}); checkpoints are unavailable"
        ));
    }
}

fn block_signals() {
    // Signals meant for the JVM must reach its own threads, never this one.
    // SAFETY: sigfillset/pthread_sigmask on a local, initialized set.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn run(config: Config) {
    block_signals();
    let mut pid = std::process::id();
    loop {
        let path = socket_path(&config.runtime_dir, pid);
        // In a private PID namespace (a restored copy) /proc shows only our namespace: every
        // other JVM would look dead there, so leave the sweeping to others.
        let sees_all_pids = pid == std::process::id();
        let listener = match bind(&config.runtime_dir, &path, sees_all_pids) {
            Ok(l) => l,
            Err(e) => {
                warn(&format!(
                    "cannot open the control socket {path}: {e}; crac-jcmd cannot reach this JVM"
                ));
                return;
            }
        };
        pid = serve(&config, listener, &path, pid);
    }
}

/// Creates the private runtime directory (or checks that an existing one is ours and
/// private) and binds the socket in it.
fn bind(dir: &str, path: &str, sweep: bool) -> std::io::Result<UnixListener> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    crac_shim_proto::ensure_private_dir(std::path::Path::new(dir), uid)?;
    if sweep {
        sweep_stale_sockets(dir);
    }
    // A socket left at our name by a killed JVM whose pid we now have.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Removes the sockets of JVMs that are gone (killed ones cannot clean up after themselves).
/// A JVM in another PID namespace sharing this directory (a container's) is missing from our
/// /proc but still listens: only a socket nobody listens on is stale.
fn sweep_stale_sockets(dir: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_suffix(".sock")) else {
            continue;
        };
        let invisible =
            pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if invisible
            && std::os::unix::net::UnixStream::connect(e.path())
                .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The socket path of this incarnation, removed when the JVM exits normally.
static SOCKET_PATH: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

extern "C" fn remove_socket_at_exit() {
    if let Ok(path) = SOCKET_PATH.try_lock() {
        if let Some(p) = path.as_deref() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[used]
#[link_section = ".fini_array"]
static REMOVE_SOCKET_AT_EXIT: extern "C" fn() = remove_socket_at_exit;

/// A `crac-jcmd` connection waiting for a checkpoint that Java code is preparing: handed to
/// the dump helper by whichever checkpoint comes next, or answered by the jcmd worker.
/// Each waiting connection carries the number of the request it came with, so that a worker
/// finishing late never answers a newer request.
static PENDING_JCMD: std::sync::Mutex<Option<(u64, OwnedFd)>> = std::sync::Mutex::new(None);
static JCMD_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static JCMD_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// A crac-jcmd checkpoint is being prepared by Java code (see BUSY).
static JCMD_BUSY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A connection that has not yet sent its request.
struct Pending {
    stream: UnixStream,
    line: Vec<u8>,
    since: std::time::Instant,
    /// The request line is in: it is handled in this round.
    complete: bool,
}

/// How many connections may be waiting for their request at once; more are turned away.
const MAX_PENDING: usize = 64;

/// Answers clients until a checkpoint ends this incarnation; returns the pid to listen as.
///
/// One thread, many clients: every connection is read as its bytes arrive (poll), each with
/// its own deadline, so a client that connects and says nothing delays nobody else.
fn serve(config: &Config, listener: UnixListener, path: &str, pid: u32) -> u32 {
    if let Ok(mut current) = SOCKET_PATH.lock() {
        *current = Some(path.to_string());
    }
    if listener.set_nonblocking(true).is_err() {
        return pid;
    }
    // Taken (and closed) before a dump: see close_for_dump.
    let mut listener = Some(listener);
    let mut pending: Vec<Pending> = Vec::new();
    while let Some(open) = listener.as_ref() {
        let now = std::time::Instant::now();
        let wait = pending
            .iter()
            .map(|p| (p.since + REQUEST_TIMEOUT).saturating_duration_since(now))
            .min();
        let mut fds: Vec<libc::pollfd> = std::iter::once(open.as_raw_fd())
            .chain(pending.iter().map(|p| p.stream.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout = wait.map_or(-1, |w| w.as_millis().min(i32::MAX as u128) as i32 + 1);
        // SAFETY: fds is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return pid;
        }
        if fds[0].revents != 0 {
            accept_all(open, &mut pending);
        }
        // Requests complete, in arrival order; connections past their deadline are told so.
        let mut i = 0;
        while i < pending.len() {
            let readable = fds.get(i + 1).is_some_and(|f| f.revents != 0);
            let p = &mut pending[i];
            if readable && read_some(p) {
                p.complete = true;
                i += 1;
                continue;
            }
            if p.since.elapsed() >= REQUEST_TIMEOUT {
                let mut late = pending.remove(i);
                fds.remove(i + 1);
                let _ = late.stream.write_all(
                    format!(
                        "no request received within {} s\n{}",
                        REQUEST_TIMEOUT.as_secs(),
                        exit_line(1)
                    )
                    .as_bytes(),
                );
                continue;
            }
            i += 1;
        }
        // One at a time, the others still pending: a checkpoint that one of them starts
        // answers them BUSY with every other waiting client (crac-jcmd asks again) rather
        // than leaving them unanswered, and their connections out of the image.
        while let Some(i) = pending.iter().position(|p| p.complete) {
            let p = pending.remove(i);
            if let Some(next) = handle(config, &mut listener, path, pid, p, &mut pending) {
                return next;
            }
        }
    }
    pid
}

fn accept_all(listener: &UnixListener, pending: &mut Vec<Pending>) {
    while let Ok((mut stream, _)) = listener.accept() {
        if let Err(message) = check_peer(&stream) {
            let _ = stream.write_all(format!("{message}\n{}", exit_line(1)).as_bytes());
            continue;
        }
        if pending.len() >= MAX_PENDING || stream.set_nonblocking(true).is_err() {
            let _ = stream.write_all(BUSY.as_bytes());
            continue;
        }
        pending.push(Pending {
            stream,
            line: Vec::with_capacity(64),
            since: std::time::Instant::now(),
            complete: false,
        });
    }
}

/// Reads what has arrived; true once the request line is complete (or the client is done).
fn read_some(p: &mut Pending) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match p.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                if let Some(end) = buf[..n].iter().position(|b| *b == b'\n') {
                    p.line.extend_from_slice(&buf[..end]);
                    return true;
                }
                p.line.extend_from_slice(&buf[..n]);
                if p.line.len() >= 4096 {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Whether the client hung up: a request left behind by a client that gave up (the JVM was
/// stopped while it waited, say) must not run when the JVM goes on.
fn client_gone(stream: &impl AsRawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout only looks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Serves one complete request; `Some(pid)` when a checkpoint ended this incarnation.
fn handle(
    config: &Config,
    listener: &mut Option<UnixListener>,
    path: &str,
    pid: u32,
    p: Pending,
    pending: &mut Vec<Pending>,
) -> Option<u32> {
    let mut stream = p.stream;
    let _ = stream.set_nonblocking(false);
    let request = match Request::decode(&p.line) {
        Ok(r) => r,
        Err(e) => {
            let message = if p.line.is_empty() {
                "no request received".to_string()
            } else {
                format!("bad request: {e}")
            };
            let _ = stream.write_all(format!("{message}\n{}", exit_line(1)).as_bytes());
            return None;
        }
    };
    match request {
        Request::Describe => {
            let _ =
                stream.write_all(format!("crac-shim agent pid={pid}\n{}", exit_line(0)).as_bytes());
            None
        }
        request @ (Request::Checkpoint
        | Request::CheckpointKeepRunning
        | Request::CheckpointWithPolicy { .. }) => {
            if client_gone(&stream) {
                return None;
            }
            if JCMD_BUSY.load(std::sync::atomic::Ordering::Acquire) {
                // Not kept waiting in here: a connection to another process in the JVM
                // would spoil the checkpoint under way. crac-jcmd asks again.
                let _ = stream.write_all(BUSY.as_bytes());
                return None;
            }
            match &request {
                Request::CheckpointKeepRunning
                | Request::CheckpointWithPolicy {
                    keep_running: true, ..
                } => {
                    checkpoint::KEEP_RUNNING_ONCE.store(true, std::sync::atomic::Ordering::Release)
                }
                _ => {}
            }
            if let Request::CheckpointWithPolicy { policy, .. } = &request {
                if let Ok(mut once) = checkpoint::POLICY_ONCE.lock() {
                    *once = Some(policy.clone());
                }
            }
            if crate::jni::api_available() {
                // The Java notifications run first, on a thread of their own; they come
                // back on this socket with checkpoint-java.
                start_jcmd_worker(stream);
                return None;
            }
            close_for_dump(listener, path, pending);
            Some(next_pid(checkpoint::run(config, Some(stream.into())), pid))
        }
        Request::CheckpointFromJava { max_heap } => {
            checkpoint::MAX_HEAP.store(max_heap, std::sync::atomic::Ordering::Release);
            let answer_pipe = hand_java_a_pipe(stream)?;
            close_for_dump(listener, path, pending);
            let jcmd = PENDING_JCMD
                .lock()
                .ok()
                .and_then(|mut p| p.take())
                .map(|(_, fd)| fd);
            // Asked for by a crac-jcmd that has gone since: the program goes on instead.
            let outcome = match jcmd {
                Some(client) if client_gone(&client) => Outcome::Failed(
                    "the crac-jcmd that asked for this checkpoint is gone; no checkpoint was made"
                        .into(),
                ),
                jcmd => checkpoint::run(config, jcmd),
            };
            let answer = answer_for_java(&outcome, &config.runtime_dir);
            let _ = std::fs::File::from(answer_pipe).write_all(&answer);
            Some(next_pid(outcome, pid))
        }
    }
}

/// No connection may go into the image: every client still waiting is asked to try again
/// (the socket comes back after the checkpoint), and the listener and its name go. A
/// listener in the image would make CRIU bind its name again in every restored copy,
/// deleting the socket file of the JVM that owns that name then.
fn close_for_dump(listener: &mut Option<UnixListener>, path: &str, pending: &mut Vec<Pending>) {
    if let Some(open) = listener.take() {
        accept_all(&open, pending);
    }
    for mut p in pending.drain(..) {
        let _ = p.stream.set_nonblocking(false);
        let _ = p.stream.write_all(BUSY.as_bytes());
    }
    let _ = std::fs::remove_file(path);
}

/// Java gets its answer through a pipe rather than this connection: an accepted socket bears
/// the listener's name, and CRIU re-binding that name in a restored copy would delete the
/// socket file of whichever JVM owns it then. Java opens `/proc/self/fd/N` for the read end
/// and says so; then the connection closes and only the (unnamed) pipe goes into the image.
fn hand_java_a_pipe(mut stream: UnixStream) -> Option<OwnedFd> {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    if let Ok(st) = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&write_end)) {
        crate::scan::AGENT_PIPE.store(st.st_ino, std::sync::atomic::Ordering::Release);
    }
    stream
        .write_all(format!("pipe {}\n", std::os::fd::AsRawFd::as_raw_fd(&read_end)).as_bytes())
        .ok()?;
    let mut ack = [0u8; 3];
    std::io::Read::read_exact(&mut stream, &mut ack).ok()?;
    (&ack == b"ok\n").then_some(write_end)
}

fn next_pid(outcome: Outcome, pid: u32) -> u32 {
    match outcome {
        Outcome::Restored(m) => m
            .get("pid")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(std::process::id),
        Outcome::Failed(_) | Outcome::Kept => pid,
    }
}

/// What `AgentLink.checkpoint()` reads: a message, then an empty line.
fn answer_for_java(outcome: &Outcome, runtime_dir: &str) -> Vec<u8> {
    let m = match outcome {
        Outcome::Failed(why) => Message::new("failed").with("error", why),
        Outcome::Kept => Message::new("kept"),
        Outcome::Restored(greeting) => {
            let pid = greeting
                .get("pid")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(std::process::id);
            let mut m = Message::new("restored").with("socket", socket_path(runtime_dir, pid));
            for key in ["restore_time", "restore_ms"] {
                if let Some(v) = greeting.get(key) {
                    m.push(key, v);
                }
            }
            for p in greeting.get_all("prop") {
                m.push("prop", p);
            }
            for a in greeting.get_all("new_main") {
                m.push("new_main", a);
            }
            for e in greeting.get_all("restore_error") {
                m.push("restore_error", e);
            }
            m
        }
    };
    let mut bytes = m.encode();
    bytes.push(b'\n');
    bytes
}

fn start_jcmd_worker(stream: UnixStream) {
    let id = JCMD_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    JCMD_BUSY.store(true, std::sync::atomic::Ordering::Release);
    let spawned = std::thread::Builder::new()
        .name("crac-shim-jcmd".into())
        .spawn(move || {
            block_signals();
            // Requests that arrive together are served one after the other.
            let _in_turn = JCMD_TURN.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(mut pending) = PENDING_JCMD.lock() {
                *pending = Some((id, stream.into()));
            }
            let result = crate::jni::checkpoint_from_agent();
            JCMD_BUSY.store(false, std::sync::atomic::Ordering::Release);
            // Still ours if no dump took it: answer crac-jcmd here.
            let mine = PENDING_JCMD.lock().ok().and_then(|mut p| match p.take() {
                Some((pending_id, fd)) if pending_id == id => Some(fd),
                other => {
                    *p = other;
                    None
                }
            });
            let Some(client) = mine else {
                return;
            };
            let text = match result {
                Ok(None) => format!("Command executed successfully\n{}", exit_line(0)),
                Ok(Some(exception)) => format!(
                    "An exception during a checkpoint operation:\n{exception}\n{}",
                    exit_line(1)
                ),
                Err(e) => format!("cannot run the checkpoint: {e}\n{}", exit_line(1)),
            };
            let _ = UnixStream::from(client).write_all(text.as_bytes());
        });
    if let Err(e) = spawned {
        warn(&format!("cannot start the checkpoint thread: {e}"));
    }
}

fn check_peer(stream: &UnixStream) -> Result<(), String> {
    let creds = getsockopt(stream, PeerCredentials)
        .map_err(|e| format!("cannot identify the client: {e}"))?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if creds.uid() != uid && creds.uid() != 0 {
        return Err(format!(
            "refused: uid {} may not control this JVM (owned by uid {uid})",
            creds.uid()
        ));
    }
    Ok(())
}
