//! The JDK's own tools on checkpointable JVMs and on their restored copies, as an operator
//! uses them: jps lists them, jstat reads their live counters, jcmd (the attach mechanism,
//! which jstack, jmap and JConsole's local attach share) reaches them; before a checkpoint,
//! after one that let the JVM go on, on the first copy when attach was used before the
//! checkpoint, and on a copy restored into a new PID namespace.

mod support;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use support::*;

fn tool(name: &str) -> Command {
    let mut c = Command::new(
        PathBuf::from(home_of(&default_java()))
            .join("bin")
            .join(name),
    );
    c.stdin(Stdio::null());
    c
}

/// jps, jstat and jcmd each see `pid` (running `main`), or the test fails saying which not.
fn tools_see(pid: u32, main: &str, when: &str) {
    let mut jps = tool("jps");
    jps.arg("-l");
    let listed = run(jps).stdout;
    assert!(
        listed.lines().any(|l| l == format!("{pid} {main}")),
        "{when}: jps does not list {pid} {main}: {listed}"
    );
    let mut jstat = tool("jstat");
    jstat.args(["-gcutil", &pid.to_string()]);
    let o = run(jstat);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        o.code == Some(0) && lines.len() == 2 && lines[0].contains("YGC"),
        "{when}: jstat -gcutil {pid}: {} {}",
        o.stdout,
        o.stderr
    );
    let mut jcmd = tool("jcmd");
    jcmd.args([&pid.to_string(), "VM.uptime"]);
    let o = run(jcmd);
    assert!(
        o.code == Some(0) && o.stdout.contains(" s"),
        "{when}: jcmd {pid} VM.uptime: {} {}",
        o.stdout,
        o.stderr
    );
}

/// A `sleep` holding `pid`, so that a restore of an image with that pid has to move into a
/// new PID namespace (pids are handed out in order after ns_last_pid).
fn occupy(pid: u32) -> Child {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut c = Command::new("sleep").arg("60").spawn().unwrap();
        if c.id() == pid {
            return c;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    panic!("could not take pid {pid} for the test");
}

/// The pid the host sees of the restored JVM below `launcher` whose own pid is `inner`.
fn outer_pid(launcher: &Proc, inner: u32) -> u32 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(p) = launcher.descendants().into_iter().find(|p| {
            *p != inner
                && std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|v| v.split_whitespace().last().map(str::to_string))
                        == Some(inner.to_string())
                })
        }) {
            return p;
        }
        assert!(std::time::Instant::now() < deadline, "no copy below us");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn jps_jstat_and_jcmd_see_the_jvm_and_its_copies() {
    require_checkpoint!();
    let tmp = TempDir::new("tools");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    // Attach used before the checkpoint: its socket is in the image.
    tools_see(app.pid, "Ticker", "the original");

    let mut keep = Command::new(CRAC_JCMD);
    keep.args([&app.pid.to_string(), "JDK.checkpoint", "keep_running=true"]);
    let o = run(keep);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    tools_see(
        app.pid,
        "Ticker",
        "after a checkpoint that let the JVM go on",
    );

    checkpoint_ok(app.pid);
    app.wait();
    // The dead JVM's names are gone: no stale entry in jps, no refused attach.
    let mut jps = tool("jps");
    jps.arg("-q");
    let listed = run(jps).stdout;
    assert!(
        !listed.lines().any(|l| l == app.pid.to_string()),
        "{listed}"
    );
    // (The dump helper removes the attach socket once the JVM is entirely gone.)
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::path::Path::new(&format!("/tmp/.java_pid{}", app.pid)).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead JVM's attach socket stays"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let first = restore(&image);
    first
        .out
        .wait_for("a tick after restore", |l| tick(l).is_some());
    // Same pid as the original here (it was free).
    tools_see(app.pid, "Ticker", "the first restored copy");
    drop(first);

    // A copy in a new PID namespace (its pid is taken here): the tools name it by the pid
    // the host sees.
    let holder = occupy(app.pid);
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _holder = Kill(holder);
    // A link a killed copy left, its file since cleaned up by another JVM's start: swept.
    let dead_link = std::path::PathBuf::from("/tmp/hsperfdata_root/4194999");
    let _ = std::fs::remove_file(&dead_link);
    std::os::unix::fs::symlink("4194998", &dead_link).unwrap();
    let second = restore(&image);
    second
        .out
        .wait_for("a tick after restore", |l| tick(l).is_some());
    let outer = outer_pid(&second, app.pid);
    let deadline = std::time::Instant::now() + TIMEOUT;
    // The copy's agent names it after the restore: give it that moment.
    while !std::path::Path::new(&format!("/tmp/hsperfdata_root/{outer}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no perf data for {outer}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tools_see(outer, "Ticker", "a copy in a new PID namespace");
    assert!(
        std::fs::symlink_metadata(&dead_link).is_err(),
        "a dead copy's jps link stays"
    );
}

/// A JVM whose perf-data file lost its name (another JVM's start-up clean-up, a copy in a new
/// PID namespace taking the name) still checkpoints without it: had the mapping of the deleted
/// file gone into the image, CRIU would re-create it at every restore, and two restores at once
/// would race for it ("Can't create ghost regfile: File exists"), as the many-copies soak found.
#[test]
fn a_perf_data_file_deleted_under_the_jvm_stays_out_of_the_image() {
    require_checkpoint!();
    let tmp = TempDir::new("perf-deleted");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let user = if is_root() {
        "root".to_string()
    } else {
        std::env::var("USER").unwrap()
    };
    let perf = format!("/tmp/hsperfdata_{user}/{}", app.pid);
    std::fs::remove_file(&perf).unwrap();
    checkpoint_ok(app.pid);
    app.wait();
    let ghosts: Vec<String> = std::fs::read_dir(&image)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ghost-file") || n.starts_with("remap-fpath"))
        .collect();
    assert!(
        ghosts.is_empty(),
        "a deleted file went into the image: {ghosts:?}"
    );
    let copy = restore(&image);
    copy.out
        .wait_for("a tick after restore", |l| tick(l).is_some());
}
