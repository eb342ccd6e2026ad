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
//! - crac-shim's CRIU (patched by `shims/criu/0001-kdat-cache-file-named-by-the-caller.patch`,
//!   `crac-shim-feature: kdat-file` in its `--version`) is told the file itself
//!   (`CRAC_SHIM_KDAT_FILE`), as root and unprivileged alike, and fills it itself.
//! - Another CRIU in `--unprivileged` mode: pointed at that directory through
//!   `XDG_RUNTIME_DIR`.
//! - Another CRIU as full root: its own cache in /run when /run is a tmpfs, else none (it
//!   probes at every run). Nothing is ever lent at /run/criu.kdat: a copy there outlives a
//!   killed crac-java, and after a reboot into another kernel a plain `criu` would load it.
//!   What earlier crac-shim builds left there (a copy with our trailer), and the empty
//!   `/run/criu.kdat.tmp` an unpatched CRIU leaves when /run is not a tmpfs, are removed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const CACHE_NAME: &str = "criu.kdat";
/// Where a full-root CRIU looks (KDAT_RUNDIR in its build).
const ROOT_CACHE: &str = "/run/criu.kdat";
/// The environment variable crac-shim's CRIU takes the cache file from.
const KDAT_FILE_ENV: &str = "CRAC_SHIM_KDAT_FILE";
/// Ended the copies earlier crac-shim builds lent at /run (CRIU reads only its own struct).
const OLD_TRAILER: &[u8] = b"\ncrac-shim-kdat ";
const TMPFS_MAGIC: i64 = 0x0102_1994;

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

use crac_shim_proto::safepath::euid;

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

/// Gives CRIU (about to run with `args`) the cache; what was lent is nothing that outlives us.
pub fn apply(cmd: &mut std::process::Command, criu: &crate::criu::Criu, args: &[String]) -> Lease {
    let unprivileged = args.iter().any(|a| a == "--unprivileged");
    // What any CRIU run as root (ours before, a plain one, `criu check`) left in a /run that
    // is not a tmpfs goes, whichever CRIU runs now.
    let tidy_run = !unprivileged && euid() == 0 && !is_tmpfs(Path::new("/run"));
    if tidy_run {
        remove_old_lent_copy(Path::new(ROOT_CACHE));
        remove_empty_tmp(&Path::new(ROOT_CACHE).with_extension("kdat.tmp"));
    }
    if criu.has_feature("kdat-file") {
        if let Some(dir) = cache_dir(&criu.path, unprivileged) {
            cmd.env(KDAT_FILE_ENV, dir.join(CACHE_NAME));
        }
    } else if unprivileged {
        if let Some(dir) = cache_dir(&criu.path, true) {
            cmd.env("XDG_RUNTIME_DIR", dir);
        }
    }
    Lease { tidy_run }
}

/// What to clean once CRIU has ended.
#[must_use = "an unpatched CRIU leaves /run/criu.kdat.tmp behind until the lease is released"]
pub struct Lease {
    tidy_run: bool,
}

impl Lease {
    /// CRIU has ended.
    pub fn release(self) {}
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.tidy_run {
            remove_empty_tmp(&Path::new(ROOT_CACHE).with_extension("kdat.tmp"));
        }
    }
}

/// A copy an earlier crac-shim build lent at /run and a crash left there (it ends with our
/// trailer); anything else there is not ours.
fn remove_old_lent_copy(at: &Path) {
    let Ok(bytes) = std::fs::read(at) else {
        return;
    };
    let ours = bytes.windows(OLD_TRAILER.len()).any(|w| w == OLD_TRAILER);
    if ours {
        let _ = std::fs::remove_file(at);
    }
}

/// The temporary file an unpatched CRIU creates and abandons, empty, where /run is not a
/// tmpfs (it unlinks the cache instead of it): it blocks every later save, and is nobody's.
fn remove_empty_tmp(tmp: &Path) {
    let empty_and_roots =
        std::fs::symlink_metadata(tmp).is_ok_and(|m| m.is_file() && m.len() == 0 && m.uid() == 0);
    if empty_and_roots {
        let _ = std::fs::remove_file(tmp);
    }
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

    #[test]
    fn leftovers_in_run_are_removed_and_foreign_files_stay() {
        let dir = std::env::temp_dir().join(format!("crac-shim-kdat-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lent = dir.join("criu.kdat");
        std::fs::write(&lent, b"kdat bytes\ncrac-shim-kdat boot=x cache=y\n").unwrap();
        remove_old_lent_copy(&lent);
        assert!(!lent.exists(), "an old build's copy goes");
        std::fs::write(&lent, b"criu's own cache").unwrap();
        remove_old_lent_copy(&lent);
        assert!(lent.exists(), "CRIU's own stays");
        let tmp = dir.join("criu.kdat.tmp");
        std::fs::write(&tmp, b"").unwrap();
        remove_empty_tmp(&tmp);
        assert!(!tmp.exists(), "the empty leftover goes");
        std::fs::write(&tmp, b"being written").unwrap();
        remove_empty_tmp(&tmp);
        assert!(tmp.exists(), "one being written stays");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
