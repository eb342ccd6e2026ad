//! Our private runtime directory (control sockets, restore scratch space).

use anyhow::{Context, Result};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Our runtime directory: `CRAC_SHIM_RUNTIME_DIR`, or the first of the user's places
/// (`runtime_dir_candidates`) that is, or can be made, private and ours. A directory another
/// user planted under one of those names is passed over, never fatal.
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CRAC_SHIM_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
    let candidates = crac_shim_proto::runtime_dir_candidates(euid, xdg.as_deref());
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|d| crac_shim_proto::ensure_private_dir(d, euid).is_ok())
        // None usable: the last, whose refusal ensure_private then names.
        .unwrap_or_else(|| PathBuf::from(candidates.last().expect("never empty")))
}

/// Creates `dir` 0700, or checks that the existing one is ours and private.
pub fn ensure_private(dir: &Path) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    crac_shim_proto::ensure_private_dir(dir, euid)
        .with_context(|| format!("cannot use {}", dir.display()))
}

/// A fresh private scratch directory inside the runtime directory, `<prefix>-<pid>-<nanos>`,
/// locked (flock) for as long as the returned file is held (a restore that is retried in a new
/// PID namespace lets go of its first directory). Launchers in other PID namespaces may
/// share the runtime directory (a container's /tmp bind-mounted, `unshare --mount-proc`):
/// their pids can be ours and ours can be missing from their /proc, so neither the name nor
/// the sweeping may rest on pids alone.
pub fn scratch_dir(prefix: &str) -> Result<(PathBuf, std::fs::File)> {
    scratch_dir_in(&runtime_dir(), prefix)
}

fn scratch_dir_in(base: &Path, prefix: &str) -> Result<(PathBuf, std::fs::File)> {
    ensure_private(base)?;
    sweep_finished(base);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{prefix}-{}-{nanos}", std::process::id());
    let dir = base.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    // Made and locked under a name no sweep looks at, then renamed: another launcher's sweep
    // must never find it unlocked (it removed such a directory between our mkdir and flock).
    let hidden = base.join(format!(".new-{name}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&hidden)
        .with_context(|| format!("cannot create {}", hidden.display()))?;
    let lock = std::fs::File::open(&hidden)
        .with_context(|| format!("cannot open {}", hidden.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", hidden.display()));
    }
    std::fs::rename(&hidden, &dir)
        .with_context(|| format!("cannot rename {} to {}", hidden.display(), dir.display()))?;
    // Closed on exec: CRIU and the program never hold it.
    Ok((dir, lock))
}

/// Whether the launcher that made `dir` still runs: it holds the directory's lock.
pub fn in_use(dir: &Path) -> bool {
    let Ok(f) = std::fs::File::open(dir) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own (closed, and so unlocked, when `f` drops).
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// Removes scratch directories of launchers that are gone. The log of a failed restore is
/// kept for the user (CRIU writes `stats-restore` only when it succeeded), but not forever:
/// the newest few, for a day.
fn sweep_finished(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let mut failed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let path = e.path();
        // One a launcher died making (between its mkdir and its rename): a minute is plenty.
        if name.to_str().is_some_and(|n| n.starts_with(".new-")) {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(60));
            if old && !in_use(&path) {
                let _ = std::fs::remove_dir_all(&path);
            }
            continue;
        }
        // A dump's scratch directory (its launcher removes it; one that was killed cannot).
        if name.to_str().is_some_and(|n| n.starts_with("dump-")) {
            if !in_use(&path) {
                let _ = std::fs::remove_dir_all(&path);
            }
            continue;
        }
        if !name.to_str().is_some_and(|n| n.starts_with("restore-")) {
            continue;
        }
        if in_use(&path) {
            continue;
        }
        let failed_log = path.join("restore.log").exists() && !path.join("stats-restore").exists();
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        match age {
            Some(age) if failed_log && age < FAILED_LOG_KEPT_FOR => failed.push((age, path)),
            _ => {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
    failed.sort();
    for (_, path) in failed.iter().skip(FAILED_LOGS_KEPT) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// A scratch directory removed (with what is in it) when dropped.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const FAILED_LOGS_KEPT: usize = 10;
const FAILED_LOG_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_directories_are_locked_before_any_sweep_can_see_them() {
        let base = std::env::temp_dir().join(format!("crac-shim-scratch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (dir, lock) = scratch_dir_in(&base, "restore").unwrap();
        // Another launcher's sweep spares it while we hold it, and it has its final name.
        sweep_finished(&base);
        assert!(dir.exists() && in_use(&dir));
        assert!(dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("restore-"));
        drop(lock);
        sweep_finished(&base);
        assert!(!dir.exists(), "swept once its launcher let go");
        // What a launcher left between mkdir and rename goes after a minute.
        let stale = base.join(".new-restore-1-2");
        std::fs::create_dir(&stale).unwrap();
        let fresh = base.join(".new-restore-3-4");
        std::fs::create_dir(&fresh).unwrap();
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::open(&stale)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        sweep_finished(&base);
        assert!(!stale.exists() && fresh.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn failed_restore_logs_are_kept_a_while_then_swept() {
        let base = std::env::temp_dir().join(format!("crac-shim-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // Pids above the kernel's limit (2^22) belong to no process.
        let dir = |n: u32| base.join(format!("restore-{}", 5_000_000 + n));
        let make = |n: u32, failed: bool, age_s: u64| {
            std::fs::create_dir_all(dir(n)).unwrap();
            std::fs::write(dir(n).join("restore.log"), "log").unwrap();
            if !failed {
                std::fs::write(dir(n).join("stats-restore"), "").unwrap();
            }
            let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
            std::fs::File::open(dir(n))
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        make(0, false, 0);
        make(1, true, 2 * 24 * 3600);
        for n in 2..14 {
            make(n, true, u64::from(n));
        }
        sweep_finished(&base);
        let kept: Vec<u32> = (0..14).filter(|n| dir(*n).exists()).collect();
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(
            kept,
            (2..12).collect::<Vec<u32>>(),
            "the ten newest failed logs"
        );
    }
}
