//! Open files and sockets at checkpoint: the scan, the default policy, policy files, and
//! descriptors that survive restore.

mod support;
use std::process::Command;
use support::*;

#[test]
fn a_file_open_for_writing_refuses_the_checkpoint_until_closed() {
    require_checkpoint!();
    let tmp = TempDir::new("write");
    let image = tmp.join("image");
    let data = tmp.join("data.txt");
    let mut cmd = crac_java();
    cmd.arg("-XX:+CRaCPrintResourcesOnCheckpoint");
    separate_temp_dir(&mut cmd, &tmp);
    let mut app = start_checkpointable_with(
        cmd,
        &image,
        "Files",
        &[&format!("write={}", data.display())],
    );
    app.out.wait_for("a tick", |l| tick(l).is_some());

    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains("FD fd="))
        .expect("the offending descriptor");
    assert!(
        line.contains(&format!("type=regular path={}", data.display()))
            && line.contains("action: reopen"),
        "{line}"
    );
    assert!(line.contains("CheckpointOpenFileException"), "{line}");
    app.err.wait_for("the resource listing", |l| {
        l.starts_with("BAD: FD fd=") && l.contains("write-file")
    });
    assert!(!image.join("crac-shim.meta").exists());
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out.wait_for("ticks after the refusal", |l| {
        tick(l).is_some_and(|t| t > n + 2)
    });

    app.write_stdin("close\n");
    app.out.wait_for("the file closed", |l| l == "closed");
    checkpoint_ok(app.pid);
}

#[test]
fn logs_reopen_and_survive_growing_between_restores() {
    require_checkpoint!();
    let tmp = TempDir::new("append");
    let image = tmp.join("image");
    let log = tmp.join("app.log");
    let mut app = start_checkpointable(&image, "Files", &[&format!("append={}", log.display())]);
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 3));
    // Appended to, it may as well be a journal (HSQLDB's redo log): refused without a rule,
    // naming the rule that makes it a log, and the JVM goes on.
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(
        o.stdout.contains(&format!("path={}", log.display()))
            && o.stdout.contains(&format!(
                "the rule `type: file`, `path: {}`, `action: reopen`",
                log.display()
            ))
            && o.stdout
                .contains("crac-jcmd PID JDK.checkpoint policy=FILE"),
        "{}",
        o.stdout
    );
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the JVM going on", |l| tick(l).is_some_and(|t| t > n + 2));
    // The rule, handed to this checkpoint of the running program (no restart).
    let rule = tmp.join("logs.yaml");
    std::fs::write(
        &rule,
        format!("type: file\npath: {}\naction: reopen\n", log.display()),
    )
    .unwrap();
    let mut c = Command::new(CRAC_JCMD);
    c.args([&app.pid.to_string(), "JDK.checkpoint"])
        .arg(format!("policy={}", rule.display()));
    let o = run(c);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    let last = *ticks(&app.out.all()).last().unwrap();
    app.wait();
    let next = format!("line {}", last + 1);
    for round in 1..=2 {
        let restored = restore(&image);
        restored.out.wait_for("ticks after restore", |l| {
            tick(l).is_some_and(|t| t > last + 3)
        });
        drop(restored);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.lines().filter(|l| *l == next).count(),
            round,
            "restore {round} logs to the file"
        );
    }
    // Even a deleted log comes back.
    std::fs::remove_file(&log).unwrap();
    let restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t > last + 3)
    });
    drop(restored);
    assert!(std::fs::read_to_string(&log).unwrap().contains(&next));
}

/// The Files program writing `data` (a data file: the JVM's temp directory is elsewhere), with
/// the resource policies in `policy`.
fn start_files_with_policy(
    tmp: &TempDir,
    image: &std::path::Path,
    policy: &std::path::Path,
    data: &std::path::Path,
    more: &[&str],
) -> Proc {
    let mut cmd = crac_java();
    cmd.arg(format!("-Djdk.crac.resource-policies={}", policy.display()));
    separate_temp_dir(&mut cmd, tmp);
    let write = format!("write={}", data.display());
    let args: Vec<&str> = std::iter::once(write.as_str())
        .chain(more.iter().copied())
        .collect();
    start_checkpointable_with(cmd, image, "Files", &args)
}

#[test]
fn a_policy_turns_the_refusal_into_a_reopen_at_the_same_offset() {
    require_checkpoint!();
    let tmp = TempDir::new("policy");
    let image = tmp.join("image");
    let data = tmp.join("data.txt");
    let policy = tmp.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "# our data file, never rolled back\ntype: file\npath: {}/*.txt\naction: reopen\nallowChanges: false\n---\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    let mut app = start_files_with_policy(&tmp, &image, &policy, &data, &[]);
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 3));
    checkpoint_ok(app.pid);
    let last = *ticks(&app.out.all()).last().unwrap();
    app.wait();
    let restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t > last + 3)
    });
    drop(restored);
    let text = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let expected: Vec<String> = (1..=lines.len()).map(|i| format!("line {i}")).collect();
    assert_eq!(
        lines, expected,
        "the restored copy goes on writing where the original stopped"
    );

    // The first copy wrote on: a second copy of the image would go on from older contents
    // and overwrite the newer lines (a rollback). The rule refuses it, naming the file.
    let mut again = crac_java();
    again.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(again);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "{} was written after the checkpoint",
            data.display()
        )) && o.stderr.contains("allowChanges: false")
            && o.stderr.lines().count() == 1,
        "{}",
        o.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&data).unwrap(),
        text,
        "nothing touched"
    );

    // Without the key, as in a CRaC JDK: reopened at the offset it had, the change named.
    std::fs::write(
        &policy,
        format!(
            "type: file\npath: {}/*.txt\naction: reopen\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    let image2 = tmp.join("image2");
    let mut app = start_files_with_policy(&tmp, &image2, &policy, &data, &[]);
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 3));
    checkpoint_ok(app.pid);
    app.wait();
    std::fs::write(&data, "changed meanwhile\n").unwrap();
    let copy = restore(&image2);
    copy.out
        .wait_for("ticks after restore", |l| tick(l).is_some());
    copy.err.wait_for("the change named", |l| {
        l.contains("changed since the checkpoint")
    });
    drop(copy);

    // A broken policy file is refused at start with the line at fault.
    std::fs::write(&policy, "type: file\naction: explode\n").unwrap();
    let mut c = crac_java();
    c.arg(format!("-Djdk.crac.resource-policies={}", policy.display()))
        .arg(format!(
            "-XX:CRaCCheckpointTo={}",
            tmp.join("other").display()
        ))
        .arg("-cp")
        .arg(classes())
        .arg("Ticker");
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("line 2") && o.stderr.contains("explode"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_listening_server_answers_after_restore() {
    require_checkpoint!();
    let tmp = TempDir::new("server");
    let image = tmp.join("image");
    let port = free_port();
    let mut app = start_http_demo(&image, port);
    for n in 1..20 {
        assert!(http_get(port, &format!("/?n={n}"))
            .unwrap()
            .contains("200 OK"));
    }
    checkpoint_ok(app.pid);
    app.wait();
    let meta = std::fs::read_to_string(image.join("crac-shim.meta")).unwrap();
    assert!(meta.contains(&format!("listen=127.0.0.1:{port}")), "{meta}");

    // While something else holds the port, the restore says so before running CRIU.
    let blocker = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains(&format!("127.0.0.1:{port} is in use")),
        "{}",
        o.stderr
    );
    drop(blocker);

    let _restored = restore(&image);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let answer = loop {
        if let Ok(a) = http_get(port, "/?n=10") {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer from the restored server"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        answer.contains("200 OK") && answer.contains("prime 10 = 29, request 20"),
        "{answer}"
    );
}

#[test]
fn an_established_connection_is_refused_or_kept_by_policy() {
    require_checkpoint!();
    let tmp = TempDir::new("tcp");
    let image = tmp.join("image");
    let app = start_checkpointable(&image, "Connected", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1));
    let refused: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.contains("type=socket"))
        .collect();
    assert_eq!(refused.len(), 2, "both ends: {}", o.stdout);
    assert!(
        refused[0].contains("CheckpointOpenSocketException")
            && refused[0].contains("connected TCP")
    );
    // CRaC's text first, as java.net.Socket names itself (tools grep for it).
    for r in &refused {
        assert!(
            r.contains("CheckpointOpenSocketException: Socket[addr=/127.0.0.1,port="),
            "{r}"
        );
    }
    drop(app);

    let policy = tmp.join("policy");
    std::fs::write(
        &policy,
        "type: socket\naddress: 127.0.0.1:*\naction: ignore\n",
    )
    .unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!("-Djdk.crac.resource-policies={}", policy.display()));
    let mut app = start_checkpointable_with(cmd, &image, "Connected", &[]);
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    let last = *ticks(&app.out.all()).last().unwrap();
    app.wait();
    let restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t > last + 2)
    });
}

#[test]
fn a_changed_input_file_is_named_before_criu_runs() {
    require_checkpoint!();
    let tmp = TempDir::new("changed");
    let image = tmp.join("image");
    let data = tmp.join("input.txt");
    std::fs::write(&data, "twelve bytes").unwrap();
    ticker_image(&image, &[&format!("hold={}", data.display())], 1);
    std::fs::write(&data, "now it is longer").unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("{} changed since the checkpoint", data.display())),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("CRIU"),
        "found before CRIU ran: {}",
        o.stderr
    );
}

/// A policy file in CRaC's own words: sockets chosen by `family` and `localPort`/`remotePort`,
/// a pipe by `type: pipe`, `warn: false` silencing the notice; applied at the checkpoint.
#[test]
fn a_crac_policy_file_with_family_ports_and_pipes_is_applied() {
    require_checkpoint!();
    let tmp = TempDir::new("cracpolicy");
    let image = tmp.join("image");
    let policy = tmp.join("policy.yaml");
    // Read again at each checkpoint: the ports are known once the program runs.
    std::fs::write(&policy, "type: pipe\naction: close\nwarn: false\n").unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!("-Djdk.crac.resource-policies={}", policy.display()))
        .arg("-XX:+CRaCPrintResourcesOnCheckpoint");
    let mut app = start_checkpointable_with(cmd, &image, "Connected", &["pipe"]);
    let connected = app
        .out
        .wait_for("the connection", |l| l.starts_with("connected "));
    let ports: Vec<&str> = connected.split(' ').skip(1).collect();
    let server_port = ports[1];
    // The client end is the socket whose remote port is the server's.
    let client_fd = std::fs::read_dir(format!("/proc/{}/fd", app.pid))
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| {
                let l = l.to_string_lossy().into_owned();
                l.starts_with("socket:[")
                    && socket_remote_port(&l[8..l.len() - 1]) == Some(server_port.parse().unwrap())
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("the client socket");
    std::fs::write(
        &policy,
        format!(
            "# copied from CRaC's documentation, ports filled in\n\
             type: socket\nfamily: ipv4\nlocalPort: {server_port}\naction: ignore\n\
             ---\n\
             type: socket\nfamily: ip\nremotePort: {server_port}\naction: close\nwarn: false\n\
             ---\n\
             type: pipe\naction: close\nwarn: false\n"
        ),
    )
    .unwrap();
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    let last = *ticks(&app.out.all()).last().unwrap();
    app.wait();
    let err = app.err.all();
    let verdict = |needle: &str| {
        err.iter()
            .find(|l| l.starts_with("OK: ") && l.contains(needle))
            .unwrap_or_else(|| panic!("no verdict for {needle}: {err:?}"))
            .clone()
    };
    let pipes: Vec<&String> = err
        .iter()
        .filter(|l| l.ends_with("(pipe, close)"))
        .collect();
    assert_eq!(
        pipes.len(),
        2,
        "both ends of the program's pipe, nothing of the agent's: {err:?}"
    );
    assert!(
        verdict(&format!("fd={client_fd} ")).ends_with("(connected-tcp, close)"),
        "{err:?}"
    );
    // The listening socket and the accepted connection (local port = the server's) are kept,
    // and the rule that kept them says so; the two quiet rules say nothing.
    let notices: Vec<&String> = err
        .iter()
        .filter(|l| l.contains("by the resource policy"))
        .collect();
    assert_eq!(notices.len(), 2, "{err:?}");
    assert!(
        notices
            .iter()
            .all(|n| n.contains("ignored") && n.contains("line 2")),
        "{notices:?}"
    );
    let restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t > last + 2)
    });
}

/// The remote port of the TCP socket with this inode, from /proc/net/tcp and tcp6.
fn socket_remote_port(inode: &str) -> Option<u16> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|f| {
        std::fs::read_to_string(f)
            .ok()?
            .lines()
            .skip(1)
            .find_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.get(9) == Some(&inode))
                    .then(|| u16::from_str_radix(cols[2].rsplit(':').next()?, 16).ok())?
            })
    })
}

/// A native library unpacked to the temp directory, loaded and deleted (Netty, JNA,
/// sqlite-jdbc, snappy-java, zstd-jni): 3 MiB, over CRIU's own 1 MiB limit for deleted files.
/// The test builds it with gcc.
#[test]
fn a_deleted_loaded_native_library_checkpoints_and_restores() {
    require_checkpoint!();
    let tmp = TempDir::new("ghost");
    let lib = native_library(&tmp);
    skip_unless!(lib.is_some(), "no gcc to build the test's native library");
    let lib = lib.unwrap();
    assert!(std::fs::metadata(&lib).unwrap().len() >= 3 << 20);
    let load = format!("load={}", lib.display());

    // It goes into the image as memory, not as a deleted file for CRIU to re-create at every
    // restore: even CRIU's own 1 MiB limit for such files does not stop the checkpoint.
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCEngineOptions=args=--ghost-limit=1M");
    let mut limited = start_checkpointable_with(cmd, &tmp.join("limited"), "Ticker", &[&load]);
    limited.out.wait_for("loaded", |l| l == "loaded");
    checkpoint_ok(limited.pid);
    limited.wait();

    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[&load]);
    app.out.wait_for("loaded", |l| l == "loaded");
    app.out
        .wait_for("a tick", |l| tick(l).is_some_and(|t| t >= 1));
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", app.pid)).unwrap();
    assert!(
        maps.lines()
            .any(|l| l.contains("libcrac-shim-test") && l.ends_with("(deleted)")),
        "the library is mapped and deleted"
    );
    checkpoint_ok(app.pid);
    app.wait();
    let restored = restore(&image);
    let after = restored
        .out
        .wait_for("a tick after restore", |l| tick(l).is_some());
    assert!(tick(&after).is_some());
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", app.pid)).unwrap_or_default();
    assert!(
        maps.contains("/memfd:crac-shim:libcrac-shim-test"),
        "the restored copy maps the library again, from the image"
    );
}

/// The lines "line 1", "line 2", ... a Files program wrote: each exactly once, in order.
fn numbered_lines(text: &str) -> Vec<u32> {
    let lines: Vec<u32> = text
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(
        lines.iter().enumerate().all(|(i, n)| *n == i as u32 + 1),
        "one writer, in order: {lines:?}"
    );
    lines
}

/// The program's descriptor of a file (by the target's prefix) in `pid`.
fn fd_to(pid: u32, prefix: &str) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with(prefix))
        })
        .map(|e| e.path().display().to_string())
}

/// A file the JVM made in its temp directory and keeps writing checkpoints with no policy;
/// two copies restored at once each write their own (one takes the path back, the other keeps
/// a private copy), and where the path is gone a copy brings it back.
#[test]
fn temp_files_checkpoint_without_a_policy_and_every_copy_has_its_own() {
    require_checkpoint!();
    let tmp = TempDir::new("tempfile");
    let image = tmp.join("image");
    let jvm_tmp = tmp.join("jvm-tmp");
    std::fs::create_dir(&jvm_tmp).unwrap();
    // A directory named as Files.createTempDirectory("work") names it: the JDK's own.
    let work = jvm_tmp.join("work8023371219386503117");
    let scratch = work.join("scratch.tmp");
    std::fs::create_dir(&work).unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!("-Djava.io.tmpdir={}", jvm_tmp.display()));
    cmd.arg("-XX:+CRaCPrintResourcesOnCheckpoint");
    let mut app = start_checkpointable_with(
        cmd,
        &image,
        "Files",
        &[&format!("write={}", scratch.display())],
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 3));
    // A checkpoint that lets the JVM go on gives the program its file back.
    let mut keep = Command::new(CRAC_JCMD);
    keep.args([&app.pid.to_string(), "JDK.checkpoint", "keep_running=true"]);
    let o = run(keep);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    // (crac-jcmd has its answer a moment before the agent is done.)
    let t0 = std::time::Instant::now();
    while fd_to(app.pid, &scratch.display().to_string()).is_none() {
        assert!(t0.elapsed() < TIMEOUT, "the file never came back");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let kept_at = numbered_lines(&std::fs::read_to_string(&scratch).unwrap()).len();
    let next = ticks(&app.out.snapshot()).last().copied().unwrap_or(0) + 5;
    app.out
        .wait_for("ticks after", |l| tick(l).is_some_and(|t| t >= next));
    let after = numbered_lines(&std::fs::read_to_string(&scratch).unwrap()).len();
    assert!(
        after > kept_at + 2,
        "{kept_at} -> {after} lines; the JVM said {:?}; fds {:?}",
        app.err.snapshot(),
        fd_to(app.pid, &scratch.display().to_string())
            .or_else(|| fd_to(app.pid, "/memfd:crac-shim-temp"))
            .map(|f| std::fs::read_link(f).unwrap())
    );

    checkpoint_ok(app.pid);
    app.err.wait_for("the temp file's verdict", |l| {
        l.contains(&format!("path={}", scratch.display())) && l.contains("(temp-file, private)")
    });
    app.wait();
    let at_checkpoint = numbered_lines(&std::fs::read_to_string(&scratch).unwrap()).len();

    let first = restore(&image);
    first.out.wait_for("a tick", |l| tick(l).is_some());
    let second = restore(&image);
    second.out.wait_for("a tick", |l| tick(l).is_some());
    // Both go on writing for a while.
    for p in [&first, &second] {
        let seen = ticks(&p.out.snapshot()).len();
        let deadline = std::time::Instant::now() + TIMEOUT;
        while ticks(&p.out.snapshot()).len() < seen + 5 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    // The first copy took the path back (the original's file was free); the second, in a new
    // PID namespace, writes into its own copy.
    let on_disk = numbered_lines(&std::fs::read_to_string(&scratch).unwrap());
    assert!(on_disk.len() > at_checkpoint + 3, "{on_disk:?}");
    let second_jvm = second
        .descendants()
        .into_iter()
        .find(|p| fd_to(*p, "/memfd:crac-shim-temp").is_some())
        .expect("the second copy keeps a private copy");
    let private = numbered_lines(
        &std::fs::read_to_string(fd_to(second_jvm, "/memfd:crac-shim-temp").unwrap()).unwrap(),
    );
    assert!(private.len() > at_checkpoint + 3, "{private:?}");
    drop(first);
    drop(second);

    // On a host where the path is gone (a fresh container's /tmp), it comes back.
    std::fs::remove_dir_all(&work).unwrap();
    let third = restore(&image);
    third.out.wait_for("a tick", |l| tick(l).is_some());
    let deadline = std::time::Instant::now() + TIMEOUT;
    while numbered_lines(&std::fs::read_to_string(&scratch).unwrap_or_default()).len()
        <= at_checkpoint + 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the path never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A lock the program holds on a file the policy reopens (Java's FileChannel.lock(), a POSIX
/// lock, which goes with the descriptor the dump's stand-in replaces) is taken again by the
/// restored copy; a second copy that finds it taken ends rather than write without it.
#[test]
fn locks_on_reopened_files_are_taken_again_or_the_copy_ends() {
    require_checkpoint!();
    let tmp = TempDir::new("locks");
    let image = tmp.join("image");
    let data = tmp.join("data.txt");
    let policy = tmp.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "type: file\npath: {}\naction: reopen\nallowChanges: true\n",
            data.display()
        ),
    )
    .unwrap();
    let mut app = start_files_with_policy(&tmp, &image, &policy, &data, &["lock"]);
    app.out.wait_for("the lock", |l| l == "locked");
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();

    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&data).unwrap();
    let key = format!(
        "{:02x}:{:02x}:{}",
        libc::major(m.dev()),
        libc::minor(m.dev()),
        m.ino()
    );
    let first = restore(&image);
    first
        .out
        .wait_for("ticks after restore", |l| tick(l).is_some());
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    assert!(
        locks.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8
                && f[1] == "POSIX"
                && f[3] == "WRITE"
                && f[4] == app.pid.to_string()
                && f[5] == key
        }),
        "the copy ({}) holds the lock on {key}: {locks}",
        app.pid
    );

    let mut second = restore(&image);
    assert_eq!(second.wait().code(), Some(1));
    let said = second.err.all().join("\n");
    assert!(
        said.contains("file locks are taken by another process")
            && said.contains(&data.display().to_string()),
        "{said}"
    );
    drop(first);
}

/// A JVM in a container reads its cgroup's limit files (HotSpot, from its own threads), and
/// one may be open at the checkpoint. Such a file is made by the kernel as it is read: its
/// time says nothing about a change, and in another container (a replica) it is another
/// file. The restore reopens it without refusing it as "changed since the checkpoint".
#[test]
fn a_cgroup_file_open_at_the_checkpoint_is_not_a_changed_file() {
    require_checkpoint!();
    let cgroup = std::path::PathBuf::from(format!(
        "/sys/fs/cgroup/memory/crac-shim-test-{}",
        std::process::id()
    ));
    skip_unless!(
        std::fs::create_dir(&cgroup).is_ok(),
        "cannot create a cgroup v1 memory group here"
    );
    struct Removed<'a>(&'a std::path::Path);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0);
        }
    }
    let _removed = Removed(&cgroup);
    let tmp = TempDir::new("cgroup-file");
    let image = tmp.join("image");
    let limit = cgroup.join("memory.limit_in_bytes");
    let mut app = start_checkpointable(&image, "Files", &[&format!("read={}", limit.display())]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    // The group made again: the same path, a new file, a later time.
    std::fs::remove_dir(&cgroup).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::create_dir(&cgroup).unwrap();
    let restored = restore(&image);
    restored
        .out
        .wait_for("ticks after the restore", |l| tick(l).is_some());
}
