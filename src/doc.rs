//! One description of each command's options, environment and exit statuses, feeding both
//! `--help` and the man pages (`man/*.1`, checked by a test so they cannot drift).

pub struct Item {
    /// How the option or variable is written, with its value placeholder.
    pub term: &'static str,
    pub help: &'static str,
}

pub struct Page {
    pub name: &'static str,
    pub summary: &'static str,
    pub synopsis: &'static [&'static str],
    pub description: &'static str,
    pub options: &'static [Item],
    pub environment: &'static [Item],
    pub exit_status: &'static [Item],
    pub examples: &'static [Item],
    pub see_also: &'static str,
}

pub const CRAC_JAVA: Page = Page {
    name: "crac-java",
    summary: "run a Java program that can be checkpointed and restored with CRIU",
    synopsis: &[
        "crac-java [java options] class|-jar file|-m module [args...]",
        "crac-java -XX:CRaCCheckpointTo=DIR [java options] class|-jar file|-m module [args...]",
        "crac-java -XX:CRaCRestoreFrom=DIR [-XX:CRaCCheckpointTo=DIR2] [-Dname=value...] [class [args...]]",
    ],
    description: "Without a CRaC option, crac-java is java: it replaces itself with the real java \
        binary and passes every argument on untouched (so --help and -version are java's own). \
        With -XX:CRaCCheckpointTo it starts the JVM with the crac-shim agent preloaded; \
        `crac-jcmd PID JDK.checkpoint` then has CRIU write an image of the running JVM to DIR, \
        and the JVM exits. With -XX:CRaCRestoreFrom it restores such an image: the program \
        continues where it was checkpointed, with the restoring process's stdin, stdout and \
        stderr; crac-java stays its parent, forwards signals to it and exits with its status. \
        The CRaC options are only recognised before the main class, jar or module.",
    options: &[
        Item {
            term: "-XX:CRaCCheckpointTo=DIR",
            help: "Allow checkpoints of this JVM into DIR (created 0700 if missing). A new image \
                replaces an existing one only once it is complete; DIR must be empty, missing \
                or an earlier image. DIR may hold CRaC's patterns, expanded at each checkpoint: \
                %p pid, %t time (ISO-8601 UTC, 20261202T025003Z), %T time (seconds since the \
                epoch), %b/%B boot time, %r/%R last restore (or start), %a architecture, %f CPU \
                features (a fingerprint), %u a random UUID, %c CPU count, %m maximum heap, %g \
                generation (1 for the first checkpoint), %% a percent sign; a width may come \
                first (%5p), with a 0 to pad with zeros (%03g). Given with -XX:CRaCRestoreFrom, \
                it is where the restored JVM's next checkpoint goes. The JVM gets \
                -XX:ZUncommitDelay=1 before your arguments (a delay you give wins), so that \
                ZGC gives freed heap back before the dump and the image holds the live data.",
        },
        Item {
            term: "-XX:CRaCRestoreFrom=DIR",
            help: "Restore the image in DIR instead of starting a program. -Dname=value options \
                are handed to the restored JVM; other java options are ignored (the JVM is \
                already configured). A main class with arguments after the options is run in \
                the restored JVM (its main method, on the thread that checkpointed) once the \
                afterRestore notifications are done. When the checkpointed pid is in use, the \
                restore runs in a new PID namespace.",
        },
        Item {
            term: "-XX:+CRaCIgnoreRestoreIfUnavailable",
            help: "With -XX:CRaCRestoreFrom: when the image is missing or cannot be restored, say \
                why in one line on stderr and start the program from the rest of the command line \
                instead (it may also carry -XX:CRaCCheckpointTo).",
        },
        Item {
            term: "-XX:+CRaCResetStartTime, -XX:-CRaCResetStartTime",
            help: "Whether a restored copy's RuntimeMXBean start time and uptime count from its \
                restore (+, the default, as in CRaC) or from the first JVM's start (-). Given at \
                start, it holds for every copy; given at restore, for that copy.",
        },
        Item {
            term: "-XX:CRaCEngine=criu|PATH|simengine|pauseengine",
            help: "The CRIU binary to use (4.2 or later); `criu` means the usual search (see \
                CRAC_CRIU_PATH). CRaC's test engines need neither CRIU nor privileges: \
                `simengine` runs a checkpoint's notifications and checks, makes no image and \
                goes on as restored (a dry run); `pauseengine` holds the JVM still in place \
                (its Java threads suspended) until `crac-java -XX:CRaCRestoreFrom=DIR` of its \
                directory resumes it as restored (with that command's -D properties and main \
                class) and exits 0. Both write the directory's metadata (labels, CPU \
                features), which the resume checks.",
        },
        Item {
            term: "-XX:CRaCEngineOptions=OPTION,...",
            help: "criu_location=PATH (as -XX:CRaCEngine), args=ARGS (extra CRIU arguments, \
                separated by spaces), keep_running=true (the JVM goes on after each checkpoint; \
                the image restores as a separate copy), print_command=true (print each CRIU \
                command line on stderr, and on restore whether the pages were mapped or read \
                and whether threads other than each process's leader went back untraced), \
                lazy_pages=true (on restore: the JVM runs before its memory is back; CRIU's \
                lazy-pages daemon hands pages in on first touch and in the background), \
                map_pages=false (on restore: read the image's pages into memory rather than map \
                them copy-on-write, which crac-shim's CRIU does by default: restore time and \
                memory then grow with the image; see docs/IMAGES.md), help (list them and exit).",
        },
        Item {
            term: "-XX:CRaCMinPid=N",
            help: "Give the JVM a pid of at least N (default 128), by advancing the pid counter \
                or forking until it is reached, so that a restore in a fresh container or PID \
                namespace does not collide with low pids. When crac-java's own pid is lower, the \
                JVM runs as its child.",
        },
        Item {
            term: "-XX:CRaCImageLabels=KEY=VALUE,...",
            help: "Store these labels in every image of this JVM (an application version, a fleet).",
        },
        Item {
            term: "-XX:CRaCRequiredImageLabels=KEY[=VALUE],...",
            help: "With -XX:CRaCRestoreFrom: refuse an image that lacks one of these labels (a key \
                alone: with any value).",
        },
        Item {
            term: "-XX:CPUFeatures=native|generic|ignore|LIST",
            help: "At checkpoint: what the image's code may use, recorded in the image. native (the \
                default): this CPU's features; generic: the JVM starts with its JIT and stubs kept \
                to the x86-64 baseline (HotSpot flags) and glibc likewise (GLIBC_TUNABLES), for an \
                image that restores on any x86-64 CPU; LIST: generic plus these /proc/cpuinfo \
                flags (avx2,popcnt,...); ignore: record nothing to check.",
        },
        Item {
            term: "-XX:CheckCPUFeatures=compatible|exact|skip",
            help: "At restore: compatible (the default) refuses a CPU that lacks a feature the image \
                may use, naming it; exact wants the very features the image was limited to (a \
                generic image is not exactly this CPU's); skip does not check (the JVM may die of \
                SIGILL) and, as in CRaC, needs -XX:+UnlockExperimentalVMOptions. An image made with \
                -XX:CPUFeatures=ignore passes only skip. -XX:+IgnoreCPUFeatures is skip.",
        },
        Item {
            term: "-XX:+ShowCPUFeatures",
            help: "Print this machine's CPU and its features, and exit.",
        },
        Item {
            term: "-XX:+CRaCVerifyImage",
            help: "With -XX:CRaCRestoreFrom: check every file's checksum before restoring (sizes and \
                presence are always checked; about 10 ms per 100 MiB from the page cache).",
        },
        Item {
            term: "-XX:CRaCInspectImage=DIR",
            help: "Print what the image in DIR holds (when, where and from what it was made, the \
                command line, pid and threads, size, labels, CPU features, the names of the \
                environment variables inside, every descriptor and the decision taken) and whether \
                it can be restored here, check by check (checksums included); exit 0 if it can, 1 if \
                not. -XX:+CRaCInspectJSON prints the same as one JSON object.",
        },
        Item {
            term: "-XX:CRaCIgnoredFileDescriptors=N|PATH,...",
            help: "Descriptors (by number or path) the checkpoint's check leaves alone: CRIU saves \
                and restores them as they are, whatever the policy says.",
        },
        Item {
            term: "-XX:+CRaCPrintResourcesOnCheckpoint",
            help: "At each checkpoint, print every open descriptor with its class and verdict \
                (OK or BAD) on the JVM's stderr.",
        },
        Item {
            term: "-Djdk.crac.resource-policies=FILE",
            help: "Descriptor policies in CRaC's format, rules separated by `---`: `type:` file \
                (directories too), pipe, socket, filedescriptor (or a class such as write-file); \
                filters `path:` (glob), `family:` (ipv4, ipv6, ip, unix), `localAddress:`, \
                `remoteAddress:`, `localPort:`, `remotePort:`, `localPath:`, `remotePath:`, \
                `value:` (descriptor number), `regex:` (on its description); `action:` close, \
                reopen (files only), ignore or error; `warn: false` silences the notice a rule \
                prints when it closes, reopens or ignores something. By default a file open \
                for writing (not append-only), a connected TCP socket, a unix socket to another \
                process and an unknown device refuse the checkpoint; logs open for appending are \
                reopened; listening sockets and the JVM's own descriptors are kept.",
        },
        Item {
            term: "-XX:CRaCShimJava=PATH",
            help: "The real java binary to run (default: $CRAC_SHIM_JAVA, then $JAVA_HOME/bin/java, \
                then the first java on PATH that is not crac-java itself).",
        },
        Item { term: "--crac-help", help: "Print this help and exit (--help is java's)." },
        Item { term: "--crac-version", help: "Print crac-shim's version and exit." },
    ],
    environment: &[
        Item { term: "CRAC_SHIM_JAVA", help: "The real java binary (see -XX:CRaCShimJava)." },
        Item { term: "JAVA_HOME", help: "Where to find bin/java when CRAC_SHIM_JAVA is unset." },
        Item {
            term: "CRAC_CRIU_PATH",
            help: "The CRIU binary (4.2 or later). Otherwise a criu next to crac-java, then criu on PATH, \
                whichever is first new enough.",
        },
        Item {
            term: "CRAC_CRIU_OPTS",
            help: "Extra CRIU arguments for dumps and restores, separated by spaces.",
        },
        Item {
            term: "CRAC_SHIM_AGENT",
            help: "The agent library (default: libcrac_shim_agent.so next to crac-java).",
        },
        Item {
            term: "CRAC_SHIM_RUNTIME_DIR",
            help: "Private directory for control sockets and restore scratch space (default: root's \
                /run/crac-shim, a user's $XDG_RUNTIME_DIR/crac-shim or /tmp/crac-shim-UID, passing \
                over a name another user took); the logs of the ten latest failed restores stay there \
                for a day.",
        },
        Item {
            term: "CRAC_SHIM_TIMING",
            help: "Set in a restoring (or checkpointed) environment: the launcher, the agent and the \
                Java API print `crac-shim: timing EVENT MICROSECONDS` on stderr at each moment of the \
                restore (or checkpoint), for scripts/bench --breakdown.",
        },
        Item {
            term: "CRAC_SHIM_RESTORE_TIMEOUT",
            help: "Seconds CRIU may take to restore before it is stopped (default 300).",
        },
    ],
    exit_status: &[
        Item { term: "passthrough", help: "java's own exit status (crac-java is replaced by java)." },
        Item {
            term: "restore",
            help: "the restored program's exit status; if it died of a signal, crac-java dies of the \
                same signal (or exits 128+signal).",
        },
        Item { term: "1", help: "bad usage, a missing or unusable image, CRIU missing or failing." },
    ],
    examples: &[
        Item { term: "crac-java -XX:CRaCCheckpointTo=/tmp/cp -cp app.jar Main", help: "Run and warm up." },
        Item { term: "crac-jcmd $(pgrep -f app.jar) JDK.checkpoint", help: "Checkpoint it (it exits)." },
        Item { term: "crac-java -XX:CRaCRestoreFrom=/tmp/cp", help: "Continue it, as often as you like." },
    ],
    see_also: "crac-jcmd(1), java(1), criu(8)",
};

pub const CRAC_JCMD: Page = Page {
    name: "crac-jcmd",
    summary: "send a checkpoint request to a JVM started by crac-java",
    synopsis: &[
        "crac-jcmd [-t SECONDS] PID|MAIN-CLASS|JAR JDK.checkpoint [keep_running=true] [policy=FILE]",
        "crac-jcmd PID help",
        "crac-jcmd [-l]",
    ],
    description: "crac-jcmd talks to the crac-shim agent in a JVM started with \
        `crac-java -XX:CRaCCheckpointTo=DIR`, through the JVM's private control socket. \
        JDK.checkpoint makes CRIU write an image of the JVM to DIR; the JVM then exits, as with \
        CRaC (with keep_running=true it goes on, this once). policy=FILE (crac-shim's own) adds \
        the rules of a resource-policies file to this checkpoint, ahead of those given at the \
        JVM's start: a descriptor refused in a program already warmed up is fixed without a \
        restart (the JVM's user reads the file). The output is jcmd's: `PID:` then \
        `Command executed successfully`, or the reason the checkpoint failed (the JVM keeps \
        running then). PID may be a restored copy's pid as ps shows it, or the host's pid of a \
        JVM in a container (another PID namespace); a main class or jar name \
        selects the JVMs whose command line has it, as with jcmd. Other commands go to the real \
        jcmd when there is one.",
    options: &[
        Item {
            term: "-l, --list",
            help: "List the JVMs that crac-jcmd can reach, with pid and command.",
        },
        Item {
            term: "-t, --timeout SECONDS",
            help:
                "Give up after SECONDS (default 120) and say why: the JVM is stopped (its request \
                is then dropped, never run later), busy with another checkpoint, gone, or not \
                answering.",
        },
        Item {
            term: "-h, --help",
            help: "Print this help and exit.",
        },
        Item {
            term: "-V, --version",
            help: "Print crac-shim's version and exit.",
        },
    ],
    environment: &[Item {
        term: "CRAC_SHIM_RUNTIME_DIR",
        help: "Where the control sockets are (default: where crac-java puts them for the JVM's \
            owner, /run/crac-shim for root).",
    }],
    exit_status: &[
        Item {
            term: "0",
            help: "the command succeeded (after a checkpoint, the JVM has exited).",
        },
        Item {
            term: "1",
            help:
                "the checkpoint failed (the JVM keeps running), or the pid is not a crac-shim JVM.",
        },
        Item {
            term: "2",
            help: "bad usage.",
        },
    ],
    examples: &[Item {
        term: "crac-jcmd 4242 JDK.checkpoint",
        help: "Checkpoint JVM 4242.",
    }],
    see_also: "crac-java(1), jcmd(1)",
};

/// Wraps `text` at `width` columns, indenting every line by `indent` spaces.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            out.push_str(&" ".repeat(indent));
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&" ".repeat(indent));
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The `--help` text.
pub fn help(page: &Page) -> String {
    let mut out = format!("{} - {}\n\nUsage:\n", page.name, page.summary);
    for s in page.synopsis {
        out.push_str(&format!("  {s}\n"));
    }
    out.push('\n');
    out.push_str(&wrap(page.description, 0, 80));
    for (title, items) in [
        ("Options", page.options),
        ("Environment", page.environment),
        ("Exit status", page.exit_status),
        ("Examples", page.examples),
    ] {
        out.push_str(&format!("\n{title}:\n"));
        for item in items {
            out.push_str(&format!("  {}\n", item.term));
            out.push_str(&wrap(item.help, 6, 80));
        }
    }
    out.push_str(&format!("\nSee also: {}\n", page.see_also));
    out
}

fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    // A line starting with . or ' would be a request.
    escaped
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The man page, in roff.
pub fn man(page: &Page) -> String {
    let mut out = format!(
        ".\\\" Generated from src/doc.rs by `crac-java --crac-man {}`; do not edit.\n.TH {} 1 \"\" \"crac-shim {}\" \"User Commands\"\n",
        page.name,
        page.name.to_uppercase(),
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(&format!(
        ".SH NAME\n{} \\- {}\n.SH SYNOPSIS\n",
        page.name,
        roff_escape(page.summary)
    ));
    for s in page.synopsis {
        out.push_str(&format!(".B {}\n.br\n", roff_escape(s)));
    }
    out.push_str(&format!(
        ".SH DESCRIPTION\n{}\n",
        roff_escape(page.description)
    ));
    for (title, items) in [
        ("OPTIONS", page.options),
        ("ENVIRONMENT", page.environment),
        ("EXIT STATUS", page.exit_status),
        ("EXAMPLES", page.examples),
    ] {
        out.push_str(&format!(".SH {title}\n"));
        for item in items {
            out.push_str(&format!(
                ".TP\n.B {}\n{}\n",
                roff_escape(item.term),
                roff_escape(item.help)
            ));
        }
    }
    out.push_str(&format!(".SH SEE ALSO\n{}\n", roff_escape(page.see_also)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option() {
        for page in [&CRAC_JAVA, &CRAC_JCMD] {
            let text = help(page);
            for item in page.options.iter().chain(page.environment) {
                assert!(
                    text.contains(item.term),
                    "{} missing from {} --help",
                    item.term,
                    page.name
                );
            }
        }
    }

    #[test]
    fn man_escapes_dashes_and_leading_dots() {
        assert_eq!(roff_escape("-XX:Foo"), "\\-XX:Foo");
        assert_eq!(roff_escape(".hidden"), "\\&.hidden");
    }

    #[test]
    fn committed_man_pages_are_generated_from_this_file() {
        for page in [&CRAC_JAVA, &CRAC_JCMD] {
            let path = format!("{}/man/{}.1", env!("CARGO_MANIFEST_DIR"), page.name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == man(page),
                "{path} is out of date: run `scripts/gen-man` (or target/debug/crac-java --crac-man {} > {path})",
                page.name
            );
        }
    }
}
