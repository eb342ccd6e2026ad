//! The spine: start, checkpoint with crac-jcmd, restore; stdio, exit status, signals.

mod support;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use support::*;

#[test]
fn counter_continues_after_restore_and_image_is_private() {
    require_checkpoint!();
    let tmp = TempDir::new("roundtrip");
    let image = tmp.join("image");
    let last = ticker_image(&image, &["pid"], 3);

    let meta = std::fs::metadata(&image).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700
    );
    for e in std::fs::read_dir(&image).unwrap().flatten() {
        let mode = std::os::unix::fs::PermissionsExt::mode(&e.metadata().unwrap().permissions());
        assert_eq!(
            mode & 0o077,
            0,
            "{} is readable by others",
            e.path().display()
        );
    }
    assert!(image.join("crac-shim.meta").is_file() && image.join("dump.log").is_file());

    let mut restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t >= last + 3)
    });
    let after = ticks(&restored.out.snapshot());
    assert_eq!(
        after[0],
        last + 1,
        "the counter goes on where it was: {after:?}"
    );
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1));
    restored.signal(libc::SIGTERM);
    let status = restored.wait();
    restored
        .out
        .wait_for("the shutdown hook of the restored JVM", |l| {
            l == "shutdown hook"
        });
    assert_eq!(status.code(), Some(143), "java's status after SIGTERM");
}

#[test]
fn restored_stdio_is_the_restoring_process_stdio() {
    require_checkpoint!();
    let tmp = TempDir::new("stdio");
    let image = tmp.join("image");
    ticker_image(&image, &["echo"], 2);

    // stdin and stdout are pipes.
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()))
        .stdin(std::process::Stdio::piped());
    let mut restored = Proc::spawn(c);
    restored.out.wait_for("a tick", |l| tick(l).is_some());
    restored.write_stdin("hello after restore\n");
    restored
        .out
        .wait_for("the echo", |l| l == "echo: hello after restore");
    drop(restored.stdin.take());
    restored.out.wait_for("EOF on stdin", |l| l == "echo: EOF");
    drop(restored);

    // stdout goes to a file (and the file may have grown in between: nothing checks its size).
    let out_file = tmp.join("out.txt");
    std::fs::write(&out_file, "earlier content\n").unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()))
        .stdout(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&out_file)
                .unwrap(),
        );
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(&out_file).unwrap().contains("tick") {
        assert!(std::time::Instant::now() < deadline, "no tick in the file");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The JVM only: CRIU may still be on its way out (the JVM runs before it exits), and a
    // killed CRIU is a failed restore.
    for p in jvms_below(child.id()) {
        kill_pid(p);
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "crac-java dies of the signal that killed the JVM"
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    // Appended after what was there (the echo thread may print its EOF before a tick).
    assert!(
        text.starts_with("earlier content\n") && text.contains("\ntick "),
        "{text}"
    );
}

#[test]
fn exit_status_and_signals_are_the_programs() {
    require_checkpoint!();
    let tmp = TempDir::new("status");
    let image = tmp.join("image");
    ticker_image(&image, &["exit=30:7", "hup"], 2);

    let mut restored = restore(&image);
    restored.out.wait_for("a tick", |l| tick(l).is_some());
    restored.signal(libc::SIGHUP);
    restored
        .out
        .wait_for("the forwarded SIGHUP", |l| l == "got HUP");
    restored.signal(libc::SIGQUIT);
    restored.out.wait_for("a thread dump (SIGQUIT)", |l| {
        l.starts_with("Full thread dump")
    });
    assert_eq!(
        restored.wait().code(),
        Some(7),
        "exit code of System.exit(7) in the restored JVM"
    );
    let app_pid = restored.descendants();
    assert!(
        app_pid.is_empty(),
        "nothing left below crac-java: {app_pid:?}"
    );

    let mut restored = restore(&image);
    restored.out.wait_for("a tick", |l| tick(l).is_some());
    restored.signal(libc::SIGINT);
    assert_eq!(
        restored.wait().code(),
        Some(130),
        "java exits 130 after SIGINT"
    );
}

#[test]
fn the_same_image_restores_again_and_again() {
    require_checkpoint!();
    let tmp = TempDir::new("again");
    let image = tmp.join("image");
    let last = ticker_image(&image, &["exit=12:0"], 3);
    let listing = |dir: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| (e.file_name(), e.metadata().unwrap().len()))
            .collect();
        v.sort();
        v
    };
    let before = listing(&image);
    for _ in 0..3 {
        let mut restored = restore(&image);
        assert_eq!(restored.wait().code(), Some(0));
        // All of it: the reader thread may still be catching up with the pipe.
        let t = ticks(&restored.out.all());
        assert_eq!(t.first(), Some(&(last + 1)));
        assert_eq!(t.last(), Some(&12));
    }
    assert_eq!(
        listing(&image),
        before,
        "restores leave the image as it was"
    );
}

#[test]
fn concurrent_restores_each_run_and_a_restored_copy_checkpoints_again() {
    require_checkpoint!();
    let tmp = TempDir::new("concurrent");
    let image = tmp.join("image");
    let last = ticker_image(&image, &["pid"], 2);

    let first = restore(&image);
    first
        .out
        .wait_for("first copy ticking", |l| tick(l).is_some());
    let mut second = restore(&image);
    second.out.wait_for("second copy ticking", |l| {
        tick(l).is_some_and(|t| t > last + 2)
    });
    first.out.wait_for("first copy still ticking", |l| {
        tick(l).is_some_and(|t| t > last + 4)
    });
    let first_pids = first.descendants();
    let second_pids = second.descendants();
    assert!(
        first_pids.iter().all(|p| !second_pids.contains(p)),
        "two separate processes"
    );

    // The second copy runs in a PID namespace (the first holds the pid): crac-jcmd takes the
    // pid that ps shows.
    let copy_pid = *second_pids.last().unwrap();
    let image2 = tmp.join("image2");
    // It was checkpointed to `image`: checkpoint it again there and restore that.
    let _ = image2;
    checkpoint_ok(copy_pid);
    let status = second.wait();
    assert!(
        status.signal() == Some(libc::SIGKILL) || status.code() == Some(137),
        "{status:?}"
    );
    let seen = *ticks(&second.out.all()).last().unwrap();
    drop(first);
    wait_gone(first_pids[0]);
    let third = restore(&image);
    third
        .out
        .wait_for("the re-checkpointed copy", |l| tick(l).is_some());
    let t = ticks(&third.out.snapshot());
    assert_eq!(
        t[0],
        seen + 1,
        "the new image continues the second copy: {t:?}"
    );
}

#[test]
fn restore_survives_other_jvms_cleaning_perf_data() {
    require_checkpoint!();
    let tmp = TempDir::new("perf");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let user = "root";
    // While it runs the JVM keeps HotSpot's own file (jps and jstat read it)...
    let perf_file = format!("/tmp/hsperfdata_{user}/{}", app.pid);
    assert!(std::path::Path::new(&perf_file).is_file(), "{perf_file}");
    checkpoint_ok(app.pid);
    app.wait();
    // ... and the image its contents in memory: the dead JVM's file is gone.
    assert!(!std::path::Path::new(&perf_file).exists(), "{perf_file}");
    let meta = std::fs::read_to_string(image.join("crac-shim.meta")).unwrap();
    assert!(meta.contains("perf_memfd=true"), "{meta}");

    // Another JVM of the same user starts and stops (it cleans stale perf files).
    let mut other = std::process::Command::new(default_java());
    other.arg("-cp").arg(classes()).arg("Args");
    assert_eq!(run(other).code, Some(0));

    let restored = restore(&image);
    restored
        .out
        .wait_for("a tick after restore", |l| tick(l).is_some());
    // The copy has a file of its own again (same pid here: no new PID namespace was needed).
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(format!("/proc/{}/maps", app.pid))
        .unwrap_or_default()
        .contains(&perf_file)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never mapped {perf_file}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn monotonic_time_and_sleeps_stay_sane_across_the_gap() {
    require_checkpoint!();
    let tmp = TempDir::new("clock");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Clock", &[]);
    app.out.wait_for("a few sleeps", |l| l.ends_with("tick 5"));
    checkpoint_ok(app.pid);
    app.wait();
    // The image waits a while before it is restored.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let restored = restore(&image);
    let first = restored
        .out
        .wait_for("a sleep after restore", |l| l.contains(" tick "));
    let n: u32 = first.rsplit(' ').next().unwrap().parse().unwrap();
    let tenth = format!(" tick {}", n + 10);
    restored
        .out
        .wait_for("ten more sleeps", |l| l.ends_with(&tenth));
    let deltas: Vec<i64> = restored
        .out
        .snapshot()
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    // As in a CRaC JDK: nanoTime goes on from the checkpoint plus the wall-clock time that
    // passed, never back: the sleep pending at the checkpoint saw the 1.5 s the image waited
    // (and ended at once, its time being over); the sleeps after it are sleeps again.
    assert!(deltas[0] >= 1500, "{deltas:?}");
    assert!(
        deltas[1..].iter().all(|d| (0..1000).contains(d)),
        "{deltas:?}"
    );
}

/// Containers and CI runners start programs in a session whose leader lies outside their PID
/// namespace (getsid answers 0), and CRIU refuses to dump such a process; crac-java gives the
/// JVM a session of its own. A PID namespace of the test's own makes that situation here:
/// crac-java as the namespace's init (a container's entry point: the JVM is its child, and
/// the image must be complete before the namespace ends with it), or started by a shell
/// (crac-java execs the JVM). crac-jcmd runs inside the namespace, or outside naming the JVM
/// by the pid it sees there.
#[test]
fn a_jvm_in_a_container_like_namespace_checkpoints_and_restores() {
    require_checkpoint!();
    for (label, prefix) in [
        ("launcher as init", vec![]),
        (
            "launcher execs java",
            // Pids well above the few a restore's own namespace takes, as CRaCMinPid does.
            vec![
                "/bin/sh",
                "-c",
                "echo 300 >/proc/sys/kernel/ns_last_pid; \"$0\" \"$@\"; sleep 60",
            ],
        ),
    ] {
        let tmp = TempDir::new("container");
        let image = tmp.join("image");
        let mut cmd = in_container(&prefix);
        cmd.arg(CRAC_JAVA).env("CRAC_SHIM_JAVA", default_java());
        let mut app = start_checkpointable_with(cmd, &image, "Ticker", &["pid"]);
        let inner: u32 = app
            .out
            .wait_for("the JVM's pid", |l| l.starts_with("pid "))
            .trim_start_matches("pid ")
            .parse()
            .unwrap();
        app.out
            .wait_for("tick 2", |l| tick(l).is_some_and(|t| t >= 2));
        let outer = app
            .descendants()
            .into_iter()
            .find(|p| namespace_pid(*p) == Some(inner) && *p != inner)
            .unwrap_or_else(|| panic!("{label}: the JVM (pid {inner} inside) is not below us"));
        let mut list = Command::new(CRAC_JCMD);
        list.arg("-l");
        let listed = run(list).stdout;
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("{outer} "))),
            "{label}: crac-jcmd -l lists {outer}: {listed}"
        );
        if prefix.is_empty() {
            // From inside the container, as `docker exec ... crac-jcmd` would.
            let mut jcmd = Command::new("nsenter");
            jcmd.args(["-t", &outer.to_string(), "-p", "-m", CRAC_JCMD])
                .arg(inner.to_string())
                .arg("JDK.checkpoint");
            let o = run(jcmd);
            assert_eq!(
                o.stdout,
                format!("{inner}:\nCommand executed successfully\n"),
                "{label}: {}",
                o.stderr
            );
        } else {
            checkpoint_ok(outer);
        }
        wait_gone(outer);
        if !prefix.is_empty() {
            // The shell stays as the namespace's init; ending it ends the namespace.
            app.signal(libc::SIGKILL);
        }
        app.wait();
        let last = *ticks(&app.out.all()).last().unwrap();

        let mut restored = restore(&image);
        let deadline = std::time::Instant::now() + TIMEOUT;
        let next = loop {
            if let Some(t) = restored
                .out
                .snapshot()
                .into_iter()
                .find(|l| tick(l).is_some())
            {
                break t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: no tick after restore; crac-java said {:?}, {:?}",
                restored.err.snapshot(),
                restored.try_wait()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(tick(&next), Some(last + 1), "{label}");
        restored.signal(libc::SIGTERM);
        assert_eq!(restored.wait().code(), Some(143), "{label}");
    }
}

/// A container whose entry point restores the JVM: crac-java is the namespace's init and the
/// restored JVM its child. Checkpointed again (by the host's pid), the new image is complete
/// before the namespace ends, and it continues where the container's copy was.
#[test]
fn a_restore_as_a_containers_init_checkpoints_again() {
    require_checkpoint!();
    let tmp = TempDir::new("container-restore");
    let image = tmp.join("image");
    let last = ticker_image(&image, &["pid"], 2);
    let mut cmd = in_container(&[CRAC_JAVA]);
    cmd.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let mut copy = Proc::spawn(cmd);
    copy.out.wait_for("the copy ticking", |l| {
        tick(l).is_some_and(|t| t > last + 1)
    });
    let jvm = jvms_below(copy.pid)
        .next()
        .expect("the restored JVM below the container's init");
    checkpoint_ok(jvm);
    copy.wait();
    let seen = *ticks(&copy.out.all()).last().unwrap();

    let mut again = restore(&image);
    let next = again
        .out
        .wait_for("the image of the container's copy", |l| tick(l).is_some());
    assert_eq!(tick(&next), Some(seen + 1));
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait().code(), Some(143));
}

/// `unshare` into PID and mount namespaces of the test's own, as a container starts `args`
/// (the namespace dies with `unshare`). Descriptors the harness inherited were opened in the
/// outer mount namespace, which CRIU inside cannot look up: they stay out.
fn in_container(args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(args);
    // SAFETY: close_range only changes descriptor flags in the child about to exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int);
            Ok(())
        });
    }
    cmd
}

/// The JVMs below `pid` (not CRIU, nor crac-java).
fn jvms_below(pid: u32) -> impl Iterator<Item = u32> {
    descendants(pid).into_iter().filter(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "java")
    })
}

/// The pid `pid` has in its own (innermost) PID namespace.
fn namespace_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// `sh -c 'echo first; crac-java -XX:CRaCRestoreFrom=IMG; echo after' > FILE`: the restored
/// JVM writes through the very open file it was given (as `java` would), so the shell's lines
/// and the program's never overwrite each other.
#[test]
fn the_restored_jvm_writes_through_the_callers_open_file() {
    require_checkpoint!();
    let tmp = TempDir::new("description");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &["exit=30:0"]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();

    let out = tmp.join("out.txt");
    let script = format!(
        "{{ echo first; {CRAC_JAVA} -XX:CRaCRestoreFrom={}; echo \"after $?\"; }} > {} 2>&1",
        image.display(),
        out.display()
    );
    let mut sh = Command::new("sh");
    sh.args(["-c", &script])
        .env("CRAC_SHIM_JAVA", default_java())
        .stdin(std::process::Stdio::null());
    let o = run(sh);
    assert_eq!(o.code, Some(0));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"first"), "{text}");
    assert_eq!(lines.last(), Some(&"after 0"), "{text}");
    let ticks: Vec<u32> = lines.iter().filter_map(|l| tick(l)).collect();
    assert_eq!(ticks.last(), Some(&30), "{text}");
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .all(|l| tick(l).is_some() || *l == "shutdown hook"),
        "nothing overwritten: {text}"
    );
}
