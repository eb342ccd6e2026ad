//! The crac-shim agent, preloaded into the JVM by `crac-java -XX:CRaCCheckpointTo=DIR`.
//!
//! It starts from an `.init_array` entry, before the JVM exists: it takes its configuration
//! from the environment (and removes it, so the JVM's children do not inherit the agent) and
//! starts the control thread that answers `crac-jcmd` and drives the checkpoint. It hooks no
//! libc function: what would break a restore (the perf-data file, the attach socket) is
//! moved out of the way at the checkpoint and put back after it (perfdata.rs).

#![deny(unsafe_op_in_unsafe_fn)]
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

mod checkpoint;
mod config;
mod control;
mod jni;
mod jvmti;
mod locks;
mod mappings;
mod perfdata;
mod scan;
mod sys;
mod tempfiles;
mod uptime;

use std::ffi::c_char;
use std::ffi::c_int;

/// Runs when the dynamic loader maps the agent, before `main` of the `java` launcher.
extern "C" fn agent_init(_argc: c_int, _argv: *const *const c_char, _envp: *const *const c_char) {
    let Some(config) = config::capture_and_scrub() else {
        return;
    };
    scan::close_unlisted_inherited(&config.ignored_fds);
    scan::remember_inherited();
    checkpoint::note_start();
    tempfiles::note_start();
    control::start(config);
}

// Also in unit-test builds: without crac-java's environment it does nothing.
#[used]
#[link_section = ".init_array"]
static AGENT_INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = agent_init;
