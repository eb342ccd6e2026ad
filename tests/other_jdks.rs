//! The round trip on every other JDK installed under /usr/lib/jvm.

mod support;
use support::*;

#[test]
fn round_trip_on_other_jdks() {
    require_checkpoint!();
    let jdks = other_jdks();
    if jdks.is_empty() {
        // Allowed by design: there is nothing else to test against on this machine.
        eprintln!(
            "NOTE: no JDK other than Debian's OpenJDK 17 under /usr/lib/jvm; nothing more to test"
        );
        return;
    }
    for java in jdks {
        let tmp = TempDir::new("jdk");
        let image = tmp.join("image");
        let mut cmd = crac_java();
        cmd.env("CRAC_SHIM_JAVA", &java);
        let mut app = start_checkpointable_with(cmd, &image, "Ticker", &[]);
        app.out
            .wait_for(&format!("ticks on {}", java.display()), |l| {
                tick(l).is_some_and(|t| t >= 2)
            });
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", app.pid)).unwrap();
        assert!(
            maps.contains(&format!("/tmp/hsperfdata_root/{}", app.pid)),
            "{}: HotSpot's perf-data file",
            java.display()
        );
        checkpoint_ok(app.pid);
        let last = *ticks(&app.out.all()).last().unwrap();
        app.wait();
        let meta = std::fs::read_to_string(image.join("crac-shim.meta")).unwrap();
        let home = java.parent().unwrap().parent().unwrap();
        assert!(
            meta.contains(&format!("java_home={}", home.display())),
            "{meta}"
        );
        let restored = restore(&image);
        restored.out.wait_for("ticks after restore", |l| {
            tick(l).is_some_and(|t| t > last + 2)
        });
        assert_eq!(
            ticks(&restored.out.snapshot())[0],
            last + 1,
            "{}",
            java.display()
        );
    }
}
