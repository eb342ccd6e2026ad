//! A restore must not leave anything behind when the restoring crac-java is killed, even by
//! SIGKILL and even in the middle of CRIU's work, when the half-restored tasks ignore every
//! signal but SIGKILL and their parent is gone. A guard process outlives us for that moment:
//! it holds the read end of a pipe whose write end only we hold, learns the pids to watch
//! (CRIU's, and the image's), and when the pipe reports our end closed without a "done" it
//! SIGKILLs those of them that were born during this restore.
//!
//! After the restore the restored JVM's agent takes over (PR_SET_PDEATHSIG), and a restore in
//! a new PID namespace is covered by the namespace's init dying with us.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Our end of the guard's pipe.
pub struct Guard {
    pipe: Option<std::fs::File>,
}

/// Seconds since boot in clock ticks, as /proc/PID/stat's start time counts.
fn now_ticks() -> u64 {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (secs * hz) as u64
}

/// A process's parent, field 4 of /proc/PID/stat.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process's start time (clock ticks since boot), field 22 of /proc/PID/stat.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

impl Guard {
    /// Starts the guard for a restore that watches `ids` (the image's pids and thread ids),
    /// whose program runs from `java_home`. Call while the launcher is single-threaded (it
    /// forks).
    pub fn start(ids: &[u32], java_home: &str, work: &std::path::Path) -> Guard {
        // CRIU's command line names its work directory, ours alone.
        let marker = format!("{}\0", work.display());
        let since = now_ticks().saturating_sub(1);
        let Ok((read_end, write_end)) = std::io::pipe() else {
            return Guard { pipe: None };
        };
        // SAFETY: the launcher is single-threaded here, so the children may run any code.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Guard { pipe: None };
        }
        if child == 0 {
            drop(write_end);
            // SAFETY: a second fork in the single-threaded child, so that the guard is not
            // our child (nothing of ours waits for it, nothing counts it as ours).
            if unsafe { libc::fork() } != 0 {
                // SAFETY: leaving the intermediate child at once, without running our exit
                // handlers (the parent's buffers are not ours to flush).
                unsafe { libc::_exit(0) };
            }
            watch(OwnedFd::from(read_end), ids, java_home, since, &marker);
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        drop(read_end);
        // The intermediate child exits at once; waiting for it to be scheduled cost up to 4 ms
        // of every restore. Whoever reaps our children reaps it (supervise::reap), and it
        // belongs to no pid anyone waits for.
        Guard {
            pipe: Some(std::fs::File::from(OwnedFd::from(write_end))),
        }
    }

    /// Adds a pid to watch (CRIU's).
    pub fn watch(&mut self, pid: u32) {
        if let Some(p) = self.pipe.as_mut() {
            let _ = writeln!(p, "{pid}");
        }
    }

    /// CRIU has finished: the image's tasks are all there, and the guard notes who they are.
    pub fn restored(&mut self) {
        if let Some(p) = self.pipe.as_mut() {
            let _ = writeln!(p, "restored");
        }
    }

    /// The restore is over (or the JVM's agent has taken over): the guard leaves quietly.
    pub fn release(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = writeln!(p, "done");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // An error return is as good as a normal one: whatever failed was already cleaned up.
        self.release();
    }
}

/// The guard's life: read pids until "done" (leave) or end of file (we died: kill them).
fn watch(pipe: OwnedFd, ids: &[u32], java_home: &str, since: u64, marker: &str) {
    // SAFETY: changing dispositions and closing descriptors in our own, single-threaded
    // process; the terminal's Ctrl-C or a hangup must not end the guard before its moment.
    unsafe {
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        let keep = pipe.as_raw_fd();
        for fd in 0..keep {
            libc::close(fd);
        }
        libc::close_range(keep as u32 + 1, u32::MAX, 0);
    }
    let mut watched: Vec<u32> = ids.to_vec();
    // The image's tasks as they were when CRIU finished: (pid, start time).
    let mut restored: Vec<(u32, u64)> = Vec::new();
    let mut text = Vec::new();
    let mut buf = [0u8; 64];
    // SAFETY: the descriptor is ours; File takes it over.
    let mut file = unsafe { std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(pipe)) };
    loop {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                text.extend_from_slice(&buf[..n]);
                while let Some(end) = text.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = text.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line).trim().to_string();
                    if line == "done" {
                        return;
                    }
                    if line == "restored" {
                        restored = watched
                            .iter()
                            .filter_map(|pid| Some((*pid, start_ticks(*pid)?)))
                            .collect();
                    }
                    if let Ok(pid) = line.parse() {
                        watched.push(pid);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // Our launcher is gone mid-restore. Only processes born since the restore began are
    // ours: an older one holding such a pid is somebody else's. CRIU's own helpers (forked,
    // with its command line, which names our scratch directory) may go on creating the
    // image's tasks for a moment after CRIU died: sweep until nothing of ours shows up.
    //
    // Other restores of the same image may be running (many copies at once): a task with one
    // of the image's pids is ours only if it was orphaned like us, to the reaper that adopted
    // this guard; one whose parent lives (another restore's CRIU or crac-java) is theirs.
    // SAFETY: getppid cannot fail.
    let reaper = unsafe { libc::getppid() } as u32;
    //
    // Pids are recycled, quickly where pid_max is 32768: an image's pid may have been given
    // since to anything else orphaned to the same reaper (another JVM's dump helper, a
    // container's shim). A task is the image's only if it is the very task CRIU restored
    // (same start time), or, while CRIU was still at work, runs the image's JDK.
    let is_image_task = |pid: u32| {
        let start = start_ticks(pid);
        restored.iter().any(|(p, t)| *p == pid && Some(*t) == start)
            || (!java_home.is_empty()
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.starts_with(java_home)))
    };
    let ours = |pid: u32| {
        let orphaned_image_task =
            watched.contains(&pid) && parent(pid) == Some(reaper) && is_image_task(pid);
        let our_criu = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()));
        start_ticks(pid).is_some_and(|t| t >= since) && (orphaned_image_task || our_criu)
    };
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut quiet_since = std::time::Instant::now();
    while std::time::Instant::now() < give_up
        && quiet_since.elapsed() < std::time::Duration::from_millis(500)
    {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            let live = crate::supervise::process_state(pid).is_some_and(|s| s != 'Z' && s != 'X');
            if live && ours(pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                quiet_since = std::time::Instant::now();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
