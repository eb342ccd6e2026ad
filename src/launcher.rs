//! `crac-java`: java itself, java with the agent, or a restore.

use crate::cli::{self, Invocation};
use crate::criu::{self, Criu};
use crate::doc;
use crate::engine;
use crate::image;
use crate::java;
use crate::paths;
use crate::restore;
use crate::supervise::{self, Event, Exit};
use anyhow::{bail, Context, Result};
use crac_shim_proto::{env, socket_path, HELPER_ARG, LIST_SEPARATOR, SOCKET_PROPERTY};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub fn main() -> ! {
    let mut args = std::env::args_os();
    let _argv0 = args.next();
    let args: Vec<OsString> = args.collect();
    if args.first().is_some_and(|a| a == HELPER_ARG) {
        std::process::exit(crate::dump::run_helper(&args[1..]));
    }
    if let Some(code) = crate::dump::post_dump::run_as_action_script() {
        std::process::exit(code);
    }
    match run(args) {
        Ok(exit) => exit.reproduce(),
        Err(e) => {
            eprintln!("crac-java: {e:#}");
            std::process::exit(1)
        }
    }
}

fn run(args: Vec<OsString>) -> Result<Exit> {
    let inv = cli::parse(args)?;
    if inv.help {
        print!("{}", doc::help(&doc::CRAC_JAVA));
        return Ok(Exit::Code(0));
    }
    if inv.version {
        println!("crac-shim {}", env!("CARGO_PKG_VERSION"));
        return Ok(Exit::Code(0));
    }
    if inv.engine_options.help {
        print!("{}", engine::HELP);
        return Ok(Exit::Code(0));
    }
    if let Some(name) = &inv.man {
        let page = match name.as_str() {
            "crac-java" => &doc::CRAC_JAVA,
            "crac-jcmd" => &doc::CRAC_JCMD,
            _ => bail!("--crac-man takes crac-java or crac-jcmd"),
        };
        print!("{}", doc::man(page));
        return Ok(Exit::Code(0));
    }
    if inv.show_cpu {
        let here = image::cpu::Machine::here();
        println!("CPU: {}\nfeatures: {}", here.model, here.flags.join(" "));
        return Ok(Exit::Code(0));
    }
    if let Some(dir) = &inv.inspect {
        let criu = locate_criu(&inv).map_err(|e| format!("{e:#}"));
        let report = image::inspect::inspect(
            &absolute(dir)?,
            &image_checks(&inv),
            criu.as_ref().map_err(String::clone),
            |c, meta| {
                image::pages::choose(
                    c,
                    inv.engine_options.map_pages,
                    inv.engine_options.lazy_pages,
                    &criu_args(&inv),
                    &meta.allocator,
                )
            },
        );
        print!(
            "{}",
            if inv.inspect_json {
                report.json()
            } else {
                report.text()
            }
        );
        return Ok(Exit::Code(if report.restorable() { 0 } else { 1 }));
    }
    if let Some(dir) = &inv.restore_from {
        let resumed = handover(&inv).and_then(|handover| {
            restore::in_place::resume(&absolute(dir)?, &image_checks(&inv), &handover)
        });
        // A test engine's directory is resumed in place; any other is restored by CRIU.
        let restored = resumed.and_then(|done| match done {
            Some(exit) => Ok(exit),
            None => locate_criu(&inv).and_then(|criu| {
                restore::run(restore::Request {
                    dir: absolute(dir)?,
                    checks: image_checks(&inv),
                    handover: handover(&inv)?,
                    criu,
                    criu_args: criu_args(&inv),
                    print_command: inv.engine_options.print_command,
                    lazy_pages: inv.engine_options.lazy_pages,
                    map_pages: inv.engine_options.map_pages,
                })
            }),
        });
        match restored {
            Err(e) if inv.ignore_restore_failure => {
                eprintln!("crac-java: not restoring ({e:#}); starting normally (-XX:+CRaCIgnoreRestoreIfUnavailable)");
            }
            other => return other,
        }
    }
    let java = java::locate(inv.java.as_deref())?;
    match &inv.checkpoint_to {
        None => Err(java::exec(&java, &inv.java_args, &[])),
        Some(dir) => start_checkpointable(&java, dir, &inv),
    }
}

/// What a restore checks of its image besides trust and wholeness.
fn image_checks(inv: &Invocation) -> image::Checks {
    image::Checks {
        verify: inv.verify_image,
        required_labels: inv.required_labels.clone(),
        cpu: inv.check_cpu.unwrap_or_default(),
    }
}

/// What the restored JVM gets from the restore command line, as a CRaC JDK hands it over.
fn handover(inv: &Invocation) -> Result<restore::Handover> {
    // With +CRaCIgnoreRestoreIfUnavailable the main class is the program to start instead.
    let new_main: Vec<String> = match inv.main_at.filter(|_| !inv.ignore_restore_failure) {
        Some(at) => {
            let main = &inv.java_args[at..];
            if main[0].to_string_lossy().starts_with('-') {
                bail!(
                    "{} cannot follow -XX:CRaCRestoreFrom: give the main class to run after the restore (it must be on the restored JVM's class path)",
                    main[0].to_string_lossy()
                );
            }
            main.iter()
                .map(|a| {
                    a.to_str().map(str::to_string).ok_or_else(|| {
                        anyhow::anyhow!(
                            "the arguments after -XX:CRaCRestoreFrom must be valid UTF-8"
                        )
                    })
                })
                .collect::<Result<_>>()?
        }
        None => Vec::new(),
    };
    // Without +CRaCIgnoreRestoreIfUnavailable a CRaCCheckpointTo given to a restore is where
    // the restored JVM checkpoints next (with it, also where a fresh start would).
    let checkpoint_to = match &inv.checkpoint_to {
        Some(dir) => {
            let dir = absolute(dir)?;
            if !dir.to_string_lossy().contains('%') {
                image::prepare_target(&dir)?;
            }
            Some(dir)
        }
        None => None,
    };
    Ok(restore::Handover {
        properties: inv.restore_properties.clone(),
        new_main,
        checkpoint_to,
        reset_start_time: inv.reset_start_time,
    })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(p))
}

/// `-XX:CRaCEngine=simengine|pauseengine`.
fn test_engine(inv: &Invocation) -> Option<engine::TestEngine> {
    inv.engine
        .as_deref()
        .and_then(|e| e.to_str())
        .and_then(engine::TestEngine::named)
}

/// CRIU, in CRaC's order: criu_location, -XX:CRaCEngine (a path), then the usual lookup.
fn locate_criu(inv: &Invocation) -> Result<Criu> {
    let engine = inv
        .engine
        .as_deref()
        .filter(|e| e.as_os_str() != "criu" && e.as_os_str() != "criuengine");
    criu::locate(inv.engine_options.criu_location.as_deref().or(engine))
}

/// --unprivileged without root, then `CRAC_CRIU_OPTS` and the engine's `args`, split on spaces.
fn criu_args(inv: &Invocation) -> Vec<String> {
    let mut v = crate::privilege::criu_mode_args();
    v.extend(
        std::env::var("CRAC_CRIU_OPTS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string),
    );
    v.extend(inv.engine_options.args.iter().cloned());
    v
}

fn agent_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env::AGENT).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "CRAC_SHIM_AGENT names {}, which does not exist",
                p.display()
            );
        }
        return Ok(p);
    }
    if let Some(found) = beside_us("libcrac_shim_agent.so") {
        return Ok(found);
    }
    let exe = std::fs::read_link("/proc/self/exe").context("cannot find crac-java's own path")?;
    bail!(
        "the crac-shim agent (libcrac_shim_agent.so) is not next to {}: build the workspace (cargo build --workspace) or set CRAC_SHIM_AGENT",
        exe.display()
    )
}

/// What the agent needs from us, as environment variables.
fn agent_environment(dir: &Path, inv: &Invocation) -> Result<Vec<(&'static str, OsString)>> {
    let dir = absolute(dir)?;
    // Refusals that create nothing come first: a refused start leaves no directory behind.
    // CRaC's test engines need neither CRIU nor privileges; the agent is told the engine's
    // name where CRIU's path would go.
    let engine = match test_engine(inv) {
        Some(test) => PathBuf::from(test.name()),
        None => {
            let criu = locate_criu(inv)?;
            crate::privilege::check(&criu, crate::privilege::Operation::Checkpoint)?;
            criu.path
        }
    };
    // A directory with placeholders is only known at checkpoint time.
    if !dir.to_string_lossy().contains('%') {
        image::prepare_target(&dir)?;
    }
    let agent = agent_path()?;
    let runtime = paths::runtime_dir();
    paths::ensure_private(&runtime)?;
    let me = std::fs::read_link("/proc/self/exe").context("cannot find crac-java's own path")?;
    let mut vars: Vec<(&'static str, OsString)> = Vec::new();
    if let Some(policy) = &inv.policy_file {
        let policy = absolute(policy)?;
        let text = std::fs::read_to_string(&policy)
            .with_context(|| format!("cannot read the resource policies {}", policy.display()))?;
        crac_shim_proto::policy::Policy::parse(&text)
            .map_err(|e| anyhow::anyhow!("resource policies {}, {e}", policy.display()))?;
        vars.push((env::POLICY, policy.into()));
    }
    if !inv.labels.is_empty() {
        let labels: Vec<String> = inv.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vars.push((env::LABELS, labels.join(&LIST_SEPARATOR.to_string()).into()));
    }
    let features = inv
        .cpu_features
        .clone()
        .unwrap_or(image::cpu::Features::Native);
    vars.push((env::CPU_FEATURES, features.name().into()));
    if let (_, Some(tunables)) = features.restrictions() {
        // glibc reads its tunables once, at start: the JVM's must say it from the start.
        let value = match std::env::var("GLIBC_TUNABLES") {
            Ok(mine) if !mine.is_empty() => format!("{mine}:{tunables}"),
            _ => tunables,
        };
        vars.push(("GLIBC_TUNABLES", value.into()));
    }
    if !inv.ignored_fds.is_empty() {
        vars.push((
            env::IGNORED_FDS,
            inv.ignored_fds.join(&LIST_SEPARATOR.to_string()).into(),
        ));
    }
    for (on, var) in [
        (inv.print_resources, env::PRINT_RESOURCES),
        // CRAC_CRIU_LEAVE_RUNNING: CRaC 17's keep-running switch, in the environment.
        (
            inv.engine_options.keep_running
                || std::env::var_os("CRAC_CRIU_LEAVE_RUNNING").is_some_and(|v| !v.is_empty()),
            env::KEEP_RUNNING,
        ),
        (inv.engine_options.print_command, env::PRINT_COMMAND),
        (inv.reset_start_time == Some(false), env::KEEP_START_TIME),
    ] {
        if on {
            vars.push((var, "1".into()));
        }
    }
    vars.extend([
        (
            "LD_PRELOAD",
            java::preload_with(&agent, std::env::var_os("LD_PRELOAD").as_deref()),
        ),
        (env::AGENT, agent.into()),
        (env::CHECKPOINT_TO, dir.into()),
        (env::LAUNCHER, me.into()),
        (env::CRIU, engine.into()),
        (
            env::CRIU_ARGS,
            criu_args(inv).join(&LIST_SEPARATOR.to_string()).into(),
        ),
        (env::RUNTIME_DIR, runtime.into()),
    ]);
    Ok(vars)
}

/// java's arguments for a checkpointable JVM with pid `pid`: the jdk.crac API on the boot
/// class path (where the org.crac facade finds it) and where the agent listens.
fn java_arguments(inv: &Invocation, pid: u32) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    match beside_us("crac-shim-api.jar") {
        Some(jar) => {
            let mut opt = OsString::from("-Xbootclasspath/a:");
            opt.push(jar);
            // The provider that makes CRaCMXBean a platform MXBean extends a JDK-internal
            // class: its jar goes in only together with the export it needs.
            if let Some(mxbean) = beside_us("crac-shim-mxbean.jar") {
                opt.push(":");
                opt.push(mxbean);
                args.push("--add-exports=java.management/sun.management.spi=ALL-UNNAMED".into());
            }
            args.push(opt);
        }
        None => eprintln!(
            "crac-java: warning: crac-shim-api.jar is not next to crac-java (run scripts/setup); the jdk.crac API is unavailable"
        ),
    }
    // -XX:CPUFeatures: HotSpot's own flags keep its JIT and stubs to the chosen features.
    if let Some(features) = &inv.cpu_features {
        args.extend(features.restrictions().0.into_iter().map(OsString::from));
    }
    let socket = socket_path(&paths::runtime_dir().to_string_lossy(), pid);
    args.push(format!("-D{SOCKET_PROPERTY}={socket}").into());
    if !user_sets_zgc_uncommit_delay() {
        args.push(ZGC_UNCOMMIT_DELAY.into());
    }
    args.extend(inv.java_args.iter().cloned());
    args
}

/// ZGC gives freed heap back only after it has gone unused for ZUncommitDelay seconds (300 by
/// default), and no public interface makes it sooner: a checkpoint would dump every page the
/// heap ever used (3-5x a G1 image). With 1 s, the checkpoint's wait for the uncommit (in the
/// jdk.crac API) gets the image down to the live data, as CRaC's JDK does with ZGC. The flag
/// goes before the user's arguments, so theirs wins; other collectors ignore it.
const ZGC_UNCOMMIT_DELAY: &str = "-XX:ZUncommitDelay=1";

/// Whether the user chose ZUncommitDelay where HotSpot reads it before our argument
/// (JAVA_TOOL_OPTIONS; JDK_JAVA_OPTIONS, which the launcher puts before the command line).
fn user_sets_zgc_uncommit_delay() -> bool {
    ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"].iter().any(|var| {
        std::env::var_os(var).is_some_and(|v| v.to_string_lossy().contains("ZUncommitDelay"))
    })
}

/// Starts java with the agent preloaded: an exec, unless -XX:CRaCMinPid asks for a higher pid
/// than ours or java needs a session we cannot start (then java runs as our child, which we
/// stand in for, as a restore does).
fn start_checkpointable(java: &Path, dir: &Path, inv: &Invocation) -> Result<Exit> {
    let vars = agent_environment(dir, inv)?;
    let min_pid = inv.min_pid.unwrap_or(DEFAULT_MIN_PID);
    let below_min_pid = std::process::id() < min_pid;
    // A process group leader cannot start a session: then a child of ours can.
    if !below_min_pid && supervise::ensure_visible_session() {
        return Err(java::exec(
            java,
            &java_arguments(inv, std::process::id()),
            &vars,
        ));
    }
    if below_min_pid {
        advance_pid_counter(min_pid);
    }
    let signals = supervise::take_over_signals();
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    // SAFETY: single-threaded; the child only builds its arguments and execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        bail!("cannot fork: {}", std::io::Error::last_os_error());
    }
    if child == 0 {
        // We stand in for java: the JVM must not outlive us.
        supervise::die_with_parent(me);
        supervise::ensure_visible_session();
        let e = java::exec(java, &java_arguments(inv, std::process::id()), &vars);
        eprintln!("crac-java: {e:#}");
        std::process::exit(1);
    }
    if (child as u32) < min_pid {
        eprintln!("crac-java: warning: could not reach -XX:CRaCMinPid={min_pid} (the JVM has pid {child}); a restore may need a PID namespace");
    }
    loop {
        match supervise::next_event(&signals, None) {
            Event::Forward {
                signal,
                from_terminal,
            } => {
                if !from_terminal {
                    supervise::send(child, signal);
                }
            }
            Event::Child => {
                if let Some((_, exit)) = supervise::reap().into_iter().find(|(p, _)| *p == child) {
                    supervise::finish_dump_helpers_as_init();
                    return Ok(exit);
                }
            }
            Event::Timeout => {}
        }
    }
}

/// CRaC's default: restored JVMs keep clear of the low pids a fresh container hands out.
const DEFAULT_MIN_PID: u32 = 128;

/// Makes the next fork get a pid of at least `min`: through ns_last_pid when we may write it,
/// else by forking until the counter passes it (bounded).
fn advance_pid_counter(min: u32) {
    if std::fs::write("/proc/sys/kernel/ns_last_pid", (min - 1).to_string()).is_ok() {
        return;
    }
    for _ in 0..min {
        // SAFETY: the child exits at once without touching anything.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: exiting the child immediately.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            return;
        }
        let mut status = 0;
        // SAFETY: reaping the child we just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if pid as u32 >= min - 1 {
            return;
        }
    }
}

/// A file installed with crac-java: next to it, or in ../lib/crac-shim.
fn beside_us(name: &str) -> Option<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.join("../lib/crac-shim").join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_zgc_uncommit_delay_comes_after_ours() {
        let inv = Invocation {
            java_args: vec!["-XX:ZUncommitDelay=300".into(), "Main".into()],
            ..Invocation::default()
        };
        let args = java_arguments(&inv, 1);
        let position = |arg: &str| args.iter().position(|a| a == arg);
        if !user_sets_zgc_uncommit_delay() {
            assert!(
                position(ZGC_UNCOMMIT_DELAY).unwrap() < position("-XX:ZUncommitDelay=300").unwrap()
            );
        }
        assert_eq!(args.last().unwrap(), "Main");
    }
}
