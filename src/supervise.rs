//! Being the restored program's parent: forwarding signals and collecting its exit status.

use std::time::Duration;

/// Signals passed on to the restored program (KILL and STOP cannot be caught).
pub const FORWARDED: [libc::c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
    libc::SIGWINCH,
];

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn from_wait_status(status: libc::c_int) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }

    /// A wait status that `from_wait_status` turns back into `self` (to pass it on in a pipe).
    pub fn to_wait_status(self) -> libc::c_int {
        match self {
            Exit::Code(c) => (c & 0xff) << 8,
            Exit::Signal(s) => s & 0x7f,
        }
    }

    /// Ends this process the same way: exit code, or death by the same signal.
    pub fn reproduce(self) -> ! {
        match self {
            Exit::Code(c) => std::process::exit(c),
            Exit::Signal(sig) => {
                // SAFETY: plain libc calls with valid arguments; a core dump of the launcher
                // would be misleading, so the limit is zeroed first.
                unsafe {
                    let zero = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::setrlimit(libc::RLIMIT_CORE, &zero);
                    libc::signal(sig, libc::SIG_DFL);
                    let mut set = std::mem::zeroed::<libc::sigset_t>();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, sig);
                    libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                    libc::raise(sig);
                }
                std::process::exit(128 + sig)
            }
        }
    }
}

extern "C" fn note_signal(_: libc::c_int) {}

/// Blocks the forwarded signals and SIGCHLD so that `next_event` receives them. A real
/// (empty) handler is installed because a PID namespace's init never even queues a signal
/// whose action is the default.
pub fn take_over_signals() -> libc::sigset_t {
    // SAFETY: initializing a local sigset and installing a handler that does nothing.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
            libc::sigaddset(&mut set, sig);
            let mut action = std::mem::zeroed::<libc::sigaction>();
            action.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

pub enum Event {
    /// A child changed state (reap with `reap`).
    Child,
    /// A signal to pass on; `from_terminal` when the kernel sent it (a tty key), which also
    /// reached the program directly if it shares our process group.
    Forward {
        signal: libc::c_int,
        from_terminal: bool,
    },
    Timeout,
}

pub fn next_event(set: &libc::sigset_t, timeout: Option<Duration>) -> Event {
    loop {
        // SAFETY: `set` is initialized; siginfo is written by the kernel.
        let (sig, info) = unsafe {
            let mut info = std::mem::zeroed::<libc::siginfo_t>();
            let sig = match timeout {
                Some(t) => {
                    let ts = libc::timespec {
                        tv_sec: t.as_secs() as libc::time_t,
                        tv_nsec: t.subsec_nanos() as libc::c_long,
                    };
                    libc::sigtimedwait(set, &mut info, &ts)
                }
                None => libc::sigwaitinfo(set, &mut info),
            };
            (sig, info)
        };
        if sig < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => return Event::Timeout,
                _ => continue,
            }
        }
        if sig == libc::SIGCHLD {
            return Event::Child;
        }
        return Event::Forward {
            signal: sig,
            from_terminal: info.si_code == libc::SI_KERNEL,
        };
    }
}

/// Reaps every child that has ended; returns (pid, exit) pairs.
pub fn reap() -> Vec<(libc::pid_t, Exit)> {
    let mut ended = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on any child.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return ended;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            ended.push((pid, Exit::from_wait_status(status)));
        }
    }
}

/// The children of `pid`, of whichever of its threads.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Every process below `pid`, children before grandchildren.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children(p) {
            found.push(c);
            todo.push(c);
        }
    }
    found
}

/// The state letter of `pid` in /proc (R, S, Z, ...), or None when there is no such process.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Kills every process below us and reaps our children: nothing of a failed restore may
/// go on running.
pub fn end_everything_below_us() {
    for p in descendants(std::process::id()) {
        send(p as libc::pid_t, libc::SIGKILL);
    }
    reap_all_blocking();
}

/// Makes this (just forked) process die with its parent, as `java` dies with its pid: SIGKILL
/// when the parent ends, and at once if it already has (`parent` is its pid as we see it).
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl, getppid and kill are async-signal-safe and touch no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Waits for every remaining child to end.
pub fn reap_all_blocking() {
    loop {
        let mut status = 0;
        // SAFETY: blocking waitpid on any child.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

pub fn send(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// CRIU refuses to dump a process whose session leader lies outside its PID namespace:
/// getsid() answers 0 there, as for everything a container's init or a CI runner starts
/// without setsid. Such a process has no session (nor terminal) worth keeping, so it gets
/// a session of its own before anything checkpointable runs in it.
pub fn session_is_invisible() -> bool {
    nix::unistd::getsid(None).is_ok_and(|sid| sid.as_raw() == 0)
}

/// Leads a new session when ours is invisible (see [`session_is_invisible`]); false when that
/// was needed but impossible (we lead a process group, so setsid fails).
pub fn ensure_visible_session() -> bool {
    !session_is_invisible() || nix::unistd::setsid().is_ok()
}

/// As a PID namespace's init (a container's entry point, starting or restoring the JVM) we
/// inherit the dump helper once CRIU has ended the JVM, and everything in the namespace dies
/// with us: the helper still has to put the new image in place and answer crac-jcmd, and a
/// crac-jcmd inside the namespace to print that. Nothing else is waited for.
pub fn finish_dump_helpers_as_init() {
    if std::process::id() != 1 {
        return;
    }
    let is_helper = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .nth(1)
                .is_some_and(|a| a == crac_shim_proto::HELPER_ARG.as_bytes())
        })
    };
    while let Some(helper) = children(1).into_iter().find(is_helper) {
        let mut status = 0;
        // SAFETY: a blocking wait for one child of ours.
        unsafe { libc::waitpid(helper as libc::pid_t, &mut status, 0) };
    }
    {
        // A crac-jcmd run inside the container (docker exec) still has to read and print its
        // answer, and ending the namespace would kill it first: wait for every crac-jcmd in
        // the namespace to finish, however slow (each has a deadline of its own), and for
        // nothing else. (Not only after waiting for a helper: one that is already a zombie
        // shows no command line, and its crac-jcmd may not have printed yet.)
        let crac_jcmd = |pid: u32| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "crac-jcmd"))
                && process_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
        };
        let waiting = || {
            std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .any(|pid| pid != 1 && crac_jcmd(pid))
        };
        while waiting() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_round_trips() {
        for e in [
            Exit::Code(0),
            Exit::Code(3),
            Exit::Code(255),
            Exit::Signal(9),
            Exit::Signal(15),
        ] {
            assert_eq!(Exit::from_wait_status(e.to_wait_status()), e);
        }
    }
}
