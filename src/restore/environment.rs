//! What would make CRIU fail or do harm, checked before it runs, with a clearer message: files
//! the program had open that changed or lie where another user could swap them, ports it
//! listens on that are taken. Logs it appends to are created if missing.
//!
//! CRIU reopens the program's files by path. Each path is walked here first with the rule of
//! `safepath` (no link or directory another user could change on the way), and the file itself
//! must not be another user's in a directory anyone may add to (they could replace it by a link
//! at any moment): then the path CRIU resolves a moment later is the one checked here.

use crate::image::Image;
use anyhow::{bail, Result};
use crac_shim_proto::safepath::{self, Create, Found, IfMissing, Refusal};
use std::os::fd::AsRawFd;
use std::path::Path;

use crac_shim_proto::safepath::euid;

/// A file the restore reopens, walked; `None` when it is not there.
fn reopened(path: &str) -> Result<Option<libc::stat>> {
    let euid = euid();
    let refused =
        |why: Refusal| anyhow::anyhow!("refusing to reopen {path} for the restored program: {why}");
    match safepath::walk(Path::new(path), euid, safepath::Walk::default()) {
        Ok(Found::Other {
            parent, real, stat, ..
        }) => {
            let dir = safepath::fstat(parent.as_raw_fd())
                .map_err(|e| refused(Refusal::Io(real.clone(), e)))?;
            if dir.st_mode & libc::S_ISVTX != 0
                && stat.st_uid != euid
                && stat.st_uid != 0
                && stat.st_uid != dir.st_uid
            {
                bail!(
                    "refusing to reopen {path} for the restored program: it belongs to uid {}, in a directory anyone may add to, so that user could replace it by a link at any moment; move it into a directory of yours, or make it yours (chown)",
                    stat.st_uid
                );
            }
            Ok(Some(stat))
        }
        Ok(Found::Dir(fd, _)) => Ok(safepath::fstat(fd.as_raw_fd()).ok()),
        Ok(Found::Missing { .. }) => Ok(None),
        Err(why) if why.is_not_found() => Ok(None),
        Err(why) => Err(refused(why)),
    }
}

/// Whether `path` still holds what the dump recorded, told finer than size and seconds
/// (`None`: no finer record, an image of an earlier build).
fn unchanged(image: &Image, path: &str) -> Option<bool> {
    let then = image.meta.file_states.iter().find(|f| f.path == path)?;
    let (fd, _) = safepath::open_file(
        Path::new(path),
        euid(),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        IfMissing::Fail,
    )
    .ok()?;
    let now = crate::image::FileState::of(path, &std::fs::File::from(fd)).ok()?;
    Some(then.same_as(&now))
}

/// A file the program reopens for writing, against the state the dump recorded.
enum Recorded {
    Same,
    Changed(libc::stat),
    Gone,
}

fn as_recorded(image: &Image, size: u64, mtime: i64, path: &str) -> Result<Recorded> {
    Ok(match reopened(path)? {
        Some(st)
            if st.st_size as u64 == size
                && st.st_mtime == mtime
                && unchanged(image, path) != Some(false) =>
        {
            Recorded::Same
        }
        Some(st) => Recorded::Changed(st),
        None => Recorded::Gone,
    })
}

pub fn check_environment(image: &Image) -> Result<()> {
    for (size, mtime, path) in &image.meta.check_files {
        match reopened(path)? {
            None => bail!("{path}, which the program had open when it was checkpointed, is unavailable (No such file or directory); restore it or checkpoint again"),
            Some(st)
                if st.st_size as u64 != *size
                    || st.st_mtime != *mtime
                    || unchanged(image, path) == Some(false) =>
            {
                bail!(
                "{path} changed since the checkpoint (size {} then, {} now); the program had it open for reading: put the old file back or checkpoint again",
                size,
                st.st_size
            )
            }
            Some(_) => {}
        }
    }
    for (size, mtime, path) in &image.meta.data_files {
        match as_recorded(image, *size, *mtime, path)? {
            Recorded::Same => {}
            Recorded::Changed(st) => bail!(
                "{path} was written after the checkpoint (size {size} then, {} now): the program reopens it and would go on from its memory of the older contents, silently losing what was written since (another copy of this image, or the original after the checkpoint); restore against the data as it was at the checkpoint (a copy per restored program), or drop `allowChanges: false` from the policy rule that reopens it (then it is reopened at the saved offset, as a CRaC JDK does)",
                st.st_size
            ),
            Recorded::Gone => bail!("{path}, which the program reopens for writing, is unavailable (No such file or directory); put back the data as it was at the checkpoint"),
        }
    }
    // CRaC's way: reopened whatever happened to them, and said so.
    for (size, mtime, path) in &image.meta.reopen_files {
        match as_recorded(image, *size, *mtime, path)? {
            Recorded::Same => {}
            Recorded::Changed(st) => eprintln!(
                "crac-java: {path} changed since the checkpoint (size {size} then, {} now); the program reopens it at its saved offset, as a CRaC JDK does (`allowChanges: false` in its policy rule refuses such a restore)",
                st.st_size
            ),
            Recorded::Gone => eprintln!(
                "crac-java: {path}, which the program reopens, is gone; the restore goes on and jdk.crac.Core.checkpointRestore() throws a RestoreException naming it"
            ),
        }
    }
    for addr in &image.meta.listens {
        let Ok(sa) = addr.parse::<std::net::SocketAddr>() else {
            continue;
        };
        if let Err(e) = std::net::TcpListener::bind(sa) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                let holder = crate::claims::listener_pid(sa.port())
                    .map(|p| format!(" by pid {p}"))
                    .unwrap_or_default();
                bail!("{addr} is in use{holder}: the restored program listens there; stop whatever holds it first");
            }
        }
    }
    for path in &image.meta.append_files {
        if reopened(path)?.is_none() {
            // Made where the walk allows, never through a link, never over a file that
            // appeared meanwhile (O_EXCL); the umask applies as it would have for the program.
            safepath::open_file(
                Path::new(path),
                euid(),
                libc::O_WRONLY | libc::O_APPEND,
                IfMissing::Create(0o666, Create(0o777)),
            )
            .map_err(|why| {
                anyhow::anyhow!("cannot recreate the log {path} the program appends to: {why}")
            })?;
            // Judged like any other reopened file (a directory made meanwhile by another user
            // on the way is refused by the walk above).
            reopened(path)?;
        }
    }
    Ok(())
}

/// The files a policy reopens that may have changed (`inherit_files`), opened for CRIU to
/// inherit (close-on-exec cleared), each through its walked path.
pub fn open_inherited_files(image: &Image) -> Result<Vec<(std::os::fd::OwnedFd, String)>> {
    let mut out = Vec::new();
    for (access, path) in &image.meta.inherit_files {
        let flags = if access == "rw" {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        if reopened(path)?.is_none() {
            // Gone (said above): the copy's stand-in is /dev/null until the agent's reopen by
            // path fails and tells the program.
            let null = safepath::openat(
                libc::AT_FDCWD,
                std::ffi::OsStr::new("/dev/null"),
                flags | libc::O_CLOEXEC,
                0,
            )
            .map_err(|e| anyhow::anyhow!("cannot open /dev/null: {e}"))?;
            safepath::inheritable(&null)?;
            out.push((null, path.clone()));
            continue;
        }
        let (fd, _) = safepath::open_file(Path::new(path), euid(), flags, IfMissing::Fail)
            .map_err(|why| {
                anyhow::anyhow!("cannot reopen {path} for the restored program: {why}")
            })?;
        // CRIU keeps no position for a file it inherits: the program's, as it was frozen.
        if let Some((offset, _)) = image.meta.file_offsets.iter().find(|(_, p)| p == path) {
            // SAFETY: lseek on a descriptor we own.
            unsafe { libc::lseek(fd.as_raw_fd(), *offset, libc::SEEK_SET) };
        }
        safepath::inheritable(&fd)?;
        out.push((fd, path.clone()));
    }
    Ok(out)
}
