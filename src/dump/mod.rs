//! The dump helper: `crac-java` started by the agent, outside the JVM's process tree.
//!
//! It holds the JVM's original stdio (its own fds 0-2) while the JVM has placeholders, runs
//! `criu dump`, and then either installs the image and tells `crac-jcmd`, or gives the stdio
//! back to the agent and reports the failure. The JVM is never left without its stdio unless
//! the dump succeeded (then CRIU has ended it).

use crate::criu;
use crate::image::{self, Metadata};
use anyhow::{bail, Context, Result};
use crac_shim_proto::{
    exit_line, kind, Message, FORMAT_VERSION, LIST_SEPARATOR, MAX_MESSAGE, NO_CLIENT,
};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::ffi::OsString;
use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod in_place;
pub mod post_dump;

pub fn run_helper(args: &[OsString]) -> i32 {
    let fd = |i: usize| {
        args.get(i)
            .and_then(|a| a.to_str())
            .and_then(|a| a.parse::<RawFd>().ok())
    };
    let (Some(channel), Some(client), Some(in_spare), Some(out_spare), Some(err_spare)) =
        (fd(0), fd(1), fd(2), fd(3), fd(4))
    else {
        eprintln!("crac-java: the dump helper is started by the crac-shim agent, not by hand");
        return 2;
    };
    // Out of the JVM's process tree, which CRIU dumps: the agent spawned us without copying
    // its memory (posix_spawn); this process is small, so a fork is cheap. Our parent ends at
    // once (the agent waits for it), we go on adopted by init or a subreaper, in a session of
    // our own.
    // SAFETY: crac-java is single-threaded here; the parent only _exits.
    match unsafe { libc::fork() } {
        -1 => return 1,
        0 => {
            // SAFETY: setsid has no preconditions.
            unsafe { libc::setsid() };
        }
        // SAFETY: ending the parent at once, its child goes on.
        _ => unsafe { libc::_exit(0) },
    }
    // The other ends of the JVM's stdio placeholders: ours alone during the dump (none may
    // stay in the JVM, where CRIU would find half a socket pair), handed back if it goes on.
    // SAFETY: the agent passed these open for us alone.
    let spares = unsafe {
        [
            OwnedFd::from_raw_fd(in_spare),
            OwnedFd::from_raw_fd(out_spare),
            OwnedFd::from_raw_fd(err_spare),
        ]
    };
    // SAFETY: the agent passed us these descriptors open, and nothing else owns them here.
    let channel = unsafe { OwnedFd::from_raw_fd(channel) };
    // SAFETY: as above; NO_CLIENT means there is none.
    let mut client =
        (client != NO_CLIENT).then(|| UnixStream::from(unsafe { OwnedFd::from_raw_fd(client) }));
    let mut ours = vec![channel.as_raw_fd()];
    ours.extend(spares.iter().map(|s| s.as_raw_fd()));
    ours.extend(client.as_ref().map(|c| c.as_raw_fd()));
    for &fd in &ours {
        // Not for CRIU's eyes.
        // SAFETY: setting FD_CLOEXEC on a descriptor we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // The image holds the whole heap: nobody else may read what CRIU writes.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o077) };
    close_other_descriptors(&ours);

    let request = match receive(&channel) {
        Ok(m) => m,
        Err(e) => {
            report(&mut client, Err(&format!("{e:#}")));
            give_back(&channel, &format!("{e:#}"), &spares);
            return 1;
        }
    };
    if let Some(engine) = request
        .get("criu")
        .and_then(crate::engine::TestEngine::named)
    {
        return in_place::run(engine, &request, &mut client, &channel, &spares);
    }
    let keep_running = request.get("keep_running") == Some("true");
    let result = dump(&request);
    match &result {
        Ok(()) if keep_running => {
            report(&mut client, Ok(()));
            hand_back(&channel, Message::new(kind::KEPT), &spares);
        }
        Ok(()) => {
            // The JVM is gone: what it wrote while waiting for CRIU belongs to its output.
            pass_on(&spares[1], 1);
            pass_on(&spares[2], 2);
            let pid = request.get("pid").and_then(|p| p.parse().ok());
            if let Some(pid) = pid {
                forget_perf_data(pid);
            }
            report(&mut client, Ok(()));
            drop(client);
            // The attach socket only once the JVM is gone for good, which may take a moment.
            if let Some(pid) = pid {
                forget_attach_socket(pid);
            }
        }
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("crac-shim: checkpoint failed: {text}");
            report(&mut client, Err(&text));
            give_back(&channel, &text, &spares);
        }
    }
    i32::from(result.is_err())
}

/// Copies the placeholder pipe `from` to `to` until every writer is gone (bounded wait).
fn pass_on(from: &OwnedFd, to: RawFd) {
    let mut buf = [0u8; 8192];
    loop {
        let mut pfd = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 2000) } <= 0 {
            return;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        let mut rest = &buf[..n as usize];
        while !rest.is_empty() {
            // SAFETY: rest is a valid readable slice.
            let w = unsafe { libc::write(to, rest.as_ptr().cast(), rest.len()) };
            if w <= 0 {
                return;
            }
            rest = &rest[w as usize..];
        }
    }
}

fn close_other_descriptors(keep: &[RawFd]) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2 && !keep.contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: closing descriptors inherited from the JVM that nothing in this process uses
        // (the read_dir handle is already dropped; closing it again would be harmless EBADF).
        unsafe { libc::close(fd) };
    }
}

fn receive(channel: &OwnedFd) -> Result<Message> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        channel.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("reading the dump request")?;
    let n = msg.bytes;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        bail!("the dump request was cut at {MAX_MESSAGE} bytes (an agent of another crac-shim version?); no image was made");
    }
    let mut passed = None;
    for c in msg.cmsgs().context("reading the dump request")? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: SCM_RIGHTS installed this descriptor in our table for us.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                passed.get_or_insert(fd);
            }
        }
    }
    if n == 0 {
        bail!("the JVM ended before its dump could start (killed?); no image was made");
    }
    let head = Message::decode(&buf[..n]).context("decoding the dump request")?;
    let m = if head.kind == kind::DUMP_IN_FD {
        let fd = passed.context("the dump request's memfd did not arrive")?;
        let mut bytes = Vec::new();
        let mut file = std::fs::File::from(fd);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        std::io::Read::read_to_end(&mut file, &mut bytes).context("reading the dump request")?;
        Message::decode_any_size(&bytes).context("decoding the dump request")?
    } else {
        head
    };
    if m.kind != kind::DUMP {
        bail!("unexpected {:?} message from the agent", m.kind);
    }
    Ok(m)
}

/// Hands the JVM's stdio back with the reason the dump did not happen.
pub(crate) fn give_back(channel: &OwnedFd, error: &str, spares: &[OwnedFd; 3]) {
    hand_back(
        channel,
        Message::new(kind::FAILED).with("error", error),
        spares,
    );
}

/// Sends `message` to the agent with the JVM's stdio, then the placeholders' other ends.
pub(crate) fn hand_back(channel: &OwnedFd, message: Message, spares: &[OwnedFd; 3]) {
    let m = message.encode();
    let fds = [
        0,
        1,
        2,
        spares[0].as_raw_fd(),
        spares[1].as_raw_fd(),
        spares[2].as_raw_fd(),
    ];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    if let Err(e) = sendmsg::<()>(
        channel.as_raw_fd(),
        &[IoSlice::new(&m)],
        &cmsg,
        MsgFlags::empty(),
        None,
    ) {
        eprintln!("crac-shim: cannot hand stdio back to the JVM: {e}");
    }
}

/// Tells `crac-jcmd` (if it asked) how it went, in jcmd's words.
pub(crate) fn report(client: &mut Option<UnixStream>, result: std::result::Result<(), &str>) {
    let Some(c) = client else { return };
    let text = match result {
        Ok(()) => format!("Command executed successfully\n{}", exit_line(0)),
        Err(e) => format!(
            "An exception during a checkpoint operation:\njdk.crac.CheckpointException: {e}\n{}",
            exit_line(1)
        ),
    };
    let _ = c.write_all(text.as_bytes());
}

/// What every checkpoint directory records, a test engine's too: labels, the CPU features
/// (read while the JVM lives), where and when it was made.
pub(crate) fn base_metadata(request: &Message, pid: u32) -> Metadata {
    let features = image::cpu::Features::parse(request.get("cpu_mode").unwrap_or("native"))
        .unwrap_or(image::cpu::Features::Native);
    Metadata {
        format: FORMAT_VERSION,
        pid,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        labels: request
            .get_all("label")
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cpu: image::cpu::Record::of_jvm(pid, &features),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..Metadata::default()
    }
}

/// A field the dump request must have.
pub(crate) fn field<'a>(request: &'a Message, k: &str) -> Result<&'a str> {
    request
        .get(k)
        .with_context(|| format!("dump request lacks {k}"))
}

/// The JVM's pid and the directory the image goes to.
pub(crate) fn pid_and_dir(request: &Message) -> Result<(u32, PathBuf)> {
    let pid = field(request, "pid")?
        .parse()
        .context("bad pid in dump request")?;
    Ok((pid, PathBuf::from(field(request, "dir")?)))
}

fn dump(request: &Message) -> Result<()> {
    let field = |k: &str| field(request, k);
    let (pid, dir) = pid_and_dir(request)?;
    let criu_path = PathBuf::from(field("criu")?);
    let channel = field("channel")?.to_string();
    let stdio = [
        field("stdin")?.to_string(),
        field("stdout")?.to_string(),
        field("stderr")?.to_string(),
    ];
    let extra: Vec<String> = request
        .get("criu_args")
        .map(|a| a.split(LIST_SEPARATOR).map(str::to_string).collect())
        .unwrap_or_default();

    let criu = criu::locate(Some(&criu_path)).unwrap_or(criu::Criu {
        path: criu_path.clone(),
        version: String::new(),
        features: Vec::new(),
    });
    // Read while the JVM lives (CRIU ends it, and its maps with it).
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if let Some(why) = image::pages::refuse_dump(&criu, &maps) {
        bail!("{why}");
    }

    // Walked once and held: the dump goes into a directory nobody else can swap or redirect.
    let target = image::prepare_target(&dir)?;
    let staged = target.stage()?;
    let staging = staged.fs();

    let (java_home, libjvm) = jdk_of(pid, &maps);
    // Before the dump: CRIU ends the JVM, and its maps and environment with it.
    let base = base_metadata(request, pid);
    let command = nul_separated(&format!("/proc/{pid}/cmdline"));
    let env_names: Vec<String> = nul_separated(&format!("/proc/{pid}/environ"))
        .into_iter()
        .filter_map(|e| e.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    let jdk_version = jdk_version(&java_home);
    // Our stdin is the JVM's own (held for it during the dump). Read before CRIU: once the
    // JVM is frozen its shell takes the terminal back and resets the modes to its own.
    let termios = crate::terminal::record(0);
    let criu_version = criu.version.clone();
    // The channel and the stdio placeholders: their other ends are ours, outside the tree.
    let external: Vec<u64> = std::iter::once(&channel)
        .chain(&stdio)
        .filter_map(|key| criu::socket_inode(key))
        .collect();
    let mut extra = extra;
    extra.extend(request.get_all("dump_arg").map(str::to_string));
    let keep_running = request.get("keep_running") == Some("true");
    // Ours first: the user's CRIU arguments come last and may override. Without
    // --leave-running CRIU ends the tree, but only once our action script has finished the
    // image (post_dump.rs); it resumes the tree if that fails.
    if keep_running {
        extra.insert(0, "--leave-running".into());
    }
    // CRIU's log and statistics go to a private scratch directory: written after the image is
    // complete, they must not change it.
    let (work, _work_lock) = crate::paths::scratch_dir("dump")?;
    let _work = crate::paths::Scratch(work.clone());
    let hook = post_dump::Hook::listen(&work)?;
    let args = criu::dump_args(pid, &staging, &work, "dump.log", &external, &extra);
    if request.get("print_command") == Some("true") {
        eprintln!("crac-shim: {}", criu.mode());
        eprintln!("crac-shim: {} {}", criu_path.display(), args.join(" "));
    }
    let out = std::fs::File::create(work.join("criu.out")).context("cannot create criu.out")?;
    let mut meta = Metadata {
        java_home,
        libjvm,
        stdio,
        channel,
        criu_version,
        perf_memfd: request.get("perf_memfd") == Some("true"),
        restore_args: request.get_all("restore_arg").map(str::to_string).collect(),
        check_files: request
            .get_all("check_file")
            .filter_map(image::parse_check_file)
            .collect(),
        data_files: Vec::new(),
        reopen_files: Vec::new(),
        file_offsets: Vec::new(),
        listens: request.get_all("listen").map(str::to_string).collect(),
        append_files: request.get_all("append_file").map(str::to_string).collect(),
        inherit_files: request
            .get_all("inherit_file")
            .filter_map(|v| v.split_once(':'))
            .map(|(a, p)| (a.to_string(), p.to_string()))
            .collect(),
        jdk_version,
        command,
        env_names,
        descriptors: request.get_all("descriptor").map(str::to_string).collect(),
        termios,
        caps: image::caps::Sets::of(&pid.to_string()),
        allocator: image::pages::allocator_of(&maps).unwrap_or_default(),
        ..base
    };
    // Checksums for the manifest, taken while CRIU writes the image.
    let mut prehash = image::manifest::Prehash::watch(&staging);
    // CRIU gets a clean loader environment: the JVM's (LD_LIBRARY_PATH of a server's native
    // libraries, say) is none of its business.
    let mut criu_command = Command::new(&criu_path);
    staged.pass_to(&mut criu_command);
    crate::timing::mark("checkpoint-criu");
    let kdat = crate::kdat::apply(&mut criu_command, &criu, &args);
    criu_command.args(&args);
    hook.arm(&mut criu_command)?;
    let mut criu_child = criu_command
        .env_remove("LD_PRELOAD")
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("cannot run {}", criu_path.display()))?;
    let mut staged = Some(staged);
    let mut finished: Option<Result<()>> = None;
    let mut finish = |meta: &mut Metadata, staged: image::target::Staging| {
        // Stated now: the JVM is frozen, what it wrote is in the file.
        let stated = |key: &str| -> Vec<(u64, i64, String)> {
            request
                .get_all(key)
                .filter_map(|path| {
                    let m = std::fs::metadata(path).ok()?;
                    Some((m.len(), m.mtime(), path.to_string()))
                })
                .collect()
        };
        meta.data_files = stated("data_file");
        meta.file_offsets = meta
            .inherit_files
            .iter()
            .filter_map(|(_, path)| Some((offset_in(pid, path)?, path.clone())))
            .collect();
        meta.reopen_files = stated("reopen_file");
        // The JVM is frozen now (CRIU holds it until this action script is done).
        meta.frozen_at_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        meta.file_states = meta
            .check_files
            .iter()
            .chain(&meta.data_files)
            .chain(&meta.reopen_files)
            .filter_map(|(_, _, path)| file_state(path))
            .collect();
        // CRIU's log as far as the dump goes (it writes on in the scratch directory).
        let _ = std::fs::copy(work.join("dump.log"), staged.fs().join("dump.log"));
        let known = prehash
            .take()
            .map(image::manifest::Prehash::finish)
            .unwrap_or_default();
        let done = finish_image(meta, &target, staged, &known);
        crate::timing::mark("checkpoint-image-done");
        done
    };
    // A JVM killed while CRIU freezes it can leave CRIU waiting for good: the dump cannot
    // succeed any more, so CRIU is stopped (and the failure below says the JVM died).
    let status = loop {
        if finished.is_none() {
            if let Some(req) = hook.request() {
                let done = finish(&mut meta, staged.take().expect("finished once"));
                post_dump::answer(req, done.is_ok());
                finished = Some(done);
            }
        }
        if let Some(status) = criu_child.try_wait()? {
            break status;
        }
        if finished.is_none()
            && matches!(crate::supervise::process_state(pid), None | Some('Z' | 'X'))
        {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if let Some(status) = criu_child.try_wait()? {
                break status;
            }
            let _ = criu_child.kill();
            break criu_child.wait()?;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    kdat.release();
    crate::timing::mark("checkpoint-criu-done");
    match finished {
        // CRIU ended the tree (or let it run) once the image was complete.
        Some(Ok(())) => return Ok(()),
        // CRIU resumed the tree: the JVM goes on, without an image.
        Some(Err(e)) => return Err(e),
        None => {}
    }
    let staged = staged.expect("not finished");
    if status.success() {
        // A CRIU that ran no action script: the image is finished now.
        return finish(&mut meta, staged);
    }
    let log = std::fs::read_to_string(work.join("dump.log")).unwrap_or_default();
    let output = std::fs::read_to_string(work.join("criu.out")).unwrap_or_default();
    // Nothing of a failed dump stays but its log, next to the image.
    let log_path = target.failed_log();
    let _ = std::fs::copy(work.join("dump.log"), staged.fs().join("dump.log"));
    target.keep_failed_log(&staged, "dump.log");
    target.discard(staged);
    let killed = std::os::unix::process::ExitStatusExt::signal(&status);
    let why = killed
        .map(criu::killed_by)
        .or_else(|| criu::first_error(&log))
        .or_else(|| {
            output
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| format!("criu exited with {status}"));
    // CRIU may see a JVM killed under it (its maps gone) a moment before the kernel shows it
    // dead: a failed dump waits that moment before telling the two apart.
    let dead = || matches!(crate::supervise::process_state(pid), None | Some('Z' | 'X'));
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while !dead() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if dead() {
        bail!(
            "the JVM died during the checkpoint (killed?); no image was made (CRIU's log: {})",
            log_path.display()
        );
    }
    bail!("CRIU dump failed: {why} (log: {})", log_path.display());
}

/// A JVM killed by its checkpoint cannot remove its names for the JDK's tools: a dead attach
/// socket would refuse jcmd at a copy restored with this pid, and its perf-data file would list
/// a JVM that is gone. (A restored copy makes its own.) The perf-data file first: the JVM,
/// killed, maps it no more.
fn forget_perf_data(pid: u32) {
    let euid = nix::unistd::geteuid();
    if let Some(user) = nix::unistd::User::from_uid(euid).ok().flatten() {
        // Only in the user's own real directory, reached without anyone else's links.
        let path = PathBuf::from(format!("/tmp/hsperfdata_{}/{pid}", user.name));
        if let Ok((dir, _, name)) =
            crac_shim_proto::safepath::open_parent(&path, euid.as_raw(), None)
        {
            let own = crac_shim_proto::safepath::fstat(dir.as_raw_fd())
                .is_ok_and(|st| st.st_uid == euid.as_raw());
            if own {
                let _ = nix::unistd::unlinkat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
            }
        }
    }
}

/// The attach socket, once nobody listens on it: the last of the JVM's threads may still be
/// closing its files after the leader became a zombie.
fn forget_attach_socket(pid: u32) {
    let attach = format!("/tmp/.java_pid{pid}");
    // Another user's file under that name is never the JVM's (the JDK's tools refuse it): it
    // would only keep jcmd from reaching a copy restored with this pid.
    let foreign = std::fs::symlink_metadata(&attach)
        .is_ok_and(|m| m.uid() != nix::unistd::geteuid().as_raw());
    if foreign {
        let _ = std::fs::remove_file(&attach);
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::os::unix::net::UnixStream::connect(&attach) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&attach);
                break;
            }
            Ok(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => break,
        }
    }
}

/// The state of a file the restore will check, read as the JVM's user through a walked path
/// (regular files only, never blocking).
/// The position of the JVM's descriptor open on `path` (frozen: it cannot move).
fn offset_in(pid: u32, path: &str) -> Option<i64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten().find_map(|fd| {
        if std::fs::read_link(fd.path()).ok()? != Path::new(path) {
            return None;
        }
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_str()?))
                .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("pos:"))
            .and_then(|p| p.trim().parse().ok())
    })
}

fn file_state(path: &str) -> Option<image::FileState> {
    let (fd, _) = crac_shim_proto::safepath::open_file(
        Path::new(path),
        nix::unistd::geteuid().as_raw(),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        crac_shim_proto::safepath::IfMissing::Fail,
    )
    .ok()?;
    let file = std::fs::File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    image::FileState::of(path, &file).ok()
}

/// Metadata, then the manifest of everything (metadata included), then the swap: only a
/// complete image ever goes live.
pub(crate) fn finish_image(
    meta: &Metadata,
    target: &image::target::Target,
    staged: image::target::Staging,
    known: &std::collections::HashMap<String, image::manifest::Known>,
) -> Result<()> {
    let staging = staged.fs();
    let written = std::fs::write(staging.join(crac_shim_proto::METADATA_FILE), meta.encode())
        .context("cannot write the image metadata")
        .and_then(|()| {
            image::manifest::write_with(&staging, known).context("cannot write the image manifest")
        });
    match written {
        Ok(()) => target.install(staged),
        Err(e) => {
            target.discard(staged);
            Err(e)
        }
    }
}

/// A /proc file of NUL-separated strings (a command line, an environment).
fn nul_separated(path: &str) -> Vec<String> {
    std::fs::read(path)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

/// JAVA_VERSION from the JDK's `release` file.
fn jdk_version(java_home: &str) -> String {
    std::fs::read_to_string(Path::new(java_home).join("release"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("JAVA_VERSION="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// The JDK the JVM runs: its home and its libjvm.so (path, size, mtime), read before the dump.
fn jdk_of(pid: u32, maps: &str) -> (String, Option<(String, u64, i64)>) {
    let home = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|exe| crate::java::java_home(&exe))
        .map(|h| h.display().to_string())
        .unwrap_or_default();
    let libjvm = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libjvm.so"))
        .and_then(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((p.to_string(), m.len(), m.mtime()))
        });
    (home, libjvm)
}
