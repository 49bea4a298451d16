//! Unit tests of the conversion and the options; the kernel side is
//! tested for real in `tests/bpf_runqueue.rs`.

use std::sync::Arc;

use sonde_core::config::Invalid;
use sonde_core::event::{Attributes, Event, MetricValue, Timestamp};
use sonde_core::SourceConfig;
use sonde_ebpf::slot::log2_bounds;

use super::bpf::{RqHist, RQ_LATENCY_MIN_SHIFT, SLOTS};
use super::cgroups::{is_under, CgroupTree};
use super::collect::metrics;
use super::*;

#[test]
fn a_histogram_becomes_seconds_and_two_counters() {
    let mut hist = RqHist {
        sum_ns: 3_000_000,
        voluntary: 7,
        involuntary: 2,
        ..RqHist::default()
    };
    hist.slots[0] = 1;
    hist.slots[11] = 2;
    let bounds: Arc<[f64]> = log2_bounds(RQ_LATENCY_MIN_SHIFT, SLOTS, 1e-9).into();
    let events = metrics(
        RUNQUEUE_LATENCY,
        CONTEXT_SWITCHES,
        &hist,
        &Attributes::new(),
        &bounds,
        Timestamp::from_nanos(1),
    );
    assert_eq!(events.len(), 3);
    let Event::Metric(m) = &events[0] else {
        panic!("a metric")
    };
    let MetricValue::Histogram(h) = &m.value else {
        panic!("a histogram")
    };
    assert_eq!((h.count, h.sum), (3, 0.003));
    assert_eq!(h.bounds.len() + 1, h.counts.len());
    // Slot 11 holds waits up to 2^21 ns.
    assert!((h.bounds[11] - 2.097152e-3).abs() < 1e-12);
    let switches: Vec<(String, f64)> = events[1..]
        .iter()
        .map(|e| match e {
            Event::Metric(m) => (
                m.attributes.get(SWITCH_TYPE).unwrap().to_string(),
                match m.value {
                    MetricValue::Counter { value } => value,
                    _ => panic!("a counter"),
                },
            ),
            _ => panic!("a metric"),
        })
        .collect();
    assert_eq!(
        switches,
        [("voluntary".to_string(), 7.0), ("involuntary".to_string(), 2.0)]
    );
}

#[test]
fn cgroup_filters_take_the_subtree() {
    assert!(is_under("/kubepods.slice/pod1", "/kubepods.slice"));
    assert!(is_under("/kubepods.slice", "/kubepods.slice/"));
    assert!(!is_under("/kubepods.slice2", "/kubepods.slice"));
    assert!(is_under("/anything", "/"));
    let tree = CgroupTree::from_paths([
        (1, "/".to_string()),
        (2, "/a".to_string()),
        (3, "/a/b".to_string()),
        (4, "/c".to_string()),
    ]);
    let mut ids: Vec<u64> = tree.under(&["/a".to_string()]).into_iter().collect();
    ids.sort();
    assert_eq!(ids, [2, 3]);
    assert_eq!(tree.path(3), Some("/a/b"));
}

#[test]
fn the_root_cgroup_scans_as_slash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("x/y")).unwrap();
    let tree = CgroupTree::scan(dir.path());
    let ids = tree.under(&["/x".to_string()]);
    assert_eq!(ids.len(), 2);
    let root = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.path()).unwrap());
    assert_eq!(tree.path(root), Some("/"));
}

#[test]
fn options_are_checked_by_name() {
    let config: RunqueueSourceConfig = serde_json::from_str("{}").unwrap();
    assert!(!config.per_process && config.cgroups.is_empty());
    assert_eq!(config.max_cgroups, DEFAULT_MAX_CGROUPS);
    assert!(serde_json::from_str::<RunqueueSourceConfig>(r#"{"per_proces": true}"#).is_err());
    let bad = RunqueueSourceConfig {
        max_threads: 0,
        cgroups: vec!["kubepods".to_string()],
        ..RunqueueSourceConfig::default()
    };
    let errors: Vec<Invalid> = bad.validate().unwrap_err();
    let named: Vec<&str> = errors.iter().map(|e| e.option).collect();
    assert_eq!(named, ["max_threads", "cgroups"]);
}
