//! The terminal a restored program comes back to, made to behave as if the program had been
//! started there: in the terminal's foreground (our process group, as `java` would be), with
//! the terminal modes it had set at the checkpoint (a REPL's raw mode), and the terminal left
//! as it was found when the program ends.

use std::os::fd::RawFd;

/// A terminal's modes, put back when dropped.
pub struct Saved {
    fd: RawFd,
    modes: libc::termios,
}

impl Saved {
    /// The modes of `fd` if it is a terminal.
    pub fn of(fd: RawFd) -> Option<Saved> {
        modes_of(fd).map(|modes| Saved { fd, modes })
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        // SAFETY: tcsetattr with a termios read from this descriptor; a failure (the
        // terminal gone) changes nothing.
        unsafe { libc::tcsetattr(self.fd, libc::TCSADRAIN, &self.modes) };
    }
}

fn modes_of(fd: RawFd) -> Option<libc::termios> {
    // SAFETY: isatty and tcgetattr only read; termios is plain data, zeroed first.
    unsafe {
        if libc::isatty(fd) != 1 {
            return None;
        }
        let mut t = std::mem::zeroed::<libc::termios>();
        (libc::tcgetattr(fd, &mut t) == 0).then_some(t)
    }
}

/// `fd`'s modes as one line for the image's metadata: the four flag words, then the control
/// characters, in hex.
pub fn record(fd: RawFd) -> Option<String> {
    let t = modes_of(fd)?;
    let cc: String = t.c_cc.iter().map(|c| format!("{c:02x}")).collect();
    Some(format!(
        "{:x},{:x},{:x},{:x},{cc}",
        t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag
    ))
}

/// Applies recorded modes to the terminal `fd` (the speed and the like stay the terminal's).
pub fn apply(fd: RawFd, recorded: &str) -> bool {
    let Some(mut t) = modes_of(fd) else {
        return false;
    };
    let fields: Vec<&str> = recorded.split(',').collect();
    let [i, o, _c, l, cc] = fields.as_slice() else {
        return false;
    };
    let hex = |s: &str| libc::tcflag_t::from_str_radix(s, 16).ok();
    let (Some(i), Some(o), Some(l)) = (hex(i), hex(o), hex(l)) else {
        return false;
    };
    t.c_iflag = i;
    t.c_oflag = o;
    t.c_lflag = l;
    for (slot, pair) in t.c_cc.iter_mut().zip(cc.as_bytes().chunks(2)) {
        if let Some(v) = std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
        {
            *slot = v;
        }
    }
    // SAFETY: tcsetattr with a termios based on this terminal's own.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) == 0 }
}

/// Moves our child `pid` (the restored JVM, which CRIU gave back its old process group) into
/// ours: the group the shell put in the terminal's foreground, which job control (Ctrl-C,
/// Ctrl-Z, `fg`) and reads from the terminal go by, as for `java` started by that shell.
///
/// A thread that was reading the terminal at the checkpoint reads again as soon as CRIU lets
/// the JVM run, before it is ours: from a background group, so the terminal stopped it
/// (SIGTTIN). SIGCONT, sent once it is in the foreground, cancels a stop still pending and
/// resumes one that took effect; the interrupted read starts over.
pub fn join_our_group(pid: u32) {
    // SAFETY: setpgid on our own child; getpgrp cannot fail; SIGCONT to our own child. A
    // refusal leaves it as it was.
    unsafe {
        if libc::setpgid(pid as libc::pid_t, libc::getpgrp()) == 0 {
            libc::kill(pid as libc::pid_t, libc::SIGCONT);
        }
    }
}

/// Whether our process group is in the foreground of the terminals among our stdin, stdout
/// and stderr; None when none of them is a terminal.
pub fn stdio_foreground() -> Option<bool> {
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let terminals: Vec<std::os::fd::BorrowedFd> = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]
        .into_iter()
        .filter(|fd| fd.is_terminal())
        .collect();
    if terminals.is_empty() {
        return None;
    }
    let ours = nix::unistd::getpgrp();
    Some(
        terminals
            .into_iter()
            .all(|fd| nix::unistd::tcgetpgrp(fd).is_ok_and(|fg| fg == ours)),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_modes_are_read_back() {
        // No terminal in a test run: what `record` would write for a made-up one parses.
        let line = format!("500,5,bf,8a3b,{}", "03".repeat(32));
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 5);
        assert_eq!(
            libc::tcflag_t::from_str_radix(fields[3], 16).ok(),
            Some(0x8a3b)
        );
    }
}
