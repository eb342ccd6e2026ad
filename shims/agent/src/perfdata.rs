//! The JDK's own tools find a local JVM through two names in /tmp, both keyed by pid, and both
//! would break a restore if they went into the image as they are:
//!
//! - `/tmp/hsperfdata_<user>/<pid>`, the perf-data file HotSpot maps MAP_SHARED, which jps
//!   lists and jstat reads. CRIU keeps such a mapping as a file mapping, without its pages,
//!   and the file is the checkpointed JVM's: other JVMs delete it once that pid is dead, and
//!   copies restored at once would share (and trample) it. So HotSpot keeps its file while the
//!   JVM runs, as with `java`; just before the dump the mapping moves, contents and all, into
//!   a memfd at the same address (which CRIU saves); after the restore, or a checkpoint that
//!   did not end the JVM, it moves back into a new file of the JVM's own. No other JVM can
//!   take from an image what it needs, and jps/jstat see every copy, live.
//! - `/tmp/.java_pid<pid>`, the attach socket. A checkpointed JVM ends by SIGKILL and leaves
//!   its socket file behind, and the restored listener is back under the name it was bound to
//!   (`.java_pid<pid>.tmp`): jcmd would find the dead name and be refused. Once that name is
//!   gone, HotSpot itself restarts its listener at the tools' next request (it looks for its
//!   socket file at every SIGQUIT).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// The perf-data region of the JVM's memory.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    start: usize,
    len: usize,
}

/// The user's perf-data directory as HotSpot names it (it always uses /tmp on Linux).
fn perf_dir() -> Option<PathBuf> {
    let mut pw = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes only into the buffers we pass, sized as given.
    unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            pw.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
    }
    if found.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded (found is non-null), so pw is initialized and pw_name
    // points into buf, NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr((*found).pw_name) }
        .to_string_lossy()
        .into_owned();
    Some(PathBuf::from(format!("/tmp/hsperfdata_{name}")))
}

/// The mapping of /proc/self/maps whose path satisfies `wanted`.
fn find(wanted: impl Fn(&str) -> bool) -> Option<Region> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let range = f.next()?;
        let path = f.nth(4)?;
        if !wanted(l[l.find(path)?..].trim_end()) {
            return None;
        }
        let (a, b) = range.split_once('-')?;
        let start = usize::from_str_radix(a, 16).ok()?;
        let end = usize::from_str_radix(b, 16).ok()?;
        Some(Region {
            start,
            len: end - start,
        })
    })
}

/// Puts `region` (its current contents) on `fd` in place, in one mmap: the JVM's pointers into
/// it stay valid. A counter bumped during the copy may lose that one update.
fn remap_onto(region: Region, fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: the region is mapped and readable (it is the JVM's perf memory) for its length.
    let bytes = unsafe { std::slice::from_raw_parts(region.start as *const u8, region.len) };
    let mut file = std::fs::File::from(fd.try_clone()?);
    std::io::Write::write_all(&mut file, bytes)?;
    // SAFETY: MAP_FIXED over exactly the JVM's perf-data mapping, with the same size and
    // protection; the file is at least that long (just written).
    let p = unsafe {
        libc::mmap(
            region.start as *mut libc::c_void,
            region.len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Before the dump: HotSpot's perf-data file mapping becomes a memfd mapping. `None` when
/// the JVM has no perf-data file (`-XX:-UsePerfData`, `-XX:+PerfDisableSharedMem`).
pub fn to_memory() -> Option<Region> {
    let file = perf_dir()?.join(std::process::id().to_string());
    let file = file.to_str()?.to_string();
    // Its name may be gone already (another JVM's clean-up, a copy that took the name): the
    // mapping moves all the same, or CRIU would put a deleted file into the image, which two
    // restores of it at once then race to re-create.
    let deleted = format!("{file} (deleted)");
    let region = find(|p| p == file || p == deleted)?;
    // SAFETY: a NUL-terminated literal name; the descriptor is ours.
    let fd = unsafe { libc::memfd_create(c"crac-shim-perfdata".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    remap_onto(region, &fd).ok()?;
    Some(region)
}

/// The perf-data directory, opened as HotSpot would accept it: a real directory (never a
/// link), the user's own, that nobody else may write, in a /tmp reached without following
/// anyone's links; made (HotSpot's mode) where missing. `None`: HotSpot would refuse it too,
/// and so do we (the JVM then stays out of jps' sight).
fn open_perf_dir(dir: &std::path::Path) -> Option<OwnedFd> {
    use crac_shim_proto::safepath;
    let euid = crac_shim_proto::safepath::euid();
    let (tmp, _) = safepath::open_dir(std::path::Path::new("/tmp"), euid, None).ok()?;
    let name = dir.file_name()?;
    let open = || {
        safepath::openat(
            tmp.as_raw_fd(),
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
    };
    let fd = match open() {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let c = std::ffi::CString::new(name.as_encoded_bytes()).ok()?;
            // SAFETY: `c` is valid for the call; `tmp` is a descriptor we hold.
            unsafe { libc::mkdirat(tmp.as_raw_fd(), c.as_ptr(), 0o755) };
            open().ok()?
        }
        Err(_) => return None,
    };
    let st = safepath::fstat(fd.as_raw_fd()).ok()?;
    (st.st_uid == euid && st.st_mode & 0o022 == 0).then_some(fd)
}

fn cname(name: &str) -> std::ffi::CString {
    std::ffi::CString::new(name).unwrap_or_default()
}

/// `unlinkat` of a name in a directory we hold (never follows: a link is removed itself).
fn unlink_in(dir: &OwnedFd, name: &str) {
    let c = cname(name);
    // SAFETY: `c` is valid for the call; `dir` is a descriptor we hold.
    unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
}

/// After the restore (`shown_as`: the pid the restoring crac-java sees), or after a
/// checkpoint that left the JVM running: the perf data goes back into a file of this JVM's
/// own, `/tmp/hsperfdata_<user>/<pid>` (the pid this JVM sees, which HotSpot and the tools
/// reading another namespace use), plus a link by the pid the host sees for jps. Everything
/// happens relative to the directory, held.
pub fn to_file(region: Region, shown_as: u32) {
    let Some(dir) = perf_dir() else {
        return;
    };
    let Some(dir_fd) = open_perf_dir(&dir) else {
        return;
    };
    let own = std::process::id();
    let path = dir.join(own.to_string());
    // Under the pid we see ourselves as, a file is a dead JVM's: replaced (never truncated:
    // whoever still maps the old one keeps it). A copy in a new PID namespace shares /tmp
    // with the host, where that pid may be another live JVM (the original, another copy):
    // then it stays out of jps' sight rather than steal the name.
    if own == shown_as || !mapped_by_another(own, &path) {
        unlink_in(&dir_fd, &own.to_string());
    }
    let created = crac_shim_proto::safepath::openat(
        dir_fd.as_raw_fd(),
        std::ffi::OsStr::new(&own.to_string()),
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
    );
    let Ok(file) = created else {
        return;
    };
    if remap_onto(region, &file).is_err() {
        unlink_in(&dir_fd, &own.to_string());
        return;
    }
    if shown_as != own {
        sweep_dead_links(&dir_fd);
        let link = shown_as.to_string();
        unlink_in(&dir_fd, &link);
        let (target, c_link) = (cname(&own.to_string()), cname(&link));
        // SAFETY: both names are valid for the call; `dir_fd` is a descriptor we hold.
        unsafe { libc::symlinkat(target.as_ptr(), dir_fd.as_raw_fd(), c_link.as_ptr()) };
        if let Ok(mut l) = SHOWN_AS_LINK.lock() {
            *l = Some(dir.join(link));
        }
    }
}

/// Links of copies that were killed (their `.fini_array` never ran) point at files that the
/// next JVM's start-up clean-up removed: jps would list them by a pid some other process
/// reuses, "process information unavailable". Only dangling links go; HotSpot's own files are
/// HotSpot's to clean. Only in the directory we hold.
fn sweep_dead_links(dir: &OwnedFd) {
    let Ok(entries) = std::fs::read_dir(crac_shim_proto::safepath::fd_path(dir)) else {
        return;
    };
    for e in entries.flatten() {
        let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
        if is_link && std::fs::metadata(e.path()).is_err() {
            if let Some(name) = e.file_name().to_str() {
                unlink_in(dir, name);
            }
        }
    }
}

/// Whether the process `pid` of the host (crac-java restores into a new PID namespace without
/// a /proc of its own, so /proc shows the host's) maps `path`.
fn mapped_by_another(pid: u32, path: &std::path::Path) -> bool {
    let me = std::fs::read_link("/proc/self").ok();
    if me.is_some_and(|m| m.as_os_str() == pid.to_string().as_str()) {
        return false;
    }
    let wanted = path.to_string_lossy();
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.lines().any(|l| l.ends_with(wanted.as_ref())))
}

/// The jps link by the host's pid, removed at exit (HotSpot removes only its own file).
static SHOWN_AS_LINK: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

extern "C" fn remove_link_at_exit() {
    if let Ok(link) = SHOWN_AS_LINK.try_lock() {
        if let Some(l) = link.as_ref() {
            let _ = std::fs::remove_file(l);
        }
    }
}

#[used]
#[link_section = ".fini_array"]
static REMOVE_LINK_AT_EXIT: extern "C" fn() = remove_link_at_exit;

/// After a restore: free the attach socket's dead name (see the module's comment), or a name
/// another user took (a JVM's attach socket is always its own user's: the JDK's tools refuse
/// any other, so one there would only keep jcmd from ever reaching this JVM).
pub fn free_attach_name() {
    let attach = format!("/tmp/.java_pid{}", std::process::id());
    if is_dead_socket(&attach) || is_foreign(&attach) {
        let _ = std::fs::remove_file(&attach);
    }
    // The name CRIU bound the restored listener to again; nobody connects by it.
    let _ = std::fs::remove_file(format!("{attach}.tmp"));
}

/// A file there of another user than ours.
pub fn is_foreign(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let euid = crac_shim_proto::safepath::euid();
    std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() != euid)
}

/// A socket file nobody listens on (a JVM that died without cleaning up).
fn is_dead_socket(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && std::os::unix::net::UnixStream::connect(path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
}
