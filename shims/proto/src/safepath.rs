//! Paths that other users may control: resolved once, component by component, then used
//! through descriptors.
//!
//! The rule is OpenSSH's StrictModes and systemd's `chase()`, applied by us whatever
//! `fs.protected_symlinks` says: every directory on the way belongs to the walker or to root,
//! and nobody else may write it, unless it is sticky (as /tmp), where others may add entries
//! but not rename or remove ours; a symbolic link is followed only if it belongs to the walker
//! or to root. Whatever such a walk reaches can then not be swapped by another user between our
//! check and our use, so a descriptor (or `/proc/self/fd/N`) of it, or a path whose every
//! component passed, is safe to hand on.
//!
//! Shared by the launcher and the agent; free of hooks (libc declarations only).

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Why a path was not used.
#[derive(Debug)]
pub enum Refusal {
    /// A symbolic link on the way that another user owns (and so may have aimed anywhere).
    ForeignLink {
        link: PathBuf,
        owner: u32,
    },
    /// A directory on the way that belongs to another user, who could swap what lies below.
    ForeignDir {
        dir: PathBuf,
        owner: u32,
    },
    /// A directory on the way that others may write, without the sticky bit.
    OpenToOthers {
        dir: PathBuf,
        mode: u32,
        /// The group that may write it, when that is how.
        group: Option<u32>,
    },
    NotADirectory(PathBuf),
    TooManyLinks(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl Refusal {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Refusal::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// The path the refusal is about.
    pub fn path(&self) -> &Path {
        match self {
            Refusal::ForeignLink { link: p, .. }
            | Refusal::ForeignDir { dir: p, .. }
            | Refusal::OpenToOthers { dir: p, .. }
            | Refusal::NotADirectory(p)
            | Refusal::TooManyLinks(p)
            | Refusal::Io(p, _) => p,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ForeignLink { link, owner } => write!(
                f,
                "{} is a symbolic link of uid {owner}: refusing to follow a link another user placed; give the real path",
                link.display()
            ),
            Refusal::ForeignDir { dir, owner } => write!(
                f,
                "{} belongs to uid {owner}: that user could swap what lies below it; use a directory of yours or root's",
                dir.display()
            ),
            Refusal::OpenToOthers { dir, mode, group: Some(gid) } => write!(
                f,
                "{} is writable by group {gid}, which has other members (mode {:o}, not sticky): they could swap what lies below it; chmod g-w it or use another directory",
                dir.display(),
                mode & 0o7777
            ),
            Refusal::OpenToOthers { dir, mode, group: None } => write!(
                f,
                "{} is writable by others (mode {:o}, not sticky): anyone could swap what lies below it; chmod o-w it (or +t) or use another directory",
                dir.display(),
                mode & 0o7777
            ),
            Refusal::NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
            Refusal::TooManyLinks(p) => {
                write!(f, "{}: too many levels of symbolic links", p.display())
            }
            Refusal::Io(p, e) => write!(f, "cannot use {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for Refusal {}

/// What a walk reached.
pub enum Found {
    /// A directory, as an `O_PATH` descriptor, and the real path to it.
    Dir(OwnedFd, PathBuf),
    /// Something else (a file, a socket): its trusted parent directory and its name there.
    Other {
        parent: OwnedFd,
        real: PathBuf,
        name: OsString,
        stat: libc::stat,
    },
    /// Nothing (the last component only): its trusted parent directory and the name to create.
    Missing {
        parent: OwnedFd,
        real: PathBuf,
        name: OsString,
    },
}

/// Directories made on the way (mkdir -p), with this mode (the umask applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Create(pub u32);

const MAX_LINKS: u32 = 40;

fn cstr(name: &OsStr) -> CString {
    // Path components never hold NUL (they come from a Path or from readlink).
    CString::new(name.as_bytes()).unwrap_or_default()
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn fd_result(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: a descriptor the kernel just returned to us, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat` with `O_CLOEXEC` added.
pub fn openat(dir: RawFd, name: &OsStr, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
    let c = cstr(name);
    // SAFETY: `c` is a NUL-terminated string alive across the call; `dir` is a descriptor or
    // AT_FDCWD.
    fd_result(unsafe {
        libc::openat(
            dir,
            c.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

pub fn fstat(fd: RawFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(last_error());
    }
    Ok(st)
}

/// `fstatat` without following a last symbolic link.
pub fn lstatat(dir: RawFd, name: &OsStr) -> std::io::Result<libc::stat> {
    let c = cstr(name);
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` and `st` are valid for the call.
    if unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(last_error());
    }
    Ok(st)
}

fn readlink_of(fd: RawFd) -> std::io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty name with an O_PATH descriptor of a link reads that link; `buf` is
    // writable for its length.
    let n = unsafe {
        libc::readlinkat(
            fd,
            c"".as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_char>(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(last_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

fn is_type(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// The effective user the walks are made for.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether users other than `uid` are in group `gid` (as a supplementary group in /etc/group,
/// or as anyone's primary group in /etc/passwd). A group we cannot name counts as shared.
pub fn group_has_others(gid: u32, uid: u32) -> bool {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let users: Vec<(&str, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                *f.first()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    let me = users.iter().find(|u| u.1 == uid).map(|u| u.0);
    if users.iter().any(|u| u.2 == gid && u.1 != uid) {
        return true;
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut named = false;
    for l in groups.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(gid) {
            continue;
        }
        named = true;
        let members = f.get(3).copied().unwrap_or("");
        if members
            .split(',')
            .filter(|m| !m.is_empty())
            .any(|m| Some(m) != me)
        {
            return true;
        }
    }
    let primary_of_someone = users.iter().any(|u| u.2 == gid);
    !named && !primary_of_someone
}

/// Whether a directory with this status may lie on the way for `euid`.
pub fn check_dir(st: &libc::stat, path: &Path, euid: u32) -> Result<(), Refusal> {
    if st.st_uid != euid && st.st_uid != 0 {
        return Err(Refusal::ForeignDir {
            dir: path.into(),
            owner: st.st_uid,
        });
    }
    let mode = st.st_mode;
    if mode & libc::S_ISVTX != 0 {
        return Ok(());
    }
    if mode & libc::S_IWOTH != 0 {
        return Err(Refusal::OpenToOthers {
            dir: path.into(),
            mode,
            group: None,
        });
    }
    if mode & libc::S_IWGRP != 0 && group_has_others(st.st_gid, euid) {
        return Err(Refusal::OpenToOthers {
            dir: path.into(),
            mode,
            group: Some(st.st_gid),
        });
    }
    Ok(())
}

/// How to walk.
#[derive(Clone, Copy, Debug, Default)]
pub struct Walk {
    /// Make missing directories on the way, with this mode.
    pub create: Option<Create>,
    /// ... the last component too (else a missing last component is `Found::Missing`).
    pub create_last: bool,
    /// Hold the last directory to the rule too (else the caller judges it, with its own words).
    pub judge_last: bool,
}

/// Walks `path` from `/` (a relative path from the current directory, itself walked) for the
/// user `euid`.
pub fn walk(path: &Path, euid: u32, how: Walk) -> Result<Found, Refusal> {
    let Walk {
        create,
        create_last,
        judge_last,
    } = how;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Refusal::Io(path.into(), e))?
            .join(path)
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_components(&mut todo, &absolute, false);
    let root = openat(
        libc::AT_FDCWD,
        OsStr::new("/"),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| Refusal::Io("/".into(), e))?;
    let st = fstat(root.as_raw_fd()).map_err(|e| Refusal::Io("/".into(), e))?;
    check_dir(&st, Path::new("/"), euid)?;
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root, PathBuf::from("/"))];
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        let (dir, dir_path) = stack.last().expect("the root stays");
        let here = dir_path.join(&name);
        let fd = match openat(dir.as_raw_fd(), &name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create {
                Some(Create(mode)) if !last || create_last => {
                    let c = cstr(&name);
                    // SAFETY: `c` is valid for the call; `dir` is a trusted directory.
                    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) } != 0
                        && last_error().kind() != std::io::ErrorKind::AlreadyExists
                    {
                        return Err(Refusal::Io(here, last_error()));
                    }
                    // Looked at again: made by us, or by whoever won the race (judged below).
                    todo.push_front(name);
                    continue;
                }
                _ if last => {
                    let (dir, real) = stack.pop().expect("the root stays");
                    return Ok(Found::Missing {
                        parent: dir,
                        real,
                        name,
                    });
                }
                _ => return Err(Refusal::Io(here, e)),
            },
            Err(e) => return Err(Refusal::Io(here, e)),
        };
        let st = fstat(fd.as_raw_fd()).map_err(|e| Refusal::Io(here.clone(), e))?;
        if is_type(&st, libc::S_IFLNK) {
            if st.st_uid != euid && st.st_uid != 0 {
                return Err(Refusal::ForeignLink {
                    link: here,
                    owner: st.st_uid,
                });
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(Refusal::TooManyLinks(here));
            }
            let target = readlink_of(fd.as_raw_fd()).map_err(|e| Refusal::Io(here, e))?;
            let target = PathBuf::from(target);
            if target.is_absolute() {
                stack.truncate(1);
            }
            push_components(&mut todo, &target, true);
            continue;
        }
        if is_type(&st, libc::S_IFDIR) {
            if !last || judge_last {
                check_dir(&st, &here, euid)?;
            }
            stack.push((fd, here));
            continue;
        }
        if !last {
            return Err(Refusal::NotADirectory(here));
        }
        let (parent, _) = stack.pop().expect("the root stays");
        return Ok(Found::Other {
            parent,
            real: here,
            name,
            stat: st,
        });
    }
    let (fd, real) = stack.pop().expect("the root stays");
    Ok(Found::Dir(fd, real))
}

/// Queues the components of `path`: at the back for the path we were given, at the front
/// (ahead of what remains) for a link's target.
fn push_components(todo: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    if front {
        for p in parts.into_iter().rev() {
            todo.push_front(p);
        }
    } else {
        todo.extend(parts);
    }
}

/// Reopens an `O_PATH` directory descriptor for reading (and as a `*at` base).
pub fn reopen_dir(fd: &OwnedFd, real: &Path) -> Result<OwnedFd, Refusal> {
    openat(
        fd.as_raw_fd(),
        OsStr::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| Refusal::Io(real.into(), e))
}

/// The directory at `path`, every step trusted, open for reading; made (with parents) if
/// missing when `create` says so. Returns the descriptor and the real path.
pub fn open_dir(
    path: &Path,
    euid: u32,
    create: Option<Create>,
) -> Result<(OwnedFd, PathBuf), Refusal> {
    open_dir_with(
        path,
        euid,
        Walk {
            create,
            create_last: true,
            judge_last: true,
        },
    )
}

/// `open_dir`, walked as `how` says.
pub fn open_dir_with(path: &Path, euid: u32, how: Walk) -> Result<(OwnedFd, PathBuf), Refusal> {
    match walk(path, euid, how)? {
        Found::Dir(fd, real) => Ok((reopen_dir(&fd, &real)?, real)),
        Found::Other { real, .. } => Err(Refusal::NotADirectory(real)),
        Found::Missing { real, name, .. } => Err(Refusal::Io(
            real.join(name),
            std::io::Error::from_raw_os_error(libc::ENOENT),
        )),
    }
}

/// How `open_file` treats a file that is not there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Fail,
    /// Create it (`O_EXCL`, never through a link), with this mode; missing directories on the
    /// way are made with `Create`.
    Create(u32, Create),
}

/// Opens the file at `path` with `flags` (`O_NOFOLLOW` added: the last step was already
/// walked), every step trusted. The file itself may belong to anyone: what matters is that
/// nobody else could have put it there.
pub fn open_file(
    path: &Path,
    euid: u32,
    flags: i32,
    missing: IfMissing,
) -> Result<(OwnedFd, PathBuf), Refusal> {
    let create = match missing {
        IfMissing::Create(_, dirs) => Some(dirs),
        IfMissing::Fail => None,
    };
    let how = Walk {
        create,
        create_last: false,
        judge_last: true,
    };
    match walk(path, euid, how)? {
        Found::Dir(_, real) => Err(Refusal::Io(
            real,
            std::io::Error::from_raw_os_error(libc::EISDIR),
        )),
        Found::Other {
            parent,
            real,
            name,
            stat,
        } => {
            let fd = openat(
                parent.as_raw_fd(),
                &name,
                (flags & !(libc::O_CREAT | libc::O_EXCL)) | libc::O_NOFOLLOW,
                0,
            )
            .map_err(|e| Refusal::Io(real.clone(), e))?;
            let now = fstat(fd.as_raw_fd()).map_err(|e| Refusal::Io(real.clone(), e))?;
            if (now.st_dev, now.st_ino) != (stat.st_dev, stat.st_ino) {
                return Err(Refusal::Io(
                    real,
                    std::io::Error::other("it was replaced while we opened it"),
                ));
            }
            Ok((fd, real))
        }
        Found::Missing { parent, real, name } => match missing {
            IfMissing::Create(mode, _) => {
                let here = real.join(&name);
                let fd = openat(
                    parent.as_raw_fd(),
                    &name,
                    flags | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    mode,
                )
                .map_err(|e| Refusal::Io(here.clone(), e))?;
                Ok((fd, here))
            }
            IfMissing::Fail => Err(Refusal::Io(
                real.join(name),
                std::io::Error::from_raw_os_error(libc::ENOENT),
            )),
        },
    }
}

/// The parent directory of `path` (walked, trusted, made if `create` says so) open for
/// reading, and the last component's name, not looked at: for creating, renaming or removing
/// an entry relative to a directory nobody else can change.
pub fn open_parent(
    path: &Path,
    euid: u32,
    create: Option<Create>,
) -> Result<(OwnedFd, PathBuf, OsString), Refusal> {
    let name = match path.file_name() {
        Some(n) => n.to_os_string(),
        None => {
            return Err(Refusal::Io(
                path.into(),
                std::io::Error::other("it names no entry"),
            ))
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::env::current_dir().map_err(|e| Refusal::Io(path.into(), e))?,
    };
    let (fd, real) = open_dir(&parent, euid, create)?;
    Ok((fd, real, name))
}

/// `/proc/self/fd/N`: a path to what the descriptor holds that no rename can redirect, for
/// programs that take paths (CRIU). The descriptor must stay open, and be inherited by them.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Lets `fd` pass to programs we start (clears close-on-exec).
pub fn inheritable(fd: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: F_SETFD on a descriptor the caller owns.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(last_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("safepath-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn links_of_ours_are_followed_and_dotdot_is_lexical_after_them() {
        let d = scratch("follow");
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(d.join("real/sub"), d.join("link")).unwrap();
        std::fs::write(d.join("real/f"), "x").unwrap();
        let (_, real) = open_dir(&d.join("link"), euid(), None).unwrap();
        assert_eq!(real, d.join("real/sub"));
        let (_, real) = open_file(
            &d.join("link/../f"),
            euid(),
            libc::O_RDONLY,
            IfMissing::Fail,
        )
        .unwrap();
        assert_eq!(real, d.join("real/f"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_open_to_others_are_refused_unless_sticky() {
        let d = scratch("open");
        std::fs::create_dir(d.join("w")).unwrap();
        std::fs::set_permissions(d.join("w"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(d.join("w/in")).unwrap();
        let e = open_dir(&d.join("w/in"), euid(), None).unwrap_err();
        assert!(matches!(e, Refusal::OpenToOthers { .. }), "{e}");
        assert!(e.to_string().contains("mode 777"), "{e}");
        std::fs::set_permissions(d.join("w"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        open_dir(&d.join("w/in"), euid(), None).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_parts_are_made_and_files_created_exclusively() {
        let d = scratch("create");
        let p = d.join("a/b/log");
        let (_, real) = open_file(
            &p,
            euid(),
            libc::O_WRONLY | libc::O_APPEND,
            IfMissing::Create(0o600, Create(0o755)),
        )
        .unwrap();
        assert_eq!(real, p);
        assert!(p.is_file());
        // Found, not created again.
        open_file(
            &p,
            euid(),
            libc::O_WRONLY | libc::O_APPEND,
            IfMissing::Create(0o600, Create(0o755)),
        )
        .unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_in_the_middle_is_not_a_directory() {
        let d = scratch("notdir");
        std::fs::write(d.join("f"), "").unwrap();
        let e = open_dir(&d.join("f/x"), euid(), None).unwrap_err();
        assert!(matches!(e, Refusal::NotADirectory(_)), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
