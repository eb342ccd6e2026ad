//! CRaC's test engines in the dump helper: the checkpoint's directory gets the image's
//! metadata (labels, CPU features, the JVM's pid) but no image of memory, and the JVM goes on
//! in place: at once (`simengine`), or when `crac-java -XX:CRaCRestoreFrom=DIR` resumes it
//! (`pauseengine`, see restore/in_place.rs).

use super::{finish_image, give_back, hand_back, report};
use crate::engine::TestEngine;
use crate::image::{self, Metadata};
use anyhow::{Context, Result};
use crac_shim_proto::{exit_line, kind, Message};
use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// What a resume carries from the restore command line, as a restore's greeting does.
pub const GREETING_KEYS: [&str; 6] = [
    "prop",
    "new_main",
    "checkpoint_to",
    "reset_start_time",
    "restore_time",
    "restore_ms",
];

/// The first line a resuming `crac-java` sends on the paused JVM's socket.
pub const RESUME: &str = "resume";
/// Its answer when the JVM goes on.
pub const RESUMED: &str = "resumed";

pub fn run(
    engine: TestEngine,
    request: &Message,
    client: &mut Option<UnixStream>,
    channel: &OwnedFd,
    spares: &[OwnedFd; 3],
) -> i32 {
    let dir = match record(engine, request) {
        Ok(dir) => dir,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("crac-shim: checkpoint failed: {text}");
            report(client, Err(&text));
            give_back(channel, &text, spares);
            return 1;
        }
    };
    match engine {
        TestEngine::Sim => {
            report(client, Ok(()));
            hand_back(channel, Message::new(kind::RESUMED), spares);
            0
        }
        TestEngine::Pause => {
            let socket = request.get("socket").unwrap_or_default().to_string();
            let pid = request.get("pid").and_then(|p| p.parse().ok()).unwrap_or(0);
            let listener = match listen(&socket) {
                Ok(l) => l,
                Err(e) => {
                    let text = format!("pauseengine: {e:#}; the JVM goes on");
                    report(client, Err(&text));
                    give_back(channel, &text, spares);
                    return 1;
                }
            };
            eprintln!(
                "crac-shim: pauseengine: the JVM (pid {pid}) is paused; resume it with crac-java -XX:CRaCRestoreFrom={}",
                dir.display()
            );
            report(client, Ok(()));
            drop(client.take());
            let greeting = wait_for_resume(&listener, pid, &dir);
            let _ = std::fs::remove_file(&socket);
            drop(listener);
            hand_back(channel, greeting, spares);
            0
        }
    }
}

/// The directory with the metadata a restore checks (labels, CPU features) and the pid.
fn record(engine: TestEngine, request: &Message) -> Result<PathBuf> {
    let (pid, dir) = super::pid_and_dir(request)?;
    let target = image::prepare_target(&dir)?;
    let staged = target.stage()?;
    let meta = Metadata {
        engine: engine.name().to_string(),
        ..super::base_metadata(request, pid)
    };
    finish_image(&meta, &target, staged, &std::collections::HashMap::new())?;
    Ok(dir)
}

/// The paused JVM's control socket is ours while it is paused (the agent has closed its
/// listener for the checkpoint): a resume comes in there.
fn listen(path: &str) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).with_context(|| format!("cannot listen on {path}"))
}

/// Waits, as long as the JVM lives, for a resume from a process of our own user; anything
/// else asked meanwhile is told the JVM is paused.
fn wait_for_resume(listener: &UnixListener, pid: u32, dir: &std::path::Path) -> Message {
    let _ = listener.set_nonblocking(true);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(greeting) = answer(stream, dir) {
                    return greeting;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if matches!(crate::supervise::process_state(pid), None | Some('Z' | 'X')) {
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn answer(mut stream: UnixStream, dir: &std::path::Path) -> Option<Message> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let same_user =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            .is_ok_and(|c| c.uid() == crac_shim_proto::safepath::euid());
    if !same_user {
        return None;
    }
    let mut reader = std::io::BufReader::new((&stream).take(64 * 1024));
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    if first.trim_end() != RESUME {
        let _ = stream.write_all(
            format!(
                "the JVM is paused by -XX:CRaCEngine=pauseengine; resume it with crac-java -XX:CRaCRestoreFrom={}\n{}",
                dir.display(),
                exit_line(1)
            )
            .as_bytes(),
        );
        return None;
    }
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    let asked = Message::decode(rest.as_bytes()).ok()?;
    let mut greeting = Message::new(kind::RESUMED);
    for (k, v) in &asked.fields {
        if GREETING_KEYS.contains(&k.as_str()) {
            greeting.push(k, v);
        }
    }
    let _ = stream.write_all(format!("{RESUMED}\n").as_bytes());
    Some(greeting)
}
