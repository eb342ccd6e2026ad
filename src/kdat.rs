//! CRIU's kernel-probe cache (`criu.kdat`) wherever crac-shim runs CRIU. CRIU probes the kernel
//! for tens of milliseconds at every run and can cache the result, but only in places it may
//! trust to vanish at a reboot: as a full root, /run/criu.kdat when /run is a tmpfs; in its
//! `--unprivileged` mode (rootless, or a container's root), `$XDG_RUNTIME_DIR` (often unset in
//! containers and under su/sudo), again only on a tmpfs. Its one validity check is a magic
//! number stamped when CRIU was built.
//!
//! crac-shim keeps the cache in a directory of its own on /dev/shm (a tmpfs on Linux hosts,
//! and in every Docker and Kubernetes container), named by what the cache depends on: the boot
//! (a new boot id, so a new kernel), the kernel release, and the CRIU binary (device, inode,
//! size, modification time). A cache from another boot, kernel or CRIU is never looked at, and
//! is removed. The directory is 0700 and must belong to us, or it is not used (no other user
//! can plant or read a cache).
//!
//! - `--unprivileged`: CRIU is pointed at that directory through `XDG_RUNTIME_DIR`, and fills
//!   it itself.
//! - Full root where /run is a tmpfs: CRIU's own cache, untouched.
//! - Full root where /run is not a tmpfs (this project's VMs, many hosts): CRIU would neither
//!   keep nor trust a cache there. The cache is made once per boot by a `criu check` that sees
//!   our directory as its /run (a private mount namespace of its own), and put in place as
//!   /run/criu.kdat only while a CRIU of ours runs: every user holds a shared lock on it, and
//!   the last one removes it. A copy left by a crash carries a trailer (after the bytes CRIU
//!   reads) naming its boot and CRIU binary, and is removed by the next crac-shim run once its
//!   boot is over. A cache CRIU finds damaged or stale is unlinked by CRIU; ours is then
//!   dropped and made again.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const TMPFS_MAGIC: i64 = 0x0102_1994;
const CACHE_NAME: &str = "criu.kdat";
/// Where a full-root CRIU looks (KDAT_RUNDIR in its build).
const ROOT_CACHE: &str = "/run/criu.kdat";
/// Starts the trailer appended to a copy we put in /run (CRIU reads only its own struct).
const TRAILER: &[u8] = b"\ncrac-shim-kdat ";

/// What the cache depends on, as one line (then hashed into the directory's name).
fn identity(criu: &Path) -> Option<String> {
    let kernel = nix::sys::utsname::uname().ok()?;
    let m = std::fs::metadata(criu).ok()?;
    Some(format!(
        "{} {} {}:{}:{}:{}",
        boot_id()?,
        kernel.release().to_string_lossy(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime()
    ))
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string())
}

/// FNV-1a, 64 bits: a name, not a defence (the directory is private anyway).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn is_tmpfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type().0 == TMPFS_MAGIC)
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The cache directory for `criu` under `base` (created private), others' removed.
fn cache_dir_in(base: &Path, criu: &Path) -> Option<PathBuf> {
    if !is_tmpfs(base.parent()?) {
        return None;
    }
    crate::paths::ensure_private(base).ok()?;
    let name = format!("{:016x}", fnv(&identity(criu)?));
    for e in std::fs::read_dir(base).ok()?.flatten() {
        if e.file_name() != name.as_str() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = base.join(name);
    crate::paths::ensure_private(&dir).ok()?;
    Some(dir)
}

/// CRIU probes less in its unprivileged mode: the two caches never mix.
fn cache_dir(criu: &Path, unprivileged: bool) -> Option<PathBuf> {
    let base = if unprivileged {
        format!("/dev/shm/crac-shim-kdat-{}", euid())
    } else {
        "/dev/shm/crac-shim-kdat-root".to_string()
    };
    cache_dir_in(Path::new(&base), criu)
}

/// What was done for one CRIU run's cache; [`Lease::release`] (or drop) once CRIU has ended.
#[derive(Default)]
#[must_use = "the cache put in /run stays there until the lease is released"]
pub struct Lease {
    placed: Option<Placed>,
    /// The directory to fill once CRIU has ended (no cache yet), and the CRIU to fill it with.
    fill: Option<(PathBuf, PathBuf)>,
}

/// Our copy at /run/criu.kdat, held with a shared lock while our CRIU may read it.
struct Placed {
    file: File,
    at: PathBuf,
    source: PathBuf,
}

/// Gives CRIU (about to run with `args`) the cache.
pub fn apply(cmd: &mut std::process::Command, criu: &Path, args: &[String]) -> Lease {
    if args.iter().any(|a| a == "--unprivileged") {
        if let Some(dir) = cache_dir(criu, true) {
            cmd.env("XDG_RUNTIME_DIR", dir);
        }
        return Lease::default();
    }
    if euid() != 0 || is_tmpfs(Path::new("/run")) {
        return Lease::default();
    }
    let Some(dir) = cache_dir(criu, false) else {
        return Lease::default();
    };
    let source = dir.join(CACHE_NAME);
    let Some(trailer) = trailer_for(&dir) else {
        return Lease::default();
    };
    match std::fs::read(&source) {
        Ok(bytes) if !bytes.is_empty() => Lease {
            placed: place(Path::new(ROOT_CACHE), &bytes, &trailer, source),
            fill: None,
        },
        // A PID namespace's init (a restored copy's, a container's) does not fill: the filler
        // would run as a child of the copy and end with its namespace.
        _ if std::process::id() == 1 => Lease::default(),
        _ => Lease {
            placed: None,
            fill: Some((dir, criu.to_path_buf())),
        },
    }
}

/// `boot=<boot id> cache=<our directory's name>`: whose copy a file in /run is.
fn trailer_for(dir: &Path) -> Option<String> {
    Some(format!(
        "boot={} cache={}\n",
        boot_id()?,
        dir.file_name()?.to_string_lossy()
    ))
}

fn trailer_of(bytes: &[u8]) -> Option<&[u8]> {
    let at = bytes.windows(TRAILER.len()).rposition(|w| w == TRAILER)?;
    Some(&bytes[at + TRAILER.len()..])
}

fn flock(file: &File, how: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), how) == 0 }
}

/// Whether `file` is still what `path` names (not unlinked or replaced meanwhile).
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Puts `bytes` at `at` for CRIU (with our trailer), or joins the copy another crac-shim
/// run put there; never touches a file that is not ours.
fn place(at: &Path, bytes: &[u8], trailer: &str, source: PathBuf) -> Option<Placed> {
    for _ in 0..3 {
        if let Ok(file) = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(at)
        {
            let mut existing = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut existing).ok()?;
            let theirs = trailer_of(&existing)?;
            if flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                // Nobody uses it: left by a run that died. Ours again if it is this boot's
                // copy of this cache, else gone.
                let same = existing
                    .strip_suffix(trailer.as_bytes())
                    .and_then(|e| e.strip_suffix(TRAILER))
                    == Some(bytes);
                if same && still_at(&file, at) {
                    flock(&file, libc::LOCK_SH);
                    return Some(Placed {
                        file,
                        at: at.to_path_buf(),
                        source,
                    });
                }
                if still_at(&file, at) {
                    let _ = std::fs::remove_file(at);
                }
                continue;
            }
            if theirs != trailer.as_bytes() {
                // In use by a run of another CRIU: it keeps it, ours probes.
                return None;
            }
            flock(&file, libc::LOCK_SH);
            if still_at(&file, at) {
                return Some(Placed {
                    file,
                    at: at.to_path_buf(),
                    source,
                });
            }
            continue;
        }
        let tmp = at.with_file_name(format!(
            ".criu.kdat.crac-shim-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .ok()?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.write_all(TRAILER))
            .and_then(|()| file.write_all(trailer.as_bytes()))
            .is_ok();
        flock(&file, libc::LOCK_SH);
        // link(), unlike rename(), never replaces a copy another run has just put there.
        let linked = written && std::fs::hard_link(&tmp, at).is_ok();
        let _ = std::fs::remove_file(&tmp);
        if linked {
            return Some(Placed {
                file,
                at: at.to_path_buf(),
                source,
            });
        }
        if !written {
            return None;
        }
    }
    None
}

impl Lease {
    /// CRIU has ended: our copy leaves /run once nobody else uses it; a cache CRIU found
    /// stale is dropped; a missing one is made (in the background, once per boot).
    pub fn release(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(p) = self.placed.take() {
            let at = p.at.as_path();
            if !still_at(&p.file, at) {
                // CRIU unlinks a cache it cannot use: ours is not to be trusted again.
                let _ = std::fs::remove_file(&p.source);
            } else if flock(&p.file, libc::LOCK_EX | libc::LOCK_NB) && still_at(&p.file, at) {
                let _ = std::fs::remove_file(at);
            }
        }
        if let Some((dir, criu)) = self.fill.take() {
            fill(&dir, &criu);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Starts `criu check` in a mount namespace of its own where our cache directory is /run (a
/// tmpfs, so CRIU saves its probes there). Not waited for, and detached (a session of its own,
/// not our child): ending the launcher and all it started, as a shell or a benchmark does,
/// must not end it half way every time. A lock on the directory, held by that CRIU, keeps it
/// to one at a time.
fn fill(dir: &Path, criu: &Path) {
    let Ok(lock) = File::open(dir) else {
        return;
    };
    if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
        return;
    }
    // Left by a filler that was killed (CRIU creates it exclusively: it would never save).
    let _ = std::fs::remove_file(dir.join("criu.kdat.tmp"));
    let Ok(dir_c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return;
    };
    let lock_fd = lock.as_raw_fd();
    let mut cmd = std::process::Command::new(criu);
    cmd.args(["check", "--feature", "mnt_id"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: fork, _exit, setsid, unshare, mount and fcntl are async-signal-safe; the strings
    // were made before the fork. A failure leaves CRIU on the real /run, where it saves nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            // The intermediate child ends at once (whoever reaps our children reaps it); CRIU
            // runs in the grandchild.
            match libc::fork() {
                0 => {}
                -1 => return Err(std::io::Error::last_os_error()),
                _ => libc::_exit(0),
            }
            libc::setsid();
            libc::fcntl(lock_fd, libc::F_SETFD, 0);
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    dir_c.as_ptr(),
                    c"/run".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _ = cmd.spawn();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_private_and_changes_with_the_criu_binary() {
        let shm = Path::new("/dev/shm");
        let root = if is_tmpfs(shm) {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let base = root.join(format!("crac-shim-kdat-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // Not on a tmpfs (a test's temp directory may be): then no cache at all, or on a tmpfs
        // one directory per CRIU binary, the previous one removed.
        let criu = base.with_extension("criu");
        std::fs::write(&criu, "one").unwrap();
        let Some(first) = cache_dir_in(&base, &criu) else {
            assert!(!is_tmpfs(base.parent().unwrap()));
            let _ = std::fs::remove_file(&criu);
            return;
        };
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&first).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(first.join("criu.kdat"), "cached").unwrap();
        std::fs::write(&criu, "another build").unwrap();
        let second = cache_dir_in(&base, &criu).unwrap();
        assert_ne!(first, second);
        assert!(!first.exists(), "the old binary's cache is gone");
        // A directory others may write is refused.
        std::fs::set_permissions(&second, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(cache_dir_in(&base, &criu), None);
        let _ = std::fs::remove_dir_all(&base);
        let _ = std::fs::remove_file(&criu);
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("crac-shim-kdat-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lease(at: &Path, bytes: &[u8], trailer: &str, source: &Path) -> Lease {
        Lease {
            placed: place(at, bytes, trailer, source.to_path_buf()),
            fill: None,
        }
    }

    #[test]
    fn a_copy_in_run_lives_while_a_criu_of_ours_may_read_it() {
        let s = Scratch::new("place");
        let (at, source) = (s.0.join("criu.kdat"), s.0.join("source"));
        std::fs::write(&source, b"probes").unwrap();
        let trailer = "boot=b1 cache=c1\n";
        let first = lease(&at, b"probes", trailer, &source);
        assert!(first.placed.is_some());
        let bytes = std::fs::read(&at).unwrap();
        assert!(bytes.starts_with(b"probes"), "CRIU reads its struct first");
        assert_eq!(trailer_of(&bytes), Some(trailer.as_bytes()));
        // A second run joins it; the file goes with the last one.
        let second = lease(&at, b"probes", trailer, &source);
        assert!(second.placed.is_some());
        first.release();
        assert!(at.exists(), "still in use by the second run");
        second.release();
        assert!(!at.exists(), "the last run removes it");
        assert!(source.exists());
        // No temporary file stays either.
        assert_eq!(std::fs::read_dir(&s.0).unwrap().count(), 1);
    }

    #[test]
    fn leftovers_of_another_boot_go_and_foreign_files_stay() {
        let s = Scratch::new("leftover");
        let (at, source) = (s.0.join("criu.kdat"), s.0.join("source"));
        let trailer = "boot=b1 cache=c1\n";
        // A copy of a run that died before a reboot: nobody holds it; replaced.
        std::fs::write(&at, b"old probes\ncrac-shim-kdat boot=b0 cache=c1\n").unwrap();
        let l = lease(&at, b"probes", trailer, &source);
        assert!(l.placed.is_some());
        assert_eq!(
            trailer_of(&std::fs::read(&at).unwrap()),
            Some(trailer.as_bytes())
        );
        l.release();
        assert!(!at.exists());
        // A file that is not ours (CRIU's own, or someone's) is neither used nor touched.
        std::fs::write(&at, b"someone's").unwrap();
        let l = lease(&at, b"probes", trailer, &source);
        assert!(l.placed.is_none());
        drop(l);
        assert_eq!(std::fs::read(&at).unwrap(), b"someone's");
    }

    #[test]
    fn a_cache_criu_refused_is_made_again() {
        let s = Scratch::new("stale");
        let (at, source) = (s.0.join("criu.kdat"), s.0.join("source"));
        std::fs::write(&source, b"damaged").unwrap();
        let l = lease(&at, b"damaged", "boot=b1 cache=c1\n", &source);
        // CRIU unlinks a cache whose size or magic is wrong ("Stale").
        std::fs::remove_file(&at).unwrap();
        l.release();
        assert!(!source.exists(), "our copy is dropped, to be made again");
    }
}
