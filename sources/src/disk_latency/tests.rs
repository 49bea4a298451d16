//! Unit tests of the conversion; the kernel side is tested for real in
//! `conformance.rs` (run by `tests/bpf_disk_latency.rs` and the kernel
//! matrix) and `tests/bpf_disk_latency.rs`.

use sonde_core::event::{Attributes, MetricValue, Temporality, Timestamp};

use super::bpf::DiskHist;
use super::collect::{to_metrics, Bounds};
use super::device::parse_uevent;
use super::*;

#[test]
fn uevent_gives_the_device_name() {
    assert_eq!(
        parse_uevent("MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n").as_deref(),
        Some("vda")
    );
    assert_eq!(parse_uevent("MAJOR=7\n"), None);
}

#[test]
fn a_hist_becomes_cumulative_metrics_in_seconds() {
    let mut hist = DiskHist::default();
    hist.latency[0] = 2; // <= 1.024 us
    hist.latency[3] = 1; // (4.096, 8.192] us
    hist.latency_sum_ns = 7_000;
    hist.size[4] = 3; // (4 KiB, 8 KiB]
    hist.requests = 4; // one untimed
    hist.bytes = 3 * 8192;
    let metrics = to_metrics(&hist, Attributes::new(), &Bounds::new(), Timestamp::from_nanos(1));
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [REQUESTS, BYTES, REQUEST_DURATION, REQUEST_SIZE],
        "no queue series without queueing"
    );
    assert!(metrics.iter().all(|m| m.temporality == Temporality::Cumulative));
    let MetricValue::Histogram(latency) = &metrics[2].value else {
        panic!("latency is a histogram")
    };
    assert_eq!(latency.count, 3);
    assert_eq!(latency.counts.len(), latency.bounds.len() + 1);
    assert!((latency.bounds[0] - 1.024e-6).abs() < 1e-15);
    assert!((latency.bounds[3] - 8.192e-6).abs() < 1e-15);
    assert!((latency.sum - 7e-6).abs() < 1e-15);
    let MetricValue::Histogram(size) = &metrics[3].value else {
        panic!("size is a histogram")
    };
    assert_eq!(size.bounds[4], 8192.0);
    assert_eq!(size.counts[4], 3);
    assert_eq!(metrics[0].value, MetricValue::Counter { value: 4.0 });

    hist.queue[1] = 1;
    let metrics = to_metrics(&hist, Attributes::new(), &Bounds::new(), Timestamp::from_nanos(1));
    assert_eq!(metrics.last().unwrap().name.as_str(), QUEUE_DURATION);
}

#[test]
fn config_defaults_and_rejects_unknown_options() {
    let config: DiskLatencySourceConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.interval, DEFAULT_INTERVAL);
    assert!(config.queue_time);
    let config: DiskLatencySourceConfig = serde_json::from_str(r#"{"interval": "2s", "devices": ["vda"]}"#).unwrap();
    assert_eq!(config.interval.as_secs(), 2);
    assert!(serde_json::from_str::<DiskLatencySourceConfig>(r#"{"intervall": "2s"}"#).is_err());
}

#[test]
fn inflight_file_gives_reads_and_writes() {
    assert_eq!(super::collect::parse_in_flight("       3        5\n"), Some((3, 5)));
    assert_eq!(super::collect::parse_in_flight(""), None);
    let config: DiskLatencySourceConfig = serde_json::from_str(r#"{"queue_depth": false}"#).unwrap();
    assert!(!config.queue_depth);
    assert_eq!(DiskLatencySourceConfig::default().queue_depth, DEFAULT_QUEUE_DEPTH);
}
