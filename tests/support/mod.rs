//! Shared by the integration tests: real JVMs, real CRIU, and cleaning up after both.
//!
//! Every process a test starts is held by a guard that kills it (and what it started, by pid)
//! when the test ends, however it ends; every directory is removed the same way.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const CRAC_JAVA: &str = env!("CARGO_BIN_EXE_crac-java");
pub const CRAC_JCMD: &str = env!("CARGO_BIN_EXE_crac-jcmd");
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Skips the test (returns) with a reason, or fails it under CRAC_SHIM_STRICT=1 (CI).
#[macro_export]
macro_rules! skip_unless {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            let why = format!($($why)+);
            if std::env::var_os("CRAC_SHIM_STRICT").is_some() {
                panic!("cannot run here: {why}");
            }
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// Tests of the jdk.crac API also need its jar.
#[macro_export]
macro_rules! require_api {
    () => {
        $crate::require_checkpoint!();
        $crate::skip_unless!(
            support::api_jar().is_file(),
            "crac-shim-api.jar is not built: run scripts/setup"
        );
    };
}

/// Checkpoint tests need root and a working CRIU.
#[macro_export]
macro_rules! require_checkpoint {
    () => {
        $crate::skip_unless!(support::is_root(), "checkpoint/restore tests run as root");
        $crate::skip_unless!(
            support::criu_ready(),
            "no working CRIU >= 4.2 next to crac-java: run scripts/setup"
        );
        $crate::skip_unless!(
            support::agent().is_file(),
            "the agent is not built: run cargo build --workspace"
        );
    };
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn bin_dir() -> PathBuf {
    Path::new(CRAC_JAVA).parent().unwrap().to_path_buf()
}

pub fn agent() -> PathBuf {
    bin_dir().join("libcrac_shim_agent.so")
}

pub fn criu_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let criu = bin_dir().join("criu");
        Command::new(&criu)
            .arg("check")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

pub fn default_java() -> PathBuf {
    PathBuf::from("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
}

/// The JDK directory of a `.../bin/java`.
pub fn home_of(java: &Path) -> String {
    java.parent()
        .and_then(Path::parent)
        .map(|h| h.display().to_string())
        .unwrap_or_default()
}

/// JDKs under /usr/lib/jvm other than Debian's default 17 (one entry per real directory).
pub fn other_jdks() -> Vec<PathBuf> {
    let default = std::fs::canonicalize(default_java()).ok();
    let mut seen = Vec::new();
    for e in std::fs::read_dir("/usr/lib/jvm")
        .into_iter()
        .flatten()
        .flatten()
    {
        let java = e.path().join("bin/java");
        if let Ok(real) = std::fs::canonicalize(&java) {
            if Some(&real) != default.as_ref() && !seen.contains(&real) {
                seen.push(real);
            }
        }
    }
    seen.sort();
    seen
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("crac-shim-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Test programs from tests/java, compiled once per test binary (into cargo's target
/// directory for tests, so nothing is left in /tmp).
pub fn classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("classes-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java");
        let mut files: Vec<PathBuf> = java_files(&src);
        // Programs that use the jdk.crac API need its jar (built by scripts/setup).
        let api = api_jar();
        if api.is_file() {
            files.extend(java_files(&src.join("api")));
        }
        // Stand-ins for framework code (org.crac, a Spring-Boot-shaped app): reflection only.
        files.extend(java_files_under(&src.join("framework")));
        let javac = default_java().with_file_name("javac");
        let out = Command::new(javac)
            .args(["--release", "17", "-nowarn", "-XDignore.symbol.file", "-cp"])
            .arg(&api)
            .arg("-d")
            .arg(&dir)
            .args(&files)
            .output()
            .expect("javac runs");
        assert!(
            out.status.success(),
            "javac failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn java_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = java_files(dir);
    for sub in std::fs::read_dir(dir).unwrap().flatten() {
        if sub.path().is_dir() {
            files.extend(java_files_under(&sub.path()));
        }
    }
    files
}

fn java_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "java"))
        .collect()
}

/// The jdk.crac API jar that crac-java puts on the boot class path.
pub fn api_jar() -> PathBuf {
    bin_dir().join("crac-shim-api.jar")
}

/// Lines a process printed, shared with the thread that reads them (and whether it ended).
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Seen>, Condvar)>);

/// The lines so far, and whether the output ended.
type Seen = (Vec<String>, bool);

impl Lines {
    pub fn collect(source: impl std::io::Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            let (m, c) = &*l.0;
            for line in BufReader::new(source).lines() {
                let Ok(line) = line else { break };
                m.lock().unwrap().0.push(line);
                c.notify_all();
            }
            m.lock().unwrap().1 = true;
            c.notify_all();
        });
        lines
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().0.clone()
    }

    /// Waits until the writer closed its end, then returns every line.
    pub fn all(&self) -> Vec<String> {
        let (m, c) = &*self.0;
        let mut guard = m.lock().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while !guard.1 {
            let now = Instant::now();
            assert!(now < deadline, "output never ended");
            guard = c.wait_timeout(guard, deadline - now).unwrap().0;
        }
        guard.0.clone()
    }

    /// Waits for a line matching `pred`; panics with everything seen on timeout. `pred` runs
    /// with the lines locked: it must not call `snapshot` or `all`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let (m, c) = &*self.0;
        let mut guard = m.lock().unwrap();
        loop {
            if let Some(l) = guard.0.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let now = Instant::now();
            let seen = &guard.0;
            let tail = &seen[seen.len().saturating_sub(8)..];
            assert!(
                now < deadline,
                "timed out waiting for {what}; {} lines, the last: {tail:?}",
                seen.len()
            );
            guard = c.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

/// Parses "tick N" lines.
pub fn tick(line: &str) -> Option<u32> {
    line.strip_prefix("tick ")?.trim().parse().ok()
}

pub fn ticks(lines: &[String]) -> Vec<u32> {
    lines.iter().filter_map(|l| tick(l)).collect()
}

/// A started process, killed with everything below it when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub pid: u32,
    pub out: Lines,
    pub err: Lines,
    pub stdin: Option<std::process::ChildStdin>,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if cmd.get_program().is_empty() {
            panic!("no program");
        }
        // A harness started in the background of a non-interactive shell (or under nohup)
        // passes signals on ignored, and a JVM keeps them so; the tests expect java's own
        // handling of each.
        // SAFETY: signal() is async-signal-safe and touches no memory of ours.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                for sig in [
                    libc::SIGHUP,
                    libc::SIGINT,
                    libc::SIGQUIT,
                    libc::SIGTERM,
                    libc::SIGUSR1,
                    libc::SIGUSR2,
                ] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn");
        let out = Lines::collect(child.stdout.take().unwrap());
        let err = Lines::collect(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        STDERR_OF
            .lock()
            .unwrap()
            .push((child.id(), std::sync::Arc::downgrade(&err.0)));
        Proc {
            pid: child.id(),
            child: Some(child),
            out,
            err,
            stdin,
            status: None,
        }
    }

    pub fn write_stdin(&mut self, text: &str) {
        let s = self.stdin.as_mut().expect("stdin was not piped");
        s.write_all(text.as_bytes()).unwrap();
        s.flush().unwrap();
    }

    /// The status if the process has ended, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.as_mut().unwrap().try_wait().unwrap();
        }
        self.status
    }

    /// Waits for the process to end (with a timeout).
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + TIMEOUT;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.status = Some(s);
                return s;
            }
            let (out, err) = (self.out.snapshot(), self.err.snapshot());
            assert!(
                Instant::now() < deadline,
                "pid {} did not end; stdout ends {:?}, stderr ends {:?}",
                self.pid,
                &out[out.len().saturating_sub(5)..],
                &err[err.len().saturating_sub(5)..]
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child.
        unsafe { libc::kill(self.pid as libc::pid_t, sig) };
    }

    /// The pids below this process (children first found, recursively).
    pub fn descendants(&self) -> Vec<u32> {
        descendants(self.pid)
    }
}

pub use crac_shim::supervise::descendants;

/// What user nobody runs, copied into a test's (world-readable) temporary directory: the
/// checkout itself may be private (under /root, say).
pub struct PublicCopy {
    pub crac_java: PathBuf,
    pub crac_jcmd: PathBuf,
    pub criu: PathBuf,
    pub classes: PathBuf,
}

/// Copies a directory tree (class files in packages).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

pub fn public_copy(tmp: &TempDir) -> PublicCopy {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp.join("public");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [tmp.path(), dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for name in [
        "crac-java",
        "crac-jcmd",
        "libcrac_shim_agent.so",
        "crac-shim-api.jar",
        "crac-shim-mxbean.jar",
        "criu",
    ] {
        let from = bin_dir().join(name);
        if from.exists() {
            std::fs::copy(&from, dir.join(name)).unwrap();
        }
    }
    let classes = dir.join("classes");
    copy_tree(self::classes(), &classes);
    PublicCopy {
        crac_java: dir.join("crac-java"),
        crac_jcmd: dir.join("crac-jcmd"),
        criu: dir.join("criu"),
        classes,
    }
}

/// A command run as user nobody (uid 65534), for the tests of other users and rootless use.
pub fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program);
    c.env("CRAC_SHIM_JAVA", default_java());
    c
}

pub fn kill_pid(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !matches!(
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next()),
                Some("Z") | Some("X")
            )
        })
        .unwrap_or(false)
}

/// Waits until `pid` is gone or a zombie.
pub fn wait_gone(pid: u32) {
    let deadline = Instant::now() + TIMEOUT;
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} is still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A failed restore keeps its CRIU log for the user, in a `restore-*` directory that its
/// one-line error names; a test that provoked it removes it.
fn remove_named_restore_logs<'a>(err: impl IntoIterator<Item = &'a str>) {
    for line in err {
        let Some((_, rest)) = line.split_once("(log: ") else {
            continue;
        };
        let log = Path::new(rest.split(';').next().unwrap_or_default());
        if let Some(dir) = log.parent() {
            if dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("restore-"))
            {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failing test shows what each of its processes said on stderr.
        if std::thread::panicking() {
            let err = self.err.snapshot();
            let tail = &err[err.len().saturating_sub(5)..];
            eprintln!("[pid {}, {:?}] stderr: {tail:?}", self.pid, self.status);
        } else {
            remove_named_restore_logs(self.err.snapshot().iter().map(String::as_str));
        }
        self.end();
        if !std::thread::panicking() {
            remove_restore_scratch_of(self.pid);
        }
    }
}

/// What a restoring crac-java killed by its test (or whose CRIU the test's clean-up killed)
/// left in our runtime directory: its scratch directory, kept as the log of a failed restore.
/// The test is over; the log would only stay around for a day. A directory still locked is a
/// live launcher's (another test's, which got the pid since).
fn remove_restore_scratch_of(launcher: u32) {
    let prefix = format!("restore-{launcher}-");
    for entry in std::fs::read_dir(crac_shim::paths::runtime_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix)
            && !crac_shim::paths::in_use(&entry.path())
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Proc {
    /// Ends the process and everything below it, unless it has already ended.
    fn end(&mut self) {
        if self.status.is_some() {
            return;
        }
        // The program first, so that a restoring crac-java can see it end and clean up; again
        // and again, as a restore under way may still be creating it.
        if let Some(mut c) = self.child.take() {
            let mut attach_names = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                let below = descendants(self.pid);
                // A JVM itself (crac-java exec'd it) has nothing below to let go first.
                if below.is_empty() && is_jvm(self.pid) {
                    attach_names.extend(attach_name(self.pid));
                    kill_pid(self.pid);
                }
                for p in below {
                    attach_names.extend(attach_name(p));
                    kill_pid(p);
                }
                if let Ok(Some(_)) = c.try_wait() {
                    remove_dead_attach_sockets(&attach_names);
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            for p in descendants(self.pid).into_iter().chain([self.pid]) {
                attach_names.extend(attach_name(p));
                kill_pid(p);
            }
            let _ = c.wait();
            remove_dead_attach_sockets(&attach_names);
        }
    }
}

fn is_jvm(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "java")
}

/// The attach socket a JVM `pid` would make, `/tmp/.java_pid<its own pid>` (a copy in a new
/// PID namespace names it by the pid it sees), when it shares our /tmp.
fn attach_name(pid: u32) -> Option<PathBuf> {
    let root = std::fs::read_link(format!("/proc/{pid}/root")).ok()?;
    if root != Path::new("/") {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let inner = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .to_string();
    Some(PathBuf::from(format!("/tmp/.java_pid{inner}")))
}

/// A JVM killed outright cannot remove its attach socket (nothing else ever does): the ones
/// the test's processes left, once nobody listens on them (a killed JVM may take a moment to
/// close its files).
fn remove_dead_attach_sockets(names: &[PathBuf]) {
    use std::os::unix::fs::FileTypeExt;
    let deadline = Instant::now() + Duration::from_secs(2);
    for name in names {
        loop {
            let is_socket =
                std::fs::symlink_metadata(name).is_ok_and(|m| m.file_type().is_socket());
            if !is_socket {
                break;
            }
            match std::os::unix::net::UnixStream::connect(name) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let _ = std::fs::remove_file(name);
                    break;
                }
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
    }
}

pub fn crac_java() -> Command {
    let mut c = Command::new(CRAC_JAVA);
    c.env("CRAC_SHIM_JAVA", default_java());
    c.env_remove("CRAC_CRIU_PATH");
    c.stdin(Stdio::null());
    c
}

/// Gives the JVM a temp directory of its own inside `tmp`, so that files the test puts in
/// `tmp` are data files, not the JVM's temp files (which a checkpoint keeps private).
pub fn separate_temp_dir(cmd: &mut Command, tmp: &TempDir) {
    let dir = tmp.join("jvm-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    cmd.arg(format!("-Djava.io.tmpdir={}", dir.display()));
}

/// `crac-java -XX:CRaCCheckpointTo=DIR -cp CLASSES MAIN ARGS`.
pub fn start_checkpointable(dir: &Path, main: &str, args: &[&str]) -> Proc {
    start_checkpointable_with(crac_java(), dir, main, args)
}

pub fn start_checkpointable_with(mut cmd: Command, dir: &Path, main: &str, args: &[&str]) -> Proc {
    cmd.arg(format!("-XX:CRaCCheckpointTo={}", dir.display()))
        .arg("-Xmx64m")
        .arg("-cp")
        .arg(classes())
        .arg(main)
        .args(args)
        // A pipe that stays open while the test holds the Proc, so stdin never ends early.
        .stdin(Stdio::piped());
    Proc::spawn(cmd)
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut o = String::new();
        let mut e = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut o);
        let _ = std::io::Read::read_to_string(&mut stderr, &mut e);
        let _ = tx.send((o, e));
    });
    let (o, e) = match rx.recv_timeout(TIMEOUT) {
        Ok(v) => v,
        Err(_) => {
            kill_pid(pid);
            let _ = child.wait();
            panic!("command {cmd:?} did not finish");
        }
    };
    let status = child.wait().unwrap();
    remove_named_restore_logs(e.lines());
    Output {
        code: status.code(),
        stdout: o,
        stderr: e,
    }
}

/// A failure told in exactly one line on stderr that names each of `needles`.
pub fn one_line_error(o: &Output, needles: &[&str]) {
    assert_ne!(o.code, Some(0), "must fail: {}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", o.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "{:?} lacks {n:?}", lines[0]);
    }
}

/// `crac-jcmd PID JDK.checkpoint`.
pub fn checkpoint(pid: u32) -> Output {
    let mut c = Command::new(CRAC_JCMD);
    c.arg(pid.to_string()).arg("JDK.checkpoint");
    run(c)
}

/// The standard error of every process a Proc started, by pid, for failure messages.
#[allow(clippy::type_complexity)]
static STDERR_OF: Mutex<Vec<(u32, std::sync::Weak<(Mutex<Seen>, Condvar)>)>> =
    Mutex::new(Vec::new());

/// The last lines a Proc with this pid wrote to standard error (its own words on a failure).
pub fn stderr_tail(pid: u32) -> Vec<String> {
    let procs = STDERR_OF.lock().unwrap();
    let Some(lines) = procs
        .iter()
        .rev()
        .find(|(p, _)| *p == pid)
        .and_then(|(_, w)| w.upgrade())
    else {
        return Vec::new();
    };
    let seen = lines.0.lock().unwrap().0.clone();
    seen[seen.len().saturating_sub(12)..].to_vec()
}

/// Checkpoints and checks jcmd's success output.
pub fn checkpoint_ok(pid: u32) {
    let o = checkpoint(pid);
    assert_eq!(
        o.code,
        Some(0),
        "checkpoint failed: {} {}; the JVM's (or its crac-java's) last words: {:?}",
        o.stdout,
        o.stderr,
        stderr_tail(pid)
    );
    assert_eq!(o.stdout, format!("{pid}:\nCommand executed successfully\n"));
}

/// Starts `crac-java -XX:CRaCRestoreFrom=DIR` with stdout/stderr piped.
pub fn restore(dir: &Path) -> Proc {
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", dir.display()));
    Proc::spawn(c)
}

/// Starts a Ticker, lets it tick `n` times, checkpoints it; returns the last tick before.
pub fn ticker_image(dir: &Path, args: &[&str], n: u32) -> u32 {
    let mut app = start_checkpointable(dir, "Ticker", args);
    app.out
        .wait_for(&format!("tick {n}"), |l| tick(l).is_some_and(|t| t >= n));
    checkpoint_ok(app.pid);
    let status = app.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "CRIU ends the JVM"
    );
    *ticks(&app.out.all()).last().unwrap()
}

/// A GET on 127.0.0.1:`port`, the whole answer.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo programs (demo/HttpDemo.java), compiled once per test binary.
pub fn demo_classes() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-classes");
        let _ = std::fs::remove_dir_all(&dir);
        let st = Command::new(default_java().with_file_name("javac"))
            .arg("-d")
            .arg(&dir)
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/HttpDemo.java"))
            .status()
            .unwrap();
        assert!(st.success());
        dir
    })
    .clone()
}

/// The demo HttpServer on 127.0.0.1:`port`, checkpointable into `image`, once it listens.
pub fn start_http_demo(image: &Path, port: u16) -> Proc {
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCCheckpointTo={}", image.display()))
        .arg("-Xmx64m")
        .arg("-cp")
        .arg(demo_classes())
        .args(["HttpDemo", &port.to_string()]);
    let app = Proc::spawn(c);
    app.out
        .wait_for("listening", |l| l.starts_with("listening on"));
    app
}

/// A second local user, made for one test (`useradd`) and removed when dropped: the hostile
/// user of the tests of who may write what.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn create() -> TestUser {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("crsh{}x{n}", std::process::id());
        // Other tests may hold /etc/passwd's lock for a moment: useradd then fails; retried.
        let mut made = false;
        for _ in 0..100 {
            let o = Command::new("useradd")
                .args(["--system", "--no-create-home", "--user-group"])
                .args(["--shell", "/usr/sbin/nologin", &name])
                .output()
                .expect("useradd (package passwd)");
            if o.status.success() {
                made = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(made, "cannot create the test user {name}");
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        TestUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// `program` run as this user (its own group only).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--"])
            .arg(program);
        c
    }

    /// Runs a shell command line as this user; panics unless it succeeds.
    pub fn sh(&self, line: &str) {
        let o = self.command("sh").args(["-c", line]).output().unwrap();
        assert!(
            o.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for _ in 0..100 {
            let ok = Command::new("userdel")
                .arg(&self.name)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // What the user's JVMs and agents left in /tmp (perf data, runtime directories).
        let _ = std::fs::remove_dir_all(format!("/tmp/hsperfdata_{}", self.name));
        let runtime = format!("/tmp/crac-shim-{}", self.uid);
        let _ = std::fs::remove_dir_all(&runtime);
        for n in 1..10 {
            let _ = std::fs::remove_dir_all(format!("{runtime}.{n}"));
        }
    }
}

/// Cuts the image's largest pages file short and writes the manifest again over the damage
/// (which it would otherwise name before CRIU runs): CRIU then never finishes restoring it.
pub fn cut_pages_short(image: &Path) -> PathBuf {
    let pages = std::fs::read_dir(image)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pages-")
        })
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(4096)
        .unwrap();
    crac_shim::image::manifest::write(image).unwrap();
    pages
}

/// The CRIU restoring below `p`, once it runs.
pub fn criu_restore_below(p: &Proc) -> u32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = p.descendants().into_iter().find(|d| {
            std::fs::read_to_string(format!("/proc/{d}/cmdline"))
                .is_ok_and(|c| c.contains("criu") && c.contains("restore"))
        });
        if let Some(c) = found {
            return c;
        }
        assert!(Instant::now() < deadline, "no CRIU seen");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A 3 MiB native library built with gcc (the test's own), or None without gcc.
pub fn native_library(tmp: &TempDir) -> Option<PathBuf> {
    let src = tmp.join("big.c");
    std::fs::write(
        &src,
        "__attribute__((used)) static const char pad[3 << 20] = {1};\nint crac_shim_test_answer(void) { return 41 + pad[0]; }\n",
    )
    .unwrap();
    let lib = tmp.join("libbig.so");
    let built = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    built.then_some(lib)
}

/// The Files program (`spec`: `write=PATH`, `append=PATH`, `rewrite=PATH`) checkpointable, the
/// JVM's temp directory elsewhere, with the resource-policy `rules` written to a file (none:
/// no policy).
pub fn start_files(tmp: &TempDir, image: &Path, rules: Option<&str>, spec: &str) -> Proc {
    let mut cmd = crac_java();
    if let Some(rules) = rules {
        let file = tmp.join("policy.yaml");
        std::fs::write(&file, rules).unwrap();
        cmd.arg(format!("-Djdk.crac.resource-policies={}", file.display()));
    }
    separate_temp_dir(&mut cmd, tmp);
    start_checkpointable_with(cmd, image, "Files", &[spec])
}

/// Whether the CRIU next to crac-java has crac-shim's patch for `feature`.
pub fn our_criu_has(feature: &str) -> bool {
    Command::new(bin_dir().join("criu"))
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains(&format!("crac-shim-feature: {feature}\n"))
        })
}

/// A C program of tests/native dumped and restored by the CRIU next to crac-java alone (no
/// JVM, no launcher): what crac-shim's patches to CRIU do to a process. The program gets two
/// paths: it prints "ready" when it may be dumped, waits after the restore until the first
/// exists, then writes what it found to the second.
pub struct NativeRun {
    pub tmp: TempDir,
    pub restored: bool,
    /// What the restored program wrote (empty if it did not within [`TIMEOUT`]).
    pub result: String,
    pub restore_log: PathBuf,
}

/// Builds tests/native/NAME.c with gcc (None: gcc is missing), runs, dumps and restores it
/// (with `restore_env` for CRIU), waits for its result (once it holds `last`), and ends it.
pub fn native_dump_restore(
    name: &str,
    restore_env: &[(&str, &str)],
    last: &str,
) -> Option<NativeRun> {
    use std::os::unix::process::CommandExt;

    let tmp = TempDir::new(&format!("native-{name}"));
    let program = tmp.join(name);
    let built = Command::new("gcc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&program)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/native/{name}.c")))
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        return None;
    }
    let go = tmp.join("go");
    let result = tmp.join("result");
    let image = tmp.join("img");
    std::fs::create_dir(&image).unwrap();
    let out = std::fs::File::create(tmp.join("out")).unwrap();
    let mut cmd = Command::new(&program);
    cmd.arg(&go)
        .arg(&result)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // SAFETY: setsid is async-signal-safe: the program leads its own session, as CRIU wants
    // of a tree it dumps without --shell-job.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(tmp.join("out"))
        .unwrap()
        .contains("ready")
    {
        if Instant::now() > deadline {
            kill_pid(pid);
            let _ = child.wait();
            panic!("tests/native/{name}.c did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let criu = bin_dir().join("criu");
    let dump = Command::new(&criu)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&image)
        .args(["-o", "dump.log", "-v4"])
        .status()
        .unwrap();
    if !dump.success() {
        kill_pid(pid);
        let _ = child.wait();
        panic!("criu dump failed: see {}", image.join("dump.log").display());
    }
    let _ = child.wait();

    std::fs::write(&go, "").unwrap();
    let restore = Command::new(&criu)
        .envs(restore_env.iter().copied())
        .args(["restore", "-d", "-D"])
        .arg(&image)
        .args(["-o", "restore.log", "-v4"])
        .status()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let text = loop {
        let text = std::fs::read_to_string(&result).unwrap_or_default();
        if text.contains(last) || !restore.success() || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The restored program has the dumped one's pid.
    kill_pid(pid);
    wait_gone(pid);
    Some(NativeRun {
        restored: restore.success(),
        result: text,
        restore_log: image.join("restore.log"),
        tmp,
    })
}
