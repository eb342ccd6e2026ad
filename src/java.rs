//! Finding the real `java` (never ourselves) and replacing this process with it.

use anyhow::{bail, Result};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the real java comes from, in order: the explicit option, `CRAC_SHIM_JAVA`,
/// `$JAVA_HOME/bin/java`, then PATH. A candidate that is this very binary (crac-java
/// installed as `java`) is skipped.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    let me = std::fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let is_me = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())) == me;
    if let Some(p) = explicit {
        return usable(p, "-XX:CRaCShimJava", is_me(p));
    }
    if let Some(p) = std::env::var_os("CRAC_SHIM_JAVA").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        let me = is_me(&p);
        return usable(&p, "CRAC_SHIM_JAVA", me);
    }
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|v| !v.is_empty()) {
        let p = Path::new(&home).join("bin/java");
        if is_executable(&p) && !is_me(&p) {
            return Ok(p);
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("java");
        if is_executable(&p) && !is_me(&p) {
            return Ok(p);
        }
    }
    bail!("cannot find the real java: install a JDK (apt-get install openjdk-17-jdk-headless), or set JAVA_HOME or CRAC_SHIM_JAVA")
}

fn usable(p: &Path, source: &str, is_me: bool) -> Result<PathBuf> {
    if is_me {
        bail!(
            "{source} points at crac-java itself ({}); it must name the real java",
            p.display()
        );
    }
    if !is_executable(p) {
        bail!(
            "{source} names {}, which is not an executable file",
            p.display()
        );
    }
    Ok(p.to_path_buf())
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The JDK directory that a `.../bin/java` belongs to.
pub fn java_home(java: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(java).ok()?;
    Some(real.parent()?.parent()?.to_path_buf())
}

/// Replaces this process with `java args...`. Returns only if exec failed.
pub fn exec(java: &Path, args: &[OsString], env: &[(&str, OsString)]) -> anyhow::Error {
    let mut cmd = Command::new(java);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let err = cmd.exec();
    anyhow::Error::new(err).context(format!("cannot run {}", java.display()))
}

/// `LD_PRELOAD` with `agent` first, keeping what was there.
pub fn preload_with(agent: &Path, existing: Option<&OsStr>) -> OsString {
    let mut v = OsString::from(agent);
    if let Some(e) = existing.filter(|e| !e.is_empty()) {
        v.push(":");
        v.push(e);
    }
    v
}
