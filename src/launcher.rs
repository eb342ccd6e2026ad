//! `crac-java`: java itself, java with the agent, or a restore.

use crate::cli::{self, Invocation};
use crate::criu;
use crate::doc;
use crate::image;
use crate::java;
use crate::paths;
use crate::restore;
use crate::supervise::Exit;
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
    if let Some(name) = &inv.man {
        let page = match name.as_str() {
            "crac-java" => &doc::CRAC_JAVA,
            "crac-jcmd" => &doc::CRAC_JCMD,
            _ => bail!("--crac-man takes crac-java or crac-jcmd"),
        };
        print!("{}", doc::man(page));
        return Ok(Exit::Code(0));
    }
    if let Some(dir) = &inv.restore_from {
        let criu = criu::locate(None)?;
        return restore::run(restore::Request {
            dir: absolute(dir)?,
            properties: inv.restore_properties.clone(),
            criu,
            criu_args: criu_opts(),
        });
    }
    let java = java::locate(inv.java.as_deref())?;
    match &inv.checkpoint_to {
        None => Err(java::exec(&java, &inv.java_args, &[])),
        Some(dir) => Err(start_checkpointable(&java, dir, &inv)),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(p))
}

/// `CRAC_CRIU_OPTS`, split on spaces.
fn criu_opts() -> Vec<String> {
    std::env::var("CRAC_CRIU_OPTS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
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
    let exe = std::fs::read_link("/proc/self/exe").context("cannot find crac-java's own path")?;
    let dir = exe.parent().context("crac-java has no directory")?;
    for candidate in [
        dir.join("libcrac_shim_agent.so"),
        dir.join("../lib/crac-shim/libcrac_shim_agent.so"),
    ] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "the crac-shim agent (libcrac_shim_agent.so) is not next to {}: build the workspace (cargo build --workspace) or set CRAC_SHIM_AGENT",
        exe.display()
    )
}

/// Execs java with the agent preloaded; returns only on failure.
fn start_checkpointable(java: &Path, dir: &Path, inv: &Invocation) -> anyhow::Error {
    let prepared = (|| -> Result<Vec<(&'static str, OsString)>> {
        let dir = absolute(dir)?;
        image::prepare_target(&dir)?;
        let criu = criu::locate(None)?;
        criu::check_privilege(&criu)?;
        let agent = agent_path()?;
        let runtime = paths::runtime_dir();
        paths::ensure_private(&runtime)?;
        let me =
            std::fs::read_link("/proc/self/exe").context("cannot find crac-java's own path")?;
        let mut vars: Vec<(&'static str, OsString)> = Vec::new();
        if let Some(policy) = &inv.policy_file {
            let policy = absolute(policy)?;
            let text = std::fs::read_to_string(&policy).with_context(|| {
                format!("cannot read the resource policies {}", policy.display())
            })?;
            crac_shim_proto::policy::Policy::parse(&text)
                .map_err(|e| anyhow::anyhow!("resource policies {}, {e}", policy.display()))?;
            vars.push((env::POLICY, policy.into()));
        }
        if inv.print_resources {
            vars.push((env::PRINT_RESOURCES, "1".into()));
        }
        vars.extend([
            (
                "LD_PRELOAD",
                java::preload_with(&agent, std::env::var_os("LD_PRELOAD").as_deref()),
            ),
            (env::AGENT, agent.into()),
            (env::CHECKPOINT_TO, dir.into()),
            (env::LAUNCHER, me.into()),
            (env::CRIU, criu.path.into()),
            (
                env::CRIU_ARGS,
                criu_opts().join(&LIST_SEPARATOR.to_string()).into(),
            ),
            (env::RUNTIME_DIR, runtime.into()),
        ]);
        Ok(vars)
    })();
    let vars = match prepared {
        Ok(vars) => vars,
        Err(e) => return e,
    };
    // The jdk.crac API goes on the boot class path (where the org.crac facade finds it), and
    // learns where the agent listens (exec keeps our pid, so the JVM's socket is known now).
    let mut args: Vec<OsString> = Vec::new();
    match api_jar() {
        Some(jar) => {
            let mut opt = OsString::from("-Xbootclasspath/a:");
            opt.push(jar);
            args.push(opt);
        }
        None => eprintln!(
            "crac-java: warning: crac-shim-api.jar is not next to crac-java (run scripts/setup); the jdk.crac API is unavailable"
        ),
    }
    let socket = socket_path(&paths::runtime_dir().to_string_lossy(), std::process::id());
    args.push(format!("-D{SOCKET_PROPERTY}={socket}").into());
    args.extend(inv.java_args.iter().cloned());
    java::exec(java, &args, &vars)
}

/// The compiled jdk.crac API, next to crac-java or in ../lib/crac-shim.
fn api_jar() -> Option<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let dir = exe.parent()?;
    [
        dir.join("crac-shim-api.jar"),
        dir.join("../lib/crac-shim/crac-shim-api.jar"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}
