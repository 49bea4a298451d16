//! Unit tests of the conversion; the kernel side is tested for real in
//! `tests/bpf_tcp.rs`.

use std::sync::Arc;

use super::bpf::{TcpCounts, TcpKey, LATENCY_SLOTS, TCP_FAMILY_V4, TCP_LATENCY_MIN_SHIFT, TCP_ROLE_CLIENT};
use sonde_core::event::{keys, MetricValue, Temporality, Timestamp, Value};
use sonde_ebpf::slot::log2_bounds;

use super::collect::{attributes, to_metrics};
use super::*;

fn bounds() -> Arc<[f64]> {
    log2_bounds(TCP_LATENCY_MIN_SHIFT, LATENCY_SLOTS, 1e-9).into()
}

#[test]
fn counts_become_cumulative_metrics_without_empty_series() {
    let mut counts = TcpCounts {
        opens: 3,
        connect_failures: 1,
        ..TcpCounts::default()
    };
    counts.connect_ok[5] = 3; // (16.384, 32.768] us
    counts.connect_ok_sum_ns = 60_000;
    counts.connect_failed[2] = 1;
    counts.connect_failed_sum_ns = 3_000;
    let metrics = to_metrics(&counts, &Default::default(), &bounds(), Timestamp::from_nanos(1));
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, [OPENS, CONNECT_FAILURES, CONNECT_DURATION, CONNECT_DURATION]);
    assert_eq!(metrics[0].value, MetricValue::Counter { value: 3.0 });
    let MetricValue::Histogram(ok) = &metrics[2].value else {
        panic!("connect latency is a histogram")
    };
    assert_eq!(ok.count, 3);
    assert_eq!(ok.counts.len(), ok.bounds.len() + 1);
    assert!((ok.bounds[5] - 32.768e-6).abs() < 1e-15);
    assert!((ok.sum - 60e-6).abs() < 1e-15);
    assert_eq!(metrics[2].attributes.get(RESULT), Some(&Value::from("established")));
    assert_eq!(metrics[3].attributes.get(RESULT), Some(&Value::from("failed")));
    assert!(metrics.iter().all(|m| m.temporality == Temporality::Cumulative));

    counts.rtt[0] = 1;
    counts.rtt_sum_ns = 900;
    let metrics = to_metrics(&counts, &Default::default(), &bounds(), Timestamp::from_nanos(1));
    assert_eq!(metrics.last().unwrap().name.as_str(), RTT);
}

#[test]
fn keys_become_semconv_attributes() {
    let mut key = TcpKey {
        pid: 42,
        cgroup_id: 7,
        port: 443,
        role: TCP_ROLE_CLIENT as u8,
        family: TCP_FAMILY_V4 as u8,
        ..TcpKey::default()
    };
    key.addr[..4].copy_from_slice(&[10, 1, 2, 3]);
    key.comm[..4].copy_from_slice(b"curl");
    let a = attributes(&key, &"node-1".into());
    assert_eq!(a.get(keys::PID), Some(&Value::Int(42)));
    assert_eq!(a.get(keys::COMM), Some(&Value::from("curl")));
    assert_eq!(a.get(keys::CGROUP_ID), Some(&Value::Int(7)));
    assert_eq!(a.get(ROLE), Some(&Value::from("client")));
    assert_eq!(a.get(PORT), Some(&Value::Int(443)));
    assert_eq!(a.get(PEER), Some(&Value::from("10.1.2.3")));
    assert_eq!(a.get(NETWORK_TYPE), Some(&Value::from("ipv4")));
    // Unknown process: no pid, comm or cgroup attributes at all.
    let a = attributes(&TcpKey::default(), &"n".into());
    assert!(a.get(keys::PID).is_none() && a.get(keys::COMM).is_none() && a.get(PEER).is_none());
}

#[test]
fn config_defaults_and_rejects_unknown_options() {
    let config: TcpSourceConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.interval, DEFAULT_INTERVAL);
    assert!(config.peer_addresses && config.drop_reasons);
    assert_eq!(config.max_series, DEFAULT_MAX_SERIES);
    let config: TcpSourceConfig =
        serde_json::from_str(r#"{"interval": "2s", "peer_addresses": false, "max_sockets": 10}"#).unwrap();
    assert_eq!(config.interval.as_secs(), 2);
    assert!(!config.peer_addresses);
    assert_eq!(config.max_sockets, 10);
    assert!(serde_json::from_str::<TcpSourceConfig>(r#"{"peers": false}"#).is_err());
}
