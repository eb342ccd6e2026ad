//! `-XX:CRaCEngine` and `-XX:CRaCEngineOptions`: CRaC's way of choosing and tuning CRIU.

use std::path::PathBuf;

/// CRaC's engines for testing, which need neither CRIU nor privileges: `simengine` runs a
/// checkpoint's notifications and checks and goes on at once as if restored; `pauseengine`
/// holds the JVM still in place until `-XX:CRaCRestoreFrom` of its directory resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestEngine {
    Sim,
    Pause,
}

impl TestEngine {
    pub fn named(name: &str) -> Option<TestEngine> {
        match name {
            crac_shim_proto::SIM_ENGINE => Some(TestEngine::Sim),
            crac_shim_proto::PAUSE_ENGINE => Some(TestEngine::Pause),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TestEngine::Sim => crac_shim_proto::SIM_ENGINE,
            TestEngine::Pause => crac_shim_proto::PAUSE_ENGINE,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    pub criu_location: Option<PathBuf>,
    pub args: Vec<String>,
    pub keep_running: bool,
    pub print_command: bool,
    pub lazy_pages: bool,
    /// `None`: mapped wherever CRIU can (`image::pages`).
    pub map_pages: Option<bool>,
    pub help: bool,
}

pub const HELP: &str = "\
Configuration options:
-XX:CRaCEngineOptions=OPTION[,OPTION...] for the CRIU engine:
  criu_location=PATH   the CRIU binary (4.2 or later)
  args=ARGS            extra CRIU arguments, separated by spaces
  keep_running=BOOL    keep the JVM running after the checkpoint (default false)
  print_command=BOOL   print each CRIU command line on stderr, and on restore the modes
                       that run (pages, threads) (default false)
  lazy_pages=BOOL      on restore: the JVM runs before its memory is back; pages arrive
                       on first touch and in the background (default false)
  map_pages=BOOL       on restore: map the image's pages copy-on-write rather than read
                       them (default true where crac-shim's CRIU can; print_command
                       says which ran)
  help                 print this and exit
";

fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{key} must be true or false, not {v:?}")),
    }
}

impl EngineOptions {
    pub fn parse(spec: &str) -> Result<EngineOptions, String> {
        let mut o = EngineOptions::default();
        for item in spec.split(',').filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            match k {
                "help" => o.help = true,
                "criu_location" if !v.is_empty() => o.criu_location = Some(PathBuf::from(v)),
                "args" => o.args.extend(v.split_whitespace().map(str::to_string)),
                "keep_running" => o.keep_running = boolean(k, v)?,
                "print_command" => o.print_command = boolean(k, v)?,
                "lazy_pages" => o.lazy_pages = boolean(k, v)?,
                "map_pages" => o.map_pages = Some(boolean(k, v)?),
                _ => {
                    return Err(format!(
                        "unknown CRaCEngineOptions entry {item:?} (criu_location, args, keep_running, print_command, lazy_pages, map_pages, help)"
                    ))
                }
            }
        }
        Ok(o)
    }
}

pub use crac_shim_proto::expand_placeholders as expand;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_options_parse() {
        let o =
            EngineOptions::parse("keep_running=true,args=--tcp-close -v4,print_command=1").unwrap();
        assert!(o.keep_running && o.print_command && !o.help);
        assert_eq!(o.args, ["--tcp-close", "-v4"]);
        assert_eq!(
            EngineOptions::parse("criu_location=/x/criu")
                .unwrap()
                .criu_location,
            Some(PathBuf::from("/x/criu"))
        );
        assert!(EngineOptions::parse("help").unwrap().help);
        assert!(EngineOptions::parse("lazy_pages=true").unwrap().lazy_pages);
        assert_eq!(
            EngineOptions::parse("map_pages=false").unwrap().map_pages,
            Some(false)
        );
        assert!(EngineOptions::parse("keep_running=maybe").is_err());
        assert!(EngineOptions::parse("colour=blue").is_err());
    }

    #[test]
    fn placeholders_expand() {
        let v = crac_shim_proto::Placeholders {
            pid: 42,
            time: 1_764_643_803,
            uuid: "u-u".into(),
            generation: 3,
            boot_time: 0,
            restore_time: 951_782_400,
            arch: "amd64".into(),
            cpu_features: "00ff".into(),
            cpus: 2,
            max_heap: 512 << 20,
        };
        assert_eq!(
            expand("/cp/%p-%g-%t-%u-%%-%x", &v),
            "/cp/42-3-20251202T025003Z-u-u-%-%x"
        );
        assert_eq!(
            expand("%T %b %B %r %R %a %f %c %m", &v),
            "1764643803 19700101T000000Z 0 20000229T000000Z 951782400 amd64 00ff 2 512m"
        );
        assert_eq!(expand("%05p|%3g|%08c|%1p", &v), "00042|  3|00000002|42");
        assert_eq!(expand("/plain", &v), "/plain");
        assert_eq!(expand("trailing %", &v), "trailing %");
        assert_eq!(expand("%5", &v), "%5");
        assert_eq!(expand("%é%", &v), "%é%");
    }
}
