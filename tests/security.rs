//! Who may checkpoint, images as secrets, and faults that must leave everything as it was.

mod support;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use support::*;

#[test]
fn another_user_cannot_control_the_jvm() {
    require_checkpoint!();
    let tmp = TempDir::new("otheruser");
    let mut app = start_checkpointable(&tmp.join("image"), "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let dir = std::fs::metadata("/run/crac-shim").unwrap();
    assert_eq!(
        dir.mode() & 0o777,
        0o700,
        "the runtime directory is private"
    );
    let sock = std::fs::metadata(format!("/run/crac-shim/{}.sock", app.pid)).unwrap();
    assert_eq!(sock.mode() & 0o777, 0o600);

    let public = public_copy(&tmp);
    let mut c = as_nobody(&public.crac_jcmd);
    c.env("CRAC_SHIM_RUNTIME_DIR", "/run/crac-shim")
        .args([&app.pid.to_string(), "JDK.checkpoint"]);
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("permission denied") && o.stderr.contains("owner"),
        "{}",
        o.stderr
    );
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the JVM unaffected", |l| tick(l).is_some_and(|t| t > n + 2));
    checkpoint_ok(app.pid);
    app.wait();
}

#[test]
fn a_runtime_directory_planted_by_someone_else_is_refused() {
    require_checkpoint!();
    let tmp = TempDir::new("planted");
    let planted = tmp.join("run");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let mut c = crac_java();
    c.env("CRAC_SHIM_RUNTIME_DIR", &planted)
        .arg(format!(
            "-XX:CRaCCheckpointTo={}",
            tmp.join("image").display()
        ))
        .arg("-cp")
        .arg(classes())
        .arg("Args");
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("must be a directory owned by you"),
        "{}",
        o.stderr
    );
}

#[test]
fn images_of_others_or_writable_by_others_are_refused() {
    require_checkpoint!();
    let tmp = TempDir::new("foreign");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    let restore_cmd = || {
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
        c
    };
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(restore_cmd());
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("writable by others"), "{}", o.stderr);
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Root never runs memory another user could have written: one file of another user, one
    // file writable by others, a symbolic link, or a directory on the way that another user
    // owns (they could swap the image) each refuse the restore, naming the culprit.
    let pages = std::fs::read_dir(&image)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pages-")
        })
        .expect("a pages file");
    let refused = |what: &str, needle: &str| {
        let o = run(restore_cmd());
        assert_eq!(o.code, Some(1), "{what}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{what}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{what}: {}", o.stderr);
    };
    std::os::unix::fs::chown(&pages, Some(65534), Some(65534)).unwrap();
    refused(
        "a pages file of nobody",
        &format!("{} belongs to uid 65534", pages.display()),
    );
    std::os::unix::fs::chown(&pages, Some(0), Some(0)).unwrap();
    let mode = std::fs::metadata(&pages).unwrap().mode();
    std::fs::set_permissions(&pages, std::fs::Permissions::from_mode(0o666)).unwrap();
    refused("a pages file of mode 666", "writable by others (mode 666)");
    std::fs::set_permissions(&pages, std::fs::Permissions::from_mode(mode)).unwrap();
    let moved = tmp.join("pages-elsewhere.img");
    std::fs::rename(&pages, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &pages).unwrap();
    refused("a symlinked pages file", "is a symbolic link");
    std::fs::remove_file(&pages).unwrap();
    std::fs::rename(&moved, &pages).unwrap();
    std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).unwrap();
    refused(
        "an ancestor of nobody",
        "belongs to uid 65534: that user could swap",
    );
    std::os::unix::fs::chown(tmp.path(), Some(0), Some(0)).unwrap();
    for f in std::fs::read_dir(&image).unwrap() {
        std::os::unix::fs::chown(f.unwrap().path(), Some(65534), Some(65534)).unwrap();
    }
    std::os::unix::fs::chown(&image, Some(65534), Some(65534)).unwrap();
    refused(
        "an image of nobody restored by root",
        "belongs to uid 65534, not to you (uid 0)",
    );

    // Its owner, without CRIU's capabilities, cannot restore it either.
    let public = public_copy(&tmp);
    let mut c = as_nobody(&public.crac_java);
    c.env("CRAC_SHIM_RUNTIME_DIR", tmp.join("nobody-run"));
    std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).unwrap();
    c.env("CRAC_CRIU_PATH", &public.criu)
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    std::os::unix::fs::chown(tmp.path(), Some(0), Some(0)).unwrap();
}

#[test]
fn checkpoint_to_never_follows_a_symlink_into_someone_elses_directory() {
    require_checkpoint!();
    let tmp = TempDir::new("symlink");
    let victim = tmp.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::os::unix::fs::chown(&victim, Some(65534), Some(65534)).unwrap();
    let link = tmp.join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for dir in [link.clone(), link.join("cp")] {
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCCheckpointTo={}", dir.display()))
            .arg("-cp")
            .arg(classes())
            .arg("Args");
        let o = run(c);
        assert_eq!(o.code, Some(1), "{}: {}", dir.display(), o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    }
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing written into the victim's directory"
    );
}

#[test]
fn garbage_and_silence_on_the_control_socket_leave_the_jvm_alone() {
    require_checkpoint!();
    use std::io::{Read, Write};
    let tmp = TempDir::new("garbage");
    let mut app = start_checkpointable(&tmp.join("image"), "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let path = format!("/run/crac-shim/{}.sock", app.pid);
    for junk in [
        &b"\xff\xfe\x00garbage\n"[..],
        &[b'x'; 100_000][..],
        b"rm -rf /\n",
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _ = s.write_all(junk);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.contains("exit 1"), "{answer:?}");
    }
    // A client that connects and never sends is dropped after a timeout; others wait.
    let _silent = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    app.wait();
}

#[test]
fn two_checkpoint_requests_at_once_run_one_after_the_other() {
    require_checkpoint!();
    let tmp = TempDir::new("twice");
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCEngineOptions=keep_running=true");
    let app = start_checkpointable_with(cmd, &tmp.join("cp-%g"), "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let pid = app.pid;
    let a = std::thread::spawn(move || checkpoint(pid));
    let b = std::thread::spawn(move || checkpoint(pid));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(
        (a.code, b.code),
        (Some(0), Some(0)),
        "{} {} / {} {}",
        a.stdout,
        a.stderr,
        b.stdout,
        b.stderr
    );
    assert!(tmp.join("cp-1/crac-shim.meta").is_file() && tmp.join("cp-2/crac-shim.meta").is_file());
}

#[test]
fn a_full_disk_during_the_dump_leaves_the_app_and_the_old_image_intact() {
    require_checkpoint!();
    let tmp = TempDir::new("full");
    let small = tmp.join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Tmpfs::mount(&small, "8m");
    skip_unless!(mounted.is_some(), "cannot mount a small tmpfs here");
    // An earlier, good image that must survive.
    let image = small.join("image");
    std::fs::create_dir(&image).unwrap();
    std::fs::write(image.join("crac-shim.meta"), "format=2\n").unwrap();

    let app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(o.stdout.contains("CRIU dump failed"), "{}", o.stdout);
    assert_eq!(
        std::fs::read_to_string(image.join("crac-shim.meta")).unwrap(),
        "format=2\n",
        "the old image stays"
    );
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the app going on", |l| tick(l).is_some_and(|t| t > n + 2));
    assert!(alive(app.pid));
    drop(app);
}

#[test]
fn a_killed_restore_leaves_no_process_behind() {
    require_checkpoint!();
    let tmp = TempDir::new("killedrestore");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    let mut restored = restore(&image);
    restored.out.wait_for("a tick", |l| tick(l).is_some());
    let below = restored.descendants();
    restored.signal(libc::SIGTERM);
    restored.wait();
    for p in below {
        wait_gone(p);
    }
    // A corrupted pages file: CRIU fails, one line, nothing left running. The manifest names
    // such a file before CRIU runs (images::a_damaged_image_...); written again over the
    // damage, it lets CRIU meet it. CRIU never finishes with this one: the launcher's watchdog
    // ends it.
    let pages = cut_pages_short(&image);
    let mut c = crac_java();
    c.env("CRAC_SHIM_RESTORE_TIMEOUT", "3")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let mut p = Proc::spawn(c);
    let status = p.wait();
    assert_eq!(status.code(), Some(1));
    let err = p.err.all();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("did not finish restoring"), "{err:?}");
    assert!(p.descendants().is_empty());
    // A missing pages file: CRIU fails at once, one line, nothing left running.
    std::fs::remove_file(&pages).unwrap();
    crac_shim::image::manifest::write(&image).unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains("CRIU restore of"), "{}", o.stderr);
}

#[test]
fn criu_killed_mid_dump_leaves_the_app_running_and_the_next_checkpoint_works() {
    require_checkpoint!();
    let tmp = TempDir::new("killeddump");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let pid = app.pid;
    let jcmd = std::thread::spawn(move || checkpoint(pid));
    // Find the CRIU that dumps our JVM (started by its dump helper) and kill it.
    let needle = format!("dump -t {pid} ");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut killed = false;
    while !killed && std::time::Instant::now() < deadline {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) {
                if let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() {
                    kill_pid(p);
                    killed = true;
                }
            }
        }
    }
    let o = jcmd.join().unwrap();
    skip_unless!(killed, "the dump finished before it could be killed");
    if o.code == Some(0) {
        // CRIU had already finished its work when it was killed: nothing to check.
        return;
    }
    assert!(o.stdout.contains("CRIU dump failed"), "{}", o.stdout);
    assert!(!image.join("crac-shim.meta").exists());
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the app going on", |l| tick(l).is_some_and(|t| t > n + 2));
    checkpoint_ok(app.pid);
    app.wait();
    assert!(image.join("crac-shim.meta").is_file());
}

#[test]
fn an_unwritable_image_directory_fails_the_checkpoint_not_the_app() {
    require_checkpoint!();
    let tmp = TempDir::new("readonly");
    let ro = tmp.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mounted = Tmpfs::mount(&ro, "1m");
    skip_unless!(mounted.is_some(), "cannot mount a tmpfs here");
    let image = ro.join("image");
    let app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    // Now the file system goes read-only under the running JVM.
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&ro)
        .status()
        .unwrap();
    assert!(st.success());
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(
        o.stdout.contains("Read-only file system") || o.stdout.contains("cannot"),
        "{}",
        o.stdout
    );
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the app going on", |l| tick(l).is_some_and(|t| t > n + 2));
    drop(app);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?;
        st.success().then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A starting agent sweeps the sockets of JVMs that are gone, but a socket whose pid it cannot
/// see may belong to a JVM in another PID namespace (a container sharing /tmp): only one that
/// nobody listens on is stale.
#[test]
fn the_stale_socket_sweep_spares_sockets_someone_listens_on() {
    require_checkpoint!();
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("sweep");
    let dir = tmp.join("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Pids above the kernel's limit (2^22): no process here has them.
    let stale = dir.join("4194399.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let live = dir.join("4194398.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();

    let mut c = crac_java();
    c.env("CRAC_SHIM_RUNTIME_DIR", &dir);
    let app = start_checkpointable_with(c, &tmp.join("image"), "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let own = dir.join(format!("{}.sock", app.pid));
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !own.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent's socket never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!stale.exists(), "a socket nobody listens on is swept");
    assert!(live.exists(), "a socket someone listens on stays");
}
