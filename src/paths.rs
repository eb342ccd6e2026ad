//! Our private runtime directory (control sockets, restore scratch space).

use anyhow::{Context, Result};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("CRAC_SHIM_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        // SAFETY: geteuid cannot fail.
        None => PathBuf::from(crac_shim_proto::default_runtime_dir(unsafe {
            libc::geteuid()
        })),
    }
}

/// Creates `dir` 0700, or checks that the existing one is ours and private.
pub fn ensure_private(dir: &Path) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    crac_shim_proto::ensure_private_dir(dir, euid)
        .with_context(|| format!("cannot use {}", dir.display()))
}

/// A fresh private scratch directory inside the runtime directory.
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    let base = runtime_dir();
    ensure_private(&base)?;
    sweep_finished(&base);
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Removes scratch directories of launchers that are gone, unless they hold the log of a
/// failed restore (kept for the user; CRIU writes `stats-restore` only when it succeeded).
fn sweep_finished(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("restore-")) else {
            continue;
        };
        let gone = !Path::new("/proc").join(pid).exists();
        let path = e.path();
        let failed_log = path.join("restore.log").exists() && !path.join("stats-restore").exists();
        if gone && !failed_log {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
