//! Dropping capabilities reaches every thread of the process, including a
//! tokio runtime's, and threads started afterwards.
//!
//! One test in this file on purpose: the drop is for the whole process,
//! which is this test binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use sonde_core::privileges::{self, Capability, CapabilitySet, ThreadCapabilities};

fn every_thread() -> Vec<(u32, ThreadCapabilities)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let tid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let caps =
                ThreadCapabilities::read(&Path::new("/proc/self/task").join(tid.to_string()).join("status")).ok()?;
            Some((tid, caps))
        })
        .collect()
}

#[test]
fn restrict_drops_in_every_thread_and_for_good() {
    let before = ThreadCapabilities::current().unwrap();
    if !before.permitted.contains(Capability::SETPCAP) {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("SONDE_REQUIRE_BPF").is_none(),
            "this test needs root"
        );
        eprintln!("skipped: needs root");
        return;
    }
    // A file only DAC_OVERRIDE lets root read.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    assert!(std::fs::read(&secret).is_ok(), "root reads it before");

    // Threads of every kind the agent has: a tokio runtime's workers and
    // blocking pool, and plain threads blocked in a syscall.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(10)))
            .await
            .unwrap();
    });
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let sleeper = std::thread::spawn(move || rx.recv().ok());
    let threads_before = every_thread().len();
    assert!(threads_before >= 5, "{threads_before} threads");

    let keep = CapabilitySet::of(&[Capability::SYS_PTRACE]);
    let done = privileges::restrict(keep).unwrap();
    assert_eq!(done.kept, keep);
    assert!(done.dropped.contains(Capability::SYS_ADMIN));
    assert!(done.threads >= threads_before, "{done:?}");

    for (tid, caps) in every_thread() {
        assert_eq!(caps.effective, keep, "thread {tid}");
        assert_eq!(caps.permitted, keep, "thread {tid}");
        assert_eq!(caps.bounding, keep, "thread {tid}: bounding set");
        assert!(caps.ambient.is_empty(), "thread {tid}");
        assert!(caps.no_new_privs, "thread {tid}");
    }
    // Threads made now inherit the dropped sets, and the drop holds.
    let path = secret.clone();
    let from_worker = runtime.block_on(async {
        tokio::task::spawn_blocking(move || (ThreadCapabilities::current().unwrap(), std::fs::read(&path).is_err()))
            .await
            .unwrap()
    });
    assert_eq!(from_worker.0.permitted, keep);
    assert!(from_worker.1, "no DAC_OVERRIDE: the 000 file is unreadable");
    assert!(std::fs::read(dir.path().join("secret")).is_err());
    // A dropped capability cannot be raised again.
    assert!(privileges::restrict(CapabilitySet::of(&[Capability::SYS_ADMIN]))
        .unwrap()
        .kept
        .is_empty());
    drop(tx);
    sleeper.join().unwrap();
    std::fs::set_permissions(dir.path().join("secret"), std::fs::Permissions::from_mode(0o600)).ok();
}
