//! `-XX:+CRaCResetStartTime` (CRaC's default): a restored copy's `RuntimeMXBean` start time
//! and uptime count from its restore.
//!
//! Both come from HotSpot's management interface (JMM), which libmanagement reaches through
//! one table of function pointers that `JVM_GetManagement` hands out: `GetLongAttribute`
//! answers `JMM_JVM_INIT_DONE_TIME_MS` (the start time) and `JMM_JVM_UPTIME_MS`. The agent puts
//! its own function in that slot, answering those two from the restore and passing every
//! other attribute on. The slot's place depends on the table's version (12 in JMM 3, JDK 14
//! to 20; 13 in JMM 4, JDK 21 on); with any other version, or when the function found there
//! does not answer the process id as GetLongAttribute does, nothing is changed and the copy
//! keeps the first start time. `RuntimeImpl` also keeps the start time it read when it was
//! made: that field is set too. HotSpot's own uptime (GC logs, JFR) is not changed.

use jni_sys::{jint, jlong, jobject, JNIEnv};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

const JMM_VERSION_3: jint = 0x2003_0000;
const JMM_VERSION_4: jint = 0x2004_0000;
const JMM_JVM_INIT_DONE_TIME_MS: jint = 7;
const JMM_JVM_UPTIME_MS: jint = 11;
const JMM_OS_PROCESS_ID: jint = 201;
const GET_VERSION_SLOT: usize = 2;

type GetLongAttribute = unsafe extern "system" fn(*mut JNIEnv, jobject, jint) -> jlong;
type GetVersion = unsafe extern "system" fn(*mut JNIEnv) -> jint;
type GetManagement = unsafe extern "C" fn(jint) -> *mut c_void;

/// HotSpot's own GetLongAttribute, once replaced.
static ORIGINAL: AtomicUsize = AtomicUsize::new(0);
static RESET: AtomicBool = AtomicBool::new(false);
/// The restore's start, on the wall clock (ms since the epoch) and on CLOCK_MONOTONIC (ns).
static START_MS: AtomicI64 = AtomicI64::new(0);
static START_MONO_NS: AtomicI64 = AtomicI64::new(0);

fn monotonic_ns() -> i64 {
    // SAFETY: clock_gettime writes into a local timespec.
    let ts = unsafe {
        let mut ts = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Called by libmanagement on any Java thread: no allocation, no lock.
unsafe extern "system" fn get_long_attribute(env: *mut JNIEnv, obj: jobject, att: jint) -> jlong {
    if RESET.load(Ordering::Acquire) {
        match att {
            JMM_JVM_INIT_DONE_TIME_MS => return START_MS.load(Ordering::Acquire),
            JMM_JVM_UPTIME_MS => {
                return (monotonic_ns() - START_MONO_NS.load(Ordering::Acquire)) / 1_000_000
            }
            _ => {}
        }
    }
    let original = ORIGINAL.load(Ordering::Acquire);
    // SAFETY: ORIGINAL holds HotSpot's GetLongAttribute whenever this function is installed.
    let original: GetLongAttribute =
        unsafe { std::mem::transmute::<usize, GetLongAttribute>(original) };
    // SAFETY: the caller's own arguments, passed on.
    unsafe { original(env, obj, att) }
}

/// After a restore: start time and uptime count from `start_ms` (the restore's start, ms since
/// the epoch), which was `took_ms` ago; or, with `reset` false, from the first start again.
/// `env` is the calling thread's, attached.
pub fn after_restore(env: *mut JNIEnv, reset: bool, start_ms: i64, took_ms: i64) {
    if !reset && ORIGINAL.load(Ordering::Acquire) == 0 {
        return;
    }
    START_MS.store(start_ms, Ordering::Release);
    START_MONO_NS.store(monotonic_ns() - took_ms * 1_000_000, Ordering::Release);
    if reset && !install(env) {
        return;
    }
    RESET.store(reset, Ordering::Release);
    // SAFETY: the installed function answers for the first start when RESET is false.
    let start = unsafe { get_long_attribute(env, std::ptr::null_mut(), JMM_JVM_INIT_DONE_TIME_MS) };
    crate::jni::set_cached_start_time(env, start);
}

/// Puts `get_long_attribute` into HotSpot's JMM table; true when it is there.
fn install(env: *mut JNIEnv) -> bool {
    if ORIGINAL.load(Ordering::Acquire) != 0 {
        return true;
    }
    // SAFETY: dlsym with a NUL-terminated name; libjvm is loaded RTLD_GLOBAL by the launcher.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"JVM_GetManagement".as_ptr()) };
    if sym.is_null() {
        return false;
    }
    // SAFETY: JVM_GetManagement has this signature in every HotSpot.
    let get_management = unsafe { std::mem::transmute::<*mut c_void, GetManagement>(sym) };
    for asked in [JMM_VERSION_4, JMM_VERSION_3] {
        // SAFETY: asks for the table; NULL when the version is not offered.
        let table = unsafe { get_management(asked) }.cast::<usize>();
        if table.is_null() {
            continue;
        }
        // SAFETY: every JMM table starts with two reserved slots and GetVersion.
        let version =
            unsafe { std::mem::transmute::<usize, GetVersion>(*table.add(GET_VERSION_SLOT))(env) };
        let slot = match version {
            JMM_VERSION_3 => 12,
            JMM_VERSION_4 => 13,
            _ => return false,
        };
        // SAFETY: the table of this version has GetLongAttribute in `slot`.
        let entry = unsafe { table.add(slot) };
        // SAFETY: entry is a pointer-aligned slot inside the table.
        let found = unsafe { *entry };
        if found == 0 {
            return false;
        }
        // SAFETY: as GetLongAttribute, asked for an attribute with no side effect.
        let pid = unsafe {
            std::mem::transmute::<usize, GetLongAttribute>(found)(
                env,
                std::ptr::null_mut(),
                JMM_OS_PROCESS_ID,
            )
        };
        // SAFETY: getpid has no preconditions.
        if pid != jlong::from(unsafe { libc::getpid() }) {
            return false;
        }
        ORIGINAL.store(found, Ordering::Release);
        return write_slot(entry, get_long_attribute as GetLongAttribute as usize);
    }
    false
}

/// Writes one pointer into the JMM table, which lies in libjvm's writable data; if a linker
/// made it read-only after relocation, the page is opened for the write and closed again.
fn write_slot(entry: *mut usize, value: usize) -> bool {
    let writable = page_is_writable(entry as usize);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let start = (entry as usize) & !(page - 1);
    if !writable {
        // SAFETY: the page holds the JMM table of this process; it becomes writable for one
        // store and read-only again.
        if unsafe {
            libc::mprotect(
                start as *mut c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } != 0
        {
            ORIGINAL.store(0, Ordering::Release);
            return false;
        }
    }
    // SAFETY: entry is the pointer-aligned slot of the table; readers load it whole.
    unsafe { std::ptr::write_volatile(entry, value) };
    if !writable {
        // SAFETY: as above.
        unsafe { libc::mprotect(start as *mut c_void, page, libc::PROT_READ) };
    }
    true
}

fn page_is_writable(address: usize) -> bool {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            return false;
        };
        let Some((lo, hi)) = range.split_once('-') else {
            return false;
        };
        let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        else {
            return false;
        };
        (lo..hi).contains(&address) && perms.as_bytes().get(1) == Some(&b'w')
    })
}
