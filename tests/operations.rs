//! Operating it: keep-running snapshots, repeated checkpoints, CRaC's operational flags,
//! crac-jcmd like jcmd.

mod support;
use std::process::Command;
use support::*;

fn jcmd(args: &[&str]) -> Output {
    let mut c = Command::new(CRAC_JCMD);
    c.args(args);
    run(c)
}

#[test]
fn keep_running_snapshots_restore_while_the_original_goes_on() {
    require_checkpoint!();
    skip_unless!(
        support::api_jar().is_file(),
        "crac-shim-api.jar is not built: run scripts/setup"
    );
    let tmp = TempDir::new("keep");
    let base = tmp.join("snapshots");
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCEngineOptions=keep_running=true");
    let app = start_checkpointable_with(cmd, &base.join("gen-%g"), "Api", &["jcmd"]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    for g in 1..=3 {
        checkpoint_ok(app.pid);
        assert!(
            base.join(format!("gen-{g}/crac-shim.meta")).is_file(),
            "generation {g} has its image"
        );
    }
    // afterRestore runs in the original too, and it goes on.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while app
        .out
        .snapshot()
        .iter()
        .filter(|l| l.starts_with("after a"))
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "afterRestore ran in the original each time"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out.wait_for("the original ticking on", |l| {
        tick(l).is_some_and(|t| t > n + 3)
    });

    for g in [1, 3] {
        let copy = restore(&base.join(format!("gen-{g}")));
        copy.out
            .wait_for("afterRestore in the copy", |l| l.starts_with("after a"));
        copy.out.wait_for("the copy ticking", |l| tick(l).is_some());
    }
    assert!(alive(app.pid));
}

#[test]
fn one_checkpoint_keeps_running_when_crac_jcmd_says_so() {
    require_checkpoint!();
    let tmp = TempDir::new("keeponce");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let pid = app.pid.to_string();
    let o = jcmd(&[&pid, "JDK.checkpoint", "keep_running=true"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out.wait_for("ticks after the snapshot", |l| {
        tick(l).is_some_and(|t| t > n + 3)
    });
    // The restored copy ran on from the snapshot while the original still runs.
    let copy = restore(&image);
    copy.out.wait_for("the copy", |l| tick(l).is_some());
    drop(copy);
    // Without the argument, the next checkpoint ends it as usual.
    checkpoint_ok(app.pid);
    app.wait();
}

#[test]
fn a_restored_copy_checkpoints_again_to_its_next_generation() {
    require_checkpoint!();
    let tmp = TempDir::new("again");
    let base = tmp.join("cp");
    let app = start_checkpointable(&base.join("g%g"), "Ticker", &[]);
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    let first = *ticks(&app.out.all()).last().unwrap();
    drop(app);

    let mut copy = restore(&base.join("g1"));
    copy.out
        .wait_for("the copy", |l| tick(l).is_some_and(|t| t > first + 3));
    let copy_pid = *copy.descendants().last().unwrap();
    checkpoint_ok(copy_pid);
    copy.wait();
    let second = *ticks(&copy.out.all()).last().unwrap();
    assert!(
        base.join("g2/crac-shim.meta").is_file(),
        "the copy's checkpoint is generation 2"
    );

    let again = restore(&base.join("g2"));
    again
        .out
        .wait_for("the second image", |l| tick(l).is_some());
    assert_eq!(ticks(&again.out.snapshot())[0], second + 1);
}

#[test]
fn engine_options_and_engine() {
    let mut c = crac_java();
    c.arg("-XX:CRaCEngineOptions=help");
    let o = run(c);
    assert_eq!(o.code, Some(0));
    for word in ["criu_location", "args", "keep_running", "print_command"] {
        assert!(o.stdout.contains(word), "{word}");
    }
    let mut c = crac_java();
    c.args(["-XX:CRaCEngineOptions=keep_running=maybe", "-version"]);
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("keep_running must be true or false"),
        "{}",
        o.stderr
    );

    let tmp = TempDir::new("engine");
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCCheckpointTo={}", tmp.join("cp").display()));
    c.args(["-XX:CRaCEngine=/nonexistent/criu", "-cp"])
        .arg(classes())
        .arg("Args");
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("-XX:CRaCEngine") && o.stderr.contains("/nonexistent/criu"),
        "{}",
        o.stderr
    );
}

#[test]
fn print_command_and_criu_args_reach_criu() {
    require_checkpoint!();
    let tmp = TempDir::new("printcmd");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCEngineOptions=print_command=true,args=--timeout 30");
    let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    let err = app.err.all();
    assert!(
        err.iter()
            .any(|l| l.contains(" dump -t ") && l.ends_with("--timeout 30")),
        "{err:?}"
    );
    let mut c = crac_java();
    c.arg("-XX:CRaCEngineOptions=print_command=true")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let restored = Proc::spawn(c);
    restored
        .err
        .wait_for("the restore command", |l| l.contains(" restore -D "));
    // Which mode ran: crac-shim's CRIU says its patches (scripts/setup builds it with them).
    restored.err.wait_for("the mode", |l| {
        l.contains("with crac-shim's patches: kdat-file, thread-wait")
    });
}

#[test]
fn min_pid_is_reached_and_the_jvm_is_then_our_child() {
    require_checkpoint!();
    // Make crac-java's own pid low (root may set the pid counter), so that it must fork the JVM
    // above the minimum: pid_max can be as low as 32768.
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let min = (max / 2).min(20_000);
    std::fs::write("/proc/sys/kernel/ns_last_pid", (min / 4).to_string()).unwrap();
    let tmp = TempDir::new("minpid");
    let mut cmd = crac_java();
    cmd.arg(format!("-XX:CRaCMinPid={min}"));
    let mut app = start_checkpointable_with(cmd, &tmp.join("image"), "Ticker", &["pid", "hup"]);
    let line = app.out.wait_for("the JVM's pid", |l| l.starts_with("pid "));
    let jvm: u32 = line[4..].parse().unwrap();
    assert!(jvm >= min, "pid {jvm} < {min}");
    app.out.wait_for("a tick", |l| tick(l).is_some());
    app.signal(libc::SIGHUP);
    app.out.wait_for("the signal forwarded", |l| l == "got HUP");
    checkpoint_ok(jvm);
    let status = app.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

#[test]
fn ignore_restore_if_unavailable_starts_normally() {
    let tmp = TempDir::new("ignore");
    let mut c = crac_java();
    c.arg("-XX:+CRaCIgnoreRestoreIfUnavailable")
        .arg(format!(
            "-XX:CRaCRestoreFrom={}",
            tmp.join("missing").display()
        ))
        .arg("-Dcode=4")
        .arg("-cp")
        .arg(classes())
        .args(["Args", "normal start"]);
    let o = run(c);
    assert_eq!(o.code, Some(4));
    assert!(o.stdout.contains("arg=[normal start]"), "{}", o.stdout);
    let why: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("crac-java:"))
        .collect();
    assert_eq!(why.len(), 1, "{}", o.stderr);
    assert!(why[0].contains("not restoring") && why[0].contains("starting normally"));
}

#[test]
fn restore_or_start_and_checkpoint_in_one_command() {
    require_checkpoint!();
    let tmp = TempDir::new("either");
    let image = tmp.join("image");
    let command = || {
        let mut c = crac_java();
        c.arg("-XX:+CRaCIgnoreRestoreIfUnavailable")
            .arg(format!("-XX:CRaCRestoreFrom={}", image.display()))
            .arg(format!("-XX:CRaCCheckpointTo={}", image.display()))
            .arg("-cp")
            .arg(classes())
            .arg("Ticker");
        c
    };
    let first = Proc::spawn(command());
    first
        .out
        .wait_for("a cold start", |l| tick(l).is_some_and(|t| t >= 3));
    checkpoint_ok(first.pid);
    let last = *ticks(&first.out.all()).last().unwrap();
    let second = Proc::spawn(command());
    second.out.wait_for("the restore", |l| tick(l).is_some());
    assert_eq!(ticks(&second.out.snapshot())[0], last + 1);
}

#[test]
fn crac_jcmd_lists_and_finds_jvms_like_jcmd() {
    require_checkpoint!();
    let tmp = TempDir::new("list");
    let mut app = start_checkpointable(&tmp.join("image"), "Ticker", &["listed-by-crac-jcmd"]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let o = jcmd(&["-l"]);
    assert_eq!(o.code, Some(0));
    let me = o
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{} ", app.pid)))
        .expect("listed");
    assert!(me.contains("Ticker listed-by-crac-jcmd"), "{me}");
    assert_eq!(jcmd(&[]).stdout, o.stdout, "no arguments lists too");

    let o = jcmd(&[&app.pid.to_string(), "help"]);
    assert!(o.stdout.contains("JDK.checkpoint"));
    let o = jcmd(&[&app.pid.to_string(), "VM.version"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stdout.contains("JDK"),
        "passed to the real jcmd: {}",
        o.stdout
    );

    let o = jcmd(&["NoSuchMain", "JDK.checkpoint"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("no crac-shim JVM runs NoSuchMain"));
    let o = jcmd(&["listed-by-crac-jcmd", "JDK.checkpoint"]);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    app.wait();
}

/// lazy_pages: the JVM runs before its memory is back, every page arrives intact (the sum
/// over all of them is the checkpointed one), CRIU's page daemon ends by itself once done,
/// and the copy checkpoints again (pages not yet touched come in for the dump).
#[test]
fn lazy_pages_restore_runs_first_and_loses_nothing() {
    require_checkpoint!();
    let tmp = TempDir::new("lazy");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Heap", &["32"]);
    let before = app
        .out
        .wait_for("tick 2", |l| l.starts_with("tick 2 "))
        .split(" sum ")
        .nth(1)
        .unwrap()
        .to_string();
    checkpoint_ok(app.pid);
    app.wait();

    let mut c = crac_java();
    c.arg("-XX:CRaCEngineOptions=lazy_pages=true,print_command=true")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let mut restored = Proc::spawn(c);
    let first = restored
        .out
        .wait_for("a tick after the lazy restore", |l| l.starts_with("tick "));
    assert!(
        first.ends_with(&format!(" sum {before}")),
        "{first} vs {before}"
    );
    let commands = restored.err.snapshot().join("\n");
    assert!(
        commands.contains(" lazy-pages -D ") && commands.contains(" --lazy-pages"),
        "{commands}"
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    let daemon = || {
        restored.descendants().into_iter().any(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"lazy-pages"))
        })
    };
    while daemon() {
        assert!(
            std::time::Instant::now() < deadline,
            "CRIU's lazy-pages daemon never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let jvm = *restored.descendants().last().unwrap();
    checkpoint_ok(jvm);
    restored.wait();

    let mut again = restore(&image);
    let line = again
        .out
        .wait_for("a tick of the re-checkpointed copy", |l| {
            l.starts_with("tick ")
        });
    assert!(
        line.ends_with(&format!(" sum {before}")),
        "{line} vs {before}"
    );
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait().code(), Some(143));
}

/// CRaC's restore-time inputs and naming: patterns in CRaCCheckpointTo, a main class after
/// CRaCRestoreFrom, a new CRaCCheckpointTo given to the restore, ignored descriptors, and
/// CRaC options crac-shim lacks refused by name.
#[test]
fn crac_restore_options_and_checkpoint_patterns() {
    require_checkpoint!();
    let tmp = TempDir::new("cracopts");
    let write_file = tmp.join("data.bin");
    let mut cmd = crac_java();
    // A file open for writing refuses a checkpoint unless the check is told to leave it alone.
    cmd.arg(format!(
        "-XX:CRaCIgnoredFileDescriptors={}",
        write_file.display()
    ));
    separate_temp_dir(&mut cmd, &tmp);
    let app = start_checkpointable_with(
        cmd,
        &tmp.join("cp-%a-%c-%m-%03g"),
        "Files",
        &[&format!("write={}", write_file.display())],
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    let last = *ticks(&app.out.all()).last().unwrap();
    drop(app);
    let cpus = std::thread::available_parallelism().unwrap().get();
    let image = tmp.join(&format!("cp-amd64-{cpus}-64m-001"));
    assert!(
        image.join("crac-shim.meta").is_file(),
        "patterns expanded: {:?}",
        std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );

    let next = tmp.join("next");
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()))
        .arg(format!("-XX:CRaCCheckpointTo={}", next.display()))
        .arg("-Dwho=restorer")
        .args(["AfterRestore", "a", "b c"]);
    let mut copy = Proc::spawn(c);
    copy.out
        .wait_for("the new main", |l| l.starts_with("after-restore main"));
    copy.out
        .wait_for("ticks go on", |l| tick(l).is_some_and(|t| t > last + 2));
    let out = copy.out.snapshot();
    let main_line = out
        .iter()
        .find(|l| l.starts_with("after-restore main"))
        .unwrap();
    assert!(
        main_line.starts_with("after-restore main a|b c who=restorer on "),
        "{main_line}"
    );
    let copy_pid = *copy.descendants().last().unwrap();
    checkpoint_ok(copy_pid);
    copy.wait();
    assert!(
        next.join("crac-shim.meta").is_file(),
        "the restored copy checkpoints into the directory its restore named"
    );

    let mut c = crac_java();
    c.args([
        "-XX:+CRaCAllowToSkipCheckpoint",
        "-XX:CRaCCheckpointTo=/tmp/x",
        "Main",
    ]);
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains(
            "-XX:+CRaCAllowToSkipCheckpoint is a CRaC option that crac-shim does not support"
        ),
        "{}",
        o.stderr
    );
}

/// CRIU's kernel-probe cache as a full root: CRIU keeps one only when /run is a tmpfs (not on
/// this project's machines); crac-shim makes it once per boot in a private directory, lends it
/// to its own CRIU runs as /run/criu.kdat, and leaves nothing of it in /run.
#[test]
fn criu_probes_the_kernel_once_per_boot() {
    require_checkpoint!();
    if !is_root() {
        eprintln!(
            "skipped: the full-root cache needs root (the rootless one is tested in rootless.rs)"
        );
        return;
    }
    let tmp = TempDir::new("kdat");
    let image = tmp.join("image");
    // crac-shim's CRIU (shims/criu) keeps the cache where it is told: our private directory.
    ticker_image(&image, &[], 2);
    let cache = || {
        std::fs::read_dir("/dev/shm/crac-shim-kdat-root")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("criu.kdat"))
            .find(|p| p.is_file())
    };
    let cache = cache().expect("the checkpoint's CRIU made the cache");
    let log = tmp.join("restore.log");
    let mut c = crac_java();
    c.env("CRAC_CRIU_OPTS", format!("-v4 -o {}", log.display()))
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let restored = Proc::spawn(c);
    restored
        .out
        .wait_for("a tick after the restore", |l| tick(l).is_some());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("Loaded kdat cache from {}", cache.display())),
        "CRIU probed the kernel again: {}",
        text.lines().take(12).collect::<Vec<_>>().join(" | ")
    );
    drop(restored);

    // Nothing is ever lent in /run, where a plain criu would load it after a reboot into
    // another kernel: not even by a crac-java killed at any moment of its restore.
    for round in 0..12u64 {
        let mut p = restore(&image);
        std::thread::sleep(std::time::Duration::from_millis(3 * round));
        let below = p.descendants();
        p.signal(libc::SIGKILL);
        p.wait();
        for d in below.into_iter().chain(p.descendants()) {
            kill_pid(d);
            wait_gone(d);
        }
        for leftover in ["/run/criu.kdat", "/run/criu.kdat.tmp"] {
            let ours = std::fs::read(leftover)
                .is_ok_and(|b| b.is_empty() || b.windows(15).any(|w| w == b"crac-shim-kdat "));
            assert!(!ours, "round {round}: {leftover} left behind");
        }
    }
}
