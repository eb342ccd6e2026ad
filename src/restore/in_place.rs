//! `-XX:CRaCRestoreFrom=DIR` of a directory CRaC's test engines made: `pauseengine`'s is
//! resumed in place (the paused JVM goes on as restored, with this command line's `-D`
//! properties and main class); `simengine` keeps nothing to restore.

use super::Handover;
use crate::dump::in_place::{RESUME, RESUMED};
use crate::engine::TestEngine;
use crate::image;
use crate::supervise::Exit;
use anyhow::{bail, Context, Result};
use crac_shim_proto::{kind, Message};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// `Ok(None)` when `dir` is not a test engine's (or cannot be read: the restore proper says
/// why); otherwise the restore's result.
pub fn resume(dir: &Path, checks: &image::Checks, handover: &Handover) -> Result<Option<Exit>> {
    let started = std::time::Instant::now();
    let Ok(held) = image::check_trust(dir) else {
        return Ok(None);
    };
    let Ok(meta) = image::read_metadata(&held.fs(), dir) else {
        return Ok(None);
    };
    match TestEngine::named(&meta.engine) {
        None => Ok(None),
        Some(TestEngine::Sim) => bail!(
            "{} was made by -XX:CRaCEngine=simengine, which keeps no image of the JVM: there is nothing to restore (checkpoint with the criu engine for an image)",
            dir.display()
        ),
        Some(TestEngine::Pause) => {
            image::check_labels(dir, &meta, &checks.required_labels)?;
            if checks.cpu != image::cpu::Check::Skip {
                image::check_cpu(dir, &meta, checks.cpu, &image::cpu::Machine::here())?;
            }
            let mut greeting = Message::new(kind::RESUMED);
            handover.push_into(&mut greeting, started);
            send_resume(dir, meta.pid, &greeting)?;
            Ok(Some(Exit::Code(0)))
        }
    }
}

fn send_resume(dir: &Path, pid: u32, greeting: &Message) -> Result<()> {
    let socket = crac_shim_proto::socket_path(&crate::paths::runtime_dir().to_string_lossy(), pid);
    let gone = || {
        format!(
            "the JVM that -XX:CRaCEngine=pauseengine paused in {} (pid {pid}) is not paused any more (resumed already, or ended)",
            dir.display()
        )
    };
    let mut stream = UnixStream::connect(&socket).with_context(gone)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{RESUME}\n").into_bytes();
    request.extend(greeting.encode());
    stream.write_all(&request).with_context(gone)?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .with_context(gone)?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    if answer.lines().next() != Some(RESUMED) {
        bail!("{}", gone());
    }
    Ok(())
}
