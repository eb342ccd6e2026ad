//! No restore can hang: what CRIU could not re-establish is refused before it runs, and a
//! restore under way ends at once when asked to (a container's stop, Ctrl-C).

mod support;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use support::*;

/// Waits up to `secs` for `p` to end.
fn ends_within(p: &mut Proc, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(s) = p.try_wait() {
            return Some(s);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn capabilities_the_restore_cannot_give_back_are_refused_before_criu() {
    require_checkpoint!();
    skip_unless!(
        is_root(),
        "the checkpointed program must hold capabilities (root)"
    );
    skip_unless!(
        Command::new("capsh").arg("--help").output().is_ok(),
        "capsh is not installed (libcap2-bin)"
    );
    let tmp = TempDir::new("caps");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    // Root without CAP_CHECKPOINT_RESTORE in its bounding set (a container started with
    // --cap-add SYS_ADMIN instead): CRIU still restores, but cannot give the program back
    // the capability it held.
    let mut c = Command::new("capsh");
    c.arg("--drop=cap_checkpoint_restore")
        .arg("--")
        .arg("-c")
        .arg(format!(
            "exec env CRAC_SHIM_JAVA={} {} -XX:CRaCRestoreFrom={}",
            default_java().display(),
            bin_dir().join("crac-java").display(),
            image.display()
        ));
    let mut p = Proc::spawn(c);
    let Some(status) = ends_within(&mut p, 30) else {
        for d in p.descendants() {
            kill_pid(d);
        }
        panic!("the restore hangs");
    };
    assert_eq!(status.code(), Some(1));
    let err = p.err.all();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].contains("CAP_CHECKPOINT_RESTORE")
            && err[0].contains("--cap-add CHECKPOINT_RESTORE"),
        "{err:?}"
    );
    assert!(p.descendants().is_empty());
}

#[test]
fn sigterm_ends_a_restore_at_any_moment() {
    require_checkpoint!();
    let tmp = TempDir::new("stalled");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    // CRIU never finishes this restore by itself.
    cut_pages_short(&image);
    let mut c = crac_java();
    // Read, not mapped: CRIU then waits for pages that never come (a mapped restore fails
    // at once).
    c.env("CRAC_SHIM_RESTORE_TIMEOUT", "300")
        .arg("-XX:CRaCEngineOptions=map_pages=false")
        .arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let mut p = Proc::spawn(c);
    criu_restore_below(&p);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let below = p.descendants();
    p.signal(libc::SIGTERM);
    let Some(status) = ends_within(&mut p, 20) else {
        for d in p.descendants() {
            kill_pid(d);
        }
        panic!("SIGTERM did not end the restore");
    };
    assert!(
        status.signal() == Some(libc::SIGTERM) || status.code() == Some(143),
        "{status:?}"
    );
    for d in below {
        wait_gone(d);
    }
}
