//! Root's crac-java against a hostile local user (a second user each test creates and
//! removes): no path another user could have placed or changed is ever followed, nothing they
//! squat on stops root, and nothing they plant makes root hang or misreport.

mod support;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use support::*;

fn mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn dir(p: &Path, m: u32) {
    std::fs::create_dir_all(p).unwrap();
    mode(p, m);
}

fn restore_refused(image: &Path, needle: &str) {
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    one_line_error(&o, &[needle]);
}

/// Renames `a` and `b` into each other's place (RENAME_EXCHANGE) for `secs` seconds, as the
/// given user; the number of swaps done lands in `count`.
fn swapper(user: &TestUser, a: &Path, b: &Path, count: &Path, secs: u32) -> std::process::Child {
    let script = "import ctypes,sys,time\n\
        libc=ctypes.CDLL(None,use_errno=True)\n\
        a,b,out,secs=sys.argv[1].encode(),sys.argv[2].encode(),sys.argv[3],float(sys.argv[4])\n\
        n=0\nend=time.time()+secs\n\
        while time.time()<end:\n    n+=libc.renameat2(-100,a,-100,b,2)==0\n\
        open(out,'w').write(str(n))\n";
    user.command("/usr/bin/python3")
        .args(["-c", script])
        .arg(a)
        .arg(b)
        .arg(count)
        .arg(secs.to_string())
        .spawn()
        .unwrap()
}

#[test]
fn root_never_restores_an_image_through_another_users_path() {
    require_checkpoint!();
    let atk = TestUser::create();
    let tmp = TempDir::new("hostile-image");
    mode(tmp.path(), 0o755);
    let real = tmp.join("real");
    dir(&real, 0o755);
    let image = real.join("img");
    ticker_image(&image, &[], 1);

    // A link of the other user's, in a sticky directory anyone may add to (as /tmp).
    let sticky = tmp.join("sticky");
    dir(&sticky, 0o1777);
    let link = sticky.join("link");
    atk.sh(&format!("ln -s {} {}", image.display(), link.display()));
    restore_refused(&link, &format!("is a symbolic link of uid {}", atk.uid));
    // A directory of the other user's on the way.
    let theirs = tmp.join("theirs");
    dir(&theirs, 0o755);
    std::os::unix::fs::chown(&theirs, Some(atk.uid), Some(atk.gid)).unwrap();
    std::fs::rename(&image, theirs.join("img")).unwrap();
    restore_refused(
        &theirs.join("img"),
        &format!("belongs to uid {}: that user could swap", atk.uid),
    );
    std::fs::rename(theirs.join("img"), &image).unwrap();
    // root's own directory, writable by others or by a group with another member.
    mode(&real, 0o777);
    restore_refused(&image, "is writable by others (mode 777, not sticky)");
    std::os::unix::fs::chown(&real, Some(0), Some(atk.gid)).unwrap();
    mode(&real, 0o775);
    restore_refused(&image, &format!("is writable by group {}", atk.gid));
    std::os::unix::fs::chown(&real, Some(0), Some(0)).unwrap();

    // The race: in a directory others may write, the other user swaps their copy of the image
    // in and out as fast as they can while root restores again and again. Never once does
    // root run it (each restore is refused before CRIU, naming the directory).
    mode(&real, 0o777);
    let evil = real.join("evil");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&image)
        .arg(&evil)
        .status()
        .unwrap();
    assert!(copied.success());
    Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", atk.uid, atk.gid))
        .arg(&evil)
        .status()
        .unwrap();
    let count = real.join("swaps");
    let mut swaps = swapper(&atk, &image, &evil, &count, 4);
    let mut restores = 0;
    while swaps.try_wait().unwrap().is_none() {
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
        let o = run(c);
        assert_eq!(o.code, Some(1), "restore {restores}: {}", o.stderr);
        assert!(
            o.stderr.contains("is writable by others"),
            "restore {restores}: {}",
            o.stderr
        );
        restores += 1;
    }
    let n: u32 = std::fs::read_to_string(&count).unwrap().parse().unwrap();
    assert!(n >= 200, "only {n} swaps");
    assert!(restores >= 20, "only {restores} restores");
}

#[test]
fn a_checkpoint_is_never_redirected_by_another_user() {
    require_checkpoint!();
    let atk = TestUser::create();
    let tmp = TempDir::new("hostile-target");
    mode(tmp.path(), 0o755);
    // Into a directory others may write: refused at start, nothing made.
    let open = tmp.join("open");
    dir(&open, 0o777);
    let mut c = crac_java();
    c.arg(format!(
        "-XX:CRaCCheckpointTo={}",
        open.join("cp").display()
    ))
    .arg("-cp")
    .arg(classes())
    .arg("Args");
    let o = run(c);
    one_line_error(&o, &["is writable by others (mode 777, not sticky)"]);
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);

    // Into a sticky directory, where the other user took the staging name first with a link
    // to one of root's directories: the checkpoint goes where it was told, their link stays
    // theirs, root's directory is untouched.
    let sticky = tmp.join("sticky");
    dir(&sticky, 0o1777);
    let victim = tmp.join("victim");
    dir(&victim, 0o755);
    let cp = sticky.join("cp");
    atk.sh(&format!(
        "ln -s {} {}",
        victim.display(),
        sticky.join(".cp.crac-new").display()
    ));
    let mut app = start_checkpointable(&cp, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    assert!(cp.join("crac-shim.meta").is_file());
    let m = std::fs::metadata(&cp).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o700));
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o7777, 0o755);
    let planted = std::fs::symlink_metadata(sticky.join(".cp.crac-new")).unwrap();
    assert!(planted.file_type().is_symlink() && planted.uid() == atk.uid);
    let restored = restore(&cp);
    restored.out.wait_for("a tick", |l| tick(l).is_some());
}

#[test]
fn logs_are_never_reopened_through_a_planted_link() {
    require_checkpoint!();
    let atk = TestUser::create();
    let tmp = TempDir::new("hostile-log");
    mode(tmp.path(), 0o755);
    let logs = tmp.join("logs");
    dir(&logs, 0o1777);
    let log = logs.join("app.log");
    let image = tmp.join("image");
    let rule = tmp.join("logs.yaml");
    std::fs::write(
        &rule,
        format!("type: file\npath: {}\naction: reopen\n", log.display()),
    )
    .unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!("-Djdk.crac.resource-policies={}", rule.display()));
    let mut app = start_checkpointable_with(
        cmd,
        &image,
        "Files",
        &[&format!("append={}", log.display())],
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    app.wait();
    // The log's name is free at restore (a tmp cleaner, a new host): the other user plants a
    // link there, to a file of root's and to a name that does not exist.
    std::fs::remove_file(&log).unwrap();
    let victim = tmp.join("victim.conf");
    std::fs::write(&victim, "root's\n").unwrap();
    mode(&victim, 0o644);
    let missing = tmp.join("cron-job");
    for target in [&victim, &missing] {
        atk.sh(&format!("ln -sfn {} {}", target.display(), log.display()));
        restore_refused(&image, &format!("is a symbolic link of uid {}", atk.uid));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's\n");
        assert!(!missing.exists(), "nothing created through the link");
    }
    // Their own file at that name (they could swap it for a link at any moment): refused.
    std::fs::remove_file(&log).unwrap();
    atk.sh(&format!("touch {}", log.display()));
    restore_refused(&image, &format!("belongs to uid {}", atk.uid));
    // Gone: made again, root's own, and the copy logs into it.
    std::fs::remove_file(&log).unwrap();
    let restored = restore(&image);
    restored.out.wait_for("a tick", |l| tick(l).is_some());
    let m = std::fs::symlink_metadata(&log).unwrap();
    assert!(m.is_file() && m.uid() == 0);
}

#[test]
fn temp_directories_planted_as_links_are_not_followed() {
    require_checkpoint!();
    let atk = TestUser::create();
    let tmp = TempDir::new("hostile-temp");
    mode(tmp.path(), 0o755);
    let image = tmp.join("image");
    let jvm_tmp = tmp.join("jvm-tmp");
    dir(&jvm_tmp, 0o1777);
    // Named as Files.createTempDirectory("work") names it: the JDK's own.
    let work = jvm_tmp.join("work8023371219386503117");
    dir(&work, 0o755);
    let scratch = work.join("scratch.tmp");
    let mut cmd = crac_java();
    cmd.arg(format!("-Djava.io.tmpdir={}", jvm_tmp.display()));
    let mut app = start_checkpointable_with(
        cmd,
        &image,
        "Files",
        &[&format!("write={}", scratch.display())],
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    app.wait();
    // The JVM's temp directory is gone at restore; the other user plants a link in its place,
    // to a directory of root's: the copy keeps its temp file to itself instead.
    std::fs::remove_dir_all(&work).unwrap();
    let victim = tmp.join("victim");
    dir(&victim, 0o755);
    atk.sh(&format!("ln -s {} {}", victim.display(), work.display()));
    let last = *ticks(&app.out.all()).last().unwrap();
    let restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t > last + 5)
    });
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing written through the link"
    );
}

#[test]
fn names_another_user_takes_first_do_not_stop_root() {
    require_checkpoint!();
    let atk = TestUser::create();
    let tmp = TempDir::new("hostile-names");
    let image = tmp.join("image");
    // The old, predictable place of root's control sockets, taken.
    let squat = Path::new("/tmp/crac-shim-0");
    let took = !squat.exists();
    if took {
        atk.sh(&format!("mkdir -m 700 {}", squat.display()));
    }
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let pid = app.pid;
    checkpoint_ok(pid);
    app.wait();
    wait_gone(pid);
    // The copy's attach socket name, taken by a live listener of the other user's.
    let attach = format!("/tmp/.java_pid{pid}");
    let _ = std::fs::remove_file(&attach);
    let mut listener = atk
        .command("/usr/bin/python3")
        .args([
            "-c",
            "import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen()\nprint('up',flush=True)\ntime.sleep(120)\n",
            &attach,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(listener.stdout.take().unwrap()),
        &mut up,
    )
    .unwrap();
    assert_eq!(up.trim(), "up");
    let restored = restore(&image);
    restored.out.wait_for("a tick", |l| tick(l).is_some());
    // The image's pid, here or (when another process holds it here: pids wrap at 32768 on a
    // busy machine) inside the copy's own PID namespace.
    let knows_itself_as = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|l| l.split_whitespace().last()?.parse::<u32>().ok())
            })
    };
    let copy = restored
        .descendants()
        .into_iter()
        .find(|p| knows_itself_as(*p) == Some(pid))
        .expect("the copy has the image's pid");
    // The JDK's own jcmd reaches the copy (the foreign socket is gone).
    let jcmd = Path::new(&home_of(&default_java())).join("bin/jcmd");
    let mut c = Command::new(jcmd);
    c.args([&copy.to_string(), "VM.uptime"]);
    let o = run(c);
    let _ = listener.kill();
    let _ = listener.wait();
    if took {
        let _ = std::fs::remove_dir(squat);
    }
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    drop(restored);
}

#[test]
fn a_hostile_image_never_hangs_the_inspector() {
    require_checkpoint!();
    let tmp = TempDir::new("hostile-inspect");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    // A FIFO the manifest says is empty: reading it would wait forever.
    let fifo = image.join("extra.img");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let manifest = image.join("crac-shim.manifest");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("0 0000000000000000 extra.img\n");
    std::fs::write(&manifest, text).unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCInspectImage={}", image.display()));
    let mut p = Proc::spawn(c);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = p.try_wait() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the inspector hangs on a FIFO"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_ne!(status.code(), Some(0));
    assert!(
        p.out.all().join("\n").contains("not a regular file"),
        "{:?}",
        p.out.all()
    );
}

#[test]
fn a_killed_criu_is_reported_as_killed() {
    require_checkpoint!();
    let tmp = TempDir::new("hostile-killed");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    // CRIU never finishes this restore: there is time to kill it.
    cut_pages_short(&image);
    let mut c = crac_java();
    // Read, not mapped: CRIU then waits for pages that never come (a mapped restore fails
    // at once).
    c.env("CRAC_SHIM_RESTORE_TIMEOUT", "60")
        .arg("-XX:CRaCEngineOptions=map_pages=false")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let mut p = Proc::spawn(c);
    let criu = criu_restore_below(&p);
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill_pid(criu);
    let status = p.wait();
    assert_eq!(status.code(), Some(1));
    let err = p.err.all();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("CRIU was killed by SIGKILL"), "{err:?}");
    assert!(!err[0].contains("RLIMIT_NOFILE"), "{err:?}");
}
