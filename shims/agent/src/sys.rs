//! Small system helpers for the agent.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// The key CRIU uses for this descriptor's open file (`pipe:[N]`, `socket:[N]`).
pub fn fd_key(fd: BorrowedFd<'_>) -> std::io::Result<String> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
}

/// `dup2` that keeps the target open across exec (dup2 clears FD_CLOEXEC on the target).
pub fn dup_onto(src: BorrowedFd<'_>, target: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table; `src` is a valid open descriptor.
    if unsafe { libc::dup2(src.as_raw_fd(), target) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes everything, retrying on EINTR; errors are ignored because the destination (the
/// JVM's stdout) may legitimately be gone.
pub fn write_all_raw(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Copies whatever is buffered in the pipe `from` to `to` without blocking.
pub fn drain_pipe(from: &OwnedFd, to: RawFd) {
    let fd = from.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        write_all_raw(to, &buf[..n as usize]);
    }
}

/// A one-line warning on the JVM's stderr, prefixed like the JVM's own warnings.
pub fn warn(message: &str) {
    write_all_raw(2, format!("crac-shim: {message}\n").as_bytes());
}
