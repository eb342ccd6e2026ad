//! Reads `crac-java`'s command line: java's own, with a few CRaC options mixed in.
//!
//! java's single-dash long options (`-cp`, `-XX:...`) do not fit getopt-style parsers, so the
//! arguments are classified by hand. Only options before the main class (or `-jar FILE`,
//! `-m MODULE`, a source file) are java options; everything after is the program's and is
//! never touched.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    pub checkpoint_to: Option<PathBuf>,
    pub restore_from: Option<PathBuf>,
    pub java: Option<PathBuf>,
    /// -XX:+CRaCPrintResourcesOnCheckpoint
    pub print_resources: bool,
    /// -XX:CRaCEngine=criu|PATH
    pub engine: Option<PathBuf>,
    /// -XX:CRaCEngineOptions=...
    pub engine_options: crate::engine::EngineOptions,
    /// -XX:CRaCMinPid=N
    pub min_pid: Option<u32>,
    /// -XX:+CRaCIgnoreRestoreIfUnavailable
    pub ignore_restore_failure: bool,
    /// -XX:+CRaCResetStartTime (Some(true)) or -XX:-CRaCResetStartTime (Some(false))
    pub reset_start_time: Option<bool>,
    /// -Djdk.crac.resource-policies=FILE (also passed on to java)
    pub policy_file: Option<PathBuf>,
    /// -XX:CRaCIgnoredFileDescriptors=N|PATH,...
    pub ignored_fds: Vec<String>,
    /// Where in `java_args` the main class (or -jar, -m, a source file) starts.
    pub main_at: Option<usize>,
    /// -XX:CRaCImageLabels=k=v,...
    pub labels: Vec<(String, String)>,
    /// -XX:CRaCRequiredImageLabels=k=v,... (a key alone: any value)
    pub required_labels: Vec<(String, Option<String>)>,
    /// -XX:CPUFeatures=native|generic|ignore|LIST
    pub cpu_features: Option<crate::image::cpu::Features>,
    /// -XX:CheckCPUFeatures=compatible|exact|skip (or -XX:+IgnoreCPUFeatures)
    pub check_cpu: Option<crate::image::cpu::Check>,
    /// -XX:+ShowCPUFeatures
    pub show_cpu: bool,
    /// -XX:+CRaCVerifyImage
    pub verify_image: bool,
    /// -XX:CRaCInspectImage=DIR
    pub inspect: Option<PathBuf>,
    /// -XX:+CRaCInspectJSON
    pub inspect_json: bool,
    pub help: bool,
    pub version: bool,
    pub man: Option<String>,
    /// Everything else, in order: what java gets.
    pub java_args: Vec<OsString>,
    /// `-Dname=value` options given with a restore, in order.
    pub restore_properties: Vec<String>,
    /// True when no option of ours was seen: the argument list goes to java unchanged.
    pub passthrough: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum UsageError {
    Unknown(String),
    /// A CRaC option crac-shim knows of but does not implement.
    Unsupported(String),
    MissingValue(&'static str),
    NotUtf8(&'static str),
    BadValue(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Unknown(o) => write!(
                f,
                "unrecognized option {o}: see crac-java --crac-help for the CRaC options crac-java knows"
            ),
            UsageError::Unsupported(o) => write!(
                f,
                "{o} is a CRaC option that crac-shim does not support yet; remove it (docs/JAVA-API.md lists what is supported)"
            ),
            UsageError::MissingValue(o) => write!(f, "{o} needs a value, as in {o}=/path"),
            UsageError::NotUtf8(o) => write!(f, "{o} must be valid UTF-8"),
            UsageError::BadValue(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for UsageError {}

/// java options whose value is the next argument.
const TAKES_VALUE: &[&str] = &[
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--limit-modules",
    "--add-exports",
    "--add-opens",
    "--add-reads",
    "--patch-module",
    "--enable-native-access",
    "--source",
    "-d",
    "--describe-module",
    "-splash",
];

/// Options of a CRaC JDK that crac-shim does not implement: refused by name rather than
/// passed to a stock java, which would fail with "Unrecognized VM option".
const UNSUPPORTED_CRAC: &[&str] = &[
    "CRaCAllowToSkipCheckpoint",
    "CRaCPauseOnCheckpointError",
    "CRaCHeapDumpOnCheckpointException",
    "CRaCDoThrowCheckpointException",
];

/// Options after which the remaining arguments belong to the program.
const ENDS_OPTIONS_WITH_VALUE: &[&str] = &["-jar", "-m", "--module"];

pub fn parse(args: Vec<OsString>) -> Result<Invocation, UsageError> {
    // CRaC: -XX:CheckCPUFeatures=skip is an experimental option.
    let (mut skip_asked, mut unlocked) = (false, false);
    let mut inv = Invocation {
        passthrough: true,
        ..Invocation::default()
    };
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let bytes = arg.as_bytes();
        let text = String::from_utf8_lossy(bytes);
        if !bytes.starts_with(b"-") || bytes == b"-" {
            // The main class, a source file or an @argfile: the rest is not ours to read.
            // (@argfiles are java's business and pass through.)
            let is_argfile = bytes.starts_with(b"@");
            if !is_argfile {
                inv.main_at = Some(inv.java_args.len());
            }
            inv.java_args.push(arg);
            if !is_argfile {
                inv.java_args.extend(iter);
                break;
            }
            continue;
        }
        if TAKES_VALUE.contains(&text.as_ref()) {
            inv.java_args.push(arg);
            inv.java_args.extend(iter.next());
            continue;
        }
        if ENDS_OPTIONS_WITH_VALUE.contains(&text.as_ref()) {
            inv.main_at = Some(inv.java_args.len());
            inv.java_args.push(arg);
            inv.java_args.extend(iter);
            break;
        }
        if let Some(xx) = text.strip_prefix("-XX:") {
            let name = xx.trim_start_matches(['+', '-']);
            let (name, value) = name
                .split_once('=')
                .map_or((name, None), |(n, v)| (n, Some(v)));
            if UNSUPPORTED_CRAC.contains(&name) {
                return Err(UsageError::Unsupported(format!("-XX:{xx}")));
            }
            // CRaC's CPU options have no CRaC prefix.
            let bad = |e: String| UsageError::BadValue(e);
            match (name, value) {
                ("CPUFeatures", Some(v)) => {
                    inv.passthrough = false;
                    inv.cpu_features = Some(crate::image::cpu::Features::parse(v).map_err(bad)?);
                    continue;
                }
                ("CheckCPUFeatures", Some(v)) => {
                    inv.passthrough = false;
                    let check = crate::image::cpu::Check::parse(v).map_err(bad)?;
                    skip_asked = check == crate::image::cpu::Check::Skip;
                    inv.check_cpu = Some(check);
                    continue;
                }
                ("UnlockExperimentalVMOptions", None) => {
                    // Also java's: passed on below.
                    unlocked = xx.starts_with('+');
                }
                ("CPUFeatures" | "CheckCPUFeatures", None) => {
                    return Err(UsageError::MissingValue(if name == "CPUFeatures" {
                        "-XX:CPUFeatures"
                    } else {
                        "-XX:CheckCPUFeatures"
                    }))
                }
                ("IgnoreCPUFeatures", None) => {
                    inv.passthrough = false;
                    if xx.starts_with('+') {
                        inv.check_cpu = Some(crate::image::cpu::Check::Skip);
                    }
                    continue;
                }
                ("ShowCPUFeatures", None) => {
                    inv.passthrough = false;
                    inv.show_cpu = xx.starts_with('+');
                    continue;
                }
                _ => {}
            }
        }
        // CRaC 17's older names, with the same meaning: -XX:CREngine= and
        // -XX:+CRPrintResourcesOnCheckpoint.
        let text = match old_crac_name(&text) {
            Some(today) => std::borrow::Cow::Owned(today),
            None => text,
        };
        if let Some(crac) = text.strip_prefix("-XX:").filter(|r| {
            let name = r.trim_start_matches(['+', '-']);
            name.starts_with("CRaC")
        }) {
            inv.passthrough = false;
            if let Some(switch) = crac.strip_prefix(['+', '-']) {
                match switch {
                    "CRaCPrintResourcesOnCheckpoint" => inv.print_resources = crac.starts_with('+'),
                    "CRaCVerifyImage" => inv.verify_image = crac.starts_with('+'),
                    "CRaCInspectJSON" => inv.inspect_json = crac.starts_with('+'),
                    "CRaCIgnoreRestoreIfUnavailable" => {
                        inv.ignore_restore_failure = crac.starts_with('+')
                    }
                    "CRaCResetStartTime" => inv.reset_start_time = Some(crac.starts_with('+')),
                    _ => return Err(UsageError::Unknown(format!("-XX:{crac}"))),
                }
                continue;
            }
            let (name, value) = match crac.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (crac, None),
            };
            let empty = value == Some("");
            let value = |flag: &'static str| -> Result<PathBuf, UsageError> {
                match value {
                    Some(v) if !v.is_empty() => {
                        std::str::from_utf8(bytes).map_err(|_| UsageError::NotUtf8(flag))?;
                        Ok(PathBuf::from(v))
                    }
                    _ => Err(UsageError::MissingValue(flag)),
                }
            };
            match name {
                "CRaCCheckpointTo" => inv.checkpoint_to = Some(value("-XX:CRaCCheckpointTo")?),
                "CRaCRestoreFrom" => inv.restore_from = Some(value("-XX:CRaCRestoreFrom")?),
                "CRaCShimJava" => inv.java = Some(value("-XX:CRaCShimJava")?),
                "CRaCEngine" => inv.engine = Some(value("-XX:CRaCEngine")?),
                // Empty means no options (CRaC's own test library passes one at restore).
                "CRaCEngineOptions" if empty => {}
                "CRaCEngineOptions" => {
                    let spec = value("-XX:CRaCEngineOptions")?;
                    inv.engine_options = crate::engine::EngineOptions::parse(
                        &spec.to_string_lossy(),
                    )
                    .map_err(|e| UsageError::BadValue(format!("-XX:CRaCEngineOptions: {e}")))?;
                }
                "CRaCInspectImage" => inv.inspect = Some(value("-XX:CRaCInspectImage")?),
                "CRaCImageLabels" => {
                    let v = value("-XX:CRaCImageLabels")?;
                    inv.labels = image_labels(&v.to_string_lossy(), "-XX:CRaCImageLabels")?;
                }
                "CRaCRequiredImageLabels" => {
                    let v = value("-XX:CRaCRequiredImageLabels")?;
                    inv.required_labels =
                        parse_labels(&v.to_string_lossy(), "-XX:CRaCRequiredImageLabels")?;
                }
                "CRaCIgnoredFileDescriptors" => {
                    let v = value("-XX:CRaCIgnoredFileDescriptors")?;
                    inv.ignored_fds = v
                        .to_string_lossy()
                        .split(',')
                        .filter(|e| !e.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                "CRaCMinPid" => {
                    let v = value("-XX:CRaCMinPid")?;
                    let n = v.to_string_lossy().parse::<u32>().map_err(|_| {
                        UsageError::BadValue(format!(
                            "-XX:CRaCMinPid needs a number, not {:?}",
                            v.display().to_string()
                        ))
                    })?;
                    inv.min_pid = Some(n);
                }
                _ => return Err(UsageError::Unknown(format!("-XX:{crac}"))),
            }
            continue;
        }
        match text.as_ref() {
            "--crac-help" => {
                inv.passthrough = false;
                inv.help = true;
                continue;
            }
            "--crac-version" => {
                inv.passthrough = false;
                inv.version = true;
                continue;
            }
            "--crac-man" => {
                inv.passthrough = false;
                inv.man = Some(
                    iter.next()
                        .map(|v| v.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                continue;
            }
            _ => {}
        }
        if let Some(file) = text.strip_prefix("-Djdk.crac.resource-policies=") {
            inv.policy_file = Some(PathBuf::from(file));
        }
        // CRaC's system properties for labels, besides the -XX: flags (also passed on).
        if let Some(spec) = text.strip_prefix("-Djdk.crac.labels=") {
            inv.passthrough = false;
            inv.labels = image_labels(spec, "-Djdk.crac.labels")?;
        }
        if let Some(spec) = text.strip_prefix("-Djdk.crac.require-labels=") {
            inv.passthrough = false;
            inv.required_labels = parse_labels(spec, "-Djdk.crac.require-labels")?;
        }
        if let Some(prop) = text.strip_prefix("-D") {
            if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
                inv.restore_properties.push(prop.to_string());
            }
        }
        inv.java_args.push(arg);
    }
    if skip_asked && !unlocked {
        return Err(UsageError::BadValue(
            "-XX:CheckCPUFeatures=skip is an experimental option, as in CRaC: add -XX:+UnlockExperimentalVMOptions".into(),
        ));
    }
    Ok(inv)
}

/// Labels to store, as CRaC takes them: `key=value`; `key=$NAME` takes the environment
/// variable NAME's value, and a bare `key` the value of `$key` (empty when unset).
fn image_labels(spec: &str, flag: &str) -> Result<Vec<(String, String)>, UsageError> {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    Ok(parse_labels(spec, flag)?
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                None => env(&k),
                Some(v) => match v.strip_prefix('$') {
                    Some(name) => env(name),
                    None => v,
                },
            };
            (k, value)
        })
        .collect())
}

/// `key=value,key2=value2` (a key alone has no value). Keys are plain words.
fn parse_labels(spec: &str, flag: &str) -> Result<Vec<(String, Option<String>)>, UsageError> {
    spec.split(',')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = match l.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (l, None),
            };
            let plain = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !plain {
                return Err(UsageError::BadValue(format!(
                    "{flag}: label {k:?} is not a plain name (letters, digits, . _ -)"
                )));
            }
            Ok((k.to_string(), v))
        })
        .collect()
}

/// An option under CRaC 17's older name, in today's name.
fn old_crac_name(text: &str) -> Option<String> {
    if let Some(v) = text.strip_prefix("-XX:CREngine=") {
        return Some(format!("-XX:CRaCEngine={v}"));
    }
    for sign in ['+', '-'] {
        if text == format!("-XX:{sign}CRPrintResourcesOnCheckpoint") {
            return Some(format!("-XX:{sign}CRaCPrintResourcesOnCheckpoint"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn plain_java_command_lines_pass_through_untouched() {
        for line in [
            &["-version"][..],
            &["--help"],
            &["-cp", "a b.jar", "Main", "x y"],
            &[
                "@opts.txt",
                "-jar",
                "x.jar",
                "-Dprop=1",
                "-XX:CRaCCheckpointTo=/not/ours",
            ],
            &[
                "--module-path",
                "mods",
                "-m",
                "app/app.Main",
                "-XX:CRaCRestoreFrom=x",
            ],
            &["Main", "--crac-help"],
        ] {
            let inv = parse(args(line)).unwrap();
            assert!(inv.passthrough, "{line:?}");
            assert_eq!(inv.java_args, args(line));
        }
    }

    #[test]
    fn crac_options_are_taken_out() {
        let inv = parse(args(&[
            "-Xmx64m",
            "-XX:CRaCCheckpointTo=/tmp/cp",
            "-cp",
            "-XX:CRaCRestoreFrom=x",
            "Main",
            "-XX:CRaCShimJava=y",
        ]))
        .unwrap();
        assert!(!inv.passthrough);
        assert_eq!(inv.checkpoint_to, Some(PathBuf::from("/tmp/cp")));
        assert_eq!(inv.restore_from, None, "a -cp value is not an option");
        assert_eq!(
            inv.java_args,
            args(&[
                "-Xmx64m",
                "-cp",
                "-XX:CRaCRestoreFrom=x",
                "Main",
                "-XX:CRaCShimJava=y"
            ])
        );
    }

    #[test]
    fn crac_17_names_and_an_empty_engine_options_are_taken() {
        let inv = parse(args(&[
            "-XX:CREngine=criu",
            "-XX:+CRPrintResourcesOnCheckpoint",
            "-XX:CRaCEngineOptions=",
            "-XX:CRaCCheckpointTo=/tmp/cp",
            "Main",
        ]))
        .unwrap();
        assert_eq!(inv.engine, Some(PathBuf::from("criu")));
        assert!(inv.print_resources);
        assert_eq!(inv.engine_options, crate::engine::EngineOptions::default());
        assert_eq!(inv.java_args, args(&["Main"]));
    }

    #[test]
    fn labels_as_crac_takes_them() {
        std::env::set_var("CRAC_SHIM_TEST_LABEL", "from-env");
        std::env::set_var("flavour", "mint");
        let inv = parse(args(&[
            "-Djdk.crac.labels=a=plain,b=$CRAC_SHIM_TEST_LABEL,flavour,c=$CRAC_SHIM_UNSET_X",
            "-XX:CRaCCheckpointTo=/tmp/cp",
            "Main",
        ]))
        .unwrap();
        assert_eq!(
            inv.labels,
            vec![
                ("a".to_string(), "plain".to_string()),
                ("b".to_string(), "from-env".to_string()),
                ("flavour".to_string(), "mint".to_string()),
                ("c".to_string(), String::new()),
            ]
        );
        assert_eq!(
            inv.java_args,
            args(&[
                "-Djdk.crac.labels=a=plain,b=$CRAC_SHIM_TEST_LABEL,flavour,c=$CRAC_SHIM_UNSET_X",
                "Main"
            ])
        );
        let inv = parse(args(&[
            "-XX:CRaCRestoreFrom=/tmp/cp",
            "-Djdk.crac.require-labels=foo=goo",
        ]))
        .unwrap();
        assert_eq!(
            inv.required_labels,
            vec![("foo".to_string(), Some("goo".to_string()))]
        );
    }

    #[test]
    fn skipping_the_cpu_check_is_experimental() {
        assert!(parse(args(&[
            "-XX:CheckCPUFeatures=skip",
            "-XX:CRaCRestoreFrom=/x"
        ]))
        .is_err());
        let inv = parse(args(&[
            "-XX:+UnlockExperimentalVMOptions",
            "-XX:CheckCPUFeatures=skip",
            "-XX:CRaCRestoreFrom=/x",
        ]))
        .unwrap();
        assert_eq!(inv.check_cpu, Some(crate::image::cpu::Check::Skip));
        assert_eq!(inv.java_args, args(&["-XX:+UnlockExperimentalVMOptions"]));
    }

    #[test]
    fn resource_options() {
        let inv = parse(args(&[
            "-XX:+CRaCPrintResourcesOnCheckpoint",
            "-Djdk.crac.resource-policies=/p",
            "Main",
        ]))
        .unwrap();
        assert!(inv.print_resources);
        assert_eq!(inv.policy_file, Some(PathBuf::from("/p")));
        assert_eq!(
            inv.java_args,
            args(&["-Djdk.crac.resource-policies=/p", "Main"])
        );
        assert!(parse(args(&["-XX:+CRaCNoSuchSwitch"])).is_err());
    }

    #[test]
    fn restore_collects_properties() {
        let inv = parse(args(&["-XX:CRaCRestoreFrom=/tmp/cp", "-Da=1", "-Db=x=y"])).unwrap();
        assert_eq!(inv.restore_from, Some(PathBuf::from("/tmp/cp")));
        assert_eq!(inv.restore_properties, ["a=1", "b=x=y"]);
    }

    #[test]
    fn bad_crac_options_are_refused() {
        assert_eq!(
            parse(args(&["-XX:CRaCCheckpointTo="])),
            Err(UsageError::MissingValue("-XX:CRaCCheckpointTo"))
        );
        assert_eq!(
            parse(args(&["-XX:CRaCRestoreFrom"])),
            Err(UsageError::MissingValue("-XX:CRaCRestoreFrom"))
        );
        assert!(matches!(
            parse(args(&["-XX:+CRaCBogus"])),
            Err(UsageError::Unknown(_))
        ));
        assert!(matches!(
            parse(args(&["-XX:+CRaCAllowToSkipCheckpoint", "Main"])),
            Err(UsageError::Unsupported(o)) if o == "-XX:+CRaCAllowToSkipCheckpoint"
        ));
        assert!(matches!(
            parse(args(&["-XX:-CRaCDoThrowCheckpointException"])),
            Err(UsageError::Unsupported(_))
        ));
        // Not CRaC's: java's own business.
        assert!(
            parse(args(&["-XX:+UseSerialGC", "Main"]))
                .unwrap()
                .passthrough
        );
    }

    #[test]
    fn image_labels_cpu_features_and_inspection() {
        let inv = parse(args(&[
            "-XX:CRaCImageLabels=app=shop,version=2.1",
            "-XX:CPUFeatures=generic",
            "Main",
        ]))
        .unwrap();
        assert_eq!(
            inv.labels,
            [
                ("app".into(), "shop".into()),
                ("version".into(), "2.1".into())
            ]
        );
        assert_eq!(inv.cpu_features, Some(crate::image::cpu::Features::Generic));
        let inv = parse(args(&[
            "-XX:CRaCRestoreFrom=/cp",
            "-XX:CRaCRequiredImageLabels=app=shop,canary",
            "-XX:CheckCPUFeatures=exact",
            "-XX:+CRaCVerifyImage",
        ]))
        .unwrap();
        assert_eq!(
            inv.required_labels,
            [("app".into(), Some("shop".into())), ("canary".into(), None)]
        );
        assert_eq!(inv.check_cpu, Some(crate::image::cpu::Check::Exact));
        assert!(inv.verify_image);
        let inv = parse(args(&["-XX:CRaCInspectImage=/cp", "-XX:+CRaCInspectJSON"])).unwrap();
        assert_eq!(inv.inspect, Some(PathBuf::from("/cp")));
        assert!(inv.inspect_json && !inv.passthrough);
        assert!(parse(args(&["-XX:CheckCPUFeatures=maybe"])).is_err());
        assert!(parse(args(&["-XX:CRaCImageLabels=a b=1"])).is_err());
        assert_eq!(
            parse(args(&["-XX:+IgnoreCPUFeatures"])).unwrap().check_cpu,
            Some(crate::image::cpu::Check::Skip)
        );
    }

    #[test]
    fn restore_takes_a_new_main_and_a_next_checkpoint_directory() {
        let inv = parse(args(&[
            "-XX:CRaCRestoreFrom=/cp",
            "-XX:CRaCCheckpointTo=/next",
            "-Dx=1",
            "NewMain",
            "a",
            "-b",
        ]))
        .unwrap();
        assert_eq!(inv.checkpoint_to, Some(PathBuf::from("/next")));
        assert_eq!(inv.main_at, Some(1));
        assert_eq!(&inv.java_args[1..], args(&["NewMain", "a", "-b"]));
        let inv = parse(args(&["-XX:CRaCIgnoredFileDescriptors=5,/var/x,", "Main"])).unwrap();
        assert_eq!(inv.ignored_fds, ["5", "/var/x"]);
        assert_eq!(parse(args(&["-cp", "x", "Main"])).unwrap().main_at, Some(2));
        assert_eq!(parse(args(&["-jar", "x.jar"])).unwrap().main_at, Some(0));
        assert_eq!(parse(args(&["-Da=b"])).unwrap().main_at, None);
    }

    #[test]
    fn every_crac_option_is_documented() {
        let help = crate::doc::help(&crate::doc::CRAC_JAVA);
        for (arg, name) in [
            ("-XX:CRaCCheckpointTo=/d", "CRaCCheckpointTo"),
            ("-XX:CRaCRestoreFrom=/d", "CRaCRestoreFrom"),
            ("-XX:CRaCShimJava=/j", "CRaCShimJava"),
            ("-XX:CRaCEngine=criu", "CRaCEngine="),
            ("-XX:CRaCEngineOptions=lazy_pages=true", "lazy_pages"),
            ("-XX:CRaCMinPid=200", "CRaCMinPid"),
            (
                "-XX:CRaCIgnoredFileDescriptors=5",
                "CRaCIgnoredFileDescriptors",
            ),
            ("-XX:CRaCImageLabels=a=b", "CRaCImageLabels"),
            ("-XX:CRaCRequiredImageLabels=a", "CRaCRequiredImageLabels"),
            ("-XX:CPUFeatures=generic", "CPUFeatures="),
            ("-XX:CheckCPUFeatures=exact", "CheckCPUFeatures"),
            ("-XX:+ShowCPUFeatures", "ShowCPUFeatures"),
            ("-XX:+CRaCVerifyImage", "CRaCVerifyImage"),
            ("-XX:CRaCInspectImage=/d", "CRaCInspectImage"),
            (
                "-XX:+CRaCIgnoreRestoreIfUnavailable",
                "CRaCIgnoreRestoreIfUnavailable",
            ),
            (
                "-XX:+CRaCPrintResourcesOnCheckpoint",
                "CRaCPrintResourcesOnCheckpoint",
            ),
        ] {
            assert!(parse(args(&[arg, "Main"])).is_ok(), "{arg} parses");
            assert!(help.contains(name), "{name} is in --crac-help");
        }
    }
}
