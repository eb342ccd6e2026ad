//! The benchmark is not a test, but it must not rot: one quick run of one workload, end to end.

mod support;
use std::process::Command;
use support::*;

#[test]
fn the_benchmark_runs_end_to_end() {
    require_checkpoint!();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let release = root.join("target/release");
    skip_unless!(
        release.join("crac-java").is_file() && release.join("criu").exists(),
        "the release build is missing: run scripts/setup"
    );
    skip_unless!(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3 is not installed"
    );
    let tmp = TempDir::new("bench");
    let mut c = Command::new(root.join("scripts/bench"));
    c.arg("--quick").arg("--out").arg(tmp.path());
    let o = run(c);
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);
    let md = std::fs::read_to_string(tmp.join("results.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| demo HttpServer |"))
        .expect("a result row");
    assert!(!row.contains("n/a |") || !row.contains("failed"), "{md}");
    let svg = std::fs::read_to_string(tmp.join("time-to-ready.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("demo HttpServer"));
    assert!(!md.contains("failed:"), "{md}");

    // The two focused modes: start-up cost part by part, and lazy against normal restores
    // (which checks the heap's checksum after each restore).
    for args in [
        &["--startup", "2"][..],
        &["--heap", "16", "--runs", "1"],
        &["--verify", "16", "--runs", "1"],
        &["--cpu-features", "--runs", "1"],
    ] {
        let mut c = Command::new(root.join("scripts/bench"));
        c.args(args);
        let o = run(c);
        assert_eq!(o.code, Some(0), "{args:?}: {}\n{}", o.stdout, o.stderr);
        assert!(
            [
                "| crac-java",
                "| lazy_pages=true |",
                "| -XX:+CRaCVerifyImage |",
                "| -XX:CPUFeatures=generic |"
            ]
            .iter()
            .any(|row| o.stdout.contains(row)),
            "{}",
            o.stdout
        );
    }
}
