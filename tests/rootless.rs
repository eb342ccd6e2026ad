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
