//! The production flow with a real container engine (Debian's docker.io): an image made in
//! one container and restored as several replicas at once, each in a network namespace of its
//! own, stopped by `docker stop` and checkpointed again; and the bad cases, one line each.
//!
//! No registry here: the container image is an empty root (a few directories and the usual
//! merged-/usr symlinks) made with `docker import`, and the host's /usr and /etc and this
//! build are bind-mounted read-only. The first container uses the host's network (the test
//! warms it up over 127.0.0.1); the replicas run with `--network none` and are asked from
//! inside, over their own loopback. If no engine runs, the test starts `dockerd
//! --bridge=none --iptables=false` with a state of its own and stops it when done.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

/// Everything a container needs from the host, read-only: the JDK and libraries, /etc (the
/// JDK's alternatives), and this build (crac-java, the agent, CRIU, the demo's classes).
fn host_mounts() -> Vec<String> {
    let mut roots: Vec<PathBuf> = vec![
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        PathBuf::from(CRAC_JAVA).parent().unwrap().to_path_buf(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    ];
    // The CRIU next to crac-java may be a link into the source tree or elsewhere.
    if let Ok(criu) = std::fs::canonicalize(Path::new(CRAC_JAVA).with_file_name("criu")) {
        roots.push(criu.parent().unwrap().to_path_buf());
    }
    roots.sort();
    let mut kept: Vec<PathBuf> = Vec::new();
    for r in roots {
        if !kept.iter().any(|k| r.starts_with(k)) {
            kept.push(r);
        }
    }
    let mut v: Vec<String> = ["/usr", "/etc"]
        .iter()
        .map(|p| format!("{p}:{p}:ro"))
        .collect();
    v.extend(
        kept.iter()
            .filter(|p| !p.starts_with("/usr") && !p.starts_with("/etc"))
            .map(|p| format!("{}:{}:ro", p.display(), p.display())),
    );
    v
}

/// The engine: one already running, or ours (started once, stopped by the last test).
struct Engine {
    cli: PathBuf,
    host: Option<String>,
    ours: Option<(Child, TempDir)>,
    users: usize,
}

static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

/// A test's hold on the engine; the last one to let go stops an engine we started. For
/// Podman (no daemon), the storage of the test's own, removed with it.
struct Lease {
    cli: PathBuf,
    host: Option<String>,
    podman: Option<TempDir>,
}

impl Lease {
    /// The engine's command line (`docker` or `podman` with its global options).
    fn docker(&self) -> Command {
        let mut c = Command::new(&self.cli);
        if let Some(h) = &self.host {
            c.arg("-H").arg(h);
        }
        if let Some(state) = &self.podman {
            c.arg("--root")
                .arg(state.join("root"))
                .arg("--runroot")
                .arg(state.join("run"))
                .args([
                    "--storage-driver",
                    "vfs",
                    // This host's crun cannot start containers under hybrid cgroups.
                    "--runtime",
                    "runc",
                    "--cgroup-manager",
                    "cgroupfs",
                    "--events-backend",
                    "file",
                ]);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Options every container of this engine needs here: Podman asks for rlimits above this
    /// host's hard ones by default (nofile 1048576), which runc cannot set; the host's go in.
    fn host_quirks(&self) -> Vec<String> {
        if self.podman.is_none() {
            return Vec::new();
        }
        let hard = |r| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into a local struct.
            unsafe { libc::getrlimit(r, &mut l) };
            l.rlim_max
        };
        // At most the host's hard limits (lowering is always allowed; "unlimited" is not
        // a number runc takes).
        vec![
            "--ulimit".into(),
            format!("nofile={0}:{0}", hard(libc::RLIMIT_NOFILE).min(65536)),
            "--ulimit".into(),
            format!("nproc={0}:{0}", hard(libc::RLIMIT_NPROC).min(4096)),
        ]
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(state) = &self.podman {
            let mut c = self.docker();
            c.args(["rm", "-af"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = c.status();
            unmount_below(state.path());
            return;
        }
        let mut engine = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
        let last = engine.as_mut().is_some_and(|e| {
            e.users -= 1;
            e.users == 0
        });
        if last {
            if let Some(Engine {
                ours: Some((mut dockerd, state)),
                ..
            }) = engine.take()
            {
                // SAFETY: signalling the dockerd we started and have not reaped.
                unsafe { libc::kill(dockerd.id() as libc::pid_t, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = dockerd.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if let Ok(None) = dockerd.try_wait() {
                    let _ = dockerd.kill();
                    let _ = dockerd.wait();
                }
                unmount_below(state.path());
            }
        }
    }
}

/// What dockerd leaves mounted in its state (its default network namespace, say), so that
/// the directory can go.
fn unmount_below(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p) else {
            continue;
        };
        // SAFETY: a NUL-terminated path; a lazy unmount of a mount our dockerd made.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn docker_cli() -> Option<PathBuf> {
    // Debian's client first: it matches Debian's engine (another may be earlier on PATH).
    ["/usr/bin/docker", "/usr/local/bin/docker"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn answers(cli: &Path, host: Option<&str>) -> bool {
    let mut c = Command::new(cli);
    if let Some(h) = host {
        c.arg("-H").arg(h);
    }
    c.arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Takes the engine (starting ours if none runs); `None` (with the reason) when impossible.
fn engine() -> Result<Lease, String> {
    let mut slot = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = slot.as_mut() {
        e.users += 1;
        return Ok(Lease {
            cli: e.cli.clone(),
            host: e.host.clone(),
            podman: None,
        });
    }
    let cli = docker_cli().ok_or("no docker client (scripts/setup installs docker.io)")?;
    if answers(&cli, None) {
        *slot = Some(Engine {
            cli: cli.clone(),
            host: None,
            ours: None,
            users: 1,
        });
        return Ok(Lease {
            cli,
            host: None,
            podman: None,
        });
    }
    let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("no dockerd (scripts/setup installs docker.io)")?;
    let state = TempDir::new("dockerd");
    let socket = format!("unix://{}", state.join("docker.sock").display());
    let log = std::fs::File::create(state.join("dockerd.log")).unwrap();
    let child = Command::new(dockerd)
        .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
        .arg("-H")
        .arg(&socket)
        .arg("--data-root")
        .arg(state.join("data"))
        .arg("--exec-root")
        .arg(state.join("exec"))
        .arg("--pidfile")
        .arg(state.join("docker.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start dockerd: {e}"))?;
    let mut engine = Engine {
        cli: cli.clone(),
        host: Some(socket.clone()),
        ours: Some((child, state)),
        users: 1,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(&cli, Some(&socket)) {
        let (child, state) = engine.ours.as_mut().unwrap();
        let died = child.try_wait().ok().flatten().is_some();
        if died || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(state.join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(format!("dockerd did not come up: {tail:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    *slot = Some(engine);
    Ok(Lease {
        cli,
        host: Some(socket),
        podman: None,
    })
}

/// Rootful Podman (Debian's), daemonless, with a storage of the test's own.
fn podman() -> Result<Lease, String> {
    let cli = ["/usr/bin/podman", "/usr/local/bin/podman"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("no podman (scripts/setup installs podman)")?;
    let lease = Lease {
        cli,
        host: None,
        podman: Some(TempDir::new("podman")),
    };
    let mut c = lease.docker();
    c.arg("info");
    let o = run(c);
    if o.code != Some(0) {
        return Err(format!("podman does not run here: {}", o.stderr.trim()));
    }
    Ok(lease)
}

macro_rules! require_podman {
    () => {{
        require_checkpoint!();
        match podman() {
            Ok(l) => l,
            Err(why) => {
                skip_unless!(false, "{why}");
                unreachable!()
            }
        }
    }};
}

macro_rules! require_engine {
    () => {{
        require_checkpoint!();
        match engine() {
            Ok(l) => l,
            Err(why) => {
                skip_unless!(false, "{why}");
                unreachable!()
            }
        }
    }};
}

/// The empty root every container starts from, imported once per engine.
fn base_image(d: &Lease) -> &'static str {
    const NAME: &str = "crac-shim-test:empty-root";
    let mut c = d.docker();
    c.args(["image", "inspect", NAME])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if c.status().is_ok_and(|s| s.success()) {
        return NAME;
    }
    let tmp = TempDir::new("rootfs");
    let root = tmp.join("root");
    for dir in [
        "usr", "etc", "tmp", "proc", "sys", "dev", "run", "var/tmp", "work",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for (link, to) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        std::os::unix::fs::symlink(to, root.join(link)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let tar = tmp.join("root.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let mut c = d.docker();
    c.args(["import"]).arg(&tar).arg(NAME);
    let o = run(c);
    assert_eq!(o.code, Some(0), "docker import: {}", o.stderr);
    NAME
}

/// Containers this test started, removed (killed first) when it ends, pass or fail.
struct Containers<'a> {
    d: &'a Lease,
    names: Vec<String>,
}

impl<'a> Containers<'a> {
    fn new(d: &'a Lease) -> Self {
        Containers {
            d,
            names: Vec::new(),
        }
    }

    fn name(&mut self, tag: &str) -> String {
        let n = format!("crac-shim-test-{}-{tag}", std::process::id());
        self.names.push(n.clone());
        n
    }

    /// `docker run` (detached when `detach`) of `args` (crac-java's) in a container with the
    /// host's files, `options` (capabilities, network, volumes) and the image `base`.
    fn run(&mut self, tag: &str, options: &[String], args: &[String], detach: bool) -> Output {
        let name = self.name(tag);
        let mut c = self.d.docker();
        c.arg("run").arg("--name").arg(&name);
        if detach {
            c.arg("-d");
        }
        for m in host_mounts() {
            c.arg("-v").arg(m);
        }
        c.args(self.d.host_quirks())
            .args(options)
            .arg(base_image(self.d))
            .arg(CRAC_JAVA)
            .args(args);
        run(c)
    }

    fn state(&self, name: &str) -> (String, Option<i32>) {
        let mut c = self.d.docker();
        c.args([
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            name,
        ]);
        let o = run(c);
        let mut words = o.stdout.split_whitespace();
        let status = words.next().unwrap_or("gone").to_string();
        (status, words.next().and_then(|c| c.parse().ok()))
    }

    /// Waits for the container to end; its exit code.
    fn exit_code(&self, name: &str) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (status, code) = self.state(name);
            if status == "exited" || status == "dead" {
                return code.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{name} still {status}: {}",
                self.logs(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self, name: &str) -> String {
        let mut c = self.d.docker();
        c.args(["logs", name]);
        let o = run(c);
        format!("{}{}", o.stdout, o.stderr)
    }

    fn wait_for_log(&self, name: &str, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.logs(name).contains(what) {
            assert!(
                Instant::now() < deadline,
                "{name} never printed {what:?}: {}",
                self.logs(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exec(&self, name: &str, args: &[&str]) -> Output {
        let mut c = self.d.docker();
        c.arg("exec").arg(name).args(args);
        run(c)
    }

    /// GET over the container's own loopback (from inside its network namespace).
    fn get_inside(&self, name: &str, port: u16, path: &str) -> String {
        get_over_loopback(|args| self.exec(name, args), port, path, || self.logs(name))
    }

    /// The host's pid of the container's pid 1 (crac-java).
    fn host_pid(&self, name: &str) -> u32 {
        let mut c = self.d.docker();
        c.args(["inspect", "-f", "{{.State.Pid}}", name]);
        run(c).stdout.trim().parse().unwrap()
    }
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let mut c = self.d.docker();
        c.args(["rm", "-f"]).args(&self.names);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let _ = c.status();
    }
}

/// GET `path` on 127.0.0.1:`port` with bash run by `exec` inside a network namespace, until it
/// answers (`context` says what the program said, on failure).
fn get_over_loopback(
    exec: impl Fn(&[&str]) -> Output,
    port: u16,
    path: &str,
    context: impl Fn() -> String,
) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let o = exec(&["bash", "-c", &script]);
        if o.code == Some(0) && o.stdout.contains("200 OK") {
            return o.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "no answer on 127.0.0.1:{port}: {} {}; {}",
            o.stdout,
            o.stderr,
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a checkpoint or restore needs on Debian 12's Docker 20.10 (docs/CONTAINERS.md).
fn minimal() -> Vec<String> {
    [
        "--security-opt",
        "seccomp=unconfined",
        "--cap-add",
        "SYS_ADMIN",
    ]
    .map(String::from)
    .to_vec()
}

fn with(base: &[String], more: &[&str]) -> Vec<String> {
    let mut v = base.to_vec();
    v.extend(more.iter().map(|s| s.to_string()));
    v
}

fn image_volume(dir: &Path, ro: bool) -> Vec<String> {
    vec![
        "-v".into(),
        format!("{}:/img{}", dir.display(), if ro { ":ro" } else { "" }),
    ]
}

/// The demo server's arguments for `java`, checkpointing into the image volume.
fn demo_server_args(port: u16) -> Vec<String> {
    vec![
        "-XX:CRaCCheckpointTo=/img/app".into(),
        "-Xmx64m".into(),
        "-cp".into(),
        demo_classes().display().to_string(),
        "HttpDemo".into(),
        port.to_string(),
    ]
}

/// A container-made image of the demo server, warmed up (`requests` answered) and
/// checkpointed from inside the container by its pid 1, as an operator would.
fn checkpoint_in_container(
    cs: &mut Containers,
    tag: &str,
    images: &Path,
    port: u16,
    requests: u32,
) {
    let name = format!("crac-shim-test-{}-{tag}", std::process::id());
    let mut options = with(&minimal(), &["--network", "host"]);
    options.extend(image_volume(images, false));
    let o = cs.run(tag, &options, &demo_server_args(port), true);
    assert_eq!(o.code, Some(0), "docker run: {}", o.stderr);
    cs.wait_for_log(&name, "listening on");
    for n in 1..=requests {
        assert!(http_get(port, &format!("/?n={n}"))
            .unwrap()
            .contains("200 OK"));
    }
    let o = cs.exec(&name, &[CRAC_JCMD, "1", "JDK.checkpoint"]);
    assert_eq!(
        o.code,
        Some(0),
        "checkpoint in the container: {} {}; logs: {}",
        o.stdout,
        o.stderr,
        cs.logs(&name)
    );
    assert!(
        o.stdout.contains("Command executed successfully"),
        "{}",
        o.stdout
    );
    // As with a CRaC JDK, the checkpointed JVM ends killed.
    assert_eq!(cs.exit_code(&name), 137, "{}", cs.logs(&name));
    assert!(images.join("app/crac-shim.meta").is_file());
}

#[test]
fn checkpointed_once_restored_as_three_replicas() {
    let d = require_engine!();
    three_replicas(&d);
}

/// The same flow under Podman (rootful, runc): what Docker users do, Podman users do alike.
#[test]
fn under_podman_checkpointed_once_restored_as_three_replicas() {
    let d = require_podman!();
    three_replicas(&d);
    // Podman's defaults (its capabilities, its seccomp profile): refused at once, in one line
    // with Podman's options.
    let mut cs = Containers::new(&d);
    let tmp = TempDir::new("podman-refused");
    let o = cs.run(
        "refused",
        &image_volume(tmp.path(), false),
        &demo_server_args(free_port()),
        false,
    );
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("(podman run)") && o.stderr.contains("--cap-add"),
        "{}",
        o.stderr
    );
}

/// Made in one container, checkpointed from inside; three replicas at once from a read-only
/// volume; `stop` gives 143; a replica checkpointed again from the host restores too.
fn three_replicas(d: &Lease) {
    let mut cs = Containers::new(d);
    let tmp = TempDir::new("replicas");
    let images = tmp.join("images");
    std::fs::create_dir(&images).unwrap();
    let port = free_port();
    checkpoint_in_container(&mut cs, "maker", &images, port, 20);

    // Three replicas at once, each in a network namespace of its own, from a read-only
    // volume: the image is shared, never written.
    let mut options = with(&minimal(), &["--network", "none"]);
    options.extend(image_volume(&images, true));
    let replicas: Vec<String> = ["b", "c", "d"]
        .iter()
        .map(|tag| {
            let o = cs.run(
                &format!("replica-{tag}"),
                &options,
                &["-XX:CRaCRestoreFrom=/img/app".into()],
                true,
            );
            assert_eq!(o.code, Some(0), "docker run: {}", o.stderr);
            format!("crac-shim-test-{}-replica-{tag}", std::process::id())
        })
        .collect();
    for r in &replicas {
        let answer = cs.get_inside(r, port, "/?n=10");
        // The 21st request: the counter came back with the heap.
        assert!(
            answer.contains("prime 10 = 29, request 21"),
            "{r}: {answer}"
        );
    }

    // docker stop: SIGTERM reaches the JVM through crac-java (pid 1), which exits as java.
    let mut c = d.docker();
    c.args(["stop", "-t", "20", &replicas[0]]);
    assert_eq!(run(c).code, Some(0));
    assert_eq!(cs.exit_code(&replicas[0]), 143, "{}", cs.logs(&replicas[0]));

    // A replica checkpointed again from the host, by the pid the host sees (its pid 1,
    // crac-java, which stands for its JVM), into a volume of its own.
    let again = tmp.join("again");
    std::fs::create_dir(&again).unwrap();
    let mut options = with(&minimal(), &["--network", "none"]);
    options.extend(image_volume(&images, true));
    options.extend(["-v".into(), format!("{}:/again", again.display())]);
    let o = cs.run(
        "again",
        &options,
        &[
            "-XX:CRaCRestoreFrom=/img/app".into(),
            "-XX:CRaCCheckpointTo=/again/app".into(),
        ],
        true,
    );
    assert_eq!(o.code, Some(0), "docker run: {}", o.stderr);
    let name = format!("crac-shim-test-{}-again", std::process::id());
    cs.get_inside(&name, port, "/?n=10");
    let o = checkpoint(cs.host_pid(&name));
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    assert_eq!(cs.exit_code(&name), 137, "{}", cs.logs(&name));

    // And that image restores too, with both requests counted.
    let mut options = with(&minimal(), &["--network", "none"]);
    options.extend(["-v".into(), format!("{}:/img:ro", again.display())]);
    let o = cs.run(
        "again-restored",
        &options,
        &["-XX:CRaCRestoreFrom=/img/app".into()],
        true,
    );
    assert_eq!(o.code, Some(0), "docker run: {}", o.stderr);
    let name = format!("crac-shim-test-{}-again-restored", std::process::id());
    let answer = cs.get_inside(&name, port, "/?n=10");
    assert!(answer.contains("request 22"), "{answer}");
}

#[test]
fn bad_cases_in_containers_get_one_line_each() {
    let d = require_engine!();
    let mut cs = Containers::new(&d);
    let tmp = TempDir::new("container-bad");
    let images = tmp.join("images");
    std::fs::create_dir(&images).unwrap();
    let server = |dir: &str| -> Vec<String> {
        vec![
            format!("-XX:CRaCCheckpointTo={dir}"),
            "-cp".into(),
            demo_classes().display().to_string(),
            "HttpDemo".into(),
            free_port().to_string(),
        ]
    };

    // Docker's defaults: no capability for CRIU.
    let mut options = vec!["--network".to_string(), "none".into()];
    options.extend(image_volume(&images, false));
    one_line_error(
        &cs.run("no-caps", &options, &server("/img/app"), false),
        &["CAP_CHECKPOINT_RESTORE", "--cap-add SYS_ADMIN"],
    );
    // The capability but the engine's seccomp filter: a checkpoint could never work.
    let mut options = vec![
        "--cap-add".to_string(),
        "SYS_ADMIN".into(),
        "--network".into(),
        "none".into(),
    ];
    options.extend(image_volume(&images, false));
    one_line_error(
        &cs.run("seccomp", &options, &server("/img/app"), false),
        &["seccomp", "--security-opt seccomp=unconfined"],
    );
    // The image volume read-only: said before the program starts.
    let mut options = with(&minimal(), &["--network", "none"]);
    options.extend(image_volume(&images, true));
    one_line_error(
        &cs.run("read-only", &options, &server("/img/app"), false),
        &["/img/app", "Read-only file system"],
    );

    // A real image, then a restore without the capability, and one on another JDK.
    let port = free_port();
    checkpoint_in_container(&mut cs, "bad-maker", &images, port, 3);
    let mut options = vec!["--network".to_string(), "none".into()];
    options.extend(image_volume(&images, true));
    one_line_error(
        &cs.run(
            "restore-no-caps",
            &options,
            &["-XX:CRaCRestoreFrom=/img/app".into()],
            false,
        ),
        &["not enough privilege to restore", "--cap-add SYS_ADMIN"],
    );
    let others = other_jdks();
    skip_unless!(
        !others.is_empty(),
        "no second JDK in /usr/lib/jvm to stand in for another JDK"
    );
    // Another JDK where the image's was (a container image rebuilt on a newer base).
    let image_jdk = home_of(&std::fs::canonicalize(default_java()).unwrap());
    let other_jdk = home_of(&others[0]);
    let mut options = with(&minimal(), &["--network", "none"]);
    options.extend(image_volume(&images, true));
    options.extend(["-v".into(), format!("{other_jdk}:{image_jdk}:ro")]);
    one_line_error(
        &cs.run(
            "other-jdk",
            &options,
            &["-XX:CRaCRestoreFrom=/img/app".into()],
            false,
        ),
        &["libjvm.so"],
    );
}

/// Docker 20.10 cannot name CAP_CHECKPOINT_RESTORE; newer engines pass it to runc. The same
/// runc that Debian's Docker uses, driven directly with an OCI bundle, stands for them: Docker's
/// default capabilities plus CAP_CHECKPOINT_RESTORE, no seccomp filter, nothing else.
struct Runc {
    ids: Vec<String>,
}

impl Runc {
    fn run(&mut self, bundle: &Path, id: &str, out: &Path) {
        let log = std::fs::File::create(out).unwrap();
        let st = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .unwrap();
        self.ids.push(id.to_string());
        assert!(
            st.success(),
            "runc run: {}",
            std::fs::read_to_string(out).unwrap_or_default()
        );
    }

    fn exec(&self, id: &str, args: &[&str]) -> Output {
        let mut c = Command::new("runc");
        c.arg("exec").arg(id).args(args);
        run(c)
    }

    fn status(&self, id: &str) -> String {
        let mut c = Command::new("runc");
        c.args(["state", id]);
        let o = run(c);
        o.stdout
            .split("\"status\": \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("gone")
            .to_string()
    }

    fn wait_stopped(&self, id: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while self.status(id) == "running" {
            assert!(Instant::now() < deadline, "{id} still running");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = Command::new("runc")
                .args(["delete", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An OCI bundle: the empty root, and a config with Docker's default capabilities plus
/// CAP_CHECKPOINT_RESTORE, the host's files read-only and `images` at /img.
fn bundle(dir: &Path, images: &Path, images_ro: bool, args: &[String]) {
    let root = dir.join("rootfs");
    for d in ["usr", "etc", "tmp", "proc", "sys", "dev", "run", "img"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, to) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        let _ = std::os::unix::fs::symlink(to, root.join(link));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
        "CAP_CHECKPOINT_RESTORE",
    ]
    .map(|c| format!("\"{c}\""))
    .join(",");
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut binds: Vec<(String, String, &str)> = host_mounts()
        .iter()
        .map(|m| {
            let p = m.split(':').next().unwrap().to_string();
            (p.clone(), p, "ro")
        })
        .collect();
    binds.push((
        images.display().to_string(),
        "/img".into(),
        if images_ro { "ro" } else { "rw" },
    ));
    let binds = binds
        .iter()
        .map(|(src, dst, mode)| {
            format!(
                "{{\"destination\":{},\"type\":\"bind\",\"source\":{},\"options\":[\"rbind\",\"{mode}\"]}}",
                quote(dst),
                quote(src)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let args = args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(",");
    let config = format!(
        r#"{{"ociVersion":"1.0.2-dev",
"process":{{"terminal":false,"user":{{"uid":0,"gid":0}},"args":[{args}],
 "env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"cwd":"/",
 "capabilities":{{"bounding":[{caps}],"effective":[{caps}],"permitted":[{caps}]}},
 "noNewPrivileges":true}},
"root":{{"path":"rootfs","readonly":false}},"hostname":"crac-shim-test",
"mounts":[{{"destination":"/proc","type":"proc","source":"proc"}},
 {{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}},
 {{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]}},
 {{"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["nosuid","noexec","nodev","mode=1777","size=65536k"]}},
 {{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}},
 {binds}],
"linux":{{"resources":{{"devices":[{{"allow":false,"access":"rwm"}}]}},
 "namespaces":[{{"type":"pid"}},{{"type":"network"}},{{"type":"ipc"}},{{"type":"uts"}},{{"type":"mount"}}],
 "maskedPaths":["/proc/kcore","/proc/keys","/proc/timer_list","/sys/firmware"],
 "readonlyPaths":["/proc/bus","/proc/fs","/proc/irq","/proc/sys","/proc/sysrq-trigger"]}}}}"#
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
}

#[test]
fn an_engine_that_knows_checkpoint_restore_needs_nothing_more() {
    require_checkpoint!();
    skip_unless!(
        Command::new("runc")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "no runc (scripts/setup installs docker.io, which brings it)"
    );
    let tmp = TempDir::new("runc");
    let images = tmp.join("images");
    std::fs::create_dir(&images).unwrap();
    let port = free_port();
    let mut runc = Runc { ids: Vec::new() };
    let tag = format!("crac-shim-test-{}", std::process::id());

    let maker = tmp.join("maker");
    bundle(
        &maker,
        &images,
        false,
        &[vec![CRAC_JAVA.to_string()], demo_server_args(port)].concat(),
    );
    let id = format!("{tag}-maker");
    let out = tmp.join("maker.out");
    runc.run(&maker, &id, &out);
    let deadline = Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            Instant::now() < deadline,
            "never listened: {}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = runc.exec(&id, &[CRAC_JCMD, "1", "JDK.checkpoint"]);
    assert_eq!(
        o.code,
        Some(0),
        "{} {}; {}",
        o.stdout,
        o.stderr,
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    runc.wait_stopped(&id);

    let restorer = tmp.join("restorer");
    bundle(
        &restorer,
        &images,
        true,
        &[CRAC_JAVA.into(), "-XX:CRaCRestoreFrom=/img/app".into()],
    );
    let id = format!("{tag}-restored");
    let out = tmp.join("restored.out");
    runc.run(&restorer, &id, &out);
    let answer = get_over_loopback(
        |args| runc.exec(&id, args),
        port,
        "/?n=10",
        || std::fs::read_to_string(&out).unwrap_or_default(),
    );
    assert!(answer.contains("prime 10 = 29, request 1"), "{answer}");
}
