//! Images that travel: a manifest of sizes and checksums, CPU features, labels, a look
//! inside, and the environment a restored copy shows.

mod support;
use crac_shim::image::manifest;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn restore_with(image: &Path, extra: &[&str]) -> Command {
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()))
        .args(extra);
    c
}

fn one_line_failure(c: Command, needles: &[&str]) {
    let o = run(c);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "one line: {}", o.stderr);
    for n in needles {
        assert!(o.stderr.contains(n), "{n:?} in {}", o.stderr);
    }
}

fn pages_files(image: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(image)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect();
    v.sort_by_key(|(_, len)| *len);
    v
}

/// A file cut short (the heap's pages, and the shared-memory pages CRIU would restore
/// silently), a missing file and a flipped byte are named before CRIU runs; the image is
/// left as it was and nothing is started.
#[test]
fn a_damaged_image_is_named_before_criu_runs() {
    require_checkpoint!();
    let tmp = TempDir::new("damaged");
    let image = tmp.join("image");
    ticker_image(&image, &[], 1);
    let pages = pages_files(&image);
    assert!(
        pages.len() >= 2,
        "heap pages and shared-memory pages: {pages:?}"
    );
    for (file, len) in [pages.first().unwrap(), pages.last().unwrap()] {
        let saved = std::fs::read(file).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.set_len(4096.min(len / 2)).unwrap();
        drop(f);
        one_line_failure(
            restore_with(&image, &[]),
            &[
                &file.display().to_string(),
                &format!("where the checkpoint wrote {len}"),
            ],
        );
        std::fs::write(file, saved).unwrap();
    }

    let core = std::fs::read_dir(&image)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("core-")
        })
        .unwrap();
    let saved = std::fs::read(&core).unwrap();
    std::fs::remove_file(&core).unwrap();
    one_line_failure(
        restore_with(&image, &[]),
        &[&core.display().to_string(), "is missing"],
    );
    std::fs::write(&core, saved).unwrap();

    let (big, len) = pages.last().unwrap().clone();
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[len as usize / 2] ^= 0x20;
    std::fs::write(&big, &bytes).unwrap();
    one_line_failure(
        restore_with(&image, &["-XX:+CRaCVerifyImage"]),
        &[&big.display().to_string(), "does not match its checksum"],
    );
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCInspectImage={}", image.display()));
    let o = run(c);
    assert_eq!(o.code, Some(1), "inspect verifies checksums: {}", o.stdout);
    assert!(
        o.stdout.contains("FAIL files:") && o.stdout.contains("Verdict: not restorable here"),
        "{}",
        o.stdout
    );
    bytes[len as usize / 2] ^= 0x20;
    std::fs::write(&big, &bytes).unwrap();

    // Mended, the same image restores and goes on.
    let mut c = restore_with(&image, &["-XX:+CRaCVerifyImage"]);
    c.stdin(std::process::Stdio::piped());
    let restored = Proc::spawn(c);
    restored
        .out
        .wait_for("ticks after restore", |l| tick(l).is_some());
}

/// CRaC's labels: stored at checkpoint, required at restore.
#[test]
fn labels_are_stored_and_required() {
    require_checkpoint!();
    let tmp = TempDir::new("labels");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.arg("-XX:CRaCImageLabels=app=shop,version=2.1");
    let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    one_line_failure(
        restore_with(
            &image,
            &["-XX:CRaCRequiredImageLabels=app=shop,version=2.2"],
        ),
        &["required label version=2.2", "it has version=2.1"],
    );
    one_line_failure(
        restore_with(&image, &["-XX:CRaCRequiredImageLabels=region"]),
        &["required label region", "no such label"],
    );
    let restored = Proc::spawn(restore_with(
        &image,
        &["-XX:CRaCRequiredImageLabels=app=shop,version"],
    ));
    restored
        .out
        .wait_for("ticks after restore", |l| tick(l).is_some());
}

/// -XX:CPUFeatures=generic starts the JVM (and glibc) restricted, and the image says so; a
/// CPU lacking what an image may use is refused by name (simulated through the recorded
/// features: the test machine has one CPU) unless the check is skipped.
#[test]
fn cpu_features_are_recorded_and_checked() {
    require_checkpoint!();
    let tmp = TempDir::new("cpu");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.arg("-XX:CPUFeatures=generic");
    let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", app.pid)).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("-XX:UseAVX=0") && cmdline.contains("-XX:-UsePopCountInstruction"),
        "{cmdline}"
    );
    let environ =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/environ", app.pid)).unwrap())
            .into_owned();
    assert!(
        environ.contains("GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2"),
        "glibc restricted too"
    );
    checkpoint_ok(app.pid);
    app.wait();
    let meta_path = image.join("crac-shim.meta");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    assert!(meta.contains("cpu_mode=generic\n"), "{meta}");
    let jvm_line = meta
        .lines()
        .find(|l| l.starts_with("cpu_jvm="))
        .unwrap()
        .to_string();
    assert!(
        jvm_line.contains("sse2") && !jvm_line.contains("avx"),
        "{jvm_line}"
    );

    // The image as if made on a CPU with a feature this one lacks.
    let simulated = "simulated_avx1024";
    let flags_line = meta
        .lines()
        .find(|l| l.starts_with("cpu_flags="))
        .unwrap()
        .to_string();
    let edited = meta
        .replace(&jvm_line, &format!("{jvm_line} {simulated}"))
        .replace(&flags_line, &format!("{flags_line} {simulated}"));
    std::fs::write(&meta_path, edited).unwrap();
    manifest::write(&image).unwrap();
    one_line_failure(
        restore_with(&image, &[]),
        &[
            "cannot be restored on this CPU",
            simulated,
            "-XX:CPUFeatures=generic",
            "-XX:CheckCPUFeatures=skip",
        ],
    );
    one_line_failure(
        restore_with(&image, &["-XX:CheckCPUFeatures=exact"]),
        &[
            "cannot be restored on this CPU",
            simulated,
            "same kind of CPU",
        ],
    );
    let restored = Proc::spawn(restore_with(
        &image,
        &[
            "-XX:+UnlockExperimentalVMOptions",
            "-XX:CheckCPUFeatures=skip",
        ],
    ));
    restored
        .out
        .wait_for("ticks after restore", |l| tick(l).is_some());
}

/// The look inside, on JDK 17 and every other JDK here: what and where, labels, the
/// environment's names (never values), descriptors, and each check's verdict; also as JSON.
/// A restored copy's /proc/PID/environ shows only what its restore gave it.
#[test]
fn inspect_shows_what_is_inside_and_secrets_stay_out_of_sight() {
    require_checkpoint!();
    let mut jdks = vec![default_java()];
    jdks.extend(other_jdks());
    for java in jdks {
        let tmp = TempDir::new("inspect");
        let image = tmp.join("image");
        let mut cmd = crac_java();
        cmd.env("CRAC_SHIM_JAVA", &java)
            .env("DB_PASSWORD", "s3cret-value")
            .arg("-XX:CRaCImageLabels=app=shop");
        let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
        app.out.wait_for("a tick", |l| tick(l).is_some());
        checkpoint_ok(app.pid);
        app.wait();
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCInspectImage={}", image.display()));
        let o = run(c);
        assert_eq!(
            o.code,
            Some(0),
            "{}: {} {}",
            java.display(),
            o.stdout,
            o.stderr
        );
        for needle in [
            "labels       app=shop",
            "DB_PASSWORD",
            "Ticker",
            "(jdk-file, keep)",
            "ok   files:",
            "ok   CPU features (compatible)",
            "Verdict: restorable here",
        ] {
            assert!(
                o.stdout.contains(needle),
                "{}: {needle:?} in {}",
                java.display(),
                o.stdout
            );
        }
        assert!(!o.stdout.contains("s3cret-value"), "values never shown");
        let home = home_of(&java);
        assert!(o.stdout.contains(&home), "{}", o.stdout);
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCInspectImage={}", image.display()))
            .arg("-XX:+CRaCInspectJSON");
        let o = run(c);
        assert_eq!(o.code, Some(0));
        let json = o.stdout.trim();
        assert!(
            json.starts_with('{') && json.ends_with('}') && json.lines().count() == 1,
            "{json}"
        );
        for needle in [
            "\"restorable\":true",
            "\"labels\":{\"app\":\"shop\"}",
            "\"DB_PASSWORD\"",
            "\"check\":\"files\",\"ok\":true",
        ] {
            assert!(json.contains(needle), "{needle} in {json}");
        }

        // Restored without the secret, the copy does not show it in /proc/PID/environ.
        let mut c = restore_with(&image, &[]);
        c.env_remove("DB_PASSWORD").env("RESTORED_BY", "test");
        let restored = Proc::spawn(c);
        restored
            .out
            .wait_for("ticks after restore", |l| tick(l).is_some());
        let jvm = *restored.descendants().last().unwrap();
        // The agent scrubs it when the launcher's greeting arrives, while the program's own
        // threads may already run.
        let deadline = std::time::Instant::now() + TIMEOUT;
        let environ = loop {
            let environ =
                String::from_utf8_lossy(&std::fs::read(format!("/proc/{jvm}/environ")).unwrap())
                    .into_owned();
            if !environ.contains("DB_PASSWORD") || std::time::Instant::now() > deadline {
                break environ;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            !environ.contains("s3cret-value") && environ.contains("HOME="),
            "{}: {environ:?}",
            java.display()
        );
    }
}

fn image_mib(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>()
        >> 20
}

/// The image of a JVM (`collector`, `-Xmx1g`) that keeps 100 MiB live after making 1600 MiB
/// of garbage holds under 300 MiB.
fn shrinks_before_the_dump(collector: &str) {
    require_checkpoint!();
    require_api!();
    let tmp = TempDir::new("shrink");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.args([collector, "-Xmx1g"])
        .arg(format!("-XX:CRaCCheckpointTo={}", image.display()))
        .arg("-cp")
        .arg(classes())
        .args(["Garbage", "100", "400"]);
    let mut app = Proc::spawn(cmd);
    app.out.wait_for("ready", |l| l == "ready");
    checkpoint_ok(app.pid);
    app.wait();
    let mib = image_mib(&image);
    assert!(mib < 300, "the image holds {mib} MiB");
}

/// ZGC gives freed heap back only after ZUncommitDelay: crac-java makes it short unless the
/// user chose one, the checkpoint waits for it, and the image holds the live data rather than
/// every page the heap ever used (without the wait, every page of a heap grown to its 1 GiB
/// limit went in).
#[test]
fn a_zgc_heap_shrinks_before_the_dump() {
    shrinks_before_the_dump("-XX:+UseZGC");
}

/// G1 gives back what its full GC freed in the background, some 100 ms after the GC: the
/// checkpoint waits for it, and the image holds the live data rather than the garbage's pages
/// (528 MiB without the wait).
#[test]
fn a_g1_heap_shrinks_before_the_dump() {
    shrinks_before_the_dump("-XX:+UseG1GC");
}
