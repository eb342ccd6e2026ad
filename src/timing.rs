//! `CRAC_SHIM_TIMING=1`: the moments of a restore (and of a checkpoint, in the dump helper), for
//! `scripts/bench --breakdown`; the line is the protocol crate's [`timing_line`].
//!
//! [`timing_line`]: crac_shim_proto::timing_line

use std::io::Write;

pub fn enabled() -> bool {
    std::env::var_os(crac_shim_proto::TIMING_ENV).is_some()
}

/// Notes `event` now, when timing was asked for.
pub fn mark(event: &str) {
    if enabled() {
        let _ = std::io::stderr().write_all(crac_shim_proto::timing_line(event).as_bytes());
    }
}
