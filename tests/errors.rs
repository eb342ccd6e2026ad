//! Bad input and failures: one clear line, a non-zero exit, nothing lost.

mod support;
use std::process::Command;
use support::*;

fn restore_cmd(dir: &std::path::Path) -> Command {
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", dir.display()));
    c
}

#[test]
fn criu_missing_or_too_old() {
    let tmp = TempDir::new("criu");
    let mut c = restore_cmd(tmp.path());
    c.env("CRAC_CRIU_PATH", "/nonexistent/criu");
    one_line_error(
        &run(c),
        &["CRAC_CRIU_PATH", "/nonexistent/criu", "scripts/setup"],
    );

    let mut c = crac_java();
    c.env("CRAC_CRIU_PATH", "/nonexistent/criu")
        .arg(format!("-XX:CRaCCheckpointTo={}", tmp.join("cp").display()));
    c.arg("-cp").arg(classes()).arg("Args");
    one_line_error(&run(c), &["CRAC_CRIU_PATH"]);

    let old = std::path::Path::new("/usr/sbin/criu");
    skip_unless!(
        old.is_file(),
        "Debian's own criu 3.17 is not installed (scripts/setup test installs it)"
    );
    let mut c = restore_cmd(tmp.path());
    c.env("CRAC_CRIU_PATH", old);
    one_line_error(&run(c), &["CRIU 3.17", "too old", "4.2"]);
}

#[test]
fn not_enough_privilege_names_the_capability() {
    require_checkpoint!();
    let tmp = TempDir::new("priv");
    let mut c = Command::new("setpriv");
    // CAP_SYS_ADMIN opens what CAP_CHECKPOINT_RESTORE does: both must go.
    c.args(["--bounding-set=-checkpoint_restore,-sys_admin", "--"])
        .arg(CRAC_JAVA);
    c.arg(format!("-XX:CRaCRestoreFrom={}", tmp.path().display()));
    one_line_error(&run(c), &["CAP_CHECKPOINT_RESTORE"]);

    // An ordinary user, with a CRIU that has no file capabilities.
    let public = public_copy(&tmp);
    let mut c = as_nobody(&public.crac_java);
    c.env("CRAC_SHIM_RUNTIME_DIR", tmp.join("run"));
    c.arg(format!("-XX:CRaCRestoreFrom={}", tmp.path().display()));
    one_line_error(
        &run(c),
        &["not enough privilege", "CAP_CHECKPOINT_RESTORE", "setcap"],
    );
}

#[test]
fn not_an_image() {
    require_checkpoint!();
    let tmp = TempDir::new("notimage");
    one_line_error(
        &run(restore_cmd(&tmp.join("missing"))),
        &["missing", "No such file"],
    );
    one_line_error(&run(restore_cmd(tmp.path())), &["not a crac-shim image"]);
    std::fs::write(tmp.join("file"), "x").unwrap();
    one_line_error(&run(restore_cmd(&tmp.join("file"))), &["not a directory"]);
    let mut c = crac_java();
    c.arg("-XX:CRaCRestoreFrom=");
    one_line_error(&run(c), &["needs a value"]);
    let mut c = crac_java();
    c.arg("-XX:CRaCBogus=1");
    one_line_error(&run(c), &["unrecognized option -XX:CRaCBogus=1"]);

    // A directory with files in it is not overwritten by a checkpoint.
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCCheckpointTo={}", tmp.path().display()))
        .arg("-cp")
        .arg(classes())
        .arg("Args");
    one_line_error(&run(c), &["neither empty nor a crac-shim image"]);
}

#[test]
fn incompatible_images_are_refused_before_criu_runs() {
    require_checkpoint!();
    let tmp = TempDir::new("incompatible");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    let meta_path = image.join("crac-shim.meta");
    let meta = std::fs::read_to_string(&meta_path).unwrap();

    std::fs::write(&meta_path, meta.replace("format=2", "format=99")).unwrap();
    one_line_error(
        &run(restore_cmd(&image)),
        &["format 99", "checkpoint again"],
    );

    let size_line = meta
        .lines()
        .find(|l| l.starts_with("libjvm_size="))
        .unwrap();
    std::fs::write(&meta_path, meta.replace(size_line, "libjvm_size=1")).unwrap();
    one_line_error(&run(restore_cmd(&image)), &["JDK", "changed"]);

    std::fs::write(&meta_path, &meta).unwrap();
    std::fs::write(image.join("pstree.img"), "garbage").unwrap();
    one_line_error(&run(restore_cmd(&image)), &["pstree.img", "damaged"]);
}

#[test]
fn crac_jcmd_on_something_else() {
    let mut c = Command::new(CRAC_JCMD);
    c.args([&std::process::id().to_string(), "JDK.checkpoint"]);
    one_line_error(&run(c), &["is not a crac-shim JVM", "-XX:CRaCCheckpointTo"]);
    let mut c = Command::new(CRAC_JCMD);
    c.args(["999999999", "JDK.checkpoint"]);
    one_line_error(&run(c), &["no process"]);
    let mut c = Command::new(CRAC_JCMD);
    c.args(["NoSuchMainClass", "JDK.checkpoint"]);
    one_line_error(&run(c), &["no crac-shim JVM runs NoSuchMainClass"]);
    let mut c = Command::new(CRAC_JCMD);
    c.args(["--bogus"]);
    let o = run(c);
    assert_eq!(o.code, Some(2), "bad usage");
    assert!(o.stderr.contains("--bogus") && o.stderr.contains("crac-jcmd --help"));
}

#[test]
fn failed_dump_leaves_the_app_running() {
    require_checkpoint!();
    let tmp = TempDir::new("dumpfail");
    let image = tmp.join("image");
    // A unix connection to another process (this test), let through by the policy: CRIU
    // itself refuses to dump it.
    let sock = tmp.join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let policy = tmp.join("policy");
    std::fs::write(&policy, "type: socket\naction: ignore\n").unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!("-Djdk.crac.resource-policies={}", policy.display()));
    let app = start_checkpointable_with(
        cmd,
        &image,
        "Connected",
        &[&format!("unix={}", sock.display())],
    );
    let _peer = listener.accept().unwrap();
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stdout.starts_with(&format!(
            "{}:\nAn exception during a checkpoint operation:\n",
            app.pid
        )),
        "{}",
        o.stdout
    );
    let reason = o.stdout.lines().nth(2).unwrap();
    assert!(reason.contains("CRIU dump failed:"), "{reason}");
    let log = reason
        .rsplit_once("(log: ")
        .unwrap()
        .1
        .trim_end_matches(')');
    assert!(std::path::Path::new(log).is_file(), "the log {log} is kept");
    assert!(!image.join("crac-shim.meta").exists(), "no image");

    // The app goes on, with its stdout.
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out.wait_for("ticks after the failed checkpoint", |l| {
        tick(l).is_some_and(|t| t > n + 3)
    });
    app.err.wait_for("the reason on the JVM's stderr", |l| {
        l.contains("checkpoint failed")
    });
    assert!(support::alive(app.pid));
    // And the control socket answers again.
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
}

#[test]
fn failed_restore_leaves_the_image_intact() {
    require_checkpoint!();
    let tmp = TempDir::new("restorefail");
    let image = tmp.join("image");
    // The JVM's working directory is gone at restore time: CRIU cannot restore it.
    let cwd = tmp.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut cmd = crac_java();
    cmd.current_dir(&cwd);
    let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    let before: Vec<_> = std::fs::read_dir(&image)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name(), e.metadata().unwrap().len()))
        .collect();

    let moved = tmp.join("moved");
    std::fs::rename(&cwd, &moved).unwrap();
    // Named before CRIU runs (CRIU would fail on it, keeping a log for the user).
    let o = run(restore_cmd(&image));
    one_line_error(&o, &["cwd, which the program used", "is missing"]);
    let after: Vec<_> = std::fs::read_dir(&image)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name(), e.metadata().unwrap().len()))
        .collect();
    assert_eq!(before, after);

    std::fs::rename(&moved, &cwd).unwrap();
    let restored = restore(&image);
    restored
        .out
        .wait_for("a tick once the directory is back", |l| tick(l).is_some());
}

#[test]
fn help_comes_from_the_flag_table() {
    let mut c = crac_java();
    c.arg("--crac-help");
    let o = run(c);
    assert_eq!(o.code, Some(0));
    for opt in [
        "-XX:CRaCCheckpointTo=DIR",
        "-XX:CRaCRestoreFrom=DIR",
        "CRAC_CRIU_PATH",
        "Exit status",
    ] {
        assert!(o.stdout.contains(opt), "{opt}");
    }
    let mut c = Command::new(CRAC_JCMD);
    c.arg("--help");
    let o = run(c);
    assert_eq!(o.code, Some(0));
    assert!(o.stdout.contains("JDK.checkpoint") && o.stdout.contains("-l, --list"));
}

/// A JVM with the agent whose socket crac-jcmd cannot find (here: crac-jcmd told to look in
/// another runtime directory), with no checkpoint under way: said within seconds, not after
/// the whole two-minute timeout.
#[test]
fn a_missing_control_socket_is_said_at_once() {
    require_checkpoint!();
    let tmp = TempDir::new("nosocket");
    let app = start_checkpointable(&tmp.join("image"), "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let elsewhere = tmp.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let mut c = Command::new(CRAC_JCMD);
    c.env("CRAC_SHIM_RUNTIME_DIR", &elsewhere)
        .args([&app.pid.to_string(), "JDK.checkpoint"]);
    let started = std::time::Instant::now();
    let o = run(c);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("no control socket"), "{}", o.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(alive(app.pid), "the JVM goes on");
}
