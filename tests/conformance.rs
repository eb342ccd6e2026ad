//! What a CRaC JDK's own tests pin down about its flags, and crac-java does alike (our own
//! tests, written from CRaC's documented behaviour).

mod support;
use std::process::{Command, Stdio};
use support::*;

/// CRaC 17's older names: `-XX:CREngine=`, `-XX:+CRPrintResourcesOnCheckpoint`, and the
/// environment variable `CRAC_CRIU_LEAVE_RUNNING` (keep running after the checkpoint); and an
/// empty `-XX:CRaCEngineOptions=` (CRaC's test library passes one at restore) means none.
#[test]
fn crac_17_names_and_an_empty_engine_options_work() {
    require_checkpoint!();
    let tmp = TempDir::new("crac17");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.env("CRAC_CRIU_LEAVE_RUNNING", "1")
        .arg("-XX:CREngine=criu")
        .arg("-XX:+CRPrintResourcesOnCheckpoint");
    let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.err
        .wait_for("the resources printed", |l| l.starts_with("OK: FD"));
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the JVM running on", |l| tick(l).is_some_and(|t| t > n + 2));
    assert!(image.join("crac-shim.meta").is_file());
    app.signal(libc::SIGKILL);
    app.wait();
    wait_gone(app.pid);

    let mut c = crac_java();
    c.arg("-XX:CRaCEngineOptions=")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let restored = Proc::spawn(c);
    restored
        .out
        .wait_for("a tick after restore", |l| tick(l).is_some());
}

/// `-XX:CRaCEngineOptions=help` begins as CRaC's engines begin theirs (tools match the line).
#[test]
fn engine_options_help_begins_with_configuration_options() {
    let mut c = Command::new(CRAC_JAVA);
    c.arg("-XX:CRaCEngineOptions=help");
    let o = run(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(
        o.stdout.lines().next(),
        Some("Configuration options:"),
        "{}",
        o.stdout
    );
}

/// Labels as CRaC's system properties: `-Djdk.crac.labels` at checkpoint (`$NAME` and a bare
/// key take the environment's values), `-Djdk.crac.require-labels` at restore.
#[test]
fn labels_by_system_property_are_stored_and_required() {
    require_checkpoint!();
    let tmp = TempDir::new("proplabels");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.env("LABEL_USER", "alice")
        .env("tier", "gold")
        .arg("-Djdk.crac.labels=foo=bar,who=$LABEL_USER,tier");
    let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    let meta = std::fs::read_to_string(image.join("crac-shim.meta")).unwrap();
    for l in ["label=foo=bar", "label=who=alice", "label=tier=gold"] {
        assert!(meta.lines().any(|m| m == l), "{l} in {meta}");
    }
    let mut c = crac_java();
    c.arg("-Djdk.crac.require-labels=foo=goo")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    one_line_error(&run(c), &["foo=goo", "foo=bar"]);
    let mut c = crac_java();
    c.arg("-Djdk.crac.require-labels=foo=bar,who=alice")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let restored = Proc::spawn(c);
    restored
        .out
        .wait_for("a tick after restore", |l| tick(l).is_some());
}

/// CPU features as CRaC checks them: `exact` compares what the image was limited to (a generic
/// image is not exactly this CPU's), an image made with `-XX:CPUFeatures=ignore` passes only a
/// skipped check, and skipping needs `-XX:+UnlockExperimentalVMOptions`.
#[test]
fn cpu_feature_checks_as_crac_makes_them() {
    require_checkpoint!();
    let tmp = TempDir::new("cpucheck");
    let image_of = |mode: &str| {
        let image = tmp.join(mode);
        let mut cmd = crac_java();
        cmd.arg(format!("-XX:CPUFeatures={mode}"));
        let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
        app.out.wait_for("a tick", |l| tick(l).is_some());
        checkpoint_ok(app.pid);
        app.wait();
        image
    };
    let restore_with = |image: &std::path::Path, flags: &[&str]| {
        let mut c = crac_java();
        c.args(flags)
            .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
        c
    };
    let generic = image_of("generic");
    one_line_error(
        &run(restore_with(&generic, &["-XX:CheckCPUFeatures=exact"])),
        &[
            "cannot be restored on this CPU",
            "that the image was not limited to",
        ],
    );
    let copy = Proc::spawn(restore_with(&generic, &[]));
    copy.out
        .wait_for("the generic image under compatible", |l| tick(l).is_some());
    drop(copy);

    let ignored = image_of("ignore");
    for check in ["compatible", "exact"] {
        one_line_error(
            &run(restore_with(
                &ignored,
                &[&format!("-XX:CheckCPUFeatures={check}")],
            )),
            &["-XX:CPUFeatures=ignore", "-XX:+UnlockExperimentalVMOptions"],
        );
    }
    one_line_error(
        &run(restore_with(&ignored, &["-XX:CheckCPUFeatures=skip"])),
        &["experimental", "-XX:+UnlockExperimentalVMOptions"],
    );
    let copy = Proc::spawn(restore_with(
        &ignored,
        &[
            "-XX:+UnlockExperimentalVMOptions",
            "-XX:CheckCPUFeatures=skip",
        ],
    ));
    copy.out
        .wait_for("the ignore image, skipped", |l| tick(l).is_some());
}

/// `-XX:CRaCIgnoredFileDescriptors`: as a CRaC JDK, the JVM closes at its start every
/// inherited descriptor above 2 that is not listed (a stray one cannot refuse a checkpoint);
/// a listed one stays open and is left alone by the check.
#[test]
fn unlisted_inherited_descriptors_are_closed_at_start() {
    require_checkpoint!();
    let tmp = TempDir::new("inheritedfds");
    let stray = tmp.join("stray.txt");
    std::fs::write(&stray, "x").unwrap();
    let start = |listed: Option<&str>| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&stray)
            .unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(file);
        let mut cmd = crac_java();
        if let Some(l) = listed {
            cmd.arg(format!("-XX:CRaCIgnoredFileDescriptors={l}"));
        }
        // SAFETY: dup2 in the child before exec: fd 42 is the stray file there.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::dup2(raw, 42) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let image = tmp.join(&format!("image-{}", listed.is_some()));
        let app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
        // SAFETY: our copy of the descriptor, no longer needed once the child has it.
        unsafe { libc::close(raw) };
        app.out.wait_for("a tick", |l| tick(l).is_some());
        app
    };
    let app = start(None);
    assert!(
        std::fs::read_link(format!("/proc/{}/fd/42", app.pid)).is_err(),
        "the stray descriptor is closed"
    );
    checkpoint_ok(app.pid);
    drop(app);
    let app = start(Some("42"));
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/fd/42", app.pid)).unwrap(),
        stray,
        "the listed descriptor stays"
    );
    checkpoint_ok(app.pid);
}

/// Policy `action: close`: after the restore the descriptor is closed, as in a CRaC JDK: the
/// program's next write fails with an IOException (it used to go to /dev/null unnoticed).
#[test]
fn a_descriptor_the_policy_closes_fails_after_restore() {
    require_checkpoint!();
    let tmp = TempDir::new("closeaction");
    let image = tmp.join("image");
    let data = tmp.join("data.txt");
    let rules = format!("type: file\npath: {}\naction: close\n", data.display());
    let mut app = start_files(
        &tmp,
        &image,
        Some(&rules),
        &format!("write={}", data.display()),
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    app.wait();
    let mut copy = restore(&image);
    let status = copy.wait();
    let err = copy.err.all().join("\n");
    assert!(err.contains("java.io.IOException"), "{err}");
    assert_ne!(status.code(), Some(0), "{err}");
}

fn uptime_line(l: &str) -> Option<(u64, u64)> {
    let mut f = l.strip_prefix("uptime ")?.split(' ');
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `-XX:+CRaCResetStartTime` (the default): a copy's RuntimeMXBean start time and uptime count
/// from its restore; `-XX:-CRaCResetStartTime` keeps the first JVM's.
#[test]
fn start_time_and_uptime_count_from_the_restore_unless_kept() {
    require_checkpoint!();
    let tmp = TempDir::new("uptime");
    let image = tmp.join("image");
    let app = start_checkpointable(&image, "Uptime", &[]);
    app.out.wait_for("two seconds of uptime", |l| {
        uptime_line(l).is_some_and(|(_, up)| up >= 2000)
    });
    let (first_start, _) = uptime_line(app.out.snapshot().last().unwrap()).unwrap();
    checkpoint_ok(app.pid);
    drop(app);

    let before = now_ms();
    let reset = restore(&image);
    // The program's thread may print once before the agent has taken the restore's time.
    let line = reset.out.wait_for("the restore's start time", |l| {
        uptime_line(l).is_some_and(|(start, _)| start + 50 >= before)
    });
    let (start, up) = uptime_line(&line).unwrap();
    assert!(start <= now_ms(), "start {start} is in the future: {line}");
    assert!(
        up < 1500,
        "uptime {up} counts from before the checkpoint: {line}"
    );
    drop(reset);

    let mut c = crac_java();
    c.arg("-XX:-CRaCResetStartTime")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let kept = Proc::spawn(c);
    let line = kept
        .out
        .wait_for("a line after restore", |l| uptime_line(l).is_some());
    let (start, up) = uptime_line(&line).unwrap();
    assert_eq!(start, first_start, "{line}");
    assert!(up >= 2000, "{line}");
}

/// `-XX:CRaCEngine=simengine`: a dry run of a checkpoint, without CRIU or privileges (here as
/// user nobody, with no CRIU to be found): every notification runs, the program goes on as
/// restored, the directory holds no image, and a restore of it says there is nothing to
/// restore. A descriptor the check refuses is refused as with a real checkpoint.
#[test]
fn simengine_runs_the_notifications_without_criu() {
    require_api!();
    let tmp = TempDir::new("simengine");
    let public = public_copy(&tmp);
    let home = tmp.join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let mut c = as_nobody(&public.crac_java);
    c.env("CRAC_CRIU_PATH", "/nonexistent/criu")
        .env("HOME", &home)
        .current_dir(&home)
        .arg("-XX:CRaCEngine=simengine")
        .arg(format!(
            "-XX:CRaCCheckpointTo={}",
            home.join("img-%p").display()
        ))
        .arg("-cp")
        .arg(&public.classes)
        .args(["Api", "order"])
        .stdin(Stdio::piped());
    let app = Proc::spawn(c);
    app.out.wait_for("the program going on", |l| l == "done");
    let out = app.out.snapshot();
    let notes: Vec<&String> = out
        .iter()
        .filter(|l| l.starts_with("before") || l.starts_with("after"))
        .collect();
    assert_eq!(
        notes,
        [
            "before b",
            "before n2",
            "before n1",
            "before a",
            "after a prop=null",
            "after n1 prop=null",
            "after n2 prop=null",
            "after b prop=null"
        ],
        "{out:?}"
    );
    assert!(out.contains(&"returned normally".to_string()), "{out:?}");
    let dir = home.join(format!("img-{}", app.pid));
    let meta = std::fs::read_to_string(dir.join("crac-shim.meta")).unwrap();
    assert!(meta.contains("engine=simengine"), "{meta}");
    let pages = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".img"))
        .count();
    assert_eq!(pages, 0, "simengine wrote an image");
    drop(app);

    let mut c = as_nobody(&public.crac_java);
    c.current_dir(&home)
        .arg(format!("-XX:CRaCRestoreFrom={}", dir.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    one_line_error(&o, &["simengine", "nothing to restore"]);

    // Refusals as with CRIU: a file open for writing, the JVM going on.
    let written = tmp.join("out.txt");
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCEngine=simengine");
    separate_temp_dir(&mut cmd, &tmp);
    let app = start_checkpointable_with(
        cmd,
        &tmp.join("refused"),
        "Files",
        &[&format!("write={}", written.display())],
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    let said = format!("{}{}", o.stdout, o.stderr);
    assert!(
        said.contains(&format!(
            "CheckpointOpenFileException: {}",
            written.display()
        )),
        "{said}"
    );
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the JVM going on", |l| tick(l).is_some_and(|t| t > n + 3));
}

/// `-XX:CRaCEngine=pauseengine`: the checkpoint holds the JVM still in place; a restore of
/// its directory checks the labels it requires, then resumes the JVM, which goes on as
/// restored (with the restore's -D properties) while the restoring crac-java exits 0.
#[test]
fn pauseengine_pauses_in_place_until_a_restore_resumes_it() {
    require_api!();
    let tmp = TempDir::new("pauseengine");
    let image = tmp.join("paused");
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCEngine=pauseengine")
        .arg("-XX:CRaCImageLabels=stage=warm");
    let app = start_checkpointable_with(cmd, &image, "Api", &["jcmd"]);
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 3));
    checkpoint_ok(app.pid);
    app.out.wait_for("the notification", |l| l == "before a");
    app.err.wait_for("the pause said", |l| {
        l.contains("pauseengine") && l.contains(&image.display().to_string())
    });
    let paused_at = ticks(&app.out.snapshot()).last().copied().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(
        ticks(&app.out.snapshot()).last().copied(),
        Some(paused_at),
        "the program ran on while paused"
    );
    // Asked for another checkpoint meanwhile, crac-jcmd hears the JVM is paused.
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1));
    assert!(o.stdout.contains("paused"), "{} {}", o.stdout, o.stderr);

    let mut c = crac_java();
    c.arg("-XX:CRaCRequiredImageLabels=stage=cold")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("stage"), "{}", o.stderr);

    let mut c = crac_java();
    c.arg("-XX:CRaCRequiredImageLabels=stage=warm")
        .arg("-Drestore.prop=resumed")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    app.out
        .wait_for("afterRestore", |l| l == "after a prop=resumed");
    app.out.wait_for("the program going on", |l| {
        tick(l).is_some_and(|t| t > paused_at + 3)
    });

    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1));
    one_line_error(&o, &["not paused any more"]);
}

/// `action: reopen` as a CRaC JDK does it: a file rewritten since the checkpoint is reopened at
/// the saved offset all the same (one line names it), also a file the JVM made itself; a file
/// gone lets the restore go on and `checkpointRestore()` throws a RestoreException naming it;
/// `allowChanges: false` (crac-shim's) refuses a changed file instead.
#[test]
fn reopen_goes_on_with_a_changed_or_vanished_file_as_crac_does() {
    require_api!();
    let tmp = TempDir::new("reopencrac");
    let data = tmp.join("data.txt");
    let policy = tmp.join("policy.yaml");
    let image = tmp.join("image");
    let checkpointed = |rules: &str, image: &std::path::Path| {
        std::fs::write(&policy, rules).unwrap();
        let mut cmd = crac_java();
        cmd.arg(format!("-Djdk.crac.resource-policies={}", policy.display()));
        let mut app =
            start_checkpointable_with(cmd, image, "Reopen", &[&data.display().to_string()]);
        app.out.wait_for("the checkpoint", |l| l == "checkpointing");
        app.wait();
        assert!(image.join("crac-shim.meta").is_file(), "no image");
        assert_eq!(std::fs::read_to_string(&data).unwrap(), "hello ");
    };
    checkpointed(
        &format!("type: file\npath: {}\naction: reopen\n", data.display()),
        &image,
    );
    std::fs::write(&data, "123456").unwrap();
    let copy = restore(&image);
    copy.out.wait_for("the write", |l| l == "wrote");
    copy.err.wait_for("the changed file named", |l| {
        l.contains(&data.display().to_string()) && l.contains("changed since the checkpoint")
    });
    drop(copy);
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "123456world!");

    std::fs::remove_file(&data).unwrap();
    let copy = restore(&image);
    copy.out.wait_for("the RestoreException", |l| {
        l.starts_with("RestoreException:") && l.contains(&data.display().to_string())
    });
    drop(copy);

    // The strict key: a changed file refuses the restore, and nothing is touched.
    let strict = tmp.join("strict");
    checkpointed(
        &format!(
            "type: file\npath: {}\naction: reopen\nallowChanges: false\n",
            data.display()
        ),
        &strict,
    );
    std::fs::write(&data, "123456").unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", strict.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    one_line_error(
        &o,
        &["was written after the checkpoint", "allowChanges: false"],
    );
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "123456");
}
