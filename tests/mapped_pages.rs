//! Page images mapped copy-on-write at restore (crac-shim's CRIU, `map-pages`): what the
//! restored memory looks like, what the program can do with it, and that images made from
//! such copies stand on their own.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

macro_rules! require_mapping {
    () => {
        require_checkpoint!();
        skip_unless!(
            our_criu_has("map-pages"),
            "the CRIU next to crac-java lacks crac-shim's map-pages patch: run scripts/setup"
        );
    };
}

/// The restored JVM below a `crac-java -XX:CRaCRestoreFrom` (its `main`), once it runs.
fn jvm_below(p: &Proc, main: &str) -> u32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = p.descendants().into_iter().find(|d| {
            std::fs::read_to_string(format!("/proc/{d}/cmdline"))
                .is_ok_and(|c| c.contains(main) && !c.contains("criu"))
        });
        if let Some(pid) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "no restored {main} seen");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn maps(pid: u32) -> Vec<(u64, u64, String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (s, e) = f[0].split_once('-').unwrap();
            (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
                f[1].to_string(),
                f.get(5).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

fn page_image_maps(pid: u32) -> Vec<(u64, u64, String, String)> {
    maps(pid)
        .into_iter()
        .filter(|m| {
            let name = m.3.rsplit('/').next().unwrap_or("");
            name.starts_with("pages-") && name.ends_with(".img")
        })
        .collect()
}

fn restore_with(dir: &Path, options: &str) -> Proc {
    restore_into(dir, options, None)
}

/// A restore of `dir` with CRaCEngineOptions `options` whose next checkpoint goes to `next`.
fn restore_into(dir: &Path, options: &str, next: Option<&Path>) -> Proc {
    let mut c = crac_java();
    c.arg(format!("-XX:CRaCEngineOptions=print_command=true{options}"));
    if let Some(next) = next {
        c.arg(format!("-XX:CRaCCheckpointTo={}", next.display()));
    }
    c.arg(format!("-XX:CRaCRestoreFrom={}", dir.display()));
    Proc::spawn(c)
}

/// A Heap of 32 MiB checkpointed into `dir`; its sum.
fn heap_image(dir: &Path) -> String {
    let mut app = start_checkpointable(dir, "Heap", &["32"]);
    let line = app.out.wait_for("tick 2", |l| l.starts_with("tick 2 "));
    checkpoint_ok(app.pid);
    app.wait();
    line.split(" sum ").nth(1).unwrap().to_string()
}

fn tick_lines(p: &Proc) -> Vec<String> {
    p.out
        .snapshot()
        .into_iter()
        .filter(|l| l.starts_with("tick "))
        .collect()
}

/// The sum of the first tick after the `seen` ticks already printed.
fn next_sum(p: &Proc, seen: usize) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let ticks = tick_lines(p);
        if ticks.len() > seen {
            return ticks[seen].split(" sum ").nth(1).unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no new tick: {:?}",
            p.err.snapshot()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_mapped_restore_shares_the_image_and_keeps_each_regions_protections() {
    require_mapping!();
    let tmp = TempDir::new("mapped-prot");
    let image = tmp.join("img");
    let sum = heap_image(&image);

    let inspect = run({
        let mut c = crac_java();
        c.arg(format!("-XX:CRaCInspectImage={}", image.display()));
        c
    });
    assert!(
        inspect.stdout.contains("pages mapped from the image"),
        "{}",
        inspect.stdout
    );

    // Read as upstream CRIU does: the regions as the image has them.
    let read = restore_with(&image, ",map_pages=false");
    assert_eq!(next_sum(&read, 0), sum);
    let regions = maps(jvm_below(&read, "Heap"));
    drop(read);

    let copy = restore_with(&image, "");
    copy.err.wait_for("the mode", |l| {
        l.contains("pages mapped from the image (copy-on-write)")
    });
    assert_eq!(
        next_sum(&copy, 0),
        sum,
        "the same heap, read through the mapping"
    );
    let jvm = jvm_below(&copy, "Heap");
    let mapped = page_image_maps(jvm);
    assert!(
        !mapped.is_empty(),
        "no region maps the image: {:?}",
        maps(jvm)
    );
    for (start, end, perms, _) in &mapped {
        // Each mapped run has its own region's protections, and only anonymous memory is.
        let region = regions
            .iter()
            .find(|m| m.0 <= *start && *end <= m.1)
            .unwrap_or_else(|| panic!("{start:x}-{end:x} is not within one region: {regions:?}"));
        assert_eq!(
            &region.2[..3],
            &perms[..3],
            "{start:x}-{end:x} in {region:?}"
        );
        assert!(region.3.is_empty(), "{region:?} is not anonymous memory");
    }
    // The Java heap (32 MiB of it) is mapped read-write, not executable; only the JIT's code
    // cache, executable by itself, is mapped so.
    let data_bytes: u64 = mapped
        .iter()
        .filter(|m| m.2 == "rw-p")
        .map(|m| m.1 - m.0)
        .sum();
    assert!(
        data_bytes >= 32 << 20,
        "only {data_bytes} bytes mapped rw-p"
    );
    drop(copy);

    // Turned off, or with lazy pages: read, as upstream CRIU does.
    for (options, why) in [
        (",map_pages=false", "map_pages=false"),
        (",lazy_pages=true", "lazy_pages"),
    ] {
        let copy = restore_with(&image, options);
        copy.err.wait_for("the mode", |l| {
            l.contains("pages read into memory") && l.contains(why)
        });
        assert_eq!(next_sum(&copy, 0), sum);
        let jvm = jvm_below(&copy, "Heap");
        assert!(page_image_maps(jvm).is_empty(), "{options}: mapped anyway");
    }
}

#[test]
fn a_mapped_copy_checkpoints_into_its_own_directory_while_another_copy_runs() {
    require_mapping!();
    let tmp = TempDir::new("mapped-again");
    let image = tmp.join("img");
    let sum = heap_image(&image);

    let first = restore_with(&image, "");
    let second = restore_with(&image, "");
    assert_eq!(next_sum(&first, 0), sum);
    assert_eq!(next_sum(&second, 0), sum);
    let first_jvm = jvm_below(&first, "Heap");
    let second_jvm = jvm_below(&second, "Heap");
    assert!(!page_image_maps(second_jvm).is_empty());

    // The first copy into the directory both came from: the new image replaces the old one,
    // whose files the second copy still maps (unlinked, never rewritten).
    checkpoint_ok(first_jvm);
    let old_files = page_image_maps(second_jvm);
    assert!(
        old_files
            .iter()
            .all(|m| !Path::new(&m.3).exists() || m.3.ends_with("(deleted)")),
        "{old_files:?}"
    );
    let seen = tick_lines(&second).len();
    assert_eq!(next_sum(&second, seen), sum, "the running copy lost pages");

    // The new image stands on its own: restored; its copy checkpointed elsewhere; that image
    // restored once the first is gone.
    let other = tmp.join("img2");
    let third = restore_into(&image, "", Some(&other));
    assert_eq!(
        next_sum(&third, 0),
        sum,
        "an image of a mapped copy lost pages"
    );
    checkpoint_ok(jvm_below(&third, "Heap"));
    drop(third);
    drop(second);
    std::fs::remove_dir_all(&image).unwrap();
    let fourth = restore_with(&other, "");
    assert_eq!(
        next_sum(&fourth, 0),
        sum,
        "an image of a copy of a copy lost pages"
    );
}

#[test]
fn native_memory_freed_trimmed_and_calloced_after_a_mapped_restore_reads_zeros() {
    require_mapping!();
    let run = native_dump_restore(
        "trim_calloc",
        &[("CRAC_SHIM_MAP_PAGES", "1")],
        "arena_mapping",
    );
    skip_unless!(
        run.is_some(),
        "gcc cannot build tests/native/trim_calloc.c: run scripts/setup test"
    );
    let run = run.unwrap();
    let log = std::fs::read_to_string(&run.restore_log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
    assert!(run.restored, "criu restore failed: {tail:?}");
    let text = run.result;
    // The arena was mapped from the image: the case under test.
    assert!(
        text.contains("pages-1.img"),
        "the arena was not mapped: {text}"
    );
    // glibc clears what calloc hands out below the arena's high-water mark, which is all
    // the image can hold: freed, trimmed (MADV_DONTNEED) and calloc'ed again, zeros.
    assert!(text.contains("calloc_nonzero=0\n"), "{text}");
    // What a program sees on its own: a dropped page comes back with the image's bytes.
    assert!(text.contains("dontneed=3c\n"), "{text}");
}
