//! `source "file_access"` against the real kernel (needs root): the
//! kernel matrix's check (opens through an absolute name, a symlink and a
//! directory fd reported under the real path, a failed open with its
//! errno, opens elsewhere filtered), plus a child process' opens filtered
//! by flags and deduplicated, with the counts of what was left out.
//!
//! Kernels 5.15+ load the exit-only object; the check runs once more with
//! the entry-and-exit object that older kernels load, so both are tested
//! on one kernel. The tests take turns (the object is chosen by an
//! environment variable, which is per process).
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sonde_core::event::Event;
use sonde_ebpf::testing::{bpf_available_or_skip, run_check};
use sonde_sources::file_access::bpf::{
    FileAccessPrograms, Policy, ENTRY_PROGRAMS_ENV, FA_STAT_DEDUPLICATED, FA_STAT_FILTERED_FLAGS, FA_STAT_FILTERED_PATH,
};
use sonde_sources::file_access::{Collector, FileAccessSourceConfig, Match, ACCESS, PATH};

static TURNS: Mutex<()> = Mutex::new(());

fn my_turn() -> MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn opens_under_a_watched_directory_are_reported_by_real_path() {
    let _turn = my_turn();
    run_check(
        "opens_under_a_watched_directory_are_reported_by_real_path",
        sonde_sources::file_access::conformance::check,
    );
}

#[test]
fn the_entry_and_exit_object_reports_the_same() {
    let _turn = my_turn();
    std::env::set_var(ENTRY_PROGRAMS_ENV, "1");
    if bpf_available_or_skip("the_entry_and_exit_object_reports_the_same") {
        let programs = FileAccessPrograms::load(&Policy::default()).expect("file_access loads");
        assert!(
            !programs.reads_args_at_exit(),
            "the variable chooses the entry-and-exit object"
        );
    }
    run_check(
        "the_entry_and_exit_object_reports_the_same",
        sonde_sources::file_access::conformance::check,
    );
    std::env::remove_var(ENTRY_PROGRAMS_ENV);
}

fn field(e: &Event, name: &str) -> Option<String> {
    match e {
        Event::Log(log) => log.fields.get(name).and_then(|v| v.as_str()).map(str::to_string),
        _ => None,
    }
}

/// A child opens K files for writing and K for reading under the watched
/// directory (each twice), and K files elsewhere: with `flags = ["write",
/// "create"]` and a dedup window, exactly K records arrive (the writes,
/// once each); the K reads are counted as filtered by flags, the K second
/// writes as deduplicated, and the K opens elsewhere as filtered by path.
#[test]
fn flags_and_dedup_filter_in_the_kernel_and_count_what_they_drop() {
    let _turn = my_turn();
    let test = "flags_and_dedup_filter_in_the_kernel_and_count_what_they_drop";
    if !bpf_available_or_skip(test) {
        return;
    }
    const K: usize = 50;
    let watched = tempfile::tempdir_in("/var/tmp").unwrap();
    let outside = tempfile::tempdir_in("/var/tmp").unwrap();
    for i in 0..K {
        std::fs::write(watched.path().join(format!("r{i}")), b"").unwrap();
        std::fs::write(outside.path().join(format!("o{i}")), b"").unwrap();
    }
    let config = FileAccessSourceConfig {
        matching: Match {
            path_prefix: vec![format!("{}/", watched.path().display())],
            flags: vec!["write".into(), "create".into()],
            ..Match::default()
        },
        dedup_window: Duration::from_secs(60),
        rate_limit: 0,
        ..FileAccessSourceConfig::default()
    };
    let mut collector = Collector::load_with_labels(&config, "test-node".into(), &[]).expect("file_access loads");
    let mut ring = collector.programs_mut().take_events().unwrap();
    let stat = |c: &mut Collector, slot| c.programs_mut().stats().unwrap().get(slot);
    let before = (
        stat(&mut collector, FA_STAT_FILTERED_FLAGS),
        stat(&mut collector, FA_STAT_DEDUPLICATED),
        stat(&mut collector, FA_STAT_FILTERED_PATH),
    );
    let script = r#"
import os, sys
watched, outside, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(2):
    for i in range(k):
        os.close(os.open(os.path.join(watched, f"w{i}"), os.O_WRONLY | os.O_CREAT, 0o644))
for i in range(k):
    os.close(os.open(os.path.join(watched, f"r{i}"), os.O_RDONLY))
    os.close(os.open(os.path.join(outside, f"o{i}"), os.O_WRONLY))
"#;
    let child = Command::new("python3")
        .args(["-c", script])
        .arg(watched.path())
        .arg(outside.path())
        .arg(K.to_string())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let clock = sonde_sources::clock::Clock::now();
    let records: Vec<Event> = sonde_sources::file_access::drain(&mut ring)
        .iter()
        .filter(|e| e.pid == pid)
        .map(|e| collector.record(e, &clock))
        .collect();
    let after = (
        stat(&mut collector, FA_STAT_FILTERED_FLAGS),
        stat(&mut collector, FA_STAT_DEDUPLICATED),
        stat(&mut collector, FA_STAT_FILTERED_PATH),
    );
    let mut paths: Vec<String> = records.iter().filter_map(|e| field(e, PATH)).collect();
    paths.sort();
    let mut expected: Vec<String> = (0..K)
        .map(|i| watched.path().join(format!("w{i}")).display().to_string())
        .collect();
    expected.sort();
    assert_eq!(paths, expected, "one record per file written");
    assert!(records
        .iter()
        .all(|e| field(e, ACCESS).as_deref() == Some("write,create")));
    // Other processes' reads count too: at least ours.
    assert!(
        after.0 - before.0 >= K as u64,
        "filtered by flags: {}",
        after.0 - before.0
    );
    assert_eq!(after.1 - before.1, K as u64, "deduplicated: the second writes");
    assert!(
        after.2 - before.2 >= K as u64,
        "filtered by path: {}",
        after.2 - before.2
    );
}
