//! `crac-java -XX:CRaCInspectImage=DIR`: what is in an image and whether it can be restored
//! here, each check with its verdict, as text or JSON.

use super::{cpu, manifest, Checks, Metadata};
use crate::criu::Criu;
use std::path::Path;

/// One check a restore would make, and how it came out.
pub struct Verdict {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The report on the image in `dir`; `criu` is the CRIU a restore would use (or why none).
pub struct Report {
    pub dir: String,
    pub meta: Option<Metadata>,
    pub files: usize,
    pub bytes: u64,
    pub ids: Vec<u32>,
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub fn restorable(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok)
    }
}

/// `pages` says how a restore with a CRIU would treat the image's pages (`super::pages`).
pub fn inspect(
    dir: &Path,
    checks: &Checks,
    criu: Result<&Criu, String>,
    pages: impl Fn(&Criu, &Metadata) -> super::pages::PageMode,
) -> Report {
    let mut verdicts = Vec::new();
    let mut verdict = |check: &'static str, result: Result<String, String>| {
        let ok = result.is_ok();
        verdicts.push(Verdict {
            check,
            ok,
            detail: result.unwrap_or_else(|e| e),
        });
        ok
    };
    // Read through the held directory when the way to it is trusted; otherwise (the report
    // says why) only regular files are read, never through links.
    let held = super::check_trust(dir);
    let fs = held
        .as_ref()
        .map(|h| h.fs())
        .unwrap_or_else(|_| dir.to_path_buf());
    verdict(
        "owner and permissions",
        held.as_ref()
            .map(|_| "yours alone: nobody else can write the image or the way to it".into())
            .map_err(|e| e.to_string()),
    );
    let meta = super::read_metadata(&fs, dir);
    let meta = match meta {
        Ok(m) => {
            verdict("metadata", Ok(format!("format {}", m.format)));
            Some(m)
        }
        Err(e) => {
            verdict("metadata", Err(e.to_string()));
            None
        }
    };
    let entries = manifest::read(&fs).unwrap_or_default();
    let (files, bytes) = (entries.len(), entries.iter().map(|e| e.size).sum());
    verdict(
        "files",
        super::check_files(&fs, dir, true)
            .map(|()| format!("{files} present, sizes and checksums as written"))
            .map_err(|e| e.to_string()),
    );
    let mut ids = Vec::new();
    let mut pids_taken = false;
    if let Some(m) = &meta {
        verdict(
            "files on disk",
            super::files_gone(&fs, m).and_then(|gone| {
                let needed = super::needs::files(&fs)?.len();
                if gone.is_empty() {
                    Ok(format!(
                        "the {needed} files the program had open or mapped are here"
                    ))
                } else {
                    Err(format!("missing here: {}", gone.join(", ")))
                }
            }),
        );
        verdict(
            "JDK",
            super::check_jdk(dir, m)
                .map(|()| match &m.libjvm {
                    Some((p, _, _)) => format!("{p} as at the checkpoint"),
                    None => "not recorded".into(),
                })
                .map_err(|e| e.to_string()),
        );
        if !checks.required_labels.is_empty() {
            verdict(
                "labels",
                super::check_labels(dir, m, &checks.required_labels)
                    .map(|()| "every required label is there".into())
                    .map_err(|e| e.to_string()),
            );
        }
        let how = checks.cpu;
        let name = match how {
            cpu::Check::Compatible => "CPU features (compatible)",
            cpu::Check::Exact => "CPU features (exact)",
            cpu::Check::Skip => "CPU features (skipped)",
        };
        verdict(
            name,
            super::check_cpu(dir, m, how, &cpu::Machine::here())
                .map(|()| match how {
                    cpu::Check::Skip => "not checked".into(),
                    _ if m.cpu.mode.is_empty() || m.cpu.mode == "ignore" => {
                        "the image records none".into()
                    }
                    _ => "this CPU has what the image may use".into(),
                })
                .map_err(|e| e.to_string()),
        );
        ids = manifest::open_regular(&fs.join("pstree.img"))
            .and_then(|mut f| {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
            })
            .ok()
            .and_then(|b| super::pstree_ids(&b).ok())
            .unwrap_or_default();
        let states: Vec<(u32, Option<char>)> = ids
            .iter()
            .map(|id| (*id, crate::supervise::process_state(*id)))
            .collect();
        let taken: Vec<u32> = states
            .iter()
            .filter(|(_, s)| s.is_some_and(|s| s != 'Z' && s != 'X'))
            .map(|(id, _)| *id)
            .collect();
        let zombies = states.iter().any(|(_, s)| matches!(s, Some('Z' | 'X')));
        pids_taken = !taken.is_empty();
        verdict(
            "pids",
            Ok(if taken.is_empty() && zombies {
                format!(
                    "{} held by the checkpointed JVM's zombie: a restore waits a moment for it",
                    m.pid
                )
            } else if taken.is_empty() {
                format!("{} free here: restores in this PID namespace", m.pid)
            } else {
                format!(
                    "{} taken here: restores into a new PID namespace",
                    taken
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        );
    }
    verdict(
        "CRIU",
        criu.and_then(|c| {
            let op = crate::privilege::Operation::Restore {
                tcp_established: meta
                    .as_ref()
                    .is_some_and(|m| m.restore_args.iter().any(|a| a == "--tcp-established")),
                new_pid_namespace: pids_taken,
            };
            let pages = meta
                .as_ref()
                .map(|m| format!("; {}", pages(c, m).describe()))
                .unwrap_or_default();
            crate::privilege::check(c, op)
                .map(|()| format!("{} at {}{pages}", c.mode(), c.path.display()))
                .map_err(|e| format!("{e:#}"))
        }),
    );
    Report {
        dir: dir.display().to_string(),
        meta,
        files,
        bytes,
        ids,
        verdicts,
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = format!("Image {}\n", self.dir);
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<12} {v}\n"));
        if let Some(m) = &self.meta {
            line(
                "made",
                format!(
                    "{} on {} (Linux {}), CRIU {}",
                    crac_shim_proto::iso8601(m.created),
                    m.host,
                    m.kernel,
                    m.criu_version
                ),
            );
            line("JDK", format!("{} in {}", m.jdk_version, m.java_home));
            line("command", m.command.join(" "));
            line(
                "process",
                format!("pid {}, {} threads and processes", m.pid, self.ids.len()),
            );
            line(
                "size",
                format!("{} in {} files", mib(self.bytes), self.files),
            );
            line(
                "labels",
                if m.labels.is_empty() {
                    "none".into()
                } else {
                    m.labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            );
            line(
                "CPU",
                format!(
                    "{} ({}) on {}",
                    m.cpu.mode,
                    cpu_summary(&m.cpu),
                    m.cpu.model
                ),
            );
            line(
                "environment",
                format!(
                    "{} variables, their values in the image's memory: {}",
                    m.env_names.len(),
                    m.env_names.join(" ")
                ),
            );
            line("descriptors", format!("{}", m.descriptors.len()));
            for d in &m.descriptors {
                out.push_str(&format!("    {d}\n"));
            }
        }
        out.push_str("Can it be restored here?\n");
        for v in &self.verdicts {
            out.push_str(&format!(
                "  {:<4} {}: {}\n",
                if v.ok { "ok" } else { "FAIL" },
                v.check,
                v.detail
            ));
        }
        out.push_str(if self.restorable() {
            "Verdict: restorable here\n"
        } else {
            "Verdict: not restorable here\n"
        });
        out
    }

    pub fn json(&self) -> String {
        let s = |v: &str| json_string(v);
        let list =
            |v: &[String]| format!("[{}]", v.iter().map(|x| s(x)).collect::<Vec<_>>().join(","));
        let mut fields = vec![format!("\"dir\":{}", s(&self.dir))];
        if let Some(m) = &self.meta {
            fields.extend([
                format!("\"created\":{}", m.created),
                format!(
                    "\"created_iso\":{}",
                    s(&crac_shim_proto::iso8601(m.created))
                ),
                format!("\"host\":{}", s(&m.host)),
                format!("\"kernel\":{}", s(&m.kernel)),
                format!("\"criu_version\":{}", s(&m.criu_version)),
                format!("\"jdk_version\":{}", s(&m.jdk_version)),
                format!("\"java_home\":{}", s(&m.java_home)),
                format!("\"command\":{}", list(&m.command)),
                format!("\"pid\":{}", m.pid),
                format!("\"threads\":{}", self.ids.len()),
                format!("\"files\":{}", self.files),
                format!("\"bytes\":{}", self.bytes),
                format!(
                    "\"labels\":{{{}}}",
                    m.labels
                        .iter()
                        .map(|(k, v)| format!("{}:{}", s(k), s(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                format!(
                    "\"cpu\":{{\"mode\":{},\"model\":{},\"flags\":{},\"jvm_may_use\":{}}}",
                    s(&m.cpu.mode),
                    s(&m.cpu.model),
                    list(&m.cpu.flags),
                    list(&m.cpu.jvm)
                ),
                format!("\"environment_names\":{}", list(&m.env_names)),
                format!("\"descriptors\":{}", list(&m.descriptors)),
            ]);
        }
        let checks: Vec<String> = self
            .verdicts
            .iter()
            .map(|v| {
                format!(
                    "{{\"check\":{},\"ok\":{},\"detail\":{}}}",
                    s(v.check),
                    v.ok,
                    s(&v.detail)
                )
            })
            .collect();
        fields.push(format!("\"checks\":[{}]", checks.join(",")));
        fields.push(format!("\"restorable\":{}", self.restorable()));
        format!("{{{}}}\n", fields.join(","))
    }
}

fn cpu_summary(r: &cpu::Record) -> String {
    if r.jvm.is_empty() {
        "nothing recorded".into()
    } else {
        format!("the JVM may use {}", r.jvm.join(" "))
    }
}

fn json_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings_escape() {
        assert_eq!(
            super::json_string("a\"b\\c\nd\u{1}"),
            "\"a\\\"b\\\\c\\nd\\u0001\""
        );
    }
}
