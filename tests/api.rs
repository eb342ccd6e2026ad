//! The jdk.crac API on a stock JDK: notifications, failure rules, restore-time inputs, the
//! MXBean, crac-jcmd running the same notifications, and the org.crac facade's reflection.

mod support;
use std::process::Command;
use support::*;

/// Starts `Api SCENARIO` checkpointable; returns the app once it printed "checkpointing".
fn api_app(image: &std::path::Path, scenario: &str) -> Proc {
    let app = start_checkpointable(image, "Api", &[scenario]);
    app.out
        .wait_for("the checkpoint call", |l| l == "checkpointing");
    app
}

fn lines_after(lines: &[String], marker: &str) -> Vec<String> {
    lines
        .iter()
        .skip_while(|l| *l != marker)
        .skip(1)
        .cloned()
        .collect()
}

#[test]
fn notifications_run_in_order_and_restore_properties_arrive() {
    require_api!();
    let tmp = TempDir::new("order");
    let image = tmp.join("image");
    let mut app = api_app(&image, "order");
    app.wait();
    let before = lines_after(&app.out.all(), "checkpointing");
    assert_eq!(
        before,
        ["before b", "before n2", "before n1", "before a"],
        "reverse order, nested contexts"
    );

    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()))
        .arg("-Drestore.prop=hello world");
    let restored = Proc::spawn(c);
    restored.out.wait_for("the end", |l| l == "done");
    let after = restored.out.snapshot();
    assert_eq!(
        &after[..5],
        [
            "after a prop=hello world",
            "after n1 prop=hello world",
            "after n2 prop=hello world",
            "after b prop=hello world",
            "returned normally"
        ]
    );
    assert!(
        after.contains(&"restore time set uptime since restore set".to_string()),
        "{after:?}"
    );
}

#[test]
fn a_failing_resource_fails_the_checkpoint_and_everyone_is_restored() {
    require_api!();
    let tmp = TempDir::new("failbefore");
    let image = tmp.join("image");
    let app = api_app(&image, "fail-before");
    app.out.wait_for("the end", |l| l == "done");
    let out = lines_after(&app.out.snapshot(), "checkpointing");
    assert_eq!(
        &out[..8],
        [
            "before c",
            "before bad",
            "before a",
            "after a prop=null",
            "after bad prop=null",
            "after c prop=null",
            "CheckpointException 1",
            "  suppressed java.lang.IllegalStateException: before failed in bad",
        ]
    );
    assert!(!image.join("crac-shim.meta").exists(), "no image");
    assert!(alive(app.pid), "the JVM goes on");
}

#[test]
fn after_restore_failures_are_a_restore_exception() {
    require_api!();
    let tmp = TempDir::new("failafter");
    let image = tmp.join("image");
    let mut app = api_app(&image, "fail-after");
    app.wait();
    let restored = restore(&image);
    restored.out.wait_for("the end", |l| l == "done");
    let out = restored.out.snapshot();
    assert_eq!(
        &out[..4],
        [
            "after a prop=null",
            "after b prop=null",
            "RestoreException 1",
            "  suppressed java.lang.IllegalStateException: after failed in a"
        ]
    );
}

#[test]
fn recursive_checkpoints_are_refused() {
    require_api!();
    let tmp = TempDir::new("recursive");
    let app = api_app(&tmp.join("image"), "recursive");
    app.out.wait_for("the end", |l| l == "done");
    let out = lines_after(&app.out.snapshot(), "checkpointing");
    assert_eq!(
        &out[..2],
        [
            "CheckpointException 1",
            "  suppressed java.lang.IllegalStateException: Recursive checkpoint is not allowed"
        ]
    );
}

#[test]
fn without_checkpoint_to_it_is_not_configured() {
    skip_unless!(
        support::api_jar().is_file(),
        "crac-shim-api.jar is not built: run scripts/setup"
    );
    let mut c = Command::new(default_java());
    c.arg(format!("-Xbootclasspath/a:{}", api_jar().display()))
        .arg("-cp")
        .arg(classes());
    c.args(["Api", "fail-before"]);
    let p = Proc::spawn(c);
    p.out.wait_for("the end", |l| l == "done");
    let out = p.out.snapshot();
    assert!(out.contains(&"restore time before: -1".to_string()));
    let tail = lines_after(&out, "checkpointing");
    assert_eq!(
        &tail[6..9],
        [
            "CheckpointException 2",
            "  suppressed java.lang.IllegalStateException: before failed in bad",
            "  suppressed java.lang.RuntimeException: C/R is not configured"
        ],
        "{tail:?}"
    );
    assert!(tail.contains(&"restore time -1 uptime since restore -1".to_string()));
}

#[test]
fn crac_jcmd_runs_the_java_notifications() {
    require_api!();
    let tmp = TempDir::new("jcmdapi");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Api", &["jcmd"]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    assert!(app.out.all().contains(&"before a".to_string()));
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()))
        .arg("-Drestore.prop=via-jcmd");
    let restored = Proc::spawn(c);
    restored
        .out
        .wait_for("afterRestore in the restored JVM", |l| {
            l == "after a prop=via-jcmd"
        });
}

/// The JVM's last non-daemon thread ends while the checkpoint's notifications run: as a CRaC
/// JDK, the JVM lives on until the checkpoint is done, and the restored JVM then exits
/// normally once its notifications ran.
#[test]
fn the_jvm_lives_until_its_checkpoint_is_done() {
    require_api!();
    let tmp = TempDir::new("handover");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Api", &["handover"]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    assert!(app.out.all().contains(&"main returns".to_string()));
    assert!(image.join("crac-shim.meta").is_file());
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let mut restored = Proc::spawn(c);
    restored
        .out
        .wait_for("afterRestore in the restored JVM", |l| l == "after slow");
    assert_eq!(restored.wait().code(), Some(0), "the JVM exits normally");
}

#[test]
fn crac_jcmd_reports_notification_failures_and_the_jvm_goes_on() {
    require_api!();
    let tmp = TempDir::new("jcmdfail");
    let image = tmp.join("image");
    // fail-before checkpoints from main; wait for that to finish, then ask again with jcmd.
    let app = api_app(&image, "fail-before");
    app.out.wait_for("the end", |l| l == "done");
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[1], "An exception during a checkpoint operation:");
    assert_eq!(lines[2], "jdk.crac.CheckpointException");
    assert!(
        lines.contains(&"\tSuppressed: java.lang.IllegalStateException: before failed in bad"),
        "{lines:?}"
    );
    assert!(alive(app.pid));
}

#[test]
fn the_org_crac_facade_finds_the_api_by_reflection() {
    require_api!();
    let tmp = TempDir::new("facade");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Facade", &[]);
    app.out
        .wait_for("checkpoint", |l| l == "facade checkpointing");
    app.wait();
    assert!(app.out.all().contains(&"facade before".to_string()));
    let restored = restore(&image);
    restored
        .out
        .wait_for("the proxy notified after restore", |l| l == "facade after");
    restored
        .out
        .wait_for("a normal return", |l| l == "facade returned normally");
}

#[test]
fn restored_copies_get_the_restoring_environment_and_fresh_randomness() {
    require_api!();
    let tmp = TempDir::new("fresh");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.env("RESTORE_ENV", "at-checkpoint");
    let mut app = start_checkpointable_with(cmd, &image, "Fresh", &[]);
    app.out.wait_for("the checkpoint", |l| l == "checkpointing");
    app.wait();
    assert!(app
        .out
        .all()
        .contains(&"env before at-checkpoint".to_string()));

    let copy = |value: &str| {
        let mut c = crac_java();
        c.env("RESTORE_ENV", value)
            .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
        let p = Proc::spawn(c);
        p.out.wait_for("the end", |l| l == "done");
        let out = p.out.snapshot();
        drop(p);
        out
    };
    // The racer thread of Fresh knows the restore by a gap of over 500 ms in its clock (which
    // goes on with the wall clock in a copy): the first copy comes a second after the freeze.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let one = copy("first");
    let two = copy("second");
    assert!(one.contains(&"env first first".to_string()), "{one:?}");
    assert!(two.contains(&"env second second".to_string()), "{two:?}");
    for what in [
        "secure ",
        "sha1 ",
        "sha1-unused ",
        "drbg ",
        "strong ",
        "uuid ",
        "tlr ",
        "tlr-new-thread ",
        "splittable ",
        "math ",
        "racer ",
    ] {
        let a = one.iter().find(|l| l.starts_with(what)).unwrap();
        let b = two.iter().find(|l| l.starts_with(what)).unwrap();
        assert_ne!(a, b, "two restored copies produced the same {what}value");
    }
}

#[test]
fn concurrent_callers_each_get_their_own_checkpoint() {
    require_api!();
    let tmp = TempDir::new("concurrentapi");
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCEngineOptions=keep_running=true");
    let app = start_checkpointable_with(cmd, &tmp.join("cp-%g"), "Api", &["concurrent"]);
    app.out.wait_for("both callers", |l| l == "done");
    let out = app.out.snapshot();
    assert!(
        out.contains(&"caller one returned".to_string())
            && out.contains(&"caller two returned".to_string()),
        "{out:?}"
    );
    // One after the other: notifications never interleave.
    let notes: Vec<&String> = out
        .iter()
        .filter(|l| l.starts_with("before") || l.starts_with("after"))
        .collect();
    assert_eq!(
        notes,
        [
            "before a",
            "after a prop=null",
            "before a",
            "after a prop=null"
        ]
    );
    assert!(tmp.join("cp-1/crac-shim.meta").is_file() && tmp.join("cp-2/crac-shim.meta").is_file());
}
