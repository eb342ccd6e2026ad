//! Files the JVM maps that a copy may not find again: native libraries that programs unpack
//! to the temp directory and load (Netty, JNA, sqlite-jdbc, snappy-java, zstd-jni, lz4-java),
//! deleted at once or at the JVM's exit (`deleteOnExit`). CRIU keeps a file mapping as the
//! file's path: an image then breaks once its first copy exits and deletes the file, or on any
//! fresh host; a deleted one goes into the image as a "ghost" file that CRIU re-creates on
//! disk at every restore, and two restores at once race for it.
//!
//! So, just before the dump, each such mapping is put on a memfd holding its current bytes,
//! in place (one `mmap(MAP_FIXED)` per mapping, same address, size and protection), as the
//! perf data is: CRIU saves a memfd with its contents, the image needs nothing on disk, and
//! copies restored at once share nothing on disk. The JVM keeps the memfd mappings if it goes
//! on (same bytes, same code).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One mapping of /proc/self/maps.
struct Mapping {
    start: usize,
    end: usize,
    prot: libc::c_int,
    private: bool,
    path: String,
}

fn mappings() -> Vec<Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (a, b) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            let path_at = l.find('/')?;
            let mut prot = 0;
            for (c, p) in perms
                .chars()
                .zip([libc::PROT_READ, libc::PROT_WRITE, libc::PROT_EXEC])
            {
                if c != '-' {
                    prot |= p;
                }
            }
            Some(Mapping {
                start: usize::from_str_radix(a, 16).ok()?,
                end: usize::from_str_radix(b, 16).ok()?,
                prot,
                private: perms.ends_with('p'),
                path: l[path_at..].to_string(),
            })
        })
        .collect()
}

/// Whether a mapped file is one a copy may not find: deleted already, or a temp file the JDK
/// made (its `deleteOnExit` removes it when a copy exits).
fn may_vanish(path: &str) -> bool {
    if path.starts_with("/memfd:") || path.starts_with("/dev/") {
        return false;
    }
    if let Some(p) = path.strip_suffix(" (deleted)") {
        // The perf data has its own way (perfdata.rs); SysV shared memory is not a file.
        return !p.contains("/hsperfdata_") && !p.starts_with("/SYSV");
    }
    crate::tempfiles::is_jdk_temp_path(path)
}

/// A memfd named after the file it stands in for (`/memfd:crac-shim:libfoo.so` in the maps).
fn memfd(for_path: &str) -> Option<OwnedFd> {
    let base = for_path
        .trim_end_matches(" (deleted)")
        .rsplit('/')
        .next()
        .unwrap_or("mapped");
    let name: String = format!("crac-shim:{base}").chars().take(200).collect();
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; the descriptor is ours.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    // SAFETY: a new descriptor nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Puts one private mapping on a memfd with its current bytes, in place.
fn move_one(m: &Mapping) -> bool {
    let len = m.end - m.start;
    if m.prot & libc::PROT_READ == 0 {
        // Nothing to read (a guard between segments): only its reservation matters.
        // SAFETY: MAP_FIXED over exactly this mapping, anonymous, no access: what it was.
        let p = unsafe {
            libc::mmap(
                m.start as *mut libc::c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        return p != libc::MAP_FAILED;
    }
    let Some(fd) = memfd(&m.path) else {
        return false;
    };
    // SAFETY: the mapping is readable for its whole length (PROT_READ, from /proc/self/maps).
    let bytes = unsafe { std::slice::from_raw_parts(m.start as *const u8, len) };
    let mut file = std::fs::File::from(match fd.try_clone() {
        Ok(f) => f,
        Err(_) => return false,
    });
    if std::io::Write::write_all(&mut file, bytes).is_err() {
        return false;
    }
    // SAFETY: MAP_FIXED over exactly this mapping, private as it was, with its protection; the
    // memfd holds its bytes for its whole length.
    let p = unsafe {
        libc::mmap(
            m.start as *mut libc::c_void,
            len,
            m.prot,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            fd.as_raw_fd(),
            0,
        )
    };
    p != libc::MAP_FAILED
}

/// Before the dump: every private mapping of a file that may vanish goes onto a memfd.
/// Returns the files that stayed mapped from disk (a shared mapping, or a failure).
pub fn into_memory() -> Vec<String> {
    let mut left = Vec::new();
    for m in mappings().iter().filter(|m| may_vanish(&m.path)) {
        if !m.private || !move_one(m) {
            left.push(m.path.clone());
        }
    }
    left.sort();
    left.dedup();
    left
}
