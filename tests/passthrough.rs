//! Without CRaC options crac-java is java: same argv, stdio, exit code, and the same process.

mod support;
use std::process::{Command, Stdio};
use support::*;

fn args_of(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("arg=[")?.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

#[test]
fn argv_reaches_java_untouched_and_crac_java_is_replaced() {
    let tmp = TempDir::new("argv");
    let argfile = tmp.join("opts");
    std::fs::write(
        &argfile,
        format!("-cp {}\n-Dprop=\"from argfile\"\n", classes().display()),
    )
    .unwrap();
    let mut c = crac_java();
    c.arg(format!("@{}", argfile.display()))
        .arg("-Dcode=3")
        .args([
            "Args",
            "two words",
            "-XX:CRaCCheckpointTo=/not/an/option/here",
            "-Dx=y",
            "",
        ]);
    let mut p = Proc::spawn(c);
    let status = p.wait();
    let out = p.out.all();
    assert_eq!(status.code(), Some(3), "java's exit code");
    assert_eq!(
        out[0],
        format!("pid={}", p.pid),
        "java runs in crac-java's process (exec)"
    );
    assert_eq!(
        args_of(&out.join("\n")),
        [
            "two words",
            "-XX:CRaCCheckpointTo=/not/an/option/here",
            "-Dx=y",
            ""
        ]
    );
    assert!(out.contains(&"prop=from argfile".to_string()));
    assert_eq!(p.err.all(), ["to stderr"]);
}

#[test]
fn jar_with_program_options_after_it() {
    let tmp = TempDir::new("jar");
    let jar = tmp.join("args.jar");
    let manifest = tmp.join("manifest.txt");
    std::fs::write(&manifest, "Main-Class: Args\n").unwrap();
    let jar_tool = default_java().with_file_name("jar");
    let st = Command::new(jar_tool)
        .arg("cfm")
        .arg(&jar)
        .arg(&manifest)
        .arg("-C")
        .arg(classes())
        .arg("Args.class")
        .status()
        .unwrap();
    assert!(st.success());
    let mut c = crac_java();
    c.arg("-jar")
        .arg(&jar)
        .args(["-Dprop=program-arg", "--help", "-version"]);
    let o = run(c);
    assert_eq!(o.code, Some(0));
    assert_eq!(
        args_of(&o.stdout),
        ["-Dprop=program-arg", "--help", "-version"]
    );
    assert!(
        o.stdout.contains("prop=null"),
        "a -D after the jar is a program argument"
    );
}

#[test]
fn module_path_and_stdin() {
    let tmp = TempDir::new("module");
    let src = tmp.join("src/app/app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(tmp.join("src/app/module-info.java"), "module app {}\n").unwrap();
    std::fs::write(
        src.join("Main.java"),
        "package app; public class Main { public static void main(String[] a) throws Exception { \
         System.out.println(\"module \" + Main.class.getModule().getName() + \" \" + String.join(\",\", a) + \" \" + \
         new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine()); } }\n",
    )
    .unwrap();
    let mods = tmp.join("mods");
    let javac = default_java().with_file_name("javac");
    let st = Command::new(javac)
        .arg("-d")
        .arg(mods.join("app"))
        .arg(tmp.join("src/app/module-info.java"))
        .arg(src.join("Main.java"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut c = crac_java();
    c.arg("--module-path")
        .arg(&mods)
        .args(["-m", "app/app.Main", "a b", "c"])
        .stdin(Stdio::piped());
    let mut p = Proc::spawn(c);
    p.write_stdin("line from stdin\n");
    assert_eq!(p.wait().code(), Some(0));
    assert_eq!(p.out.all(), ["module app a b,c line from stdin"]);
}

#[test]
fn version_and_help_are_javas() {
    let mut c = crac_java();
    c.arg("-version");
    let ours = run(c);
    let theirs = run({
        let mut c = Command::new(default_java());
        c.arg("-version");
        c
    });
    assert_eq!((ours.code, &ours.stderr), (theirs.code, &theirs.stderr));
    let mut c = crac_java();
    c.arg("--help");
    let help = run(c);
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("Usage: java"), "{}", help.stdout);
    let mut c = crac_java();
    c.arg("-XX:+NoSuchJvmOption").arg("-version");
    assert_eq!(run(c).code, Some(1), "java's own failure status");
}

#[test]
fn signals_reach_java_directly() {
    let mut c = crac_java();
    c.arg("-cp").arg(classes()).args(["Ticker", "hup"]);
    let mut p = Proc::spawn(c);
    p.out.wait_for("a tick", |l| tick(l).is_some());
    p.signal(libc::SIGHUP);
    p.out
        .wait_for("SIGHUP handled by the JVM itself", |l| l == "got HUP");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait().code(), Some(143));
}

#[test]
fn real_java_is_found_and_never_ourselves() {
    let tmp = TempDir::new("lookup");
    // crac-java installed as `java` in front of the real one on PATH.
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(CRAC_JAVA, bin.join("java")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        default_java().parent().unwrap().display()
    );
    let run_with = |java_home: Option<&str>, extra: &[&str]| {
        let mut c = Command::new(bin.join("java"));
        c.env_remove("CRAC_SHIM_JAVA")
            .env("PATH", &path)
            .env_remove("JAVA_HOME");
        if let Some(h) = java_home {
            c.env("JAVA_HOME", h);
        }
        c.args(extra).arg("-version");
        run(c)
    };
    let o = run_with(None, &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("openjdk version"));
    // JAVA_HOME wins over PATH.
    if let Some(other) = other_jdks().first() {
        let home = home_of(other);
        let o = run_with(Some(&home), &[]);
        let theirs = run({
            let mut c = Command::new(other);
            c.arg("-version");
            c
        });
        assert_eq!(o.stderr, theirs.stderr);
    }
    // An explicit choice that is crac-java itself is refused with one line.
    let o = run_with(
        None,
        &[&format!("-XX:CRaCShimJava={}", bin.join("java").display())],
    );
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("crac-java itself") && o.stderr.lines().count() == 1,
        "{}",
        o.stderr
    );
}
