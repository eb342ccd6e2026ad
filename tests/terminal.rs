//! A program restored in a terminal behaves as if it had been started there, tried as a person
//! would: tmux (a terminal of the test's own, on its own server socket), keys sent with
//! send-keys, the screen read with capture-pane. A line reader, and jshell with
//! `--execution local` (a REPL that puts the terminal in raw mode).

mod support;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A tmux server and session of the test's own, with a plain bash; everything below its shell
/// is killed (by pid) and the server ended when dropped.
struct Terminal {
    socket: String,
    shell: u32,
}

impl Terminal {
    fn new(tag: &str) -> Terminal {
        let socket = format!("crac-shim-test-{}-{tag}", std::process::id());
        let ok = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "200", "-y", "50"])
            .args(["bash", "--norc", "--noprofile"])
            .env("PS1", "$ ")
            .env("TERM", "xterm")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tmux starts");
        let pid = Command::new("tmux")
            .args(["-L", &socket, "display", "-p", "#{pane_pid}"])
            .output()
            .unwrap();
        let shell = String::from_utf8_lossy(&pid.stdout).trim().parse().unwrap();
        let t = Terminal { socket, shell };
        t.wait_for("the shell's prompt", |s| s.trim_end().ends_with('$'));
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).stdout(Stdio::null());
        c
    }

    /// Types `text` (without Enter).
    fn type_text(&self, text: &str) {
        assert!(self
            .tmux()
            .args(["send-keys", "-l", text])
            .status()
            .unwrap()
            .success());
    }

    /// Types `text` and presses Enter.
    fn line(&self, text: &str) {
        self.type_text(text);
        self.key("Enter");
    }

    fn key(&self, key: &str) {
        assert!(self
            .tmux()
            .args(["send-keys", key])
            .status()
            .unwrap()
            .success());
    }

    fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-S", "-200"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `text` shows `n` times on the screen.
    fn wait_count(&self, text: &str, n: usize) -> String {
        self.wait_for(&format!("{text:?} x{n}"), |s| s.matches(text).count() >= n)
    }

    /// `stty -a` of the terminal.
    fn modes(&self) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "display", "-p", "#{pane_tty}"])
            .output()
            .unwrap();
        let tty = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let o = Command::new("stty")
            .args(["-a", "-F", &tty])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn clear(&self) {
        self.line("clear");
        self.tmux().args(["clear-history"]).status().unwrap();
        // (The shell may still report the checkpointed job's end after the clear.)
        self.wait_for("a clear screen", |s| {
            s.trim_end().ends_with('$') && !s.contains("you said") && !s.contains("jshell>")
        });
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        for p in descendants(self.shell) {
            kill_pid(p);
        }
        let _ = self
            .tmux()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

fn tmux_here() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The JVM below the terminal's shell (the one with the agent mapped).
fn jvm_below(t: &Terminal) -> u32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(p) = descendants(t.shell).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/maps"))
                .is_ok_and(|m| m.contains("libcrac_shim_agent"))
        }) {
            return p;
        }
        assert!(Instant::now() < deadline, "no JVM below the shell");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checkpoints the JVM running in the terminal, then types the restore at the shell's prompt.
fn checkpoint_then_restore(t: &Terminal, image: &std::path::Path) {
    checkpoint_ok(jvm_below(t));
    t.wait_for("the shell back", |s| s.trim_end().ends_with('$'));
    t.clear();
    t.line(&format!(
        "{CRAC_JAVA} -XX:CRaCEngineOptions=print_command=true -XX:CRaCRestoreFrom={}",
        image.display()
    ));
    // With crac-shim's CRIU, the copy joins the shell's foreground group as it is restored,
    // so its threads can go back untraced even here.
    if our_criu_has("join-pgrp") {
        t.wait_for("the threads' mode", |s| {
            s.contains("its other threads go back untraced")
        });
    }
}

/// After the program ended: its exit status, and the terminal left in its usual modes.
fn shell_saw_exit(t: &Terminal, status: i32) {
    t.line("echo \"status $?\"; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo -e isig | sort | tr '\\n' ,; echo");
    t.wait_for(&format!("status {status} and a sane terminal"), |s| {
        s.contains(&format!("status {status}")) && s.contains("echo,icanon,isig,")
    });
}

#[test]
fn a_line_reader_restored_in_a_terminal_reads_stops_and_resumes_as_started_there() {
    require_checkpoint!();
    skip_unless!(tmux_here(), "no tmux (scripts/setup installs it)");
    let tmp = TempDir::new("tty-repl");
    let image = tmp.join("image");
    let t = Terminal::new("repl");
    t.line(&format!(
        "{CRAC_JAVA} -XX:CRaCCheckpointTo={} -cp {} Repl",
        image.display(),
        classes().display()
    ));
    t.wait_for("the prompt", |s| {
        s.contains("repl pid") && s.trim_end().ends_with('>')
    });
    t.line("hello");
    t.wait_for("an answer", |s| s.contains("you said: hello"));
    checkpoint_then_restore(&t, &image);
    // Reads from the terminal: before, the copy stayed in its old process group, in the
    // background, and stopped at once (SIGTTIN).
    t.line("again");
    t.wait_for("an answer after the restore", |s| {
        s.contains("you said: again")
    });
    // Ctrl-C reaches the program, which handles it and goes on.
    t.key("C-c");
    t.wait_for("the program's SIGINT handler", |s| {
        s.contains("interrupted")
    });
    t.line("still");
    t.wait_for("an answer", |s| s.contains("you said: still"));
    // Ctrl-Z stops it as a job of the shell; fg resumes it.
    let stopped_before = t.screen().matches("Stopped").count();
    t.key("C-z");
    t.wait_count("Stopped", stopped_before + 1);
    t.line("fg");
    t.line("back");
    t.wait_for("an answer after fg", |s| s.contains("you said: back"));
    t.line("quit");
    shell_saw_exit(&t, 3);
}

#[test]
fn jshell_restored_in_a_terminal_edits_lines_and_exits_as_started_there() {
    require_checkpoint!();
    skip_unless!(tmux_here(), "no tmux (scripts/setup installs it)");
    let tmp = TempDir::new("tty-jshell");
    let image = tmp.join("image");
    let t = Terminal::new("jshell");
    t.line(&format!(
        "{CRAC_JAVA} -XX:CRaCCheckpointTo={} -m jdk.jshell/jdk.internal.jshell.tool.JShellToolProvider --execution local",
        image.display()
    ));
    t.wait_count("jshell>", 1);
    t.line("int x = 41;");
    t.wait_for("the variable", |s| s.contains("x ==> 41"));
    checkpoint_then_restore(&t, &image);
    // Typed once the copy runs (keys typed earlier are echoed by the terminal in line mode,
    // as during any program's start-up): its agent answers again once the restore is done.
    let deadline = Instant::now() + TIMEOUT;
    while !std::path::Path::new(&format!("/run/crac-shim/{}.sock", jvm_below(&t))).exists() {
        assert!(Instant::now() < deadline, "the copy never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.line("x + 1");
    // Evaluated once, with the state it had, and the terminal in jshell's own modes (raw:
    // jshell echoes and edits; in the line mode the shell left, every key would be echoed
    // twice and Ctrl-C would end jshell).
    let s = t.wait_for("the answer", |s| s.contains("==> 42"));
    assert_eq!(s.matches("==> 42").count(), 1, "{s}");
    let modes = t.modes();
    assert!(
        modes.contains("-icanon") && modes.contains("-echo "),
        "{modes}"
    );
    // Ctrl-C cancels the line being edited, as in a jshell started here; jshell goes on.
    t.type_text("x +");
    t.key("C-c");
    t.line("x * 2");
    t.wait_for("the next answer", |s| s.contains("==> 82"));
    t.line("/exit");
    t.wait_for("jshell's goodbye", |s| s.contains("Goodbye"));
    shell_saw_exit(&t, 0);
}
