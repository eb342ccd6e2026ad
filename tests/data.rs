//! Nothing lost, nothing rolled back: writes in place stay in place through checkpoints, a
//! change of the same size in the same second is still a change, and a dump request of any
//! size arrives whole.

mod support;
use std::path::PathBuf;
use std::process::Command;
use support::*;

fn policy(tmp: &TempDir, rule: &str) -> std::path::PathBuf {
    let p = tmp.join("policy.yaml");
    std::fs::write(&p, rule).unwrap();
    p
}

fn keep_running_checkpoint(pid: u32) {
    let mut c = Command::new(CRAC_JCMD);
    c.args([&pid.to_string(), "JDK.checkpoint", "keep_running=true"]);
    let o = run(c);
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
}

#[test]
fn a_record_rewritten_in_place_stays_in_place_through_checkpoints() {
    require_checkpoint!();
    let tmp = TempDir::new("inplace");
    let image = tmp.join("image");
    let record = tmp.join("record.dat");
    let rules = format!(
        "type: file\npath: {}\naction: reopen\nallowChanges: true\n",
        record.display()
    );
    let mut app = start_files(
        &tmp,
        &image,
        Some(&rules),
        &format!("rewrite={}", record.display()),
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    let size = || std::fs::metadata(&record).unwrap().len();
    for round in 1..=3 {
        keep_running_checkpoint(app.pid);
        let n = ticks(&app.out.snapshot()).last().copied().unwrap();
        app.out
            .wait_for("ticks after", |l| tick(l).is_some_and(|t| t > n + 3));
        assert_eq!(size(), 16, "after keep_running checkpoint {round}");
    }
    checkpoint_ok(app.pid);
    let last = *ticks(&app.out.all()).last().unwrap();
    app.wait();
    let restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t > last + 3)
    });
    assert_eq!(size(), 16, "after the restore");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.starts_with("record ") && text.ends_with('\n'),
        "{text:?}"
    );
}

#[test]
fn a_change_of_the_same_size_in_the_same_second_is_caught() {
    require_checkpoint!();
    let tmp = TempDir::new("samesize");
    let image = tmp.join("image");
    let data = tmp.join("data.txt");
    // The strict rule (crac-shim's key): a changed file refuses the restore.
    let rules = format!(
        "type: file\npath: {}\naction: reopen\nallowChanges: false\n",
        data.display()
    );
    let mut app = start_files(
        &tmp,
        &image,
        Some(&rules),
        &format!("write={}", data.display()),
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 3));
    checkpoint_ok(app.pid);
    app.wait();
    // Someone rewrites one byte: same size, and the modification time put back as it was
    // (to the nanosecond: as fast as a program writing within the same second, or a copy
    // made with cp -p).
    let before = std::fs::metadata(&data).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] = b'L';
    std::fs::write(&data, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(before)
        .unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    one_line_error(
        &o,
        &[&format!(
            "{} was written after the checkpoint",
            data.display()
        )],
    );
    assert_eq!(std::fs::read(&data).unwrap(), bytes, "nothing touched");
}

/// An empty zip archive (its end-of-central-directory record): a valid class path entry.
const EMPTY_JAR: [u8; 22] = [
    b'P', b'K', 5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn three_hundred_jars_on_long_paths_arrive_whole() {
    require_checkpoint!();
    let tmp = TempDir::new("jars");
    let image = tmp.join("image");
    // Long paths, as a big distribution's lib directory: about 80 KiB of jar paths, which the
    // JVM keeps open (it searches each for the main class, found last).
    let lib = tmp.join(&"a-rather-long-directory-name-of-libraries-".repeat(5));
    std::fs::create_dir_all(&lib).unwrap();
    let jars: Vec<std::path::PathBuf> = (0..300)
        .map(|i| {
            let j = lib.join(format!(
                "some-library-with-a-descriptive-name-{i:03}-1.2.3.jar"
            ));
            std::fs::write(&j, EMPTY_JAR).unwrap();
            j
        })
        .collect();
    let class_path = jars
        .iter()
        .map(|j| j.display().to_string())
        .chain(std::iter::once(classes().display().to_string()))
        .collect::<Vec<_>>()
        .join(":");
    let mut cmd = crac_java();
    cmd.arg(format!("-XX:CRaCCheckpointTo={}", image.display()))
        .arg("-Xmx64m")
        .arg("-cp")
        .arg(&class_path)
        .arg("Ticker")
        .stdin(std::process::Stdio::piped());
    let mut app = Proc::spawn(cmd);
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    let last = *ticks(&app.out.all()).last().unwrap();
    app.wait();
    let meta = std::fs::read_to_string(image.join("crac-shim.meta")).unwrap();
    let recorded = meta
        .lines()
        .filter(|l| l.starts_with("check_file=") && l.contains("some-library-with"))
        .count();
    assert_eq!(recorded, 300, "every jar's record arrived");
    let restored = restore(&image);
    restored
        .out
        .wait_for("ticks after restore", |l| tick(l).is_some_and(|t| t > last));
}

/// The CRaC article's program: a writer left open on `/tmp/test/CRACTest/out.txt` (under the
/// JVM's temp directory, but not a name the JDK made up) is the program's data: the checkpoint
/// is refused naming it, and the JVM goes on.
#[test]
fn a_data_file_under_the_temp_directory_is_refused_and_the_jvm_goes_on() {
    require_checkpoint!();
    let tmp = TempDir::new("article");
    let image = tmp.join("image");
    let jvm_tmp = tmp.join("jvm-tmp");
    let out = jvm_tmp.join("test/CRACTest/out.txt");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!("-Djava.io.tmpdir={}", jvm_tmp.display()));
    let app =
        start_checkpointable_with(cmd, &image, "Files", &[&format!("write={}", out.display())]);
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    let o = checkpoint(app.pid);
    assert_eq!(o.code, Some(1), "{} {}", o.stdout, o.stderr);
    let said = format!("{}{}", o.stdout, o.stderr);
    assert!(
        said.contains(&format!("CheckpointOpenFileException: {}", out.display())),
        "{said}"
    );
    let n = ticks(&app.out.snapshot()).last().copied().unwrap();
    app.out
        .wait_for("the JVM going on", |l| tick(l).is_some_and(|t| t > n + 3));
    assert!(!image.join("crac-shim.meta").exists());
}

/// A temp file the JDK made, edited by someone after the checkpoint: the restored copy keeps
/// its own contents (in memory) and says so; the edit and the file's mode stay.
#[test]
fn an_edit_to_a_temp_file_after_the_checkpoint_is_never_undone() {
    require_checkpoint!();
    let tmp = TempDir::new("tempedit");
    let image = tmp.join("image");
    let jvm_tmp = tmp.join("jvm-tmp");
    std::fs::create_dir(&jvm_tmp).unwrap();
    // Named as File.createTempFile("job", ".txt") names it.
    let scratch = jvm_tmp.join("job3316592117488201127.txt");
    let mut cmd = crac_java();
    cmd.arg(format!("-Djava.io.tmpdir={}", jvm_tmp.display()));
    let mut app = start_checkpointable_with(
        cmd,
        &image,
        "Files",
        &[&format!("write={}", scratch.display())],
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    let last = *ticks(&app.out.all()).last().unwrap();
    app.wait();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&scratch)
        .unwrap()
        .write_all(b"the operator's note\n")
        .unwrap();
    std::fs::set_permissions(
        &scratch,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let edited = std::fs::read(&scratch).unwrap();
    let restored = restore(&image);
    restored.out.wait_for("ticks after restore", |l| {
        tick(l).is_some_and(|t| t > last + 3)
    });
    restored.err.wait_for("the copy says so", |l| {
        l.contains("changed since the checkpoint")
    });
    assert_eq!(std::fs::read(&scratch).unwrap(), edited, "the edit stays");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&scratch).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o640, "the mode stays");
}

/// A policy rule wins over the temp-file guess: a `reopen` rule for a file the JDK made in the
/// temp directory makes it data, checked at restore like any other.
#[test]
fn a_reopen_rule_under_the_temp_directory_wins() {
    require_checkpoint!();
    let tmp = TempDir::new("tempruled");
    let image = tmp.join("image");
    let jvm_tmp = tmp.join("jvm-tmp");
    std::fs::create_dir(&jvm_tmp).unwrap();
    let data = jvm_tmp.join("data4405286012235946190.bin");
    let rule = policy(
        &tmp,
        &format!(
            "type: file\npath: {}\naction: reopen\nallowChanges: false\n",
            data.display()
        ),
    );
    let mut cmd = crac_java();
    cmd.arg(format!("-Djava.io.tmpdir={}", jvm_tmp.display()))
        .arg(format!("-Djdk.crac.resource-policies={}", rule.display()));
    let mut app = start_checkpointable_with(
        cmd,
        &image,
        "Files",
        &[&format!("write={}", data.display())],
    );
    app.out
        .wait_for("ticks", |l| tick(l).is_some_and(|t| t >= 2));
    checkpoint_ok(app.pid);
    app.wait();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .unwrap()
        .write_all(b"written since\n")
        .unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    let o = run(c);
    one_line_error(
        &o,
        &[&format!(
            "{} was written after the checkpoint",
            data.display()
        )],
    );
}

/// How many rounds the stress-shaped tests run (CRAC_SHIM_ROUNDS; 1 in the suite).
fn rounds() -> u32 {
    std::env::var("CRAC_SHIM_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
}

/// Ticker with the test's native library loaded as `how` (`load`: deleted at once;
/// `loadkeep`: deleted at exit), its temp directory its own, checkpointed: the image, the temp
/// directory and what Ticker said when it loaded. None without gcc.
fn image_with_library(tmp: &TempDir, how: &str) -> Option<(PathBuf, PathBuf, String)> {
    let lib = native_library(tmp)?;
    let image = tmp.join("image");
    let jvm_tmp = tmp.join("jvm-tmp");
    std::fs::create_dir(&jvm_tmp).unwrap();
    let mut cmd = crac_java();
    cmd.arg(format!("-Djava.io.tmpdir={}", jvm_tmp.display()));
    let mut app = start_checkpointable_with(
        cmd,
        &image,
        "Ticker",
        &[&format!("{how}={}", lib.display())],
    );
    let loaded = app.out.wait_for("loaded", |l| l.starts_with("loaded"));
    app.out.wait_for("a tick", |l| tick(l).is_some());
    checkpoint_ok(app.pid);
    app.wait();
    Some((image, jvm_tmp, loaded))
}

/// lz4-java's way (Spark, Kafka clients): a library unpacked to the temp directory, loaded,
/// deleted when the JVM exits. The image holds it: every copy's exit deletes the file, and the
/// next restore still works, ten times in a row.
#[test]
fn a_library_deleted_at_exit_is_in_the_image_for_every_copy() {
    require_checkpoint!();
    let tmp = TempDir::new("lz4");
    let made = image_with_library(&tmp, "loadkeep");
    skip_unless!(made.is_some(), "no gcc to build the test's native library");
    let (image, _, loaded) = made.unwrap();
    let unpacked = PathBuf::from(loaded.trim_start_matches("loaded "));
    for round in 1..=10 {
        let mut copy = restore(&image);
        copy.out
            .wait_for(&format!("copy {round} ticking"), |l| tick(l).is_some());
        copy.signal(libc::SIGTERM);
        assert_eq!(copy.wait().code(), Some(143), "copy {round}");
        assert!(
            !unpacked.exists(),
            "copy {round} deleted the library at its exit, as the program does"
        );
    }
}

/// Four copies at once of an image holding a deleted, still-mapped library (Netty, JNA): all
/// run, and nothing of it is left on disk. `CRAC_SHIM_ROUNDS=20` for the stress run.
#[test]
fn four_copies_at_once_of_an_image_with_a_deleted_library() {
    require_checkpoint!();
    let tmp = TempDir::new("ghosts");
    let made = image_with_library(&tmp, "load");
    skip_unless!(made.is_some(), "no gcc to build the test's native library");
    let (image, jvm_tmp, _) = made.unwrap();
    for round in 1..=rounds() {
        let copies: Vec<Proc> = (0..4).map(|_| restore(&image)).collect();
        for (i, c) in copies.iter().enumerate() {
            c.out
                .wait_for(&format!("round {round}, copy {i} ticking"), |l| {
                    tick(l).is_some()
                });
        }
        drop(copies);
        let left: Vec<String> = std::fs::read_dir(&jvm_tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "round {round}: left on disk: {left:?}");
    }
}

/// A file the program maps that is gone at restore (a library removed, another host): named
/// before CRIU runs, and listed by -XX:CRaCInspectImage.
#[test]
fn a_mapped_file_that_is_gone_is_named_before_criu_runs() {
    require_checkpoint!();
    let tmp = TempDir::new("gone");
    let Some(lib) = native_library(&tmp) else {
        skip_unless!(false, "no gcc to build the test's native library");
        return;
    };
    let image = tmp.join("image");
    let mut app = start_checkpointable(&image, "Ticker", &[&format!("loadhere={}", lib.display())]);
    app.out.wait_for("loaded", |l| l == "loaded");
    checkpoint_ok(app.pid);
    app.wait();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCInspectImage={}", image.display()));
    let o = run(c);
    assert!(
        o.stdout
            .contains("files the program had open or mapped are here"),
        "{}",
        o.stdout
    );
    let moved = tmp.join("moved.so");
    std::fs::rename(&lib, &moved).unwrap();
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCRestoreFrom={}", image.display()));
    one_line_error(
        &run(c),
        &[&format!(
            "{}, which the program used (open, mapped, or its working directory), is missing",
            lib.display()
        )],
    );
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCInspectImage={}", image.display()));
    let o = run(c);
    assert!(
        o.stdout
            .contains(&format!("missing here: {}", lib.display())),
        "{}",
        o.stdout
    );
    std::fs::rename(&moved, &lib).unwrap();
    let restored = restore(&image);
    restored
        .out
        .wait_for("a tick after restore", |l| tick(l).is_some());
}
