//! One image, many restores, many clients: what must stay exclusive, and a control socket
//! that never hangs a client or runs a stale request.

mod support;
use support::*;

fn server_image(image: &std::path::Path, port: u16) {
    let mut app = start_http_demo(image, port);
    checkpoint_ok(app.pid);
    app.wait();
}

/// Two restores of one server image started together: exactly one listens, the other is
/// refused in one line naming the address and the copy holding it (it failed 5 of 5 tries
/// before: both came up on one address).
#[test]
fn two_restores_of_one_server_never_both_listen() {
    require_checkpoint!();
    let tmp = TempDir::new("twoservers");
    let image = tmp.join("image");
    let port = free_port();
    server_image(&image, port);
    for attempt in 0..5 {
        let start = || {
            let mut c = crac_java();
            c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
            Proc::spawn(c)
        };
        let (mut a, mut b) = (start(), start());
        // The loser ends by itself; the winner serves until it is killed.
        let deadline = std::time::Instant::now() + TIMEOUT;
        let loser = loop {
            if a.try_wait().is_some() {
                break (&mut a, "a");
            }
            if b.try_wait().is_some() {
                break (&mut b, "b");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "attempt {attempt}: both restores kept running"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let err = loser.0.err.all();
        assert_eq!(
            loser.0.wait().code(),
            Some(1),
            "attempt {attempt} {}: {err:?}",
            loser.1
        );
        assert_eq!(err.len(), 1, "attempt {attempt}: {err:?}");
        assert!(
            err[0].contains(&format!("127.0.0.1:{port}"))
                && (err[0].contains("taken by another restored copy (crac-java pid ")
                    || err[0].contains("is in use by pid")),
            "attempt {attempt}: {err:?}"
        );
        let deadline = std::time::Instant::now() + TIMEOUT;
        let answer = loop {
            match http_get(port, "/?n=3") {
                Ok(a) => break a,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "the winner never answered: {e}"
                ),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(answer.contains("200 OK"), "{answer}");
        drop(a);
        drop(b);
        wait_port_free(port);
    }
}

fn wait_port_free(port: u16) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} stays taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// crac-jcmd on a stopped JVM gives up with the reason, and its request never runs later.
#[test]
fn a_stopped_jvm_is_named_and_a_stale_request_never_runs() {
    require_checkpoint!();
    let tmp = TempDir::new("stopped");
    let image = tmp.join("image");
    let app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    app.signal(libc::SIGSTOP);
    let mut c = std::process::Command::new(CRAC_JCMD);
    c.args(["--timeout", "2", &app.pid.to_string(), "JDK.checkpoint"]);
    let o = run(c);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("is stopped") && o.stderr.contains(&format!("kill -CONT {}", app.pid)),
        "{}",
        o.stderr
    );
    // Without a short --timeout too: said within 10 s, not after the default 120 s (bounded by
    // timeout(1): a hang ends with its status 124).
    let mut c = std::process::Command::new("timeout");
    c.args(["10", CRAC_JCMD, &app.pid.to_string(), "JDK.checkpoint"]);
    let o = run(c);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("is stopped"), "{}", o.stderr);
    app.signal(libc::SIGCONT);
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out.wait_for("ticks after SIGCONT", |l| {
        tick(l).is_some_and(|t| t > n + 10)
    });
    assert!(
        alive(app.pid),
        "the stale request did not checkpoint the JVM"
    );
    assert!(!image.join("crac-shim.meta").exists());
}

/// Clients that connect and say nothing delay nobody: ten of them (each would hold a serial
/// server for seconds) and a checkpoint still goes through at once.
#[test]
fn idle_clients_do_not_delay_a_checkpoint() {
    require_checkpoint!();
    let tmp = TempDir::new("idle");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let socket = format!("/run/crac-shim/{}.sock", app.pid);
    let idle: Vec<std::os::unix::net::UnixStream> = (0..10)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    checkpoint_ok(app.pid);
    app.wait();
    assert!(image.join("crac-shim.meta").is_file());
    drop(idle);
}

/// A burst of requests: one checkpoint, and an accurate answer for every other one.
#[test]
fn a_burst_of_requests_gets_one_checkpoint_and_accurate_answers() {
    require_checkpoint!();
    let tmp = TempDir::new("burst");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let pid = app.pid;
    let answers: Vec<Output> = (0..20)
        .map(|_| std::thread::spawn(move || checkpoint(pid)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    app.wait();
    let ok = answers.iter().filter(|o| o.code == Some(0)).count();
    assert_eq!(
        ok,
        1,
        "one checkpoint: {:?}",
        answers.iter().map(|o| &o.stderr).collect::<Vec<_>>()
    );
    for o in answers.iter().filter(|o| o.code != Some(0)) {
        assert!(
            o.stderr
                .contains("exited while another request's checkpoint ran")
                || o.stderr.contains("busy with another checkpoint"),
            "{} / {}",
            o.stdout,
            o.stderr
        );
    }
}

/// The JVM killed in the middle of its dump: crac-jcmd says the JVM died, and nothing of the
/// dump stays but its log next to the image.
#[test]
fn a_jvm_killed_during_its_checkpoint_leaves_nothing_behind() {
    require_checkpoint!();
    let tmp = TempDir::new("killeddump");
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Heap", &["40"]);
    app.out.wait_for("the heap", |l| l.starts_with("tick 1 "));
    let pid = app.pid;
    let jcmd = std::thread::spawn(move || checkpoint(pid));
    // Kill it once CRIU is at work on it.
    let staging = tmp.join(".image.crac-new");
    let deadline = std::time::Instant::now() + TIMEOUT;
    // (CRIU's log is in a scratch directory; its images go to the staging directory.)
    let started = || {
        std::fs::read_dir(&staging)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    };
    while !started() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dump never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    app.signal(libc::SIGKILL);
    let o = jcmd.join().unwrap();
    app.wait();
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    let said = format!("{}{}", o.stdout, o.stderr);
    assert!(said.contains("died"), "{said}");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while staging.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the staging directory stays"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!image.join("crac-shim.meta").exists(), "no image: {said}");
    assert!(
        tmp.join(".image.crac-dump-failed.log").is_file(),
        "the log is kept next to the image"
    );
}
