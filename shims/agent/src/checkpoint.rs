//! The checkpoint, seen from inside the JVM.
//!
//! 1. Start the dump helper (`crac-java` in helper mode) outside our process tree: CRIU
//!    cannot dump a tree that contains itself. The helper keeps the JVM's real stdio.
//! 2. Put placeholder pipes on fds 0, 1 and 2, so the image holds nothing that points at the
//!    terminal, file or pipe the JVM was started with. The restoring launcher swaps them for
//!    its own stdio with CRIU's `--inherit-fd`.
//! 3. Tell the helper to dump, and wait on the channel. One of three things comes back:
//!    the helper says the dump failed (stdio is handed back), the helper says the JVM keeps
//!    running (same), or, in a restored copy, the restoring launcher says hello through the
//!    very same descriptor, which CRIU replaced with the launcher's end.

use crate::config::Config;
use crate::scan;
use crate::sys::{drain_pipe, dup_onto, fd_key, warn};
use crac_shim_proto::policy::{Action, Class, Policy};
use crac_shim_proto::{kind, Message, HELPER_ARG, LIST_SEPARATOR, MAX_MESSAGE, NO_CLIENT};
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use std::ffi::CString;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

pub enum Outcome {
    /// The dump did not happen, for this reason; the JVM goes on as before.
    Failed(String),
    /// The dump happened and the JVM goes on (keep_running).
    Kept,
    /// This is a restored copy; the launcher's greeting says what changed (its pid as `ps`
    /// shows it, properties from the restore command line, when the restore started).
    Restored(Message),
}

/// Checkpoints so far in this JVM's life (a restored copy goes on counting): CRaC's %g.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// The JVM's maximum heap as Java last reported it (CRaC's `%m`).
pub static MAX_HEAP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A `-XX:CRaCCheckpointTo` given to the restore that made this copy: where the next
/// checkpoint goes (CRaC's restore-settable flag).
static CHECKPOINT_TO_FROM_RESTORE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// When this JVM started or was last restored, seconds since the epoch (CRaC's `%r`).
static LAST_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called once when the agent starts.
pub fn note_start() {
    LAST_START.store(now_secs(), Ordering::Release);
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The machine's boot, from /proc/stat's btime.
fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CRaC's `%f`: a fingerprint of the CPU's feature flags, so that images made on CPUs that
/// differ land in different directories.
fn cpu_features() -> String {
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags") || l.starts_with("Features"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, f)| f.trim().to_string())
        })
        .unwrap_or_default();
    // FNV-1a, 64 bits: stable across runs and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in flags.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn java_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        other => other,
    }
}

fn online_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// A restored JVM dies with the crac-java that restored it, as `java` dies with its pid: the
/// parent-death signal on this (long-lived control) thread reaches the whole process.
fn die_with_parent(parent: i32) {
    // SAFETY: prctl, getppid and kill have no memory-safety preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Set by `crac-jcmd PID JDK.checkpoint keep_running=true` for the next checkpoint only.
pub static KEEP_RUNNING_ONCE: AtomicBool = AtomicBool::new(false);

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // SAFETY: b is writable for its length.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One checkpoint at a time, whoever asks.
static CHECKPOINT: Mutex<()> = Mutex::new(());

struct Placeholders {
    /// Installed on fds 0, 1 and 2 for the dump.
    installed: [OwnedFd; 3],
    /// The other ends: they keep stdin from reading EOF, and hold what the JVM writes while
    /// it waits for the dump, to be passed on if it fails.
    spare: [OwnedFd; 3],
}

fn placeholders() -> std::io::Result<Placeholders> {
    // Socket pairs, not pipes: CRIU hands an inherited socket to the restored JVM as it is,
    // while it reopens an inherited pipe through /proc (a new open file at its own offset):
    // the copy writes through the very open file the restoring crac-java was given, as `java`
    // would, sharing its offset with the shell around it.
    let pair = || {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(std::io::Error::from)
    };
    let (in_r, in_w) = pair()?;
    let (out_r, out_w) = pair()?;
    let (err_r, err_w) = pair()?;
    Ok(Placeholders {
        installed: [in_r, out_w, err_w],
        spare: [in_w, out_r, err_r],
    })
}

pub fn run(config: &Config, client: Option<OwnedFd>) -> Outcome {
    let _one_at_a_time = CHECKPOINT.lock().unwrap_or_else(|p| p.into_inner());
    // Ours until the dump helper has it: whatever fails before then, crac-jcmd hears of it.
    let mut client = client;
    match prepare_and_dump(config, &mut client) {
        Ok((Outcome::Restored(greeting), hold)) => {
            let env: Vec<(String, String)> = greeting
                .get_all("env")
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let start_time = crate::jni::StartTime {
                reset: greeting
                    .get("reset_start_time")
                    .map_or(!config.keep_start_time, |v| v == "true"),
                restore_ms: greeting
                    .get("restore_time")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                took_ms: greeting
                    .get("restore_ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            };
            crate::jni::refresh_after_restore(&env, &start_time);
            // The program's threads go on once the copy is its own.
            drop(hold);
            if env.iter().any(|(k, _)| k == crac_shim_proto::TIMING_ENV) {
                timing_mark("agent");
            }
            LAST_START.store(now_secs(), Ordering::Release);
            if let Some(parent) = greeting.get("parent").and_then(|p| p.parse::<i32>().ok()) {
                die_with_parent(parent);
            }
            if let Some(dir) = greeting.get("checkpoint_to") {
                if let Ok(mut next) = CHECKPOINT_TO_FROM_RESTORE.lock() {
                    *next = Some(dir.to_string());
                }
            }
            Outcome::Restored(greeting)
        }
        Ok((outcome, _hold)) => outcome,
        Err(e) => {
            warn(&format!("checkpoint failed: {e}"));
            if let Some(c) = client.take() {
                let _ = std::io::Write::write_all(
                    &mut std::os::unix::net::UnixStream::from(c),
                    format!(
                        "An exception during a checkpoint operation:\njdk.crac.CheckpointException: {e}\n{}",
                        crac_shim_proto::exit_line(1)
                    )
                    .as_bytes(),
                );
            }
            Outcome::Failed(e.to_string())
        }
    }
}

/// For `CRAC_SHIM_TIMING`: in the JVM's environment for a checkpoint's moments, in the
/// restoring one for a restore's.
fn timing_mark(event: &str) {
    crate::sys::write_all_raw(2, crac_shim_proto::timing_line(event).as_bytes());
}

/// Reads the policy file, if any (read at every checkpoint: it may be edited meanwhile).
fn policy(config: &Config) -> Result<Policy, String> {
    let read = |path: &str| -> Result<Policy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the resource policies {path}: {e}"))?;
        Policy::parse(&text).map_err(|e| format!("resource policies {path}, {e}"))
    };
    // crac-jcmd's policy=FILE for this checkpoint: its rules first.
    let once = POLICY_ONCE.lock().ok().and_then(|mut p| p.take());
    let mut policy = match &once {
        Some(path) => read(path)?,
        None => Policy::default(),
    };
    if let Some(path) = &config.policy_file {
        policy.rules.extend(read(path)?.rules);
    }
    Ok(policy)
}

/// Set by `crac-jcmd PID JDK.checkpoint policy=FILE` for the next checkpoint only.
pub static POLICY_ONCE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The refusal as crac-jcmd prints it when no Java code is involved.
fn jcmd_refusal(text: &str) -> String {
    let mut out =
        String::from("An exception during a checkpoint operation:\njdk.crac.CheckpointException\n");
    for line in text.lines() {
        let kind = if line.contains(" type=socket ") {
            "CheckpointOpenSocketException"
        } else if line.contains(" type=regular ") {
            "CheckpointOpenFileException"
        } else {
            "CheckpointOpenResourceException"
        };
        out.push_str(&format!("\tSuppressed: jdk.crac.impl.{kind}: {line}\n"));
    }
    out.push_str(&crac_shim_proto::exit_line(1));
    out
}

fn print_resources(entries: &[scan::Entry]) {
    let mut text = String::from("crac-shim: descriptors at checkpoint:\n");
    for e in entries {
        let verdict = if e.action == Action::Refuse {
            "BAD"
        } else {
            "OK"
        };
        text.push_str(&format!(
            "{verdict}: {} ({}, {})\n",
            e.crac_line(),
            e.class.name(),
            e.action.name()
        ));
    }
    crate::sys::write_all_raw(2, text.as_bytes());
}

/// As CRaC does, say what a policy rule did to a descriptor, unless the rule says `warn: false`.
fn notify_policy_decisions(entries: &[scan::Entry], config: &Config) {
    let mut text = String::new();
    for e in entries {
        if let Some(line) = e.noticed_rule {
            text.push_str(&format!(
                "crac-shim: {}: {} by the resource policy ({}, line {line})\n",
                e.crac_line(),
                match e.action {
                    Action::Keep => "ignored",
                    Action::Close => "closed",
                    Action::Reopen => "reopened",
                    Action::Refuse => "refused",
                    Action::Private => "kept private to each restored copy",
                },
                config.policy_file.as_deref().unwrap_or("")
            ));
        }
    }
    if !text.is_empty() {
        crate::sys::write_all_raw(2, text.as_bytes());
    }
}

/// Gives glibc's free native memory back to the kernel before CRIU copies it (as CRaC's JVM
/// does): freed arena pages would otherwise go into every image and be read back at every
/// restore. `CRAC_SHIM_MALLOC_TRIM=0` in the JVM's environment skips it (for measuring).
fn trim_native_heap() {
    if std::env::var_os("CRAC_SHIM_MALLOC_TRIM").is_some_and(|v| v == "0") {
        return;
    }
    // SAFETY: malloc_trim takes glibc's arena locks itself; any thread may call it.
    unsafe { libc::malloc_trim(0) };
}

/// The outcome, and Java held still if it got that far (to be let go once the copy is
/// refreshed, or at once when the JVM goes on).
fn prepare_and_dump(
    config: &Config,
    client: &mut Option<OwnedFd>,
) -> std::io::Result<(Outcome, Option<crate::jni::Hold>)> {
    if std::env::var_os(crac_shim_proto::TIMING_ENV).is_some() {
        timing_mark("checkpoint-agent");
    }
    let policy = match policy(config) {
        Ok(p) => p,
        Err(e) => return Ok((refuse(client.take(), e), None)),
    };
    let exclude: Vec<RawFd> = client.iter().map(|c| c.as_raw_fd()).collect();
    let entries = scan::scan(&exclude, &policy, &config.ignored_fds);
    if config.print_resources {
        print_resources(&entries);
    }
    notify_policy_decisions(&entries, config);
    let refused = scan::refusals(&entries);
    if !refused.is_empty() {
        return Ok((refuse(client.take(), refused.join("\n")), None));
    }
    let mut prepared = scan::prepare(&entries)?;
    crate::jni::remember_secure_randoms();
    trim_native_heap();
    let perf = crate::perfdata::to_memory();
    // Libraries a copy may not find on disk go into the image (mappings.rs).
    let left = crate::mappings::into_memory();
    if !left.is_empty() {
        warn(&format!(
            "kept mapped from disk (a restore needs them there): {}",
            left.join(", ")
        ));
    }
    let (outcome, hold) = match dump_prepared(config, client, &entries, &policy, perf.is_some()) {
        Ok((outcome, hold)) => (Ok(outcome), hold),
        Err(e) => (Err(e), None),
    };
    if let Some(region) = perf {
        let shown_as = match &outcome {
            Ok(Outcome::Restored(greeting)) => greeting.get("pid").and_then(|p| p.parse().ok()),
            _ => None,
        };
        crate::perfdata::to_file(region, shown_as.unwrap_or_else(std::process::id));
    }
    if matches!(outcome, Ok(Outcome::Restored(_))) {
        crate::perfdata::free_attach_name();
    }
    let restored = matches!(outcome, Ok(Outcome::Restored(_)));
    let dumped = matches!(outcome, Ok(Outcome::Restored(_) | Outcome::Kept));
    let failed = scan::reopen(&mut prepared, restored, dumped);
    if !failed.is_empty() {
        warn(&format!(
            "could not reopen after the checkpoint: {}",
            failed.join(", ")
        ));
    }
    // As in a CRaC JDK, the program hears of it: checkpointRestore() throws a
    // RestoreException naming each file.
    let mut outcome = outcome;
    if let Ok(Outcome::Restored(greeting)) = &mut outcome {
        for f in &failed {
            greeting.push("restore_error", format!("cannot reopen {f}"));
        }
    }
    if !prepared.lost_locks.is_empty() {
        let lost = prepared.lost_locks.join(", ");
        if restored {
            // Two programs would write one file, each believing it holds it (FileLock's
            // isValid() keeps answering true): this copy ends instead.
            warn(&format!(
                "the restored program's file locks are taken by another process: {lost}; this copy ends rather than write without them (another copy of this image runs?)"
            ));
            // SAFETY: ending the process at once, before the program runs on.
            unsafe { libc::_exit(1) };
        }
        warn(&format!(
            "file locks released for the checkpoint were taken meanwhile: {lost}; the program no longer holds them"
        ));
    }
    outcome.map(|o| (o, hold))
}

/// A checkpoint refused before anything changed: tell crac-jcmd (if it asked) ourselves.
fn refuse(client: Option<OwnedFd>, text: String) -> Outcome {
    if let Some(c) = client {
        let _ = std::io::Write::write_all(
            &mut std::os::unix::net::UnixStream::from(c),
            jcmd_refusal(&text).as_bytes(),
        );
    }
    Outcome::Failed(text)
}

fn dump_prepared(
    config: &Config,
    client: &mut Option<OwnedFd>,
    entries: &[scan::Entry],
    policy: &Policy,
    perf_memfd: bool,
) -> std::io::Result<(Outcome, Option<crate::jni::Hold>)> {
    let (agent_end, helper_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let places = placeholders()?;
    let generation = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    let template = CHECKPOINT_TO_FROM_RESTORE
        .lock()
        .ok()
        .and_then(|t| t.clone())
        .unwrap_or_else(|| config.checkpoint_to.clone());
    let dir = crac_shim_proto::expand_placeholders(
        &template,
        &crac_shim_proto::Placeholders {
            pid: std::process::id(),
            time: now_secs(),
            uuid: random_uuid(),
            generation,
            boot_time: boot_time(),
            restore_time: LAST_START.load(Ordering::Acquire),
            arch: java_arch().to_string(),
            cpu_features: cpu_features(),
            cpus: online_cpus(),
            max_heap: MAX_HEAP.load(Ordering::Acquire),
        },
    );
    let keep_running = config.keep_running || KEEP_RUNNING_ONCE.swap(false, Ordering::AcqRel);
    let mut dump = Message::new(kind::DUMP)
        .with("pid", std::process::id())
        .with("dir", dir)
        .with("keep_running", keep_running)
        .with("print_command", config.print_command)
        .with("criu", &config.criu)
        .with("channel", fd_key(agent_end.as_fd())?)
        .with("perf_memfd", perf_memfd)
        .with(
            "socket",
            crac_shim_proto::socket_path(&config.runtime_dir, std::process::id()),
        );
    for (name, fd) in ["stdin", "stdout", "stderr"].iter().zip(&places.installed) {
        dump.push(name, fd_key(fd.as_fd())?);
    }
    describe_for_restore(&mut dump, entries, policy);
    for label in &config.labels {
        dump.push("label", label);
    }
    if let Some(mode) = &config.cpu_features {
        dump.push("cpu_mode", mode);
    }
    if !config.criu_args.is_empty() {
        dump.push(
            "criu_args",
            config.criu_args.join(&LIST_SEPARATOR.to_string()),
        );
    }

    // The helper gets the placeholders' other ends: after a successful dump it passes on what
    // the JVM wrote while it waited for CRIU; otherwise it hands them back with the stdio.
    spawn_helper(
        &config.launcher,
        &helper_end,
        client.as_ref(),
        [&places.spare[0], &places.spare[1], &places.spare[2]],
    )?;
    drop(helper_end);
    // Only the helper holds them now (see run_helper); they come back if the JVM goes on.
    drop(places.spare);
    // The helper answers crac-jcmd now; no connection may stay in the image.
    drop(client.take());

    let reads_before = stdin_reads();
    for (target, fd) in places.installed.iter().enumerate() {
        dup_onto(fd.as_fd(), target as RawFd)?;
    }
    drop(places.installed);

    // Java stands still from here until the copy is refreshed or the JVM goes on (jni::Hold);
    // pauseengine: until a restore resumes it (or forever).
    let hold = crate::jni::hold_java();
    if config.criu == crac_shim_proto::PAUSE_ENGINE && !hold.as_ref().is_some_and(|h| h.paused()) {
        warn("pauseengine: the JVM would not suspend its threads (a debugger holds them?); the program runs on while paused");
    }
    send_whole(&agent_end, &dump.encode())?;
    let (reply, stdio) = receive(&agent_end)?;
    Ok((finish(reply, stdio, &reads_before), hold))
}

/// What the restore must check or prepare, and the CRIU options some descriptors need.
fn describe_for_restore(dump: &mut Message, entries: &[scan::Entry], policy: &Policy) {
    // A server under load accepts connections between the scan and CRIU's freeze: when the
    // policy lets connections through, CRIU must be ready for ones the scan never saw.
    let mut tcp_established = false;
    // Each CRIU option once, whether a rule or a descriptor asked for it.
    let mut restore_args: Vec<&'static str> = Vec::new();
    let mut restore_arg = |a: &'static str| {
        if !restore_args.contains(&a) {
            restore_args.push(a);
        }
    };
    for rule in &policy.rules {
        let about_connections = matches!(rule.kind.as_deref(), Some("socket" | "connected-tcp"));
        match rule.action {
            Some(Action::Close) if about_connections => {
                tcp_established = true;
                restore_arg("--tcp-close");
            }
            Some(Action::Keep) if about_connections => {
                tcp_established = true;
                restore_arg("--tcp-established");
            }
            _ => {}
        }
    }
    for e in entries {
        dump.push(
            "descriptor",
            format!(
                "{} ({}, {})",
                e.crac_line(),
                e.class.name(),
                e.action.name()
            ),
        );
        match (e.class, e.action) {
            (Class::ReadFile, Action::Keep) if !e.generated => {
                dump.push("check_file", format!("{}:{}:{}", e.size, e.mtime, e.path))
            }
            (Class::ListeningSocket, _) => {
                for a in e.addresses.iter().filter(|a| !a.starts_with('/')) {
                    dump.push("listen", a);
                }
            }
            (Class::AppendFile, Action::Reopen) if scan::criu_reopens(e) => {
                dump.push("append_file", &e.path)
            }
            // A data file reopened for writing with `allowChanges: false`: restoring against
            // newer contents would roll the program back, and is refused (the helper records
            // its state once the dump is done). (A policy rule wins over the temp-file guess:
            // a temp file it reopens is data.)
            (Class::WriteFile | Class::TempFile, Action::Reopen) if !e.allow_changes => {
                dump.push("data_file", &e.path)
            }
            // CRaC's way: reopened at the saved offset even if it changed meanwhile (recorded
            // all the same, so that the restore names a changed file). CRIU would refuse the
            // stand-in for a new size, so the restore opens the file and hands it in (the
            // agent reopens it by path right after, as always).
            (Class::WriteFile | Class::TempFile, Action::Reopen) => {
                dump.push("reopen_file", &e.path);
                if e.flags & libc::O_APPEND == 0 {
                    let access = if e.flags & libc::O_ACCMODE == libc::O_RDONLY {
                        "r"
                    } else {
                        "rw"
                    };
                    dump.push("inherit_file", format!("{access}:{}", e.path))
                }
            }
            (Class::ConnectedTcp, Action::Keep) => {
                tcp_established = true;
                restore_arg("--tcp-established");
            }
            (Class::ConnectedTcp, Action::Close) => {
                tcp_established = true;
                restore_arg("--tcp-close");
            }
            _ => {}
        }
    }
    for a in restore_args {
        dump.push("restore_arg", a);
    }
    if tcp_established {
        dump.push("dump_arg", "--tcp-established");
    }
}

/// `stdio`: the JVM's own stdio, then the other ends of the placeholders (stdin's writer,
/// stdout's and stderr's readers), as the helper hands them back when the JVM goes on.
fn finish(reply: Option<Message>, stdio: Vec<OwnedFd>, reads_before: &[StdinRead]) -> Outcome {
    let give_back_stdio = |mut stdio: Vec<OwnedFd>| {
        // A read of stdin begun during the dump waits on the placeholder, not on stdin: found
        // before stdin goes back, it is handed the next input, or it would read end-of-file.
        let waiting = reads_on_placeholder(reads_before);
        let spares = stdio.split_off(stdio.len().min(3));
        for (target, fd) in stdio.iter().enumerate() {
            let _ = dup_onto(fd.as_fd(), target as RawFd);
        }
        let mut spares = spares.into_iter();
        let (stdin_writer, out_reader, err_reader) = (spares.next(), spares.next(), spares.next());
        if let Some(r) = &out_reader {
            drain_pipe(r, 1);
        }
        if let Some(r) = &err_reader {
            drain_pipe(r, 2);
        }
        if let (Some(count), Some(writer)) = (waiting, stdin_writer) {
            relay_one_read(count, writer);
        }
    };
    match reply {
        Some(m) if m.kind == kind::FAILED => {
            give_back_stdio(stdio);
            Outcome::Failed(m.get("error").unwrap_or("the dump failed").to_string())
        }
        Some(m) if m.kind == kind::KEPT => {
            give_back_stdio(stdio);
            Outcome::Kept
        }
        Some(m) if m.kind == kind::RESTORED => Outcome::Restored(m),
        Some(m) if m.kind == kind::RESUMED => {
            give_back_stdio(stdio);
            Outcome::Restored(m)
        }
        Some(m) => {
            warn(&format!(
                "unexpected message {:?} on the checkpoint channel",
                m.kind
            ));
            Outcome::Restored(Message::new(kind::RESTORED))
        }
        None => {
            // Either the helper died without a word (then our stdio is gone with it), or we
            // are a copy restored by something that never said hello.
            warn("the checkpoint channel closed without an answer");
            Outcome::Restored(Message::new(kind::RESTORED))
        }
    }
}

/// A thread of ours blocked in read(0, ...): its id, the count it asked for, and how often it
/// has given up the CPU (which tells a read that has waited all along from a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StdinRead {
    tid: u32,
    count: usize,
    switches: u64,
}

fn stdin_reads() -> Vec<StdinRead> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut reads = Vec::new();
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("syscall")) else {
            continue;
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        let arg = |i: usize| {
            fields
                .get(i)
                .and_then(|a| usize::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        };
        let reading_stdin = fields.first().and_then(|n| n.parse::<i64>().ok())
            == Some(libc::SYS_read)
            && arg(1) == Some(0);
        let (Some(tid), Some(count)) = (
            task.file_name().to_str().and_then(|t| t.parse().ok()),
            arg(3).filter(|c| *c > 0),
        ) else {
            continue;
        };
        if !reading_stdin {
            continue;
        }
        let switches = std::fs::read_to_string(task.path().join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        reads.push(StdinRead {
            tid,
            count,
            switches,
        });
    }
    reads
}

/// The smallest count asked by a read of stdin begun while the placeholder was in place:
/// reads that were already waiting on the real stdin before (`before`, not run since) are
/// still on it and need nothing.
fn reads_on_placeholder(before: &[StdinRead]) -> Option<usize> {
    stdin_reads()
        .into_iter()
        .filter(|r| !before.contains(r))
        .map(|r| r.count)
        .min()
}

/// Feeds the reader blocked on the stdin placeholder the next input from the real stdin (at
/// most what it asked for, so nothing is read twice or lost), or end-of-file if stdin ends.
fn relay_one_read(count: usize, writer: OwnedFd) {
    let relay = std::thread::Builder::new()
        .name("crac-shim-stdin".into())
        .spawn(move || {
            let mut buf = vec![0u8; count.min(1 << 16)];
            // SAFETY: reading into our own buffer from fd 0, which is the real stdin again.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let _ =
                    std::io::Write::write_all(&mut std::fs::File::from(writer), &buf[..n as usize]);
            }
        });
    if let Err(e) = relay {
        warn(&format!("cannot relay stdin after the checkpoint: {e}"));
    }
}

/// Sends the dump request whole, whatever its size (thousands of jars, descriptors, labels):
/// in a memfd passed along, not in one datagram of the channel, which would cut it.
fn send_whole(channel: &OwnedFd, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated literal name; the descriptor is ours.
    let fd = unsafe {
        libc::memfd_create(
            c"crac-shim-dump-request".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::io::Write::write_all(&mut std::fs::File::from(memfd.try_clone()?), bytes)?;
    let head = format!("{}\n", crac_shim_proto::kind::DUMP_IN_FD);
    let fds = [memfd.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        channel.as_raw_fd(),
        &[std::io::IoSlice::new(head.as_bytes())],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    // Closed here: the helper holds its own, and nothing of it goes into the image.
    drop(memfd);
    Ok(())
}

/// Waits for the one reply on the channel, with any descriptors passed along.
fn receive(channel: &OwnedFd) -> std::io::Result<(Option<Message>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 6]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            channel.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS installed these descriptors in our table for us.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let len = msg.bytes;
        if len == 0 {
            return Ok((None, fds));
        }
        return match Message::decode(&buf[..len]) {
            Ok(m) => Ok((Some(m), fds)),
            Err(e) => Err(std::io::Error::other(format!(
                "bad message on the checkpoint channel: {e}"
            ))),
        };
    }
}

extern "C" {
    static environ: *const *const libc::c_char;
}

/// Starts `launcher` in helper mode as an orphan (double fork), so that it is not in the
/// JVM's process tree. Its stdio is the JVM's current stdio.
fn spawn_helper(
    launcher: &str,
    channel: &OwnedFd,
    client: Option<&OwnedFd>,
    spares: [&OwnedFd; 3],
) -> std::io::Result<()> {
    let path = CString::new(launcher).map_err(std::io::Error::other)?;
    let client_fd = client.map_or(NO_CLIENT, |c| c.as_raw_fd());
    // Inherited by the helper, in the order of its command line.
    let passed = [
        channel.as_raw_fd(),
        client_fd,
        spares[0].as_raw_fd(),
        spares[1].as_raw_fd(),
        spares[2].as_raw_fd(),
    ];
    let number = |fd: RawFd| CString::new(fd.to_string()).map_err(std::io::Error::other);
    // SAFETY: reading the process environment pointer; nothing modifies it concurrently
    // (the JVM does not call setenv).
    let envp = unsafe { environ };
    // posix_spawn (clone with CLONE_VM|CLONE_VFORK): unlike fork, nothing of the JVM's page
    // tables is copied (47 ms for a 2 GB heap, twice, with the double fork this replaced).
    // The launcher then leaves the JVM's process tree by forking itself (small) and starts
    // its own session (dump/mod.rs). The descriptors it inherits are duplicated onto fresh
    // numbers above all of them in the child alone: dup2 clears close-on-exec there, and no
    // other child the JVM starts meanwhile gets them.
    let first = passed.iter().copied().max().unwrap_or(2) + 1;
    // SAFETY: the attribute and file-action objects are initialized before use, used for
    // one posix_spawn, and destroyed; argv and envp are NUL-terminated arrays of C strings.
    unsafe {
        let mut actions = std::mem::zeroed::<libc::posix_spawn_file_actions_t>();
        let mut attr = std::mem::zeroed::<libc::posix_spawnattr_t>();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let mut numbers = Vec::with_capacity(passed.len());
        for (i, &fd) in passed.iter().enumerate() {
            if fd < 0 {
                numbers.push(fd);
                continue;
            }
            let target = first + i as RawFd;
            libc::posix_spawn_file_actions_adddup2(&mut actions, fd, target);
            numbers.push(target);
        }
        let mut empty = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut empty);
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        libc::posix_spawnattr_setflags(&mut attr, libc::POSIX_SPAWN_SETSIGMASK as libc::c_short);
        let args = [
            path.clone(),
            CString::new(HELPER_ARG).map_err(std::io::Error::other)?,
            number(numbers[0])?,
            number(numbers[1])?,
            number(numbers[2])?,
            number(numbers[3])?,
            number(numbers[4])?,
        ];
        let argv: Vec<*mut libc::c_char> = args
            .iter()
            .map(|a| a.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect();
        let mut child: libc::pid_t = 0;
        let rc = libc::posix_spawn(
            &mut child,
            path.as_ptr(),
            &actions,
            &attr,
            argv.as_ptr(),
            envp.cast(),
        );
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(child, &mut status, 0);
            if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(std::io::Error::other("cannot start the dump helper"));
        }
    }
    Ok(())
}
