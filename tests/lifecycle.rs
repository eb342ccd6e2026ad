//! The restored program lives and dies like the program: a restoring crac-java killed at any
//! moment, even by SIGKILL, leaves nothing of the restore behind.

mod support;
use support::*;

/// Processes whose command line mentions `needle` (our image or classes directory).
fn left_with(needle: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let state = crac_shim::supervise::process_state(pid)?;
            (cmd.contains(needle) && state != 'Z').then_some((pid, cmd))
        })
        .collect()
}

fn nothing_left(needle: &str, what: &str) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let left = left_with(needle);
        if left.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            for (pid, _) in &left {
                kill_pid(*pid);
            }
            panic!("{what}: left running: {left:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// SIGKILL of the restoring crac-java at many moments of a restore (CRIU at work, the JVM
/// half-restored, just restored, running): nothing is left, in this PID namespace and in a
/// new one (when the original still holds the pid).
#[test]
fn a_killed_restoring_launcher_leaves_nothing_behind() {
    require_checkpoint!();
    let tmp = TempDir::new("killedlauncher");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    let needle = image.display().to_string();
    let classes = classes().display().to_string();
    for delay_ms in [0u64, 5, 10, 20, 30, 40, 50, 60, 75, 90, 120, 200, 400] {
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
        let mut p = Proc::spawn(c);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        p.signal(libc::SIGKILL);
        p.wait();
        nothing_left(&needle, &format!("killed after {delay_ms} ms"));
        nothing_left(&classes, &format!("killed after {delay_ms} ms (the JVM)"));
    }

    // The original still runs, so the copy goes to a new PID namespace.
    let original = start_checkpointable(&tmp.join("other"), "Ticker", &[]);
    original.out.wait_for("a tick", |l| tick(l).is_some());
    for delay_ms in [0u64, 20, 50, 100, 400] {
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
        let mut p = Proc::spawn(c);
        if delay_ms == 400 {
            p.out.wait_for("the copy", |l| tick(l).is_some());
        } else {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        }
        p.signal(libc::SIGKILL);
        p.wait();
        nothing_left(
            &needle,
            &format!("new namespace, killed after {delay_ms} ms"),
        );
    }
    assert!(alive(original.pid), "the original is not touched");
}

/// A checkpoint that fails leaves stdin as it was: a program reading it before, during and
/// after goes on reading it, nothing lost or duplicated (it read end-of-file before: a read
/// begun during the dump waited on the placeholder pipe, whose writer then went away).
#[test]
fn stdin_is_untouched_by_a_failed_checkpoint() {
    require_checkpoint!();
    let tmp = TempDir::new("stdinfail");
    let image = tmp.join("image");
    // CRIU runs this before it dumps anything: a second of grace, then a failure. A line
    // typed meanwhile is read, and the reader's next read lands on the placeholder.
    let script = tmp.join("slow-failure.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = pre-dump ] || exit 0\nsleep 1\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!(
        "-XX:CRaCEngineOptions=args=--action-script {}",
        script.display()
    ));
    let mut app = start_checkpointable_with(cmd, &image, "Ticker", &["echo"]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    app.write_stdin("before\n");
    app.out.wait_for("the first echo", |l| l == "echo: before");
    for round in 0..2 {
        let pid = app.pid;
        let dump = std::thread::spawn(move || checkpoint(pid));
        std::thread::sleep(std::time::Duration::from_millis(400));
        app.write_stdin(&format!("during {round}\n"));
        app.out.wait_for("the echo during the dump", |l| {
            l == format!("echo: during {round}")
        });
        let o = dump.join().unwrap();
        assert_eq!(o.code, Some(1), "round {round}: {}", o.stdout);
        app.write_stdin(&format!("after {round}\n"));
        app.out.wait_for("the echo after a failed dump", |l| {
            l == format!("echo: after {round}")
        });
    }
    // A failed dump during which nothing was typed: the reader waited on stdin itself all
    // along, and the next line reaches it exactly once.
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    app.write_stdin("quiet\n");
    app.out
        .wait_for("the echo after a quiet failed dump", |l| l == "echo: quiet");
    let lines = app.out.snapshot();
    assert!(!lines.iter().any(|l| l == "echo: EOF"), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| *l == "echo: quiet").count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("echo: after"))
            .count(),
        2,
        "nothing duplicated: {lines:?}"
    );
}

/// The pid of the child the Parent program started ("child PID").
fn child_of(app: &Proc) -> u32 {
    app.out
        .wait_for("the child", |l| l.starts_with("child "))
        .trim_start_matches("child ")
        .parse()
        .unwrap()
}

/// A JVM with a child process, checkpointed: the dump ends the whole tree it froze, so the
/// original's child is not left behind (stopped, forever); the copy comes back with its child.
#[test]
fn a_checkpoint_ends_the_jvms_children_too() {
    require_checkpoint!();
    let tmp = TempDir::new("children");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Parent", &[]);
    let child = child_of(&app);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !matches!(
        crac_shim::supervise::process_state(child),
        None | Some('Z' | 'X')
    ) {
        if std::time::Instant::now() > deadline {
            kill_pid(child);
            panic!(
                "the original's child {child} is left behind ({:?})",
                crac_shim::supervise::process_state(child)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let restored = restore(&image);
    restored
        .out
        .wait_for("ticks after restore", |l| tick(l).is_some());
    let below = restored.descendants();
    assert!(
        below.len() >= 2,
        "the JVM and its child come back: {below:?}"
    );
}

/// A copy whose program exits while a child it started (restored with it) runs on: crac-java
/// exits at once with the program's status, as `java` does, however long the child lives.
#[test]
fn a_copy_exits_with_its_program_whatever_its_children_do() {
    require_checkpoint!();
    let tmp = TempDir::new("orphan");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Parent", &["exit=40:3"]);
    let child = child_of(&app);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();

    let mut restored = restore(&image);
    // Within the harness' timeout: before, crac-java waited for the child (1000 s).
    assert_eq!(restored.wait().code(), Some(3));
    // In this PID namespace the child runs on, an orphan, as a child of java would: ours to
    // end. (In a new one, it ended with the namespace.)
    let is_our_sleep = std::fs::read(format!("/proc/{child}/cmdline"))
        .is_ok_and(|c| c.starts_with(b"sleep\x001000"));
    if is_our_sleep {
        kill_pid(child);
    }
}
