//! Where a checkpoint goes: the image directory's parent, walked once and held open; the dump
//! written into a fresh hidden sibling through its descriptor, then swapped in by name
//! relative to the held parent. Nobody else can redirect any of it: the walk refuses a parent
//! others may write (unless sticky, where they cannot rename our entries) and links of other
//! users, and nothing is reached by path again.

use anyhow::{bail, Context, Result};
use crac_shim_proto::safepath::{self, Create};
use crac_shim_proto::METADATA_FILE;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crac_shim_proto::safepath::euid;

/// The image directory's parent, held, and the image's name in it.
pub struct Target {
    parent: OwnedFd,
    name: OsString,
    shown: PathBuf,
}

/// A dump under way: a private directory beside the image.
pub struct Staging {
    fd: OwnedFd,
    name: OsString,
}

fn hidden(name: &OsStr, suffix: &str) -> OsString {
    let mut n = OsString::from(".");
    n.push(name);
    n.push(suffix);
    n
}

/// Creates `dir` (mode 0700, parents as needed) or checks that an existing one may receive
/// an image: ours, and empty or an earlier image.
pub fn prepare(dir: &Path) -> Result<Target> {
    let shown = dir.display();
    let euid = euid();
    let (parent, _, name) = safepath::open_parent(dir, euid, Some(Create(0o777)))
        .map_err(|why| anyhow::anyhow!("cannot checkpoint to {shown}: {why}"))?;
    if name == "." || name == ".." {
        bail!("cannot checkpoint to {shown}: give the directory by its own name");
    }
    let target = Target {
        parent,
        name,
        shown: dir.to_path_buf(),
    };
    match safepath::lstatat(target.parent.as_raw_fd(), &target.name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let c = std::ffi::CString::new(target.name.as_bytes()).context("bad name")?;
            // SAFETY: `c` is valid for the call; the parent is a descriptor we hold.
            if unsafe { libc::mkdirat(target.parent.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot create {shown}"));
            }
            Ok(target)
        }
        Err(e) => Err(e).with_context(|| format!("cannot use {shown}")),
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            bail!("{shown} is a symbolic link; give the real directory")
        }
        Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => {
            bail!("{shown} exists and is not a directory")
        }
        Ok(st) => {
            if st.st_uid != euid {
                bail!("{shown} belongs to uid {}, not to you", st.st_uid);
            }
            let inside = target.entry_path(&target.name);
            let empty = std::fs::read_dir(&inside)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty && std::fs::symlink_metadata(inside.join(METADATA_FILE)).is_err() {
                bail!("{shown} is neither empty nor a crac-shim image: refusing to replace what is in it; give a new or empty directory");
            }
            // A checkpoint writes beside the directory and swaps it in: the parent must take
            // writes (a volume mounted read-only would fail only at the checkpoint).
            // SAFETY: faccessat on a descriptor we hold, with a static name.
            if unsafe {
                libc::faccessat(
                    target.parent.as_raw_fd(),
                    c".".as_ptr(),
                    libc::W_OK,
                    libc::AT_EACCESS,
                )
            } != 0
            {
                let e = std::io::Error::last_os_error();
                bail!(
                    "cannot write an image next to {shown}: {} ({e}); give a writable directory",
                    dir.parent().unwrap_or(Path::new("/")).display()
                );
            }
            Ok(target)
        }
    }
}

impl Target {
    /// A path to `name` in the held parent that no rename of the parent's ancestors changes.
    fn entry_path(&self, name: &OsStr) -> PathBuf {
        safepath::fd_path(&self.parent).join(name)
    }

    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Where the log of a failed dump is kept: a hidden sibling, replaced by the next.
    pub fn failed_log(&self) -> PathBuf {
        self.shown
            .with_file_name(hidden(&self.name, ".crac-dump-failed.log"))
    }

    /// A fresh private directory for the dump. A leftover of ours is cleared; a name another
    /// user took first (in a sticky directory) is left to them and another name taken.
    pub fn stage(&self) -> Result<Staging> {
        let euid = euid();
        let mut name = hidden(&self.name, ".crac-new");
        for attempt in 0.. {
            if attempt > 0 {
                name = hidden(
                    &self.name,
                    &format!(".crac-new-{}-{attempt}", std::process::id()),
                );
            }
            if attempt > 8 {
                bail!(
                    "cannot find a free name beside {} for the new image",
                    self.shown.display()
                );
            }
            match safepath::lstatat(self.parent.as_raw_fd(), &name) {
                Ok(st) if st.st_uid == euid && st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                    // Not following links: std's remove_dir_all works below descriptors.
                    std::fs::remove_dir_all(self.entry_path(&name)).with_context(|| {
                        format!("cannot clear a leftover beside {}", self.shown.display())
                    })?;
                }
                Ok(_) => continue,
                Err(_) => {}
            }
            let c = std::ffi::CString::new(name.as_bytes()).context("bad name")?;
            // SAFETY: `c` is valid for the call; the parent is a descriptor we hold.
            if unsafe { libc::mkdirat(self.parent.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    continue;
                }
                return Err(e).with_context(|| {
                    format!("cannot create a directory beside {}", self.shown.display())
                });
            }
            let fd = safepath::openat(
                self.parent.as_raw_fd(),
                &name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .with_context(|| {
                format!("cannot open the new image beside {}", self.shown.display())
            })?;
            let st = safepath::fstat(fd.as_raw_fd())?;
            if st.st_uid != euid {
                continue;
            }
            return Ok(Staging { fd, name });
        }
        unreachable!("the loop returns")
    }

    /// Keeps the log of a failed dump beside the image (never through a link: a rename).
    pub fn keep_failed_log(&self, staging: &Staging, log: &str) -> bool {
        let to = hidden(&self.name, ".crac-dump-failed.log");
        let (from, to) = (
            std::ffi::CString::new(log).unwrap_or_default(),
            std::ffi::CString::new(to.as_bytes()).unwrap_or_default(),
        );
        // SAFETY: both names are valid for the call; both directories are descriptors we hold.
        unsafe {
            libc::renameat(
                staging.fd.as_raw_fd(),
                from.as_ptr(),
                self.parent.as_raw_fd(),
                to.as_ptr(),
            ) == 0
        }
    }

    /// Removes a dump that will not become the image.
    pub fn discard(&self, staging: Staging) {
        let _ = std::fs::remove_dir_all(self.entry_path(&staging.name));
    }

    /// Makes the finished dump the image, atomically when one was there.
    pub fn install(&self, staging: Staging) -> Result<()> {
        // SAFETY: fchmod on a descriptor we hold.
        if unsafe { libc::fchmod(staging.fd.as_raw_fd(), 0o700) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot make the image private");
        }
        let p = self.parent.as_raw_fd();
        let (new, dir) = (
            std::ffi::CString::new(staging.name.as_bytes()).context("bad name")?,
            std::ffi::CString::new(self.name.as_bytes()).context("bad name")?,
        );
        let shown = self.shown.display();
        match safepath::lstatat(p, &self.name) {
            Ok(_) => {
                // SAFETY: renameat2 by names relative to a descriptor we hold.
                if unsafe {
                    libc::renameat2(p, new.as_ptr(), p, dir.as_ptr(), libc::RENAME_EXCHANGE)
                } != 0
                {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("cannot swap the new image into {shown}"));
                }
                // The staging name now holds the previous image.
                std::fs::remove_dir_all(self.entry_path(&staging.name))
                    .with_context(|| format!("cannot remove the previous image of {shown}"))?;
            }
            Err(_) => {
                // SAFETY: renameat2 by names relative to a descriptor we hold; NOREPLACE: a
                // name someone took meanwhile is not ours to replace.
                if unsafe {
                    libc::renameat2(p, new.as_ptr(), p, dir.as_ptr(), libc::RENAME_NOREPLACE)
                } != 0
                {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("cannot move the new image to {shown}"));
                }
            }
        }
        Ok(())
    }
}

impl Staging {
    /// A path into the new image through our descriptor, for us and for CRIU's `-D`.
    pub fn fs(&self) -> PathBuf {
        safepath::fd_path(&self.fd)
    }

    /// Lets `cmd` (CRIU) inherit the descriptor behind `fs()` (held for the whole dump).
    pub fn pass_to(&self, cmd: &mut std::process::Command) {
        super::pass_to(&self.fd, cmd);
    }
}
