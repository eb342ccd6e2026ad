//! Whoever started the JVM sees only its end at a checkpoint: sudo, su and runuser (which
//! stop themselves when their child stops, so that job control works through them), a shell
//! script, as root and as a second user (rootless, with a capable CRIU). None is ever left
//! stopped, each ends with the JVM's status (137: killed by its checkpoint), and the rootless
//! image restores twice through runuser, each copy ending with the program's status.

mod support;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

/// What a run under a wrapper needs: the binaries, and whose they are.
struct Setup {
    crac_java: PathBuf,
    crac_jcmd: PathBuf,
    criu: PathBuf,
    classes: PathBuf,
    /// The user the wrapper runs the JVM as (None: root).
    user: Option<TestUser>,
    home: PathBuf,
}

fn setup(tmp: &TempDir, as_user: bool) -> Setup {
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = tmp.join("home");
    std::fs::create_dir(&home).unwrap();
    if !as_user {
        return Setup {
            crac_java: bin_dir().join("crac-java"),
            crac_jcmd: bin_dir().join("crac-jcmd"),
            criu: bin_dir().join("criu"),
            classes: classes().to_path_buf(),
            user: None,
            home,
        };
    }
    let user = TestUser::create();
    let public = public_copy(tmp);
    let st = Command::new("setcap")
        .arg("cap_checkpoint_restore,cap_sys_ptrace,cap_setpcap+eip")
        .arg(&public.criu)
        .status()
        .unwrap();
    assert!(st.success(), "setcap (libcap2-bin)");
    std::os::unix::fs::chown(&home, Some(user.uid), Some(user.gid)).unwrap();
    Setup {
        crac_java: public.crac_java,
        crac_jcmd: public.crac_jcmd,
        criu: public.criu,
        classes: public.classes,
        user: Some(user),
        home,
    }
}

impl Setup {
    fn name(&self) -> &str {
        self.user.as_ref().map_or("root", |u| u.name.as_str())
    }

    /// A file for the JVM's output that the user owns (CRIU reopens inherited files).
    fn output(&self, name: &str) -> (PathBuf, std::fs::File) {
        let path = self.home.join(name);
        let f = std::fs::File::create(&path).unwrap();
        if let Some(u) = &self.user {
            std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid)).unwrap();
        }
        (path, f)
    }

    /// `env ... crac-java ARGS`, as the wrapper runs it (sudo resets the environment).
    fn crac_java_line(&self, args: &[String]) -> Vec<String> {
        let mut line = vec![
            "env".to_string(),
            format!("CRAC_CRIU_PATH={}", self.criu.display()),
            format!("CRAC_SHIM_JAVA={}", default_java().display()),
            self.crac_java.display().to_string(),
        ];
        line.extend(args.iter().cloned());
        line
    }

    /// The wrapper's command line around `line`.
    fn wrapped(&self, wrapper: &str, line: &[String]) -> Command {
        let user = self.name().to_string();
        let quoted = line
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = match wrapper {
            "sudo" => {
                let mut c = Command::new("sudo");
                c.args(["-u", &user, "--"]);
                c.args(line);
                c
            }
            "runuser" => {
                let mut c = Command::new("runuser");
                c.args(["-u", &user, "--"]);
                c.args(line);
                c
            }
            "su" => {
                let mut c = Command::new("su");
                c.args([&user, "-s", "/bin/sh", "-c", &format!("exec {quoted}")]);
                c
            }
            "script" => {
                let script = self.home.join("start.sh");
                std::fs::write(
                    &script,
                    format!("#!/bin/sh\n{quoted}\necho \"status $?\" >&2\n"),
                )
                .unwrap();
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
                match &self.user {
                    Some(u) => u.command(&script),
                    None => Command::new(&script),
                }
            }
            other => panic!("no wrapper {other}"),
        };
        c.current_dir(&self.home);
        c
    }
}

/// The JVM somewhere below `pid` (its command line names Ticker).
fn jvm_below(pid: u32) -> Option<u32> {
    descendants(pid).into_iter().find(|d| {
        std::fs::read_to_string(format!("/proc/{d}/cmdline")).is_ok_and(|c| c.contains("Ticker"))
    })
}

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn last_tick(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(tick)
        .next_back()
}

fn wait_tick(path: &Path, above: u32) -> u32 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(t) = last_tick(path).filter(|t| *t > above) {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tick above {above} in {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits for `child` to end, failing if it is ever seen stopped (state T).
fn end_never_stopped(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if state(pid) == Some('T') {
            let below = descendants(pid);
            for p in &below {
                kill_pid(*p);
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the parent was left stopped (state T)");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the parent did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Starts Ticker under `wrapper`, checkpoints it by crac-jcmd, and checks how the wrapper
/// ended. Returns the image.
fn checkpoint_under(s: &Setup, wrapper: &str) -> PathBuf {
    let what = format!("{wrapper} as {}", s.name());
    let image = s.home.join(format!("img-{wrapper}"));
    let line = s.crac_java_line(&[
        format!("-XX:CRaCCheckpointTo={}", image.display()),
        "-cp".into(),
        s.classes.display().to_string(),
        "Ticker".into(),
    ]);
    let (out, out_file) = s.output(&format!("{wrapper}.out"));
    let (err, err_file) = s.output(&format!("{wrapper}.err"));
    let mut child = s
        .wrapped(wrapper, &line)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .unwrap();
    wait_tick(&out, 1);
    let jvm = jvm_below(child.id()).expect("the JVM below the wrapper");
    let mut jcmd = match &s.user {
        Some(u) => u.command(&s.crac_jcmd),
        None => Command::new(&s.crac_jcmd),
    };
    jcmd.args([&jvm.to_string(), "JDK.checkpoint"]);
    let o = run(jcmd);
    assert_eq!(o.code, Some(0), "{what}: {} {}", o.stdout, o.stderr);
    let status = end_never_stopped(&mut child, &what);
    let errors = std::fs::read_to_string(&err).unwrap_or_default();
    // The JVM was killed by its checkpoint: the wrapper says so as a shell would (137), or
    // dies of the same signal (sudo re-raises it).
    if wrapper == "script" {
        // The script goes on after the JVM, as scripts do.
        assert!(
            status.success() && errors.contains("status 137"),
            "{what}: {status:?}; {errors}"
        );
    } else {
        assert!(
            status.code() == Some(137) || status.signal() == Some(libc::SIGKILL),
            "{what}: {status:?}; {errors}"
        );
    }
    assert!(!alive(jvm), "{what}: the JVM is gone");
    assert!(image.join("crac-shim.meta").is_file(), "{what}: the image");
    image
}

#[test]
fn sudo_su_runuser_and_scripts_end_with_the_jvm_as_root() {
    require_checkpoint!();
    skip_unless!(
        Command::new("sudo").arg("-V").output().is_ok(),
        "sudo is not installed (scripts/setup test installs it)"
    );
    let tmp = TempDir::new("parents-root");
    let s = setup(&tmp, false);
    for wrapper in ["sudo", "su", "runuser", "script"] {
        checkpoint_under(&s, wrapper);
    }
}

#[test]
fn sudo_su_runuser_end_with_the_jvm_for_another_user_and_runuser_restores() {
    require_checkpoint!();
    skip_unless!(
        Command::new("sudo").arg("-V").output().is_ok(),
        "sudo is not installed (scripts/setup test installs it)"
    );
    skip_unless!(
        Command::new("setcap").arg("-h").output().is_ok(),
        "setcap is not installed (libcap2-bin)"
    );
    let tmp = TempDir::new("parents-user");
    let s = setup(&tmp, true);
    for wrapper in ["sudo", "su"] {
        checkpoint_under(&s, wrapper);
    }
    let image = checkpoint_under(&s, "runuser");
    let last = last_tick(&s.home.join("runuser.out")).unwrap();
    // Two restores one after the other, through runuser: each copy goes on from the image
    // and ends with the program's status (SIGTERM: 143).
    for round in 1..=2 {
        let (out, out_file) = s.output(&format!("restored-{round}.out"));
        let (err, err_file) = s.output(&format!("restored-{round}.err"));
        let line = s.crac_java_line(&[format!("-XX:CRaCRestoreFrom={}", image.display())]);
        let mut child = s
            .wrapped("runuser", &line)
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file)
            .spawn()
            .unwrap();
        let first = wait_tick(&out, 0);
        assert!(first > last, "round {round}: {first} after {last}");
        let jvm = jvm_below(child.id()).expect("the copy below runuser");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(jvm as libc::pid_t, libc::SIGTERM) };
        let status = end_never_stopped(&mut child, &format!("restore {round}"));
        assert_eq!(
            status.code(),
            Some(143),
            "round {round}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }
}
