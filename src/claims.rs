//! What a restored copy holds that no other copy may hold at the same time: the addresses it
//! listens on, in its network namespace. Two restores of one server image started together
//! must not both come up listening (the kernel lets CRIU's restored sockets share an address),
//! so each restore takes an exclusive lock per address before CRIU runs and holds it for as
//! long as the copy lives; the loser is refused in one line naming the holder.
//!
//! The locks live in the user's runtime directory: they order the restores of one user (and
//! of containers sharing that directory). Another user's process, or any program holding the
//! address, is found by the bind check that follows.

use anyhow::{bail, Context, Result};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Locks held for a restored copy; released when dropped (or when this process ends).
pub struct Claims {
    held: Vec<(PathBuf, std::fs::File)>,
}

impl Drop for Claims {
    /// The lock file goes with the lock: one file per address ever restored would pile up.
    /// Removed while still locked, so a restore that opened it meanwhile finds, once it holds
    /// the lock, that the name no longer leads to it (`lock_file`) and starts again.
    fn drop(&mut self) {
        for (path, _) in &self.held {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The network namespace we (and the copy we restore) live in.
fn netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino())
}

fn lock_name(addr: &str) -> String {
    let safe: String = addr
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("listen-{}-{safe}.lock", netns())
}

/// Takes every address in `listens` for this process, or says who has one.
pub fn take(runtime_dir: &Path, listens: &[String]) -> Result<Claims> {
    if listens.is_empty() {
        return Ok(Claims { held: Vec::new() });
    }
    let dir = runtime_dir.join("claims");
    crate::paths::ensure_private(&dir)?;
    sweep_abandoned(&dir);
    let mut claims = Claims { held: Vec::new() };
    for addr in listens {
        let path = dir.join(lock_name(addr));
        let Some(f) = lock_file(&path)? else {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            bail!(
                "{addr} is taken by another restored copy (crac-java pid {}{}): one copy per address and network namespace; stop that one, or restore this one in a network namespace of its own",
                if holder.is_empty() { "unknown" } else { holder },
                jvm_of(holder).map(|j| format!(", its JVM pid {j}")).unwrap_or_default()
            );
        };
        // Padded, never truncated: a truncate on a journalled file system costs most of a
        // millisecond, and the reader trims.
        use std::os::unix::fs::FileExt;
        f.write_all_at(format!("{:<10}", std::process::id()).as_bytes(), 0)?;
        claims.held.push((path, f));
    }
    Ok(claims)
}

/// The lock file at `path`, created if missing and locked, or None when another process holds
/// it. A file that was removed (or replaced) between our open and our lock is not the lock any
/// more: it is let go and the name opened again.
fn lock_file(path: &Path) -> Result<Option<std::fs::File>> {
    loop {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Ok(None);
        }
        if still_named(&f, path) {
            return Ok(Some(f));
        }
    }
}

/// Whether `path` still leads to the open file `f`.
fn still_named(f: &std::fs::File, path: &Path) -> bool {
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Removes the lock files no process holds: those of copies whose crac-java was killed (a
/// lock dies with its holder, the file stays).
fn sweep_abandoned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("listen-") {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        // Removed under the lock, and only if the name is still this file: see `lock_file`.
        if free && still_named(&f, &path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The JVM below a restoring crac-java (its last descendant).
fn jvm_of(launcher: &str) -> Option<u32> {
    crate::supervise::descendants(launcher.parse().ok()?)
        .last()
        .copied()
}

/// The pid of a process holding a listening TCP socket on `port`, if this user can see it.
pub fn listener_pid(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    let local_port = cols.get(1)?.rsplit(':').next()?;
                    // State 0A: LISTEN.
                    let inode = cols.get(9)?;
                    (u16::from_str_radix(local_port, 16).ok()? == port && cols.get(3)? == &"0A")
                        .then(|| format!("socket:[{inode}]"))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let fds = std::fs::read_dir(p.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            })
            .then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_names_are_plain_file_names() {
        let n = super::lock_name("[::1]:8080");
        assert!(
            n.starts_with("listen-") && n.ends_with("-___1__8080.lock"),
            "{n}"
        );
        assert!(!super::lock_name("../../x:1").contains('/'));
    }

    fn scratch() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "crac-shim-claims-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn lock_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("claims")).map_or(0, |e| e.count())
    }

    #[test]
    fn an_address_is_held_once_and_its_file_goes_with_it() {
        let dir = scratch();
        let addr = vec!["127.0.0.1:18999".to_string()];
        let first = super::take(&dir, &addr).unwrap();
        let second = super::take(&dir, &addr).err().expect("taken twice");
        assert!(
            second
                .to_string()
                .contains(&format!("crac-java pid {}", std::process::id())),
            "{second}"
        );
        drop(first);
        assert_eq!(lock_files(&dir), 0);
        let again = super::take(&dir, &addr).unwrap();
        assert_eq!(lock_files(&dir), 1);
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_left_by_killed_launchers_are_swept() {
        let dir = scratch();
        let held = super::take(&dir, &["127.0.0.1:18998".to_string()]).unwrap();
        // What a SIGKILLed launcher leaves: the file, no lock.
        let abandoned = dir.join("claims").join(super::lock_name("127.0.0.1:18997"));
        std::fs::write(&abandoned, "1").unwrap();
        let other = super::take(&dir, &["127.0.0.1:18996".to_string()]).unwrap();
        assert!(!abandoned.exists());
        assert_eq!(lock_files(&dir), 2, "the held ones stay");
        drop((held, other));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
