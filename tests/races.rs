//! One image, many restores, many clients: what must stay exclusive, and a control socket
//! that never hangs a client or runs a stale request.

mod support;
use support::*;

fn server_image(image: &std::path::Path, port: u16) {
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCCheckpointTo={}", image.display()))
        .arg("-Xmx64m")
        .arg("-cp")
        .arg(demo_classes())
        .args(["HttpDemo", &port.to_string()]);
    let mut app = Proc::spawn(c);
    app.out
        .wait_for("listening", |l| l.starts_with("listening on"));
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
