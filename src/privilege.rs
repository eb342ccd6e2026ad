//! Who may run CRIU here, checked the way the kernel checks it, and said in the words of
//! whatever started us (a container engine, Kubernetes, a shell).
//!
//! CRIU's own rule: CAP_SYS_ADMIN guards everything CAP_CHECKPOINT_RESTORE does, so either
//! will do. Inside a container the rest of what a full root has is often missing
//! (CAP_NET_ADMIN, CAP_SYS_TIME): CRIU then runs in its `--unprivileged` mode, which does
//! without them (see [`criu_mode_args`]), rather than asking the operator for more.

use anyhow::{bail, Result};
use caps::{CapSet, Capability};
use std::path::Path;

/// What CRIU is about to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `criu dump` of a JVM started by us.
    Checkpoint,
    /// `criu restore`; with established TCP connections kept by policy (TCP_REPAIR needs
    /// CAP_NET_ADMIN) or into a new PID namespace (unshare needs CAP_SYS_ADMIN).
    Restore {
        tcp_established: bool,
        new_pid_namespace: bool,
    },
}

/// What starts us, for the words of the advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Docker,
    Podman,
    Kubernetes,
    OtherContainer,
    Plain,
}

impl Host {
    pub fn here() -> Host {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            || Path::new("/var/run/secrets/kubernetes.io").exists()
        {
            return Host::Kubernetes;
        }
        if Path::new("/.dockerenv").exists() {
            return Host::Docker;
        }
        // Podman marks its containers so (and says so in `container=podman`).
        if Path::new("/run/.containerenv").exists()
            || std::env::var_os("container").is_some_and(|v| v == "podman")
        {
            return Host::Podman;
        }
        let cgroup = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
        if ["docker", "kubepods", "containerd", "libpod", "lxc"]
            .iter()
            .any(|k| cgroup.contains(k))
            || Path::new("/run/.containerenv").exists()
        {
            return Host::OtherContainer;
        }
        Host::Plain
    }
}

/// Our effective capabilities, whether we are root, and whether a seccomp filter confines us.
#[derive(Clone, Debug)]
pub struct Privilege {
    pub root: bool,
    pub effective: caps::CapsHashSet,
    pub seccomp_filtered: bool,
    /// /proc/sys/kernel/yama/ptrace_scope (0 when Yama is absent).
    pub ptrace_scope: u8,
}

impl Privilege {
    pub fn here() -> Privilege {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Privilege {
            // SAFETY: geteuid cannot fail.
            root: unsafe { libc::geteuid() } == 0,
            effective: caps::read(None, CapSet::Effective).unwrap_or_default(),
            seccomp_filtered: seccomp_mode(&status) != 0,
            ptrace_scope: std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        }
    }

    fn has(&self, cap: Capability) -> bool {
        self.effective.contains(&cap)
    }

    /// CRIU's test: either capability opens what checkpoint/restore needs.
    pub fn can_checkpoint_restore(&self) -> bool {
        self.has(Capability::CAP_CHECKPOINT_RESTORE) || self.has(Capability::CAP_SYS_ADMIN)
    }

    /// Whether CRIU, as root, has what its full mode uses: restoring socket buffer sizes
    /// (SO_SNDBUFFORCE, CAP_NET_ADMIN) and the clocks' offsets in a time namespace
    /// (CAP_SYS_TIME). Without them its `--unprivileged` mode does without both.
    pub fn full_root(&self) -> bool {
        self.root
            && self.has(Capability::CAP_NET_ADMIN)
            && self.has(Capability::CAP_SYS_TIME)
            && self.has(Capability::CAP_SYS_ADMIN)
    }
}

/// The `Seccomp:` field of /proc/PID/status: 0 none, 1 strict, 2 filter.
fn seccomp_mode(status: &str) -> u8 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// What is missing, as one line: the capability or setting and how to grant it where we run.
/// `None` when CRIU (as root) may do `op`.
pub fn missing_as_root(p: &Privilege, op: Operation, host: Host) -> Option<String> {
    let doing = match op {
        Operation::Checkpoint => "checkpoint",
        Operation::Restore { .. } => "restore",
    };
    if !p.can_checkpoint_restore() {
        return Some(format!(
            "not enough privilege to {doing}: CRIU needs CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN), which this process lacks; {}",
            grant(host, "CHECKPOINT_RESTORE", Some("SYS_ADMIN"))
        ));
    }
    // The kernel lets a tracer under seccomp suspend nobody's filter: CRIU cannot take a
    // filtered JVM apart from inside the same filter (and the JVM inherits ours).
    if op == Operation::Checkpoint && p.seccomp_filtered {
        return Some(filtered_checkpoint(host));
    }
    // Yama: CRIU is run by a helper that is not the JVM's ancestor.
    if op == Operation::Checkpoint && p.ptrace_scope >= 1 && !p.has(Capability::CAP_SYS_PTRACE) {
        return Some(format!(
            "not enough privilege to checkpoint: Yama's ptrace_scope is {} and CRIU needs CAP_SYS_PTRACE to trace the JVM; {}",
            p.ptrace_scope,
            grant(host, "SYS_PTRACE", None)
        ));
    }
    if let Operation::Restore {
        tcp_established,
        new_pid_namespace,
    } = op
    {
        if tcp_established && !p.has(Capability::CAP_NET_ADMIN) {
            return Some(format!(
                "not enough privilege to restore: the image keeps established TCP connections (a policy rule), which CRIU restores with TCP_REPAIR, and that needs CAP_NET_ADMIN; {}",
                grant(host, "NET_ADMIN", None)
            ));
        }
        if new_pid_namespace && !p.has(Capability::CAP_SYS_ADMIN) {
            return Some(format!(
                "not enough privilege to restore: the image's pid is taken here and moving to a new PID namespace needs CAP_SYS_ADMIN; end the process holding it, or {}",
                grant(host, "SYS_ADMIN", None)
            ));
        }
        // Without CAP_SYS_ADMIN the engine's default seccomp profile refuses clone3 and
        // /proc/sys is read-only, so CRIU has no way left to give tasks their old pids.
        if p.seccomp_filtered && !p.has(Capability::CAP_SYS_ADMIN) && host != Host::Plain {
            return Some(format!(
                "cannot restore under this container's seccomp filter without CAP_SYS_ADMIN: CRIU cannot give the JVM its pids back (clone3 is filtered, /proc/sys is read-only); {}",
                unconfine(host)
            ));
        }
    }
    None
}

/// How to add a capability where we run.
fn grant(host: Host, cap: &str, old_engines: Option<&str>) -> String {
    let older = old_engines
        .map(|o| {
            format!(
                " (engines that do not know it, such as Debian 12's Docker 20.10: --cap-add {o})"
            )
        })
        .unwrap_or_default();
    match host {
        Host::Docker | Host::OtherContainer => {
            format!("run the container with --cap-add {cap}{older}")
        }
        // Podman knows every capability the kernel does.
        Host::Podman => format!("run the container with --cap-add {cap} (podman run)"),
        Host::Kubernetes => format!(
            "add it to the container's securityContext: capabilities: {{add: [\"{cap}\"]}}{}",
            old_engines
                .map(|o| format!(" (or \"{o}\" where the runtime does not know {cap})"))
                .unwrap_or_default()
        ),
        Host::Plain => format!("run as root, or grant CAP_{cap}"),
    }
}

fn filtered_checkpoint(host: Host) -> String {
    format!(
        "cannot checkpoint under a seccomp filter: CRIU must lift the JVM's filter while it dumps it, which the kernel refuses to a filtered process; {}",
        unconfine(host)
    )
}

fn unconfine(host: Host) -> String {
    match host {
        Host::Kubernetes => {
            "set the container's securityContext: seccompProfile: {type: Unconfined}".into()
        }
        Host::Docker | Host::OtherContainer => {
            "run the container with --security-opt seccomp=unconfined".into()
        }
        Host::Podman => {
            "run the container with --security-opt seccomp=unconfined (podman run)".into()
        }
        Host::Plain => {
            "start crac-java outside the seccomp filter (a service manager's SystemCallFilter=, or a sandbox)".into()
        }
    }
}

/// CRIU options for who we are: `--unprivileged` without root, and as a root that lacks what
/// CRIU's full mode uses (a container's root, usually). That mode restores socket buffer
/// sizes with SO_SNDBUF when SO_SNDBUFFORCE is refused, and skips the time namespace: the
/// restored JVM reads the host's monotonic clock (docs/CONTAINERS.md).
pub fn criu_mode_args() -> Vec<String> {
    let p = Privilege::here();
    if !p.root || !p.full_root() {
        vec!["--unprivileged".into()]
    } else {
        Vec::new()
    }
}

/// Checks that we may run CRIU for `op`: as root, by capabilities and seccomp; without root,
/// by the capabilities on the CRIU binary (CRIU's `--unprivileged` mode).
pub fn check(criu: &crate::criu::Criu, op: Operation) -> Result<()> {
    let p = Privilege::here();
    if p.root {
        if let Some(why) = missing_as_root(&p, op, Host::here()) {
            bail!("{why}");
        }
        return Ok(());
    }
    if op == Operation::Checkpoint && p.seccomp_filtered {
        bail!("{}", filtered_checkpoint(Host::here()));
    }
    let setcap = format!(
        "as root: setcap cap_checkpoint_restore,cap_sys_ptrace,cap_setpcap+eip {}",
        criu.path.display()
    );
    let file_caps = file_capabilities(&criu.path);
    let bounding = caps::read(None, CapSet::Bounding).unwrap_or_default();
    for (needed, bit) in [
        (Capability::CAP_CHECKPOINT_RESTORE, 40),
        (Capability::CAP_SYS_PTRACE, 19),
    ] {
        if file_caps & (1u64 << bit) == 0 {
            bail!("not enough privilege: as a non-root user CRIU needs {needed} on its binary, which {} lacks ({setcap})", criu.path.display());
        }
        if !bounding.contains(&needed) {
            bail!("not enough privilege: {needed} is not in this process's bounding set, so CRIU cannot get it from its binary; run as root");
        }
    }
    Ok(())
}

/// The permitted file capabilities of `path` (security.capability, VFS_CAP_REVISION_2/3:
/// magic, then permitted and inheritable, low 32 bits first then high).
fn file_capabilities(path: &Path) -> u64 {
    let mut buf = [0u8; 24];
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new("security.capability"),
    ) else {
        return 0;
    };
    // SAFETY: both strings are NUL-terminated; buf is writable for its length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 20 {
        return 0;
    }
    let word = |i: usize| {
        u64::from(u32::from_le_bytes(
            buf[i..i + 4].try_into().unwrap_or([0; 4]),
        ))
    };
    word(4) | (word(12) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(caps: &[Capability], seccomp: bool, scope: u8) -> Privilege {
        Privilege {
            root: true,
            effective: caps.iter().copied().collect(),
            seccomp_filtered: seccomp,
            ptrace_scope: scope,
        }
    }

    const RESTORE: Operation = Operation::Restore {
        tcp_established: false,
        new_pid_namespace: false,
    };

    #[test]
    fn sys_admin_is_as_good_as_checkpoint_restore() {
        for cap in [
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_CHECKPOINT_RESTORE,
        ] {
            let p = with(&[cap], false, 0);
            assert_eq!(
                missing_as_root(&p, Operation::Checkpoint, Host::Docker),
                None
            );
            assert_eq!(missing_as_root(&p, RESTORE, Host::Docker), None);
        }
    }

    #[test]
    fn docker_defaults_get_the_words_to_grant_what_is_missing() {
        // Docker 20.10's default set.
        let p = with(
            &[
                Capability::CAP_CHOWN,
                Capability::CAP_KILL,
                Capability::CAP_SETUID,
            ],
            true,
            0,
        );
        let why = missing_as_root(&p, Operation::Checkpoint, Host::Docker).unwrap();
        assert!(why.contains("--cap-add CHECKPOINT_RESTORE"), "{why}");
        assert!(why.contains("--cap-add SYS_ADMIN"), "{why}");
        let why = missing_as_root(&p, RESTORE, Host::Kubernetes).unwrap();
        assert!(
            why.contains("capabilities: {add: [\"CHECKPOINT_RESTORE\"]}"),
            "{why}"
        );
    }

    #[test]
    fn podman_gets_its_own_words() {
        let p = with(&[Capability::CAP_CHOWN], true, 0);
        let why = missing_as_root(&p, Operation::Checkpoint, Host::Podman).unwrap();
        assert!(
            why.contains("--cap-add CHECKPOINT_RESTORE (podman run)") && !why.contains("Docker"),
            "{why}"
        );
    }

    #[test]
    fn a_filtered_checkpoint_is_told_to_unconfine() {
        let p = with(&[Capability::CAP_SYS_ADMIN], true, 0);
        let why = missing_as_root(&p, Operation::Checkpoint, Host::Docker).unwrap();
        assert!(why.contains("--security-opt seccomp=unconfined"), "{why}");
        // A restore under the default profile works with CAP_SYS_ADMIN...
        assert_eq!(missing_as_root(&p, RESTORE, Host::Docker), None);
        // ... not with CAP_CHECKPOINT_RESTORE alone.
        let p = with(&[Capability::CAP_CHECKPOINT_RESTORE], true, 0);
        let why = missing_as_root(&p, RESTORE, Host::Kubernetes).unwrap();
        assert!(why.contains("seccompProfile: {type: Unconfined}"), "{why}");
    }

    #[test]
    fn what_the_image_needs_is_asked_for_by_name() {
        let p = with(&[Capability::CAP_CHECKPOINT_RESTORE], false, 0);
        let tcp = Operation::Restore {
            tcp_established: true,
            new_pid_namespace: false,
        };
        assert!(missing_as_root(&p, tcp, Host::Docker)
            .unwrap()
            .contains("--cap-add NET_ADMIN"));
        let pidns = Operation::Restore {
            tcp_established: false,
            new_pid_namespace: true,
        };
        assert!(missing_as_root(&p, pidns, Host::Plain)
            .unwrap()
            .contains("CAP_SYS_ADMIN"));
        let yama = with(&[Capability::CAP_SYS_ADMIN], false, 1);
        assert!(missing_as_root(&yama, Operation::Checkpoint, Host::Docker)
            .unwrap()
            .contains("--cap-add SYS_PTRACE"));
    }

    #[test]
    fn seccomp_mode_is_read_from_status() {
        assert_eq!(
            seccomp_mode("Name:\tx\nSeccomp:\t2\nSeccomp_filters:\t1\n"),
            2
        );
        assert_eq!(seccomp_mode("Seccomp:\t0\n"), 0);
        assert_eq!(seccomp_mode(""), 0);
    }
}
