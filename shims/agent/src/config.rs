//! The agent's configuration, handed over by `crac-java` in the environment.

use crac_shim_proto::{env, LIST_SEPARATOR};

#[derive(Debug, Clone)]
pub struct Config {
    pub checkpoint_to: String,
    pub launcher: String,
    pub criu: String,
    pub criu_args: Vec<String>,
    pub runtime_dir: String,
    /// A CRaC resource-policies file (`-Djdk.crac.resource-policies`).
    pub policy_file: Option<String>,
    /// `-XX:+CRaCPrintResourcesOnCheckpoint`.
    pub print_resources: bool,
    /// `-XX:CRaCEngineOptions=keep_running=true`.
    pub keep_running: bool,
    /// `-XX:CRaCEngineOptions=print_command=true`.
    pub print_command: bool,
    /// `-XX:CRaCIgnoredFileDescriptors`: numbers and paths the scan leaves alone.
    pub ignored_fds: Vec<String>,
    /// `-XX:CRaCImageLabels`: `key=value` pairs stored with each image.
    pub labels: Vec<String>,
    /// `-XX:CPUFeatures` the JVM was started with (recorded with each image).
    pub cpu_features: Option<String>,
    /// `-XX:-CRaCResetStartTime`: restored copies keep the first start time.
    pub keep_start_time: bool,
}

/// Reads the configuration and removes every trace of the agent from the environment.
/// Returns `None` (and leaves the environment alone) when the agent was preloaded by
/// something other than `crac-java`.
pub fn capture_and_scrub() -> Option<Config> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let config = Config {
        checkpoint_to: get(env::CHECKPOINT_TO)?,
        launcher: get(env::LAUNCHER)?,
        criu: get(env::CRIU)?,
        criu_args: get(env::CRIU_ARGS)
            .map(|v| v.split(LIST_SEPARATOR).map(str::to_string).collect())
            .unwrap_or_default(),
        runtime_dir: get(env::RUNTIME_DIR)?,
        policy_file: get(env::POLICY),
        print_resources: get(env::PRINT_RESOURCES).is_some(),
        keep_running: get(env::KEEP_RUNNING).is_some(),
        print_command: get(env::PRINT_COMMAND).is_some(),
        ignored_fds: get(env::IGNORED_FDS)
            .map(|v| v.split(LIST_SEPARATOR).map(str::to_string).collect())
            .unwrap_or_default(),
        labels: get(env::LABELS)
            .map(|v| v.split(LIST_SEPARATOR).map(str::to_string).collect())
            .unwrap_or_default(),
        cpu_features: get(env::CPU_FEATURES),
        keep_start_time: get(env::KEEP_START_TIME).is_some(),
    };
    let agent = get(env::AGENT);
    // Runs in the loader's constructor: no other thread exists yet, so changing the
    // environment cannot race with a reader.
    if let Some(preload) = get("LD_PRELOAD") {
        let rest = without_entry(&preload, agent.as_deref());
        if rest.is_empty() {
            std::env::remove_var("LD_PRELOAD");
        } else {
            std::env::set_var("LD_PRELOAD", rest);
        }
    }
    for name in env::ALL {
        std::env::remove_var(name);
    }
    Some(config)
}

/// `LD_PRELOAD` without the agent's entry (entries are separated by colons or spaces).
fn without_entry(preload: &str, agent: Option<&str>) -> String {
    preload
        .split([':', ' '])
        .filter(|e| !e.is_empty())
        .filter(|e| Some(*e) != agent && !e.ends_with("/libcrac_shim_agent.so"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_loses_only_the_agent() {
        let agent = "/opt/x/libcrac_shim_agent.so";
        assert_eq!(without_entry(agent, Some(agent)), "");
        assert_eq!(
            without_entry(&format!("/a.so:{agent} /b.so"), Some(agent)),
            "/a.so:/b.so"
        );
    }
}
