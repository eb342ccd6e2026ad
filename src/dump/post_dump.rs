//! The image is finished while CRIU still holds the JVM: in CRIU's `post-dump` action script,
//! which CRIU runs once every image file is written and before it lets go of the tasks. CRIU
//! then ends the tree itself (or lets it run, with keep_running), and if the script fails it
//! resumes the tree instead. So the JVM never enters a job-control stop between the dump and
//! the end of the checkpoint: a parent waiting with WUNTRACED (a shell, sudo, su, runuser,
//! which stop themselves when their child stops) sees only the JVM's death.
//!
//! CRIU runs the script with no arguments and with descriptors above 2 closed: the script is
//! `crac-java` itself, which knows it is one by `CRAC_SHIM_POST_DUMP` (the dump helper's
//! socket, in its private scratch directory) and asks the dump helper to finish the image.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Where the action script finds the dump helper.
pub const ENV: &str = "CRAC_SHIM_POST_DUMP";

/// When CRIU runs us as its action script: our exit code (0 lets CRIU finish the dump; any
/// other makes it resume the JVM). `None` when we are not one.
pub fn run_as_action_script() -> Option<i32> {
    let socket = std::env::var_os(ENV)?;
    let action = std::env::var("CRTOOLS_SCRIPT_ACTION").ok()?;
    if action != "post-dump" {
        return Some(0);
    }
    let finished = (|| -> std::io::Result<bool> {
        let mut s = UnixStream::connect(&socket)?;
        s.write_all(b"post-dump\n")?;
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer)?;
        Ok(answer.trim() == "ok")
    })();
    Some(if matches!(finished, Ok(true)) { 0 } else { 1 })
}

/// The dump helper's end.
pub struct Hook {
    listener: UnixListener,
    path: PathBuf,
}

impl Hook {
    /// Listens in `work`, a private directory of ours.
    pub fn listen(work: &Path) -> Result<Hook> {
        let path = work.join("post-dump.sock");
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(Hook { listener, path })
    }

    /// Makes `cmd` (CRIU, about to dump) run us as its action script.
    pub fn arm(&self, cmd: &mut std::process::Command) -> Result<()> {
        let me =
            std::fs::read_link("/proc/self/exe").context("cannot find crac-java's own path")?;
        cmd.env(ENV, &self.path).arg("--action-script").arg(me);
        Ok(())
    }

    /// The script's request, if it came: only from our own user (the directory is private
    /// anyway; the script runs as CRIU, as us).
    pub fn request(&self) -> Option<UnixStream> {
        let (stream, _) = self.listener.accept().ok()?;
        let peer =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .ok()?;
        (peer.uid() == nix::unistd::geteuid().as_raw()).then_some(stream)
    }
}

/// Answers the script: whether the image is complete.
pub fn answer(mut request: UnixStream, finished: bool) {
    let _ = request.set_nonblocking(false);
    let mut line = String::new();
    let _ = BufReader::new(&request).read_line(&mut line);
    let _ = request.write_all(if finished { b"ok\n" } else { b"no\n" });
}
