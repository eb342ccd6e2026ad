//! Threads of a restore (crac-shim's CRIU, `threads-untraced`, asked for with
//! CRAC_SHIM_UNTRACED_THREADS=1 as crac-java does when the copy has no terminal): only each
//! task's leader is traced back to the program; the other threads go back by themselves and
//! are each seen out of the restorer before it is unmapped, and a thread that never sleeps is
//! seized and traced out.

mod support;

use std::process::Command;
use support::*;

fn our_criu_has(feature: &str) -> bool {
    Command::new(bin_dir().join("criu"))
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains(&format!("crac-shim-feature: {feature}\n"))
        })
}

fn busy_threads(restore_env: &[(&str, &str)]) -> Option<NativeRun> {
    native_dump_restore("busy_threads", restore_env, "spinners=")
}

#[test]
fn threads_that_never_sleep_are_traced_out_and_every_thread_goes_on() {
    require_checkpoint!();
    skip_unless!(
        our_criu_has("threads-untraced"),
        "the CRIU next to crac-java lacks crac-shim's threads-untraced patch: run scripts/setup"
    );
    let run = busy_threads(&[("CRAC_SHIM_UNTRACED_THREADS", "1")]);
    skip_unless!(
        run.is_some(),
        "gcc cannot build tests/native/busy_threads.c: run scripts/setup test"
    );
    let run = run.unwrap();
    let log = std::fs::read_to_string(&run.restore_log).unwrap_or_default();
    assert!(run.restored, "criu restore failed: see {log}");
    assert_eq!(run.result, "sleepers=16 spinners=2\n", "{log}");
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
    skip_unless!(
        our_criu_has("threads-untraced"),
        "the CRIU next to crac-java lacks crac-shim's threads-untraced patch: run scripts/setup"
    );
    let run = busy_threads(&[]);
    skip_unless!(
        run.is_some(),
        "gcc cannot build tests/native/busy_threads.c: run scripts/setup test"
    );
    let run = run.unwrap();
    let log = std::fs::read_to_string(&run.restore_log).unwrap_or_default();
    assert!(run.restored, "criu restore failed: see {log}");
    assert_eq!(run.result, "sleepers=16 spinners=2\n");
    assert!(!log.contains("untraced threads seen out"), "{log}");
}
