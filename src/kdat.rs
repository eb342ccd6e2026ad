//! CRIU's kernel-probe cache (`criu.kdat`) where crac-shim runs CRIU in its `--unprivileged`
//! mode (rootless, or a container's root). CRIU probes the kernel for tens of milliseconds at
//! every run and can cache the result, but only in `$XDG_RUNTIME_DIR` in that mode (often unset
//! in containers and under su/sudo) and only on a tmpfs (so that a reboot drops it); its one
//! validity check is a magic number stamped when CRIU was built.
//!
//! crac-shim points CRIU at a directory of its own on /dev/shm (a tmpfs on Linux hosts, and in
//! every Docker and Kubernetes container), named by what the cache depends on: the boot (a new
//! boot id, so a new kernel), the kernel release, and the CRIU binary (device, inode, size,
//! modification time). A cache from another boot, kernel or CRIU is never looked at, and is
//! removed. The directory is 0700 and must belong to us, or it is not used (no other user can
//! plant or read a cache). A damaged file is CRIU's to discard (it checks size and magic).
//! As a full root CRIU keeps its own cache in /run, when /run is a tmpfs.

use std::path::{Path, PathBuf};

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// What the cache depends on, as one line (then hashed into the directory's name).
fn identity(criu: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let kernel = nix::sys::utsname::uname().ok()?;
    let m = std::fs::metadata(criu).ok()?;
    Some(format!(
        "{} {} {}:{}:{}:{}",
        boot.trim(),
        kernel.release().to_string_lossy(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime()
    ))
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

/// Gives CRIU (about to run with `args`) our cache, in its unprivileged mode.
pub fn apply(cmd: &mut std::process::Command, criu: &Path, args: &[String]) {
    if !args.iter().any(|a| a == "--unprivileged") {
        return;
    }
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let base = PathBuf::from(format!("/dev/shm/crac-shim-kdat-{uid}"));
    if let Some(dir) = cache_dir_in(&base, criu) {
        cmd.env("XDG_RUNTIME_DIR", dir);
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
}
