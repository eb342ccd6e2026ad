//! Threads of a restore (crac-shim's CRIU, `threads-untraced`, asked for with
//! CRAC_SHIM_UNTRACED_THREADS=1 as crac-java does unless the copy would come back in the
//! background of a terminal): only each task's leader is traced back to the program; the other
//! threads go back by themselves and are each seen out of the restorer before it is unmapped,
//! and a thread that never sleeps is seized and traced out.

mod support;

use support::*;

/// The restore log of tests/native/busy_threads.c restored by our CRIU with `restore_env`,
/// once every thread of it was seen to go on (Err: why it cannot run here).
fn busy_threads_log(restore_env: &[(&str, &str)]) -> Result<String, &'static str> {
    if !our_criu_has("threads-untraced") {
        return Err(
            "the CRIU next to crac-java lacks crac-shim's threads-untraced patch: run scripts/setup",
        );
    }
    let run = native_dump_restore("busy_threads", restore_env, "spinners=")
        .ok_or("gcc cannot build tests/native/busy_threads.c: run scripts/setup test")?;
    let log = std::fs::read_to_string(&run.restore_log).unwrap_or_default();
    assert!(run.restored, "criu restore failed: see {log}");
    assert_eq!(run.result, "sleepers=16 spinners=2\n", "{log}");
    Ok(log)
}

#[test]
fn threads_that_never_sleep_are_traced_out_and_every_thread_goes_on() {
    require_checkpoint!();
    let log = busy_threads_log(&[("CRAC_SHIM_UNTRACED_THREADS", "1")]);
    skip_unless!(log.is_ok(), "{}", log.unwrap_err());
    let log = log.unwrap();
    // 16 sleepers and the 2 spinners (the main thread is the traced leader): the spinners
    // are never seen asleep and must have been traced out.
    let line = log
        .lines()
        .find(|l| l.contains("untraced threads seen out of the restorer"))
        .unwrap_or_else(|| panic!("the restore traced every thread: {log}"));
    let seen: u32 = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    let traced: u32 = line
        .rsplit(", ")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    assert_eq!(seen + traced, 18, "{line}");
    assert!(traced >= 2, "{line}");
}

#[test]
fn unasked_every_thread_is_traced_as_upstream_and_goes_on_too() {
    require_checkpoint!();
    let log = busy_threads_log(&[]);
    skip_unless!(log.is_ok(), "{}", log.unwrap_err());
    let log = log.unwrap();
    assert!(!log.contains("untraced threads seen out"), "{log}");
}
