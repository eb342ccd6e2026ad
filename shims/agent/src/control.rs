//! The control thread: a unix socket per JVM that `crac-jcmd` talks to.

use crate::checkpoint::{self, Outcome};
use crate::config::Config;
use crate::sys::warn;
use crac_shim_proto::{exit_line, socket_path, Message, Request, BUSY};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

/// How long a client may take to send its one-line request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Answers clients until a checkpoint ends this incarnation; returns the pid to listen as.
fn serve(config: &Config, listener: UnixListener, path: &str, pid: u32) -> u32 {
    if let Ok(mut current) = SOCKET_PATH.lock() {
        *current = Some(path.to_string());
    }
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        match read_request(&mut stream) {
            Err(message) => {
                let _ = stream.write_all(format!("{message}\n{}", exit_line(1)).as_bytes());
            }
            Ok(Request::Describe) => {
                let _ = stream
                    .write_all(format!("crac-shim agent pid={pid}\n{}", exit_line(0)).as_bytes());
            }
            Ok(request @ (Request::Checkpoint | Request::CheckpointKeepRunning)) => {
                if request == Request::CheckpointKeepRunning {
                    checkpoint::KEEP_RUNNING_ONCE.store(true, std::sync::atomic::Ordering::Release);
                }
                if JCMD_BUSY.load(std::sync::atomic::Ordering::Acquire) {
                    // Not kept waiting in here: a connection to another process in the JVM
                    // would spoil the checkpoint under way. crac-jcmd asks again.
                    let _ = stream.write_all(BUSY.as_bytes());
                    continue;
                }
                if crate::jni::api_available() {
                    // The Java notifications run first, on a thread of their own; they come
                    // back on this socket with checkpoint-java.
                    start_jcmd_worker(stream);
                    continue;
                }
                drop(listener);
                let _ = std::fs::remove_file(path);
                return next_pid(checkpoint::run(config, Some(stream.into())), pid);
            }
            Ok(Request::CheckpointFromJava { max_heap }) => {
                checkpoint::MAX_HEAP.store(max_heap, std::sync::atomic::Ordering::Release);
                let Some(answer_pipe) = hand_java_a_pipe(stream) else {
                    continue;
                };
                drop(listener);
                let _ = std::fs::remove_file(path);
                let jcmd = PENDING_JCMD
                    .lock()
                    .ok()
                    .and_then(|mut p| p.take())
                    .map(|(_, fd)| fd);
                let outcome = checkpoint::run(config, jcmd);
                let answer = answer_for_java(&outcome, &config.runtime_dir);
                let _ = std::fs::File::from(answer_pipe).write_all(&answer);
                return next_pid(outcome, pid);
            }
        }
    }
    pid
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

fn read_request(stream: &mut UnixStream) -> Result<Request, String> {
    let creds = getsockopt(&*stream, PeerCredentials)
        .map_err(|e| format!("cannot identify the client: {e}"))?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if creds.uid() != uid && creds.uid() != 0 {
        return Err(format!(
            "refused: uid {} may not control this JVM (owned by uid {uid})",
            creds.uid()
        ));
    }
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut line = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("no request received: {e}")),
        }
    }
    Request::decode(&line).map_err(|e| format!("bad request: {e}"))
}
