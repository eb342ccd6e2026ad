//! The `open` family, hooked only to move the JVM's perf-data file into a memfd.
//!
//! HotSpot maps `/tmp/hsperfdata_<user>/<pid>` MAP_SHARED. CRIU does not save such a mapping's
//! pages, and the next JVM of the same user deletes the file once the pid is dead, so a restore
//! would fail. A memfd is saved with its contents. The JVM opens the file as the bare pid
//! relative to the directory it `fchdir`ed into (JDK 17 and 25), so the hook compares the name
//! with our pid first (cheap, no syscall) and only then looks at the directory.
//!
//! Fast path rules: no allocation, no locks, no printing. Everything a hook needs was prepared
//! by `arm_perf_redirect` before the JVM started.

use crate::guard::Reentry;
use crate::real;
use libc::{c_char, c_int, mode_t};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// True until the perf file was redirected once.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Set once a perf file went to a memfd (reported in the image metadata).
pub static REDIRECTED: AtomicBool = AtomicBool::new(false);

const PID_MAX_DIGITS: usize = 10;
static PID_DIGITS: [AtomicU8; PID_MAX_DIGITS] = [const { AtomicU8::new(0) }; PID_MAX_DIGITS];
static PID_LEN: AtomicU8 = AtomicU8::new(0);

const PERF_DIR_PREFIX: &[u8] = b"hsperfdata_";

pub fn arm_perf_redirect(pid: u32) {
    let text = pid.to_string();
    for (slot, b) in PID_DIGITS.iter().zip(text.bytes()) {
        slot.store(b, Ordering::Relaxed);
    }
    PID_LEN.store(text.len() as u8, Ordering::Relaxed);
    ARMED.store(true, Ordering::Release);
}

/// Does the NUL-terminated `name` equal our pid's decimal digits?
///
/// # Safety
/// `name` must point to a NUL-terminated string.
unsafe fn is_our_pid(name: *const u8) -> bool {
    let len = PID_LEN.load(Ordering::Relaxed) as usize;
    for (i, digit) in PID_DIGITS.iter().enumerate().take(len) {
        // SAFETY: we stop at the first mismatch, and a NUL never matches a digit, so we never
        // read past the terminator.
        if unsafe { *name.add(i) } != digit.load(Ordering::Relaxed) {
            return false;
        }
    }
    // SAFETY: the first `len` bytes were digits, so index `len` is still within the string.
    unsafe { *name.add(len) == 0 }
}

/// The last path component of the NUL-free byte string `path`.
fn last_component(path: &[u8]) -> &[u8] {
    let trimmed = match path.iter().rposition(|&b| b != b'/') {
        Some(end) => &path[..=end],
        None => return path,
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(slash) => &trimmed[slash + 1..],
        None => trimmed,
    }
}

/// Is the directory `dirfd` (or the cwd) a perf-data directory? Slow path, runs once.
fn dir_is_perf_dir(dirfd: c_int) -> bool {
    let mut buf = [0u8; 4096];
    let len = if dirfd == libc::AT_FDCWD {
        // SAFETY: buf is writable for its full length; getcwd with a buffer does not allocate.
        let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
        if p.is_null() {
            return false;
        }
        buf.iter().position(|&b| b == 0).unwrap_or(0)
    } else {
        let mut link = [0u8; 32];
        let mut w = crate::sys::StackWriter::new(&mut link);
        if !w.push(b"/proc/self/fd/") || !w.push_u64(dirfd as u64) || !w.push(b"\0") {
            return false;
        }
        // SAFETY: link is NUL-terminated; buf is writable for its length.
        let n = unsafe { libc::readlink(link.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        n as usize
    };
    last_component(&buf[..len]).starts_with(PERF_DIR_PREFIX)
}

/// If this open creates our perf-data file, returns a memfd in its place.
///
/// # Safety
/// `path` must be null or a NUL-terminated string.
unsafe fn perf_redirect(dirfd: c_int, path: *const c_char, flags: c_int) -> Option<c_int> {
    if !ARMED.load(Ordering::Acquire) || flags & libc::O_CREAT == 0 || path.is_null() {
        return None;
    }
    let path = path.cast::<u8>();
    // SAFETY: path is a C string (caller contract). Find the last component by scanning.
    let (name, dir_len) = unsafe {
        let mut i = 0usize;
        let mut last_slash = None;
        while *path.add(i) != 0 {
            if *path.add(i) == b'/' {
                last_slash = Some(i);
            }
            i += 1;
        }
        match last_slash {
            Some(s) => (path.add(s + 1), s),
            None => (path, 0),
        }
    };
    // SAFETY: `name` points into the same C string.
    if !unsafe { is_our_pid(name) } {
        return None;
    }
    let _guard = Reentry::enter()?;
    let in_perf_dir = if dir_len == 0 {
        dir_is_perf_dir(dirfd)
    } else {
        // SAFETY: the first dir_len bytes of path are initialized and precede the NUL.
        let dir = unsafe { std::slice::from_raw_parts(path, dir_len) };
        last_component(dir).starts_with(PERF_DIR_PREFIX)
    };
    if !in_perf_dir {
        return None;
    }
    let mut mfd_flags = libc::MFD_ALLOW_SEALING;
    if flags & libc::O_CLOEXEC != 0 {
        mfd_flags |= libc::MFD_CLOEXEC;
    }
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"hsperfdata".as_ptr(), mfd_flags) };
    if fd < 0 {
        // Let the JVM create the real file rather than fail its start-up.
        return None;
    }
    ARMED.store(false, Ordering::Release);
    REDIRECTED.store(true, Ordering::Release);
    Some(fd)
}

macro_rules! open_hook {
    ($name:ident, $slot:path) => {
        /// # Safety
        /// Same contract as the libc function of this name.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
            // SAFETY: path comes from our caller, with open(2)'s contract.
            if let Some(fd) = unsafe { perf_redirect(libc::AT_FDCWD, path, flags) } {
                return fd;
            }
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { real::open(&$slot, path, flags, mode) }
        }
    };
}

macro_rules! openat_hook {
    ($name:ident, $slot:path) => {
        /// # Safety
        /// Same contract as the libc function of this name.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            dirfd: c_int,
            path: *const c_char,
            flags: c_int,
            mode: mode_t,
        ) -> c_int {
            // SAFETY: path comes from our caller, with openat(2)'s contract.
            if let Some(fd) = unsafe { perf_redirect(dirfd, path, flags) } {
                return fd;
            }
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { real::openat(&$slot, dirfd, path, flags, mode) }
        }
    };
}

open_hook!(open, real::OPEN);
open_hook!(open64, real::OPEN64);
openat_hook!(openat, real::OPENAT);
openat_hook!(openat64, real::OPENAT64);

/// Fortified `open` (`_FORTIFY_SOURCE`): never called with O_CREAT, so it has no mode.
///
/// # Safety
/// Same contract as glibc's `__open_2`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments; the mode is ignored without O_CREAT.
    unsafe { real::open(&real::OPEN_2, path, flags, 0) }
}

/// # Safety
/// Same contract as glibc's `__open64_2`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments; the mode is ignored without O_CREAT.
    unsafe { real::open(&real::OPEN64_2, path, flags, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_component_handles_slashes() {
        assert_eq!(last_component(b"/tmp/hsperfdata_root"), b"hsperfdata_root");
        assert_eq!(last_component(b"/tmp/hsperfdata_root/"), b"hsperfdata_root");
        assert_eq!(last_component(b"hsperfdata_x"), b"hsperfdata_x");
        assert_eq!(last_component(b"/"), b"/");
    }

    // One test, because arming is process-wide state.
    #[test]
    fn only_our_perf_file_goes_to_a_memfd() {
        arm_perf_redirect(4242);
        // SAFETY: literals are NUL-terminated.
        unsafe {
            assert!(is_our_pid(c"4242".as_ptr().cast()));
            assert!(!is_our_pid(c"42424".as_ptr().cast()));
            assert!(!is_our_pid(c"424".as_ptr().cast()));
            assert!(!is_our_pid(c"".as_ptr().cast()));
        }

        let pid = std::process::id();
        arm_perf_redirect(pid);
        let base = std::env::temp_dir().join(format!("crac-shim-hooks-{pid}"));
        let dir = base.join("hsperfdata_test");
        std::fs::create_dir_all(&dir).unwrap();
        let other = base.join("elsewhere");
        std::fs::create_dir_all(&other).unwrap();
        let name = std::ffi::CString::new(pid.to_string()).unwrap();
        let open_in = |d: &std::path::Path| {
            let dirfd = std::fs::File::open(d).unwrap();
            // SAFETY: valid directory descriptor and C string.
            unsafe {
                openat64(
                    std::os::fd::AsRawFd::as_raw_fd(&dirfd),
                    name.as_ptr(),
                    libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW,
                    0o600,
                )
            }
        };
        // Not a perf-data directory: a real file.
        let fd = open_in(&other);
        assert!(fd >= 0 && other.join(pid.to_string()).exists());
        // SAFETY: closing what we opened.
        unsafe { libc::close(fd) };
        // The perf-data directory: a memfd, no file.
        let fd = open_in(&dir);
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert!(
            target.to_string_lossy().starts_with("/memfd:hsperfdata"),
            "{target:?}"
        );
        assert!(!dir.join(pid.to_string()).exists());
        // Only once.
        let path =
            std::ffi::CString::new(dir.join(pid.to_string()).to_string_lossy().as_bytes()).unwrap();
        // SAFETY: valid C string.
        let again = unsafe { open64(path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600) };
        assert!(again >= 0 && dir.join(pid.to_string()).exists());
        // SAFETY: valid C strings; closing what we opened.
        unsafe {
            for f in [
                fd,
                again,
                open(c"/dev/null".as_ptr(), libc::O_RDONLY, 0),
                __open_2(c"/dev/null".as_ptr(), 0),
            ] {
                assert!(f >= 0);
                libc::close(f);
            }
            let f = openat(libc::AT_FDCWD, c"/dev/null".as_ptr(), libc::O_RDONLY, 0);
            assert!(f >= 0);
            libc::close(f);
            let f = __open64_2(c"/dev/null".as_ptr(), 0);
            assert!(f >= 0);
            libc::close(f);
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
