//! `crac-java -XX:CRaCRestoreFrom=DIR`: run CRIU on the image and become the program's parent.

use crate::criu::{self, Criu};
use crate::image::{self, Image};
use crate::paths;
use crate::supervise::{self, Event, Exit};
use anyhow::{bail, Context, Result};
use crac_shim_proto::{kind, Message};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod environment;
pub mod in_place;
use environment::check_environment;

/// What the restored JVM is told besides its new pid: CRaC's restore-time inputs.
#[derive(Debug, Default)]
pub struct Handover {
    /// `-Dname=value` from the restore command line.
    pub properties: Vec<String>,
    /// A main class and its arguments after the options: run once afterRestore is done.
    pub new_main: Vec<String>,
    /// `-XX:CRaCCheckpointTo` given at restore: where the restored JVM's next checkpoint goes.
    pub checkpoint_to: Option<PathBuf>,
    /// `-XX:±CRaCResetStartTime` given at restore (otherwise the checkpointed JVM's setting).
    pub reset_start_time: Option<bool>,
}

impl Handover {
    /// The greeting's fields for what the restore command line hands over, and the restore's
    /// start (`started`, on the wall clock through its age).
    pub fn push_into(&self, m: &mut Message, started: Instant) {
        let took = started.elapsed();
        let restore_time = std::time::SystemTime::now()
            .checked_sub(took)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        m.push("restore_time", restore_time);
        m.push("restore_ms", took.as_millis());
        for p in &self.properties {
            m.push("prop", p);
        }
        for a in &self.new_main {
            m.push("new_main", a);
        }
        if let Some(dir) = &self.checkpoint_to {
            m.push("checkpoint_to", dir.to_string_lossy());
        }
        if let Some(reset) = self.reset_start_time {
            m.push("reset_start_time", reset);
        }
    }
}

pub struct Request {
    pub dir: PathBuf,
    pub checks: image::Checks,
    pub handover: Handover,
    pub criu: Criu,
    pub criu_args: Vec<String>,
    /// Print CRIU's command line on stderr (CRaCEngineOptions print_command).
    pub print_command: bool,
    /// Let the JVM run before its memory is back (CRaCEngineOptions lazy_pages).
    pub lazy_pages: bool,
    /// CRaCEngineOptions map_pages, if given (`image::pages`).
    pub map_pages: Option<bool>,
}

/// How long CRIU may take to restore (CRAC_SHIM_RESTORE_TIMEOUT seconds, default 300).
fn restore_timeout() -> Duration {
    let secs = std::env::var("CRAC_SHIM_RESTORE_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// How long to wait for zombies of the checkpointed tree to be reaped. A parent reaps in
/// milliseconds; the JVM's children, orphaned by the checkpoint, go to init, which in some
/// sandboxes reaps only every second or two. As root a restore needs no wait: a new PID
/// namespace has every pid free. Without root that is the only way.
fn zombie_wait() -> Duration {
    if criu::rootless() {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(250)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum IdState {
    Free,
    Zombie,
    Taken,
}

fn id_state(id: u32) -> IdState {
    match supervise::process_state(id) {
        None => IdState::Free,
        Some('Z' | 'X') => IdState::Zombie,
        Some(_) => IdState::Taken,
    }
}

/// Whether the image's pids are all free here, waiting a little for zombies to be reaped.
fn needs_new_pid_namespace(image: &Image) -> bool {
    let deadline = Instant::now() + zombie_wait();
    loop {
        let states: Vec<IdState> = image.ids.iter().map(|id| id_state(*id)).collect();
        if states.contains(&IdState::Taken) {
            return true;
        }
        if !states.contains(&IdState::Zombie) {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn run(req: Request) -> Result<Exit> {
    let started = Instant::now();
    crate::timing::mark("launcher");
    // The terminal as we found it, whatever the program does to it (put back on return).
    let _terminal = crate::terminal::Saved::of(0);
    // What every restore needs, before anything else; what this image needs once it is read.
    crate::privilege::check(
        &req.criu,
        crate::privilege::Operation::Restore {
            tcp_established: false,
            new_pid_namespace: false,
        },
    )?;
    let image = image::open(&req.dir, &req.checks)?;
    // Held until the copy ends (this process stays its parent): taken before the bind check,
    // so that of two restores racing for one address exactly one gets past both.
    let _claims = crate::claims::take(&paths::runtime_dir(), &image.meta.listens)?;
    check_environment(&image)?;
    let signals = supervise::take_over_signals();
    let private_pids = needs_new_pid_namespace(&image);
    crate::privilege::check(&req.criu, restore_operation(&image, private_pids))?;
    if private_pids && criu::rootless() {
        bail!(
            "pid {} of the image is in use, and without root the restore cannot move to a new PID namespace; end that process (or restore as root)",
            image.meta.pid
        );
    }
    match attempt(&req, &image, &signals, started, private_pids) {
        // A pid can stay allocated for a moment after its process vanished from /proc.
        Err(e)
            if !private_pids && !criu::rootless() && e.downcast_ref::<PidCollision>().is_some() =>
        {
            attempt(&req, &image, &signals, started, true)
        }
        other => other,
    }
}

/// What CRIU will do for this image, for the privilege it needs.
pub fn restore_operation(image: &Image, new_pid_namespace: bool) -> crate::privilege::Operation {
    crate::privilege::Operation::Restore {
        tcp_established: image
            .meta
            .restore_args
            .iter()
            .any(|a| a == "--tcp-established"),
        new_pid_namespace,
    }
}

/// Whether the restored copy already runs on its own (CRIU resumed it and is on its way out):
/// a signal then is the copy's, delivered once CRIU is reaped.
fn copy_runs(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let untraced = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .is_some_and(|t| t.trim() == "0");
    let not_criu = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|e| {
            e.file_name()
                .map(|n| !n.to_string_lossy().starts_with("criu"))
        })
        .unwrap_or(false);
    untraced
        && not_criu
        && !matches!(
            supervise::process_state(pid),
            None | Some('t' | 'T' | 'Z' | 'X')
        )
}

/// Signals that end a restore still under way (the program is not running yet to get them).
const ENDS_A_RESTORE: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// How long CRIU may sit after logging an error before it counts as stuck: long enough for
/// it to clean up and exit by itself, which it does after any error it can recover from.
const STUCK_AFTER_ERROR: Duration = Duration::from_secs(3);

/// Asks crac-shim's CRIU (`threads-untraced`) to trace only each task's leader back to the
/// program, the other threads returning by themselves (4000 threads: 368 ms instead of 654).
const UNTRACED_THREADS_ENV: &str = "CRAC_SHIM_UNTRACED_THREADS";

/// Whether the copy's threads go back to the program untraced, and why (for print_command).
/// Not when the copy would come back in the background of a terminal: its threads run before
/// CRIU is done with the leader, and one reading the terminal from the background (SIGTTIN)
/// would stop them all, one still inside CRIU's restorer among them, with CRIU waiting for it.
/// A copy that joins our process group (`joins_our_group`) is in the foreground from the start
/// when we are.
fn untraced_threads(criu: &crate::criu::Criu, joins_our_group: bool) -> (bool, &'static str) {
    if !criu.has_feature("threads-untraced") {
        return (
            false,
            "every thread traced out of the restore (this CRIU lacks threads-untraced)",
        );
    }
    match crate::terminal::stdio_foreground() {
        Some(true) if !joins_our_group => (
            false,
            "every thread traced out of the restore (the copy comes back to a terminal outside our process group)",
        ),
        Some(false) => (
            false,
            "every thread traced out of the restore (the copy would read the terminal from the background)",
        ),
        _ => (
            true,
            "only each process's leader traced out of the restore, its other threads go back untraced",
        ),
    }
}

const JOIN_PGRP_ENV: &str = "CRAC_SHIM_JOIN_PGRP";

/// Watches CRIU's restore log for an error after which nothing more happens.
struct StallWatch {
    log: PathBuf,
    len: u64,
    since: Instant,
}

impl StallWatch {
    fn new(log: PathBuf) -> StallWatch {
        StallWatch {
            log,
            len: 0,
            since: Instant::now(),
        }
    }

    /// CRIU's error line, once the log has had one and not grown for `STUCK_AFTER_ERROR`.
    fn stuck(&mut self) -> Option<String> {
        let len = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        if len != self.len {
            self.len = len;
            self.since = Instant::now();
            return None;
        }
        if self.since.elapsed() < STUCK_AFTER_ERROR {
            return None;
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        criu::first_error(&text)
    }
}

/// CRIU could not give the restored JVM its pid: it is still in use.
#[derive(Debug)]
struct PidCollision;

impl std::fmt::Display for PidCollision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a pid of the image is in use")
    }
}

impl std::error::Error for PidCollision {}

fn attempt(
    req: &Request,
    image: &Image,
    signals: &libc::sigset_t,
    started: Instant,
    private_pids: bool,
) -> Result<Exit> {
    let (work, _work_lock) = paths::scratch_dir("restore")?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("cannot create the restore channel")?;
    // CRIU must inherit its end.
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) };
    // CRIU's --shell-job handling takes fds 0-2 for itself, so our stdio goes in as copies.
    let stdio = stdio_copies()?;
    let mut inherit: Vec<(i32, String)> = stdio
        .iter()
        .zip(&image.meta.stdio)
        .map(|(fd, key)| (fd.as_raw_fd(), key.clone()))
        .collect();
    inherit.push((theirs.as_raw_fd(), image.meta.channel.clone()));
    // Files that may have changed since (allowChanges), opened here through their walked path
    // and handed in: CRIU would refuse their new size. Held until CRIU is done.
    let handed = environment::open_inherited_files(image)?;
    for (fd, path) in &handed {
        inherit.push((fd.as_raw_fd(), path.trim_start_matches('/').to_string()));
    }
    let mut extra = image.meta.restore_args.clone();
    // A server often holds TCP sockets its peers already closed (not yet reaped): CRIU wants
    // to be told what to do with them; closed they were, closed they come back. Connections
    // a policy keeps bring --tcp-established instead.
    if !extra.iter().any(|a| a == "--tcp-established") {
        extra.push("--tcp-close".into());
    }
    if req.lazy_pages {
        extra.push("--lazy-pages".into());
    }
    extra.extend(req.criu_args.iter().cloned());
    let args = criu::restore_args(&image.held.fs(), &work, "restore.log", &inherit, &extra);
    let pages = image::pages::choose(
        &req.criu,
        req.map_pages,
        req.lazy_pages,
        &req.criu_args,
        &image.meta.allocator,
    );
    if req.print_command {
        eprintln!("crac-java: {}", req.criu.mode());
        eprintln!("crac-java: {}", pages.describe());
        eprintln!("crac-java: {} {}", req.criu.path.display(), args.join(" "));
    }

    let stdio_flags = StdioFlags::save(&stdio);
    let restored = Restored {
        image,
        work: &work,
        handover: &req.handover,
        channel: ours,
        started,
        stdio_flags,
        lazy_pages: req.lazy_pages,
        pages,
        print_command: req.print_command,
    };
    let exit = if private_pids {
        in_new_pid_namespace(&req.criu, &args, theirs, signals, restored)?
    } else {
        restored.supervise_here(&req.criu, &args, theirs, signals, None)?
    };
    drop(stdio);
    drop(handed);
    let _ = std::fs::remove_dir_all(&work);
    Ok(exit)
}

/// Inheritable copies of our stdin, stdout and stderr for CRIU to hand to the restored JVM.
/// A closed one is replaced by /dev/null, as the JVM would otherwise get nothing there.
fn stdio_copies() -> Result<Vec<OwnedFd>> {
    (0..3)
        .map(|fd| {
            // SAFETY: F_DUPFD on a possibly closed descriptor just fails with EBADF.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD, 3) };
            let copy = if copy >= 0 {
                // SAFETY: fcntl gave us a new descriptor that nothing else owns.
                unsafe { OwnedFd::from_raw_fd(copy) }
            } else {
                let null = std::fs::OpenOptions::new()
                    .read(fd == 0)
                    .write(fd != 0)
                    .open("/dev/null")?;
                OwnedFd::from(null)
            };
            // SAFETY: clearing FD_CLOEXEC on a descriptor we own, so CRIU inherits it.
            unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_SETFD, 0) };
            Ok(copy)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot pass stdio on to the restored JVM")
}

struct Restored<'a> {
    image: &'a Image,
    work: &'a Path,
    handover: &'a Handover,
    channel: OwnedFd,
    started: Instant,
    stdio_flags: StdioFlags,
    lazy_pages: bool,
    pages: image::pages::PageMode,
    print_command: bool,
}

/// The status flags of our stdio: CRIU sets those of the descriptors it replaces on the open
/// files it hands in (shared with us and whoever started us), so they are put back after.
struct StdioFlags(Vec<(OwnedFd, libc::c_int)>);

impl StdioFlags {
    fn save(fds: &[OwnedFd]) -> StdioFlags {
        StdioFlags(
            fds.iter()
                .filter_map(|fd| {
                    // SAFETY: F_GETFL on a descriptor we own.
                    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
                    Some((fd.try_clone().ok()?, flags)).filter(|_| flags >= 0)
                })
                .collect(),
        )
    }

    fn restore(&self) {
        for (fd, flags) in &self.0 {
            // SAFETY: F_SETFL on a descriptor we own, with flags it had.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, *flags) };
        }
    }
}

impl Restored<'_> {
    fn failure(&self, criu_exit: Exit) -> anyhow::Error {
        let log_path = self.work.join("restore.log");
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let why = match criu_exit {
            Exit::Signal(s) => criu::killed_by(s),
            Exit::Code(c) => {
                criu::first_error(&log).unwrap_or_else(|| format!("criu exited with code {c}"))
            }
        };
        if why.starts_with("Can't fork for") && why.ends_with("File exists") {
            // Tried again in a new PID namespace: this attempt's log is of no use to anyone
            // (concurrent replicas would otherwise leave one behind in the runtime directory
            // at each collision).
            let _ = std::fs::remove_dir_all(self.work);
            return anyhow::Error::new(PidCollision);
        }
        anyhow::anyhow!(
            "CRIU restore of {} failed: {why} (log: {}; the image is unchanged)",
            self.image.dir.display(),
            log_path.display()
        )
    }

    /// Tells the restored agent who it is now and what changed.
    /// `parent` is the JVM's parent as the JVM sees it (we, or its namespace's init).
    fn greet(&self, pid: u32, parent: u32) {
        let mut m = Message::new(kind::RESTORED)
            .with("pid", pid)
            .with("parent", parent);
        self.handover.push_into(&mut m, self.started);
        // The restored JVM's System.getenv() becomes ours (bounded by the message size).
        let mut budget = crac_shim_proto::MAX_MESSAGE / 2;
        for (k, v) in std::env::vars_os() {
            let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
                continue;
            };
            if k.is_empty() || k.contains('=') {
                continue;
            }
            budget = budget.saturating_sub(k.len() + v.len() + 6);
            if budget == 0 {
                eprintln!("crac-java: warning: the environment is too large to hand to the restored JVM; it keeps the checkpointed one");
                m.fields.retain(|(key, _)| key != "env");
                break;
            }
            m.push("env", format!("{k}={v}"));
        }
        crate::timing::mark("greeted");
        if let Err(e) =
            nix::sys::socket::send(self.channel.as_raw_fd(), &m.encode(), MsgFlags::empty())
        {
            eprintln!("crac-java: cannot reach the restored JVM's agent: {e}");
        }
        if crate::timing::enabled() {
            let line = format!(
                "crac-java: restored pid {pid} in {:.1} ms\n",
                self.started.elapsed().as_secs_f64() * 1000.0
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    /// Starts CRIU's lazy-pages daemon and waits until it listens. Its life is not tied to
    /// ours (no PDEATHSIG): a JVM whose pages stopped arriving would read zeros; it ends by
    /// itself once every page is in.
    fn start_lazy_pages(&self, criu: &Criu) -> Result<()> {
        let (mut ready, status) = std::io::pipe().context("cannot create a pipe")?;
        let status_fd = status.as_raw_fd();
        // SAFETY: clearing FD_CLOEXEC on a descriptor we own, for the daemon to inherit.
        unsafe { libc::fcntl(status_fd, libc::F_SETFD, 0) };
        let args = criu::lazy_pages_args(&self.image.held.fs(), self.work, status_fd);
        if self.print_command {
            eprintln!("crac-java: {} {}", criu.path.display(), args.join(" "));
        }
        let mut daemon = Command::new(&criu.path);
        self.image.held.pass_to(&mut daemon);
        // Held until the daemon is up: it has read the cache by then.
        let _kdat = crate::kdat::apply(&mut daemon, criu, &args);
        daemon
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", criu.path.display()))?;
        drop(status);
        let mut byte = [0u8; 1];
        if !matches!(ready.read(&mut byte), Ok(1)) {
            bail!(
                "CRIU's lazy-pages daemon did not start (log: {}; the image is unchanged); restore without lazy_pages",
                self.work.join("lazy-pages.log").display()
            );
        }
        Ok(())
    }

    /// Runs CRIU as our child; the restored JVM becomes our child too (`-S`). `report` is the
    /// pipe to the outer launcher when we are a PID namespace's init.
    fn supervise_here(
        &self,
        criu: &Criu,
        args: &[String],
        theirs: OwnedFd,
        signals: &libc::sigset_t,
        mut report: Option<std::fs::File>,
    ) -> Result<Exit> {
        if self.lazy_pages {
            self.start_lazy_pages(criu)?;
        }
        // A restore in this PID namespace has no init to take it down with us: a guard does.
        // (As a namespace's init we need none: the namespace ends with us.)
        let mut guard = (report.is_none() && std::process::id() != 1).then(|| {
            crate::guard::Guard::start(&self.image.ids, &self.image.meta.java_home, self.work)
        });
        let mut command = Command::new(&criu.path);
        let mut kdat = Some(crate::kdat::apply(&mut command, criu, args));
        // As in a CRaC JDK, the copy's clocks go on from the checkpoint plus the wall-clock
        // time that passed (crac-shim's CRIU: its time namespace gets the gap; never a step
        // back): sleeps and timed waits pending at the checkpoint end once their time is over.
        if criu.has_feature("timens-gap") && self.image.meta.frozen_at_ns > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let gap = now.saturating_sub(self.image.meta.frozen_at_ns);
            command.env("CRAC_SHIM_TIMENS_GAP_NS", gap.to_string());
        }
        if self.pages == image::pages::PageMode::Mapped {
            command.env(image::pages::CRIU_ENV, "1");
        }
        // In our PID namespace the copy ends up in our process group anyway (join_our_group):
        // crac-shim's CRIU can put it there as it restores it. Not if our group's id is the
        // copy's pid (CRIU refuses an id that is also in the image).
        let joins_our_group = report.is_none()
            && criu.has_feature("join-pgrp")
            && nix::unistd::getpgrp().as_raw() != self.image.meta.pid as libc::pid_t;
        if joins_our_group {
            command.env(JOIN_PGRP_ENV, "1");
        }
        let (untraced, threads_mode) = untraced_threads(criu, joins_our_group);
        if untraced {
            command.env(UNTRACED_THREADS_ENV, "1");
        }
        if self.print_command {
            eprintln!("crac-java: threads: {threads_mode}");
        }
        command.args(args).stdout(Stdio::inherit());
        self.image.held.pass_to(&mut command);
        // SAFETY: prctl, getsid and setsid are async-signal-safe; CRIU should not outlive us
        // (a killed launcher must not leave a restore half done), and the restored JVM joins
        // CRIU's session (--shell-job), which must be one the JVM can see to be dumped again.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                supervise::ensure_visible_session();
                Ok(())
            });
        }
        crate::timing::mark("criu");
        let criu_child = command
            .spawn()
            .with_context(|| format!("cannot run {}", criu.path.display()))?;
        drop(theirs);
        let criu_pid = criu_child.id() as libc::pid_t;
        if let Some(g) = guard.as_mut() {
            g.watch(criu_pid as u32);
        }
        let app_pid = self.image.meta.pid as libc::pid_t;
        let mut app_running = false;
        let mut pending: Vec<libc::c_int> = Vec::new();
        let deadline = Instant::now() + restore_timeout();
        let mut stall = StallWatch::new(self.work.join("restore.log"));
        loop {
            // While CRIU works, looked at a few times a second: a CRIU stuck after an error of
            // its own (a restorer that cannot give capabilities back waits forever) is ended.
            let wait = (!app_running).then(|| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200))
            });
            if !app_running {
                if let Some(error) = stall.stuck() {
                    supervise::end_everything_below_us();
                    bail!(
                        "CRIU restore of {} stopped after an error of its own: {error} (log: {}; the image is unchanged)",
                        self.image.dir.display(),
                        self.work.join("restore.log").display()
                    );
                }
            }
            match supervise::next_event(signals, wait) {
                Event::Timeout if !app_running && Instant::now() >= deadline => {
                    // CRIU hangs on some damaged images: end it and what it started (the
                    // half-restored root is our child, -S).
                    supervise::end_everything_below_us();
                    bail!(
                        "CRIU did not finish restoring {} within {} s (damaged image?); stopped it (log: {}; the image is unchanged)",
                        self.image.dir.display(),
                        restore_timeout().as_secs(),
                        self.work.join("restore.log").display()
                    );
                }
                Event::Timeout => {}
                Event::Forward {
                    signal,
                    from_terminal,
                } => {
                    if app_running {
                        if !from_terminal {
                            supervise::send(app_pid, signal);
                        }
                    } else if ENDS_A_RESTORE.contains(&signal)
                        && !copy_runs(app_pid as u32)
                        && !matches!(supervise::process_state(criu_pid as u32), None | Some('Z'))
                    {
                        // Asked to end while the copy is not yet running (a container's
                        // stop, Ctrl-C): the restore ends at once, whatever CRIU is doing,
                        // and nothing of it is left.
                        supervise::end_everything_below_us();
                        let exit = Exit::Signal(signal);
                        if let Some(r) = report.as_mut() {
                            r.write_all(format!("exit {}\n", exit.to_wait_status()).as_bytes())?;
                        }
                        return Ok(exit);
                    } else {
                        pending.push(signal);
                    }
                }
                Event::Child => {
                    for (pid, exit) in supervise::reap() {
                        if pid == criu_pid {
                            crate::timing::mark("criu-exited");
                            let kdat = kdat.take();
                            if exit != Exit::Code(0) {
                                // With -S a restored root may already be our child: a failed
                                // (or killed) CRIU must not leave it running.
                                supervise::end_everything_below_us();
                                return Err(self.failure(exit));
                            }
                            self.stdio_flags.restore();
                            // The log only matters when CRIU fails (and the lazy-pages
                            // daemon still works in there).
                            if !self.lazy_pages {
                                let _ = std::fs::remove_dir_all(self.work);
                            }
                            app_running = true;
                            if let Some(g) = guard.as_mut() {
                                g.restored();
                            }
                            if report.is_none() {
                                // In our PID namespace the JVM is our child (-S).
                                crate::terminal::join_our_group(app_pid as u32);
                            }
                            if let Some(modes) = &self.image.meta.termios {
                                crate::terminal::apply(0, modes);
                            }
                            match report.as_mut() {
                                Some(r) => {
                                    r.write_all(format!("restored {app_pid}\n").as_bytes())?;
                                }
                                None => self.greet(app_pid as u32, std::process::id()),
                            }
                            // After the greeting: making a missing cache must not delay it.
                            if let Some(k) = kdat {
                                k.release();
                            }
                            for s in pending.drain(..) {
                                supervise::send(app_pid, s);
                            }
                        } else if pid == app_pid && app_running {
                            supervise::finish_dump_helpers_as_init();
                            if let Some(r) = report.as_mut() {
                                r.write_all(
                                    format!("exit {}\n", exit.to_wait_status()).as_bytes(),
                                )?;
                                // The namespace ends with its init (a dump helper the program
                                // started has finished, above): what the program left running
                                // ends with it, as in any PID namespace. Waiting for it would
                                // keep the copy's exit from its caller for as long as it runs.
                            }
                            return Ok(exit);
                        }
                    }
                }
            }
        }
    }
}

/// Restores in a new PID namespace (the checkpointed pids are taken here). Our child is the
/// namespace's init: it runs CRIU and stays the program's parent; we forward signals to it
/// and learn from it how things went.
fn in_new_pid_namespace(
    criu: &Criu,
    args: &[String],
    theirs: OwnedFd,
    signals: &libc::sigset_t,
    restored: Restored<'_>,
) -> Result<Exit> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).context(
        "cannot create a PID namespace for the restore (the checkpointed pid is in use)",
    )?;
    let (mut from_init, to_outer) = std::io::pipe().context("cannot create a pipe")?;
    // SAFETY: we are single-threaded (the launcher starts no threads), so the child may run
    // arbitrary code.
    let child = unsafe { libc::fork() };
    if child < 0 {
        bail!("cannot fork: {}", std::io::Error::last_os_error());
    }
    if child == 0 {
        // The namespace's init dies with us, and the kernel then ends everything in the
        // namespace: CRIU, a half-restored JVM, the restored JVM. (Our pid is not visible
        // from inside the namespace, where the parent's is 0: whether we already died shows
        // on the pipe, once its read end is ours alone.)
        supervise::die_with_parent(0);
        drop(from_init);
        let mut pfd = libc::pollfd {
            fd: to_outer.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a zero timeout only looks.
        if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 && pfd.revents & libc::POLLERR != 0 {
            std::process::exit(1);
        }
        let lowest = restored.image.ids.iter().min().copied().unwrap_or(0);
        let code = match namespace_init(criu, args, theirs, signals, &restored, to_outer) {
            Ok(_) => 0,
            Err(e) if e.downcast_ref::<PidCollision>().is_some() => {
                eprintln!("crac-java: pid {lowest} of the image is taken even in a new PID namespace, by the restore's own init and CRIU; checkpoint the program again with -XX:CRaCMinPid=128 (the default) or higher");
                1
            }
            Err(e) => {
                eprintln!("crac-java: {e:#}");
                1
            }
        };
        std::process::exit(code);
    }
    drop(to_outer);
    drop(theirs);
    // Messages from init arrive on the pipe; signals keep coming in meanwhile.
    let mut buf = String::new();
    let mut init_result: Option<Exit> = None;
    let mut app_exit: Option<Exit> = None;
    // SAFETY: making the pipe non-blocking on a descriptor we own.
    unsafe { libc::fcntl(from_init.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    loop {
        let mut chunk = [0u8; 256];
        while let Ok(n) = from_init.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        while let Some((line, rest)) = buf.split_once('\n') {
            let line = line.to_string();
            buf = rest.to_string();
            if line.starts_with("restored ") {
                let outer = first_child(child as u32).unwrap_or(restored.image.meta.pid);
                restored.greet(outer, 1);
            } else if let Some(status) = line.strip_prefix("exit ").and_then(|s| s.parse().ok()) {
                app_exit = Some(Exit::from_wait_status(status));
            }
        }
        if let Some(exit) = init_result {
            // Without an exit report, init failed and already said why on stderr.
            return Ok(app_exit.unwrap_or(exit));
        }
        match supervise::next_event(signals, Some(Duration::from_millis(20))) {
            Event::Forward { signal, .. } => supervise::send(child, signal),
            Event::Child => {
                for (pid, exit) in supervise::reap() {
                    if pid == child {
                        init_result = Some(exit);
                    }
                }
            }
            Event::Timeout => {}
        }
    }
}

/// The namespace's init: own mount namespace with a /proc that shows our pids, then CRIU.
fn namespace_init(
    criu: &Criu,
    args: &[String],
    theirs: OwnedFd,
    signals: &libc::sigset_t,
    restored: &Restored<'_>,
    to_outer: std::io::PipeWriter,
) -> Result<Exit> {
    use nix::mount::{mount, MsFlags};
    // The restored JVM joins CRIU's session (--shell-job). A session inside the namespace
    // keeps the copy checkpointable again (CRIU refuses a session leader outside it).
    nix::unistd::setsid().context("cannot start a session in the new PID namespace")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("cannot create a mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("cannot make mounts private")?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("cannot mount /proc for the new PID namespace")?;
    let report = std::fs::File::from(OwnedFd::from(to_outer));
    restored.supervise_here(criu, args, theirs, signals, Some(report))
}

/// The first child of `pid`, as this PID namespace numbers it.
fn first_child(pid: u32) -> Option<u32> {
    supervise::children(pid).first().copied()
}
