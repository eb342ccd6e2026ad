//! Frameworks unchanged: an application written for CRaC through the org.crac facade, started
//! the way Spring Boot 3.2+ starts, checkpointed from its main thread during start-up
//! (`-Dspring.context.checkpoint=onRefresh`) and restored.
//!
//! Spring Boot's and org.crac's jars cannot be downloaded here: tests/java/framework holds
//! stand-ins written from their published behaviour (org.crac 1.5's reflective lookup and its
//! CRaCMXBean, which lets getPlatformMXBean's IllegalArgumentException escape; Spring's
//! start-up timer choice, lifecycle Resource and onRefresh checkpoint), not copies.

mod support;
use std::io::Read;
use support::*;

/// Checkpoints SpringLikeApp on refresh with `java`, through org.crac's Core or its
/// CRaCMXBean (`via`), restores it, and checks what a Spring Boot user would see.
fn spring_like_round_trip(java: &std::path::Path, via: &str) {
    let what = format!("{} via {via}", java.display());
    let tmp = TempDir::new("spring");
    let image = tmp.join("image");
    let mut cmd = crac_java();
    cmd.env("CRAC_SHIM_JAVA", java)
        .arg("-Dspring.context.checkpoint=onRefresh")
        .arg(format!("-Dstandin.checkpoint={via}"));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut app = start_checkpointable_with(cmd, &image, "SpringLikeApp", &[]);
    let status = app.wait();
    let out = app.out.all();
    assert!(
        out.contains(&"startup timer: crac".to_string()),
        "{what}: {out:?}"
    );
    assert!(
        out.contains(&"platform mbean registered: true".to_string()),
        "{what}: {out:?}"
    );
    assert!(
        out.contains(&"checkpointing on refresh".to_string()),
        "{what}: {out:?}"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{what}: the checkpoint ends the JVM: {out:?}"
    );
    assert!(image.join("crac-shim.meta").is_file(), "{what}");

    let restored = restore(&image);
    let port = restored
        .out
        .wait_for("the web server", |l| l.starts_with("listening on "));
    let lines = restored.out.snapshot();
    assert_eq!(
        lines[0], "events before data-source,before lifecycle-processor,after lifecycle-processor,after data-source",
        "{what}: beforeCheckpoint in reverse order, afterRestore in order: {lines:?}"
    );
    assert!(
        lines[1].starts_with("Restored SpringLikeApp in "),
        "{what}: {lines:?}"
    );
    let times: Vec<u128> = lines[2]
        .strip_prefix("restored in ")
        .and_then(|l| {
            let (ms, time) = l.split_once(" ms, restore time ")?;
            Some(vec![ms.parse().ok()?, time.parse().ok()?])
        })
        .unwrap_or_else(|| panic!("{what}: {lines:?}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        times[1] > before && times[1] <= now,
        "{what}: the restore time is when the restore started: {lines:?}"
    );
    let port: u16 = port["listening on ".len()..].parse().unwrap();
    let mut answer = String::new();
    std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert_eq!(
        answer, "state 500500\n",
        "{what}: the state from before the checkpoint"
    );
}

#[test]
fn a_spring_boot_shaped_app_checkpoints_on_refresh_and_restores() {
    require_checkpoint!();
    skip_unless!(
        api_jar().is_file(),
        "crac-shim-api.jar is not built: run scripts/setup"
    );
    spring_like_round_trip(&default_java(), "core");
    spring_like_round_trip(&default_java(), "mxbean");
    // Temurin 25 (and any other JDK) where present.
    for java in other_jdks() {
        spring_like_round_trip(&java, "mxbean");
    }
}
