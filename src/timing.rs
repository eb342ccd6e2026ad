//! `CRAC_SHIM_TIMING=1`: the moments of a restore, for `scripts/bench --breakdown`. Each is one
//! stderr line `crac-shim: timing EVENT MICROSECONDS` on the wall clock (the one clock the
//! launcher, CRIU's log and the restored JVM, in its own time namespace, all share), written
//! by whoever sees the moment: the launcher, the agent, the Java API.

use std::io::Write;

pub fn enabled() -> bool {
    std::env::var_os("CRAC_SHIM_TIMING").is_some()
}

pub fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// Notes `event` now, when timing was asked for.
pub fn mark(event: &str) {
    if enabled() {
        let line = format!("crac-shim: timing {event} {}\n", now_micros());
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}
