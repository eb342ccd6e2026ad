//! Rootless: an ordinary user checkpoints and restores with a CRIU binary that has file
//! capabilities (CRIU's --unprivileged mode), and is told exactly what is missing otherwise.

mod support;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use support::*;

const NOBODY: u32 = 65534;

/// A file the user owns, for the JVM's output (CRIU reopens inherited descriptors by
/// /proc/self/fd, which must be the user's own).
fn output_file(path: &std::path::Path) -> std::fs::File {
    let f = std::fs::File::create(path).unwrap();
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    f
}

fn wait_for_tick_in(path: &std::path::Path, above: u32) -> u32 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(t) = text
            .lines()
            .filter_map(tick)
            .next_back()
            .filter(|t| *t > above)
        {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tick above {above} in {}: {text}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn an_ordinary_user_checkpoints_and_restores_with_a_capable_criu() {
    require_checkpoint!();
    skip_unless!(
        Command::new("setcap").arg("-h").output().is_ok(),
        "setcap is not installed (libcap2-bin)"
    );
    let tmp = TempDir::new("rootless");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let public = public_copy(&tmp);
    let criu = public.criu.clone();
    let home = tmp.join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();

    // Without capabilities on CRIU: one line that says which and how.
    let mut c = as_nobody(&public.crac_java);
    c.env("CRAC_CRIU_PATH", &criu)
        .arg(format!(
            "-XX:CRaCCheckpointTo={}",
            home.join("img").display()
        ))
        .arg("-cp")
        .arg(&public.classes)
        .arg("Ticker");
    let o = run(c);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("CAP_CHECKPOINT_RESTORE")
            && o.stderr.contains(&format!(
                "setcap cap_checkpoint_restore,cap_sys_ptrace,cap_setpcap+eip {}",
                criu.display()
            )),
        "{}",
        o.stderr
    );

    let st = Command::new("setcap")
        .arg("cap_checkpoint_restore,cap_sys_ptrace,cap_setpcap+eip")
        .arg(&criu)
        .status()
        .unwrap();
    assert!(st.success());
    let out = home.join("out.txt");
    let mut c = as_nobody(&public.crac_java);
    c.env("CRAC_CRIU_PATH", &criu)
        .current_dir(&home)
        .arg(format!(
            "-XX:CRaCCheckpointTo={}",
            home.join("img").display()
        ))
        .arg("-cp")
        .arg(&public.classes)
        .arg("Ticker")
        .stdin(Stdio::null())
        .stdout(output_file(&out))
        .stderr(output_file(&home.join("err.txt")));
    let mut app = KillOnDrop(c.spawn().unwrap());
    wait_for_tick_in(&out, 1);
    let jvm = app.0.id();
    let mut c = as_nobody(&public.crac_jcmd);
    c.args([&jvm.to_string(), "JDK.checkpoint"]);
    let o = run(c);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    app.0.wait().unwrap();
    drop(app);
    let last = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(tick)
        .next_back()
        .unwrap();

    let restored_out = home.join("restored.txt");
    let mut c = as_nobody(&public.crac_java);
    c.env("CRAC_CRIU_PATH", &criu)
        .current_dir(&home)
        .arg(format!(
            "-XX:CRaCRestoreFrom={}",
            home.join("img").display()
        ))
        .stdin(Stdio::null())
        .stdout(output_file(&restored_out))
        .stderr(output_file(&home.join("restored-err.txt")));
    let _restored = KillOnDrop(c.spawn().unwrap());
    let first = wait_for_tick_in(&restored_out, 0);
    assert!(
        first > last,
        "the restored copy goes on: {first} after {last}"
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(home.join("img")).unwrap());
    assert_eq!(owner, NOBODY, "the image belongs to the user");

    // CRIU's kernel-probe cache, kept for the user on /dev/shm (a tmpfs) since no
    // XDG_RUNTIME_DIR is set: the checkpoint wrote it, and it is the user's alone.
    let cache_base = std::path::PathBuf::from(format!("/dev/shm/crac-shim-kdat-{NOBODY}"));
    let on_tmpfs = Command::new("stat")
        .args(["-f", "-c", "%T", "/dev/shm"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "tmpfs");
    if on_tmpfs {
        let caches: Vec<std::path::PathBuf> = std::fs::read_dir(&cache_base)
            .map(|d| d.flatten().map(|e| e.path().join("criu.kdat")).collect())
            .unwrap_or_default();
        assert!(
            caches.len() == 1 && caches[0].is_file(),
            "one cache in {}: {caches:?}",
            cache_base.display()
        );
        let m = std::fs::metadata(&caches[0]).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(m.uid() == NOBODY && m.mode() & 0o077 == 0, "{:o}", m.mode());
    }
}

/// Kills a process we started and everything below it, and reaps it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in descendants(self.0.id()) {
            kill_pid(p);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of a child of `parent`, once it runs `comm`.
fn child_running(parent: u32, comm: &str) -> u32 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let name = head.split_once(" (").map(|(_, n)| n).unwrap_or_default();
            let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if name == comm && ppid == Some(parent) {
                return e.file_name().to_str().unwrap().parse().unwrap();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {comm} under {parent}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A JVM in a user namespace of its own, in a root of its user's (as rootless Podman or
/// Docker run it): its agent knows its user as uid 0 and keeps its socket in its own /tmp.
/// crac-jcmd from the host reaches it, as its owner (uid mapped through the namespace's
/// uid_map) and as root (who joins the namespace as its root, since host root is unmapped
/// there and the agent answers only its own user), in seconds. (simengine: CRIU itself does
/// not run in an unprivileged user namespace.)
#[test]
fn crac_jcmd_reaches_a_jvm_in_a_user_namespace() {
    require_checkpoint!();
    skip_unless!(
        Command::new("unshare")
            .args(["-U", "-r", "true"])
            .status()
            .is_ok_and(|s| s.success()),
        "user namespaces are not available (kernel.unprivileged_userns_clone?)"
    );
    let tmp = TempDir::new("userns");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let public = public_copy(&tmp);
    let root = tmp.join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = tmp.join("out.txt");
    let script = format!(
        "set -e; R={root}; for d in bin sbin usr lib lib64 etc dev proc sys; do [ -e /$d ] || continue; mkdir -p $R/$d; mount --rbind /$d $R/$d; done; \
         mkdir -p $R/tmp $R/opt/crac; mount -t tmpfs tmpfs $R/tmp; mount --rbind {public} $R/opt/crac; \
         exec chroot $R sh -c 'mkdir /tmp/cp && cd /tmp && exec /opt/crac/crac-java -XX:CRaCEngine=simengine -XX:CRaCCheckpointTo=/tmp/cp/img-%g -cp /opt/crac/classes Ticker'",
        root = root.display(),
        public = public.crac_java.parent().unwrap().display(),
    );
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([
            "unshare",
            "-U",
            "-r",
            "-m",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
        ])
        .arg(&script)
        .env("CRAC_SHIM_JAVA", default_java())
        .env("CRAC_CRIU_PATH", "/nonexistent/criu")
        .stdin(Stdio::null())
        .stdout(output_file(&out))
        .stderr(Stdio::inherit());
    let mut ns = KillOnDrop(c.spawn().unwrap());
    let jvm = child_running(ns.0.id(), "java");
    wait_for_tick_in(&out, 1);
    let map = std::fs::read_to_string(format!("/proc/{jvm}/uid_map")).unwrap();
    assert!(map.split_whitespace().eq(["0", "65534", "1"]), "{map}");

    for (who, mut c) in [
        ("its owner", as_nobody(&public.crac_jcmd)),
        ("root", Command::new(&public.crac_jcmd)),
    ] {
        c.args([&jvm.to_string(), "JDK.checkpoint"]);
        let started = std::time::Instant::now();
        let o = run(c);
        assert_eq!(o.code, Some(0), "{who}: {} {}", o.stdout, o.stderr);
        assert!(
            o.stdout.contains("Command executed successfully"),
            "{who}: {}",
            o.stdout
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{who}"
        );
    }
    for n in 1..=2 {
        let meta = format!("/proc/{jvm}/root/tmp/cp/img-{n}/crac-shim.meta");
        assert!(std::path::Path::new(&meta).is_file(), "{meta}");
    }
    let last = wait_for_tick_in(&out, 0);
    wait_for_tick_in(&out, last + 2);
    let _ = ns.0.kill();
    let _ = ns.0.wait();
    wait_gone(jvm);
}
