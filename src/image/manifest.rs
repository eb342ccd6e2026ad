//! The manifest written with every image: each file's size and a fast checksum, so that a
//! truncated, missing or damaged file is named before CRIU reads it (CRIU spins on a truncated
//! pages file and silently restores a truncated shared-memory one).

use std::io::Read;
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "crac-shim.manifest";
const HEADER: &str = "# crac-shim image manifest: size checksum name";

/// One file of the image as the dump left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub checksum: u64,
}

/// What is wrong with an image's files.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    NoManifest,
    BadManifest(usize),
    Missing(PathBuf),
    Size { file: PathBuf, is: u64, was: u64 },
    Checksum(PathBuf),
    Unreadable(PathBuf, String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NoManifest => write!(f, "it has no {MANIFEST_FILE} (made by an older crac-shim, or not complete); checkpoint again"),
            Problem::BadManifest(line) => write!(f, "its {MANIFEST_FILE} is damaged (line {line}); checkpoint again"),
            Problem::Missing(p) => write!(f, "{} is missing: the image is incomplete; copy it again or checkpoint again", p.display()),
            Problem::Size { file, is, was } => write!(f, "{} has {is} bytes where the checkpoint wrote {was}: the image is damaged (a copy cut short?); copy it again or checkpoint again", file.display()),
            Problem::Checksum(p) => write!(f, "{} does not match its checksum: the image is damaged; copy it again or checkpoint again", p.display()),
            Problem::Unreadable(p, e) => write!(f, "cannot read {}: {e}", p.display()),
        }
    }
}

/// A 64-bit checksum over four interleaved lanes, fast enough to check gigabytes at the speed
/// of the page cache. It guards against damage, not against an attacker: that is the job of
/// the ownership rules (an image only its user can write).
#[derive(Clone)]
pub struct Hasher {
    lanes: [u64; 4],
    tail: Vec<u8>,
    len: u64,
}

const PRIME: u64 = 0x9e37_79b1_85eb_ca87;

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher {
            lanes: [
                0x243f_6a88_85a3_08d3,
                0x1319_8a2e_0370_7344,
                0xa409_3822_299f_31d0,
                0x082e_fa98_ec4e_6c89,
            ],
            tail: Vec::new(),
            len: 0,
        }
    }
}

impl Hasher {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let need = 32 - self.tail.len();
            let take = need.min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 32 {
                return;
            }
            let block = std::mem::take(&mut self.tail);
            self.block(&block);
        }
        let mut chunks = data.chunks_exact(32);
        for c in &mut chunks {
            self.block(c);
        }
        self.tail.extend_from_slice(chunks.remainder());
    }

    fn block(&mut self, c: &[u8]) {
        for (lane, word) in self.lanes.iter_mut().zip(c.chunks_exact(8)) {
            let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            *lane = (*lane ^ w).wrapping_mul(PRIME).rotate_left(31);
        }
    }

    pub fn finish(mut self) -> u64 {
        let tail = std::mem::take(&mut self.tail);
        let mut padded = [0u8; 32];
        padded[..tail.len()].copy_from_slice(&tail);
        self.block(&padded);
        let mut h = self.len.wrapping_mul(PRIME);
        for lane in self.lanes {
            h = (h ^ lane).wrapping_mul(PRIME).rotate_left(27);
        }
        h ^ (h >> 29)
    }
}

/// Opens a file of an image for reading: only a regular file, never through a link, and
/// without blocking on whatever else a hostile image could hold (a FIFO would never answer).
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

fn checksum_of(path: &Path) -> std::io::Result<u64> {
    let f = open_regular(path)?;
    let len = f.metadata()?.len() as usize;
    let mut h = Hasher::default();
    if len == 0 {
        return Ok(h.finish());
    }
    // Mapped rather than read: no copy through a buffer, which is most of the cost of reading
    // an image from the page cache.
    // SAFETY: a private read-only mapping of a file we opened, of its current length; the
    // slice lives only while the mapping does (unmapped below). A file shrunk meanwhile by its
    // owner would raise SIGBUS, which the manifest's size check made just before rules out
    // for anyone but the image's owner.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        );
        if p == libc::MAP_FAILED {
            return checksum_by_reading(f);
        }
        libc::madvise(p, len, libc::MADV_SEQUENTIAL);
        h.update(std::slice::from_raw_parts(p.cast::<u8>(), len));
        libc::munmap(p, len);
    }
    Ok(h.finish())
}

fn checksum_by_reading(mut f: std::fs::File) -> std::io::Result<u64> {
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// A file's checksum taken while the dump was written, valid while its size and
/// modification time are these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub size: u64,
    pub mtime_ns: i128,
    pub checksum: u64,
}

fn stamp(m: &std::fs::Metadata) -> (u64, i128) {
    use std::os::unix::fs::MetadataExt;
    (
        m.len(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    )
}

/// Checksums taken while the dump is written: each file CRIU closes after writing it
/// (inotify's IN_CLOSE_WRITE) is hashed at once, on another CPU and from the page cache,
/// rather than all of them read back once the dump is done (a fifth of a 1 GB checkpoint).
pub struct Prehash {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<std::collections::HashMap<String, Known>>,
}

impl Prehash {
    /// None when inotify is unavailable: the manifest then reads everything back.
    pub fn watch(dir: &Path) -> Option<Prehash> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 has no preconditions; the descriptor is owned at once.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: raw is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: a valid descriptor and NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_CLOSE_WRITE) } < 0
        {
            return None;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("prehash".into())
            .spawn(move || {
                let mut known = std::collections::HashMap::new();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let last = stopping.load(std::sync::atomic::Ordering::Acquire);
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, if last { 0 } else { 50 }) };
                    // SAFETY: buf is writable for its length.
                    let n =
                        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    if n > 0 {
                        for name in closed_names(&buf[..n as usize]) {
                            hash_into(&dir, name, &mut known);
                        }
                        continue;
                    }
                    if last {
                        return known;
                    }
                }
            })
            .ok()?;
        Some(Prehash { stop, thread })
    }

    /// What was hashed; files closed since are hashed now.
    pub fn finish(self) -> std::collections::HashMap<String, Known> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// The names in a buffer of inotify events.
fn closed_names(mut events: &[u8]) -> Vec<String> {
    let head = std::mem::size_of::<libc::inotify_event>();
    let mut out = Vec::new();
    while events.len() >= head {
        let len = u32::from_ne_bytes(events[12..16].try_into().unwrap()) as usize;
        let Some(name) = events.get(head..head + len) else {
            break;
        };
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        if !name.is_empty() {
            out.push(String::from_utf8_lossy(name).into_owned());
        }
        events = &events[(head + len).min(events.len())..];
    }
    out
}

fn hash_into(dir: &Path, name: String, known: &mut std::collections::HashMap<String, Known>) {
    let path = dir.join(&name);
    let (Ok(before), Ok(checksum)) = (std::fs::symlink_metadata(&path), checksum_of(&path)) else {
        return;
    };
    match std::fs::symlink_metadata(&path) {
        Ok(after) if before.is_file() && stamp(&before) == stamp(&after) => {
            let (size, mtime_ns) = stamp(&after);
            known.insert(
                name,
                Known {
                    size,
                    mtime_ns,
                    checksum,
                },
            );
        }
        _ => {
            known.remove(&name);
        }
    }
}

/// Every regular file of the finished dump in `dir` (the manifest itself aside).
pub fn entries(dir: &Path) -> std::io::Result<Vec<Entry>> {
    entries_with(dir, &std::collections::HashMap::new())
}

/// As `entries`, taking checksums already known for files unchanged since.
pub fn entries_with(
    dir: &Path,
    known: &std::collections::HashMap<String, Known>,
) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == MANIFEST_FILE || !e.file_type()?.is_file() {
            continue;
        }
        let meta = e.metadata()?;
        let (size, mtime_ns) = stamp(&meta);
        let checksum = match known.get(&name) {
            Some(k) if k.size == size && k.mtime_ns == mtime_ns => k.checksum,
            _ => checksum_of(&e.path())?,
        };
        out.push(Entry {
            size,
            checksum,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn encode(entries: &[Entry]) -> String {
    let mut out = format!("{HEADER}\n");
    for e in entries {
        out.push_str(&format!("{} {:016x} {}\n", e.size, e.checksum, e.name));
    }
    out
}

pub fn decode(text: &str) -> Result<Vec<Entry>, Problem> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let entry = (|| {
            let size = parts.next()?.parse().ok()?;
            let checksum = u64::from_str_radix(parts.next()?, 16).ok()?;
            let name = parts.next()?.to_string();
            // Names are file names in the image, never paths.
            (!name.is_empty() && !name.contains('/') && name != "..").then_some(Entry {
                name,
                size,
                checksum,
            })
        })();
        out.push(entry.ok_or(Problem::BadManifest(i + 1))?);
    }
    Ok(out)
}

/// Writes the manifest of the dump in `dir`.
pub fn write(dir: &Path) -> std::io::Result<()> {
    write_with(dir, &std::collections::HashMap::new())
}

/// As `write`, with checksums taken while the dump was written (`Prehash`).
pub fn write_with(
    dir: &Path,
    known: &std::collections::HashMap<String, Known>,
) -> std::io::Result<()> {
    let text = encode(&entries_with(dir, known)?);
    std::fs::write(dir.join(MANIFEST_FILE), text)
}

/// Reads the manifest of `dir`.
pub fn read(dir: &Path) -> Result<Vec<Entry>, Problem> {
    let text = open_regular(&dir.join(MANIFEST_FILE)).and_then(|mut f| {
        let mut text = String::new();
        f.read_to_string(&mut text).map(|_| text)
    });
    match text {
        Ok(text) => decode(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Problem::NoManifest),
        Err(e) => Err(Problem::Unreadable(dir.join(MANIFEST_FILE), e.to_string())),
    }
}

/// Checks presence and sizes (costs a stat per file), and with `verify` every checksum.
pub fn check(dir: &Path, entries: &[Entry], verify: bool) -> Result<(), Problem> {
    for e in entries {
        let file = dir.join(&e.name);
        let size = match std::fs::symlink_metadata(&file) {
            Ok(m) if !m.is_file() => {
                return Err(Problem::Unreadable(file, "not a regular file".into()))
            }
            Ok(m) => m.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Problem::Missing(file))
            }
            Err(err) => return Err(Problem::Unreadable(file, err.to_string())),
        };
        if size != e.size {
            return Err(Problem::Size {
                file,
                is: size,
                was: e.size,
            });
        }
    }
    if verify {
        for e in entries {
            let file = dir.join(&e.name);
            let sum = checksum_of(&file)
                .map_err(|err| Problem::Unreadable(file.clone(), err.to_string()))?;
            if sum != e.checksum {
                return Err(Problem::Checksum(file));
            }
        }
    }
    Ok(())
}

impl Problem {
    /// The same problem with paths under `from` shown under `to` (the image as the user named
    /// it, not the descriptor we read it through).
    pub fn relocate(self, from: &Path, to: &Path) -> Problem {
        let r = |p: PathBuf| super::relocate(p, from, to);
        match self {
            Problem::Missing(p) => Problem::Missing(r(p)),
            Problem::Size { file, is, was } => Problem::Size {
                file: r(file),
                is,
                was,
            },
            Problem::Checksum(p) => Problem::Checksum(r(p)),
            Problem::Unreadable(p, e) => Problem::Unreadable(r(p), e),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn inotify_events_give_their_names() {
        let mut buf = Vec::new();
        for (name, padded) in [("pages-1.img", 16usize), ("core-7.img", 16)] {
            buf.extend_from_slice(&1i32.to_ne_bytes());
            buf.extend_from_slice(&(libc::IN_CLOSE_WRITE).to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(padded, 0);
            buf.extend_from_slice(&n);
        }
        assert_eq!(closed_names(&buf), ["pages-1.img", "core-7.img"]);
    }

    #[test]
    fn known_checksums_are_used_only_for_unchanged_files() {
        let dir = std::env::temp_dir().join(format!("crac-shim-prehash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.img"), b"abc").unwrap();
        let (size, mtime_ns) = stamp(&std::fs::metadata(dir.join("a.img")).unwrap());
        let mut known = std::collections::HashMap::new();
        known.insert(
            "a.img".to_string(),
            Known {
                size,
                mtime_ns,
                checksum: 42,
            },
        );
        assert_eq!(entries_with(&dir, &known).unwrap()[0].checksum, 42);
        known.get_mut("a.img").unwrap().mtime_ns += 1;
        assert_eq!(
            entries_with(&dir, &known).unwrap()[0].checksum,
            checksum_of(&dir.join("a.img")).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    use super::*;

    #[test]
    fn the_checksum_does_not_depend_on_how_data_arrives() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = Hasher::default();
        whole.update(&data);
        let whole = whole.finish();
        for split in [1, 7, 31, 32, 33, 4096] {
            let mut h = Hasher::default();
            for c in data.chunks(split) {
                h.update(c);
            }
            assert_eq!(h.finish(), whole, "chunks of {split}");
        }
        let mut flipped = data.clone();
        flipped[5000] ^= 1;
        let mut h = Hasher::default();
        h.update(&flipped);
        assert_ne!(h.finish(), whole, "one flipped bit changes it");
        let mut h = Hasher::default();
        h.update(&data[..9999]);
        assert_ne!(h.finish(), whole, "one byte less changes it");
        let mut zeros = Hasher::default();
        zeros.update(&[0; 31]);
        let mut more = Hasher::default();
        more.update(&[0; 32]);
        assert_ne!(zeros.finish(), more.finish(), "trailing zeros count");
    }

    #[test]
    fn manifests_round_trip_and_refuse_paths() {
        let e = vec![Entry {
            name: "pages-1.img".into(),
            size: 4096,
            checksum: 0xdead_beef,
        }];
        assert_eq!(decode(&encode(&e)).unwrap(), e);
        assert_eq!(decode("1 00 ../x\n"), Err(Problem::BadManifest(1)));
        assert_eq!(decode("# c\n1 zz x\n"), Err(Problem::BadManifest(2)));
    }
}
