//! POSIX record locks (`fcntl`, what Java's `FileChannel.lock()` takes) on files the policy
//! reopens. A lock belongs to the process and the file, and goes the moment the process closes
//! any descriptor of that file: the stand-in that takes the program's descriptor for the dump
//! releases it. So the agent notes the locks first and takes them again once the file is
//! reopened, in the JVM that goes on or in the restored copy; where another process took one
//! meanwhile (another copy of this image), the program must not go on believing it holds it.

use std::os::fd::RawFd;

/// One lock this process held: its type (F_RDLCK or F_WRLCK) and byte range (len 0: to EOF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    kind: i16,
    start: i64,
    len: i64,
}

/// `dev:ino` as /proc/locks shows them (major and minor in hex).
fn file_key(st: &libc::stat) -> String {
    format!(
        "{:02x}:{:02x}:{}",
        libc::major(st.st_dev),
        libc::minor(st.st_dev),
        st.st_ino
    )
}

/// The POSIX locks `pid` holds on `key`, from /proc/locks text.
fn parse(locks: &str, pid: u32, key: &str) -> Vec<Held> {
    locks
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "1:" "POSIX" "ADVISORY" "WRITE" pid dev:ino start end
            if f.len() < 8 || f[1] != "POSIX" || f[4] != pid.to_string() || f[5] != key {
                return None;
            }
            let kind = match f[3] {
                "WRITE" => libc::F_WRLCK as i16,
                "READ" => libc::F_RDLCK as i16,
                _ => return None,
            };
            let start: i64 = f[6].parse().ok()?;
            let len = match f[7] {
                "EOF" => 0,
                end => end.parse::<i64>().ok()? - start + 1,
            };
            Some(Held { kind, start, len })
        })
        .collect()
}

/// The locks this process holds on the file open on `fd`.
pub fn held_on(fd: RawFd) -> Vec<Held> {
    let Some(st) = crate::scan::fstat(fd) else {
        return Vec::new();
    };
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    parse(&text, std::process::id(), &file_key(&st))
}

/// Takes `held` again on `fd`; the pid holding one in the way, if any.
pub fn take_again(fd: RawFd, held: &[Held]) -> Result<(), Option<i32>> {
    for h in held {
        // SAFETY: a zeroed flock, filled in; F_SETLK and F_GETLK only read and write it.
        unsafe {
            let mut fl = std::mem::zeroed::<libc::flock>();
            fl.l_type = h.kind;
            fl.l_whence = libc::SEEK_SET as i16;
            fl.l_start = h.start;
            fl.l_len = h.len;
            if libc::fcntl(fd, libc::F_SETLK, &fl) != 0 {
                let mut probe = fl;
                let holder = (libc::fcntl(fd, libc::F_GETLK, &mut probe) == 0
                    && probe.l_type != libc::F_UNLCK as i16)
                    .then_some(probe.l_pid);
                return Err(holder);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_posix_locks_are_read_from_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 42 fe:00:77 0 EOF\n\
                    2: POSIX  ADVISORY  READ  42 fe:00:77 10 19\n\
                    2: -> POSIX  ADVISORY  WRITE 43 fe:00:77 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 42 fe:00:77 0 EOF\n\
                    4: POSIX  ADVISORY  WRITE 7 fe:00:77 0 EOF\n";
        assert_eq!(
            parse(text, 42, "fe:00:77"),
            [
                Held {
                    kind: libc::F_WRLCK as i16,
                    start: 0,
                    len: 0
                },
                Held {
                    kind: libc::F_RDLCK as i16,
                    start: 10,
                    len: 10
                }
            ]
        );
    }
}
