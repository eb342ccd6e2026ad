//! Temp files: what the JVM (the JDK or the program) created in its temp directory and keeps
//! open for writing. Such a file is the JVM's alone by construction (it did not exist before
//! the JVM started, and it lives where programs put scratch data), so it need not refuse a
//! checkpoint: its contents at the checkpoint go into the image in a memfd standing in for it,
//! and every restored copy has its own. A copy then takes the file's path back (a new file
//! with those contents, the program's descriptor on it) where nobody alive holds the path:
//! absent (a fresh host or container), or still the checkpointed JVM's own file and unlocked.
//! Holding the path means a shared lock on the file (flock, on the program's own open file),
//! which the copy that took it keeps; several copies at once thus never share a file: the
//! others go on with their memfd.

use crate::scan::Entry;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// When the agent started (the first JVM of this image), in nanoseconds since the epoch.
static STARTED_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn note_start() {
    STARTED_NS.store(now_ns(), std::sync::atomic::Ordering::Release);
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// java.io.tmpdir as the JVM was given it (`-Djava.io.tmpdir=`), or the JDK's default.
fn temp_dir() -> String {
    let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    let given = cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .filter_map(|a| a.strip_prefix("-Djava.io.tmpdir="))
        .next_back()
        .unwrap_or("/tmp")
        .to_string();
    let real = std::fs::canonicalize(&given)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or(given);
    format!("{}/", real.trim_end_matches('/'))
}

/// The birth time (ns since the epoch) of the file open on `fd`, where the file system
/// records it.
fn birth_ns(fd: RawFd) -> Option<u64> {
    // SAFETY: statx of an open descriptor (empty name, AT_EMPTY_PATH) into a zeroed local.
    let st = unsafe {
        let mut st = std::mem::zeroed::<libc::statx>();
        if libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BTIME,
            &mut st,
        ) != 0
        {
            return None;
        }
        st
    };
    (st.stx_mask & libc::STATX_BTIME != 0)
        .then(|| st.stx_btime.tv_sec as u64 * 1_000_000_000 + u64::from(st.stx_btime.tv_nsec))
}

/// Whether `name` carries what the JDK puts in the names it makes up
/// (`File.createTempFile`, `Files.createTempFile`, `Files.createTempDirectory`: the prefix,
/// an unsigned random long, the suffix): a run of at least 15 digits (a random long has fewer
/// once in 200 000). Dates and millisecond clocks in names have fewer.
pub fn jdk_made_name(name: &str) -> bool {
    name.split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() >= 15)
}

/// The rule: a regular file open for writing, ours, born after the JVM started, and made by
/// the JDK's temp-file machinery: named as it names files, directly in java.io.tmpdir or in a
/// directory it made there; or already unlinked (nobody can reach it by a path). Any other
/// file, under /tmp or not, is the program's data: refused unless a policy rule says what to
/// do with it (as a CRaC JDK does).
/// `is_temp_file` for a path (a mapped file): the file there now, opened without following a
/// link.
pub fn is_jdk_temp_path(path: &str) -> bool {
    let Ok(fd) = crac_shim_proto::safepath::openat(
        libc::AT_FDCWD,
        std::ffi::OsStr::new(path),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    ) else {
        return false;
    };
    crate::scan::fstat(fd.as_raw_fd()).is_some_and(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFREG && is_temp_file(path, &st, fd.as_raw_fd())
    })
}

pub fn is_temp_file(path: &str, st: &libc::stat, fd: RawFd) -> bool {
    let ours = st.st_uid == crac_shim_proto::safepath::euid();
    let born_here =
        || birth_ns(fd).is_some_and(|b| b >= STARTED_NS.load(std::sync::atomic::Ordering::Acquire));
    if !ours {
        return false;
    }
    if path.ends_with(" (deleted)") && st.st_nlink == 0 {
        return born_here();
    }
    let tmp = temp_dir();
    let Some(below) = path.strip_prefix(&tmp) else {
        return false;
    };
    let parts: Vec<&str> = below.split('/').collect();
    let jdk_made = match parts.as_slice() {
        [name] => jdk_made_name(name),
        [first, ..] => jdk_made_name(first),
        [] => false,
    };
    jdk_made && born_here()
}

/// A temp file of the program's: its descriptor number, path and the file that holds (or
/// held) the path for it.
struct Record {
    fd: RawFd,
    path: String,
    /// The file it had at the checkpoint (dev, ino): the one a copy may take back.
    file: (u64, u64),
    /// That file's size and modification time (ns) as the checkpoint left it: a copy takes
    /// the path back only from a file nobody changed since, and never over someone's edit.
    state: (i64, i128),
    /// Its mode, which the copy's new file gets.
    mode: u32,
    /// A memfd stands in for it (after a restore: until the copy takes the path back).
    memfd: bool,
}

/// Every temp file made private, across checkpoints and restores (this memory is in the image).
static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// Made private for this dump: what it takes to give the program its file back if the JVM
/// goes on. (Not a descriptor of the file: CRIU would put it in the image, and a restore would
/// then check the file's size.)
pub struct Private {
    fd: RawFd,
    path: String,
}

fn memfd() -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated literal name.
    let fd = unsafe { libc::memfd_create(c"crac-shim-temp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies what `from` (any open file, read through /proc: the program's may be write-only)
/// holds into `to`, truncating `to` to match.
fn copy_contents(from: RawFd, to: &OwnedFd) -> std::io::Result<()> {
    let mut src = std::fs::File::open(format!("/proc/self/fd/{from}"))?;
    let mut dst = std::fs::File::from(to.try_clone()?);
    dst.set_len(0)?;
    std::io::Seek::seek(&mut dst, std::io::SeekFrom::Start(0))?;
    std::io::copy(&mut src, &mut dst)?;
    Ok(())
}

/// Puts `file` on the program's `fd` with `fd`'s current offset and status flags.
fn swap_onto(fd: RawFd, file: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: reading the offset and flags of the program's descriptor, then setting ours
    // alike and putting it on the program's number (its close-on-exec state kept).
    unsafe {
        let offset = libc::lseek(fd, 0, libc::SEEK_CUR);
        let status = libc::fcntl(fd, libc::F_GETFL);
        let fd_flags = libc::fcntl(fd, libc::F_GETFD);
        if offset >= 0 {
            libc::lseek(file.as_raw_fd(), offset, libc::SEEK_SET);
        }
        if status >= 0 {
            libc::fcntl(
                file.as_raw_fd(),
                libc::F_SETFL,
                status & (libc::O_APPEND | libc::O_NONBLOCK),
            );
        }
        if libc::dup2(file.as_raw_fd(), fd) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::fcntl(fd, libc::F_SETFD, fd_flags);
    }
    Ok(())
}

/// Size and modification time in nanoseconds.
fn state_of(st: &libc::stat) -> (i64, i128) {
    (
        st.st_size,
        i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
    )
}

/// Before the dump: a memfd with the file's contents takes the program's descriptor.
pub fn make_private(e: &Entry) -> std::io::Result<Private> {
    let st = crate::scan::fstat(e.fd);
    let file = st.map(|st| (st.st_dev, st.st_ino)).unwrap_or((0, 0));
    let state = st.map(|st| state_of(&st)).unwrap_or((-1, -1));
    let mode = st.map(|st| st.st_mode & 0o7777).unwrap_or(0o600);
    let stand_in = memfd()?;
    copy_contents(e.fd, &stand_in)?;
    swap_onto(e.fd, &stand_in)?;
    if let Ok(mut records) = RECORDS.lock() {
        records.retain(|r| r.fd != e.fd);
        records.push(Record {
            fd: e.fd,
            path: e.path.clone(),
            file,
            state,
            mode,
            memfd: true,
        });
    }
    Ok(Private {
        fd: e.fd,
        path: e.path.clone(),
    })
}

/// After the dump. The JVM goes on (a failed or kept checkpoint): each file gets back its
/// descriptor, with what was written meanwhile. A restored copy takes back the paths it may.
pub fn after_dump(private: Vec<Private>, restored: bool) -> Vec<String> {
    let mut failed = Vec::new();
    if !restored {
        for p in private {
            if give_back(&p).is_ok() {
                if let Ok(mut records) = RECORDS.lock() {
                    records.retain(|r| r.fd != p.fd);
                }
            } else {
                failed.push(p.path.clone());
            }
        }
        return failed;
    }
    drop(private);
    let Ok(mut records) = RECORDS.lock() else {
        return failed;
    };
    for r in records.iter_mut() {
        // CRIU made the memfd anew: known by its name on the program's number.
        let stand_in = std::fs::read_link(format!("/proc/self/fd/{}", r.fd))
            .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:crac-shim-temp"));
        if stand_in {
            if let Some(file) = take_path(r) {
                r.file = file;
                r.memfd = false;
            }
        } else {
            r.memfd = false;
        }
    }
    records.retain(|r| r.memfd);
    failed
}

/// The JVM goes on: its file again, by path, with what was written meanwhile, at the offset
/// it had reached, locked as held.
fn give_back(p: &Private) -> std::io::Result<()> {
    use crac_shim_proto::safepath;
    let euid = crac_shim_proto::safepath::euid();
    let (file, _) = safepath::open_file(
        std::path::Path::new(&p.path),
        euid,
        libc::O_RDWR,
        safepath::IfMissing::Fail,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    copy_contents(p.fd, &file)?;
    // SAFETY: flock on our descriptor of the program's file: the JVM holds its path.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    swap_onto(p.fd, &file)
}

/// Gives the copy the path of `r` if nobody alive holds it: a new file there with the memfd's
/// contents, on the program's descriptor. `None` when the copy keeps its memfd.
fn take_path(r: &Record) -> Option<(u64, u64)> {
    use crac_shim_proto::safepath::{self, Create};
    let euid = crac_shim_proto::safepath::euid();
    // The directory walked once (no link or directory another user could change), made if a
    // temp cleaner took it; everything after relative to it.
    let (dir, _, name) =
        safepath::open_parent(std::path::Path::new(&r.path), euid, Some(Create(0o777))).ok()?;
    let cname = std::ffi::CString::new(name.as_encoded_bytes()).ok()?;
    match safepath::lstatat(dir.as_raw_fd(), &name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(st) if (st.st_dev, st.st_ino) == r.file && state_of(&st) != r.state => {
            // Changed since the checkpoint (an operator's edit, the original going on): never
            // replaced; this copy keeps its own.
            crate::sys::warn(&format!(
                "{} changed since the checkpoint: this copy keeps its own temp file (in memory) and leaves that one as it is",
                r.path
            ));
            return None;
        }
        Ok(st) if (st.st_dev, st.st_ino) == r.file => {
            // The checkpointed JVM's own file: free unless a live JVM locks it.
            let f = safepath::openat(dir.as_raw_fd(), &name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                .ok()?;
            // SAFETY: flock on our own descriptor; it is closed (and unlocked) below.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return None;
            }
            // Replaced, never truncated: a dead JVM's mapping or reader keeps the old one.
            // SAFETY: `cname` is valid for the call; `dir` is a descriptor we hold.
            if unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) } != 0 {
                return None;
            }
        }
        _ => return None,
    }
    let file = safepath::openat(
        dir.as_raw_fd(),
        &name,
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
    )
    .ok()?;
    // The file's own mode, as the checkpoint found it (not the umask's idea).
    // SAFETY: fchmod on the descriptor we just created.
    unsafe { libc::fchmod(file.as_raw_fd(), r.mode) };
    // SAFETY: flock on our descriptor of the new file: this copy holds the path now.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
        return None;
    }
    copy_contents(r.fd, &file).ok()?;
    swap_onto(r.fd, &file).ok()?;
    let st = crate::scan::fstat(file.as_raw_fd())?;
    Some((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_jdk_makes_up_are_told_from_others() {
        assert!(jdk_made_name("job3316592117488201127.txt"));
        assert!(jdk_made_name("work8023371219386503117"));
        assert!(jdk_made_name("+~JF18446744073709551615.tmp"));
        assert!(!jdk_made_name("out.txt"));
        assert!(!jdk_made_name("derby.log"));
        assert!(!jdk_made_name("backup-20261204170000.tar"));
        assert!(!jdk_made_name("metrics-1796403510000.json"));
    }
}
