//! The libc functions the hooks stand in front of, looked up once with `dlsym(RTLD_NEXT)`.

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

pub static OPEN: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
pub static OPEN64: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
pub static OPEN_2: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
pub static OPEN64_2: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
pub static OPENAT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
pub static OPENAT64: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

const TABLE: [(&AtomicPtr<c_void>, &[u8]); 6] = [
    (&OPEN, b"open\0"),
    (&OPEN64, b"open64\0"),
    (&OPEN_2, b"__open_2\0"),
    (&OPEN64_2, b"__open64_2\0"),
    (&OPENAT, b"openat\0"),
    (&OPENAT64, b"openat64\0"),
];

/// Called once from the loader's constructor, before any other thread exists.
pub fn resolve_all() {
    for (slot, name) in TABLE {
        // SAFETY: `name` is NUL-terminated; RTLD_NEXT finds the next definition after this
        // library, which is libc's. A null result is handled by the raw-syscall fallback.
        let sym = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
        slot.store(sym, Ordering::Release);
    }
}

pub type OpenFn =
    unsafe extern "C" fn(*const libc::c_char, libc::c_int, libc::mode_t) -> libc::c_int;
pub type OpenatFn = unsafe extern "C" fn(
    libc::c_int,
    *const libc::c_char,
    libc::c_int,
    libc::mode_t,
) -> libc::c_int;

/// Calls the real `open`-like function in `slot`, or the raw syscall if it was not found.
///
/// # Safety
/// `path` must be a valid C string (or whatever the caller of the hook passed on, which the
/// real function then judges).
pub unsafe fn open(
    slot: &AtomicPtr<c_void>,
    path: *const libc::c_char,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> libc::c_int {
    let f = slot.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: same contract as open(2); the kernel validates the pointer.
        return unsafe {
            libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, mode) as libc::c_int
        };
    }
    // SAFETY: `f` was returned by dlsym for a function with exactly this signature (the
    // variadic mode argument is passed in the same register as a fixed one on the supported
    // targets, see lib.rs).
    unsafe {
        let f: OpenFn = std::mem::transmute::<*mut c_void, OpenFn>(f);
        f(path, flags, mode)
    }
}

/// Calls the real `openat`-like function in `slot`, or the raw syscall.
///
/// # Safety
/// As for [`open`].
pub unsafe fn openat(
    slot: &AtomicPtr<c_void>,
    dirfd: libc::c_int,
    path: *const libc::c_char,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> libc::c_int {
    let f = slot.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: same contract as openat(2); the kernel validates the pointer.
        return unsafe { libc::syscall(libc::SYS_openat, dirfd, path, flags, mode) as libc::c_int };
    }
    // SAFETY: as in `open`, the symbol has this signature.
    unsafe {
        let f: OpenatFn = std::mem::transmute::<*mut c_void, OpenatFn>(f);
        f(dirfd, path, flags, mode)
    }
}
