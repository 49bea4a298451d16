//! Unit tests of the flow table, records and service map; the kernel side
//! is tested for real in `tests/bpf_net_flows.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sonde_core::event::{keys, Timestamp, Value};

use super::flows::{FlowId, FlowTable, Observation, Reason, Totals};
use super::record::{to_log, Clock};
use super::*;

const S: u64 = 1_000_000_000;

fn observation(at_s: u64, bytes_sent: u64, bytes_received: u64) -> Observation {
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 443);
    Observation {
        id: FlowId::Tcp {
            sock: 0xabc,
            start_ns: S,
        },
        transport: Transport::Tcp,
        direction: Direction::Client,
        local,
        remote,
        pid: 42,
        comm: "curl".into(),
        cgroup_id: 7,
        start_ns: S,
        at_ns: at_s * S,
        totals: Totals {
            bytes_sent,
            bytes_received,
            packets_sent: at_s,
            packets_received: at_s,
            retransmits: 0,
        },
        srtt_us: Some(30),
    }
}

#[test]
fn interim_records_come_every_active_timeout_and_sum_to_the_totals() {
    let mut table = FlowTable::new(10 * S);
    assert!(
        table.open(observation(5, 100, 10), Reason::ActiveTimeout).is_none(),
        "not due yet"
    );
    let first = table.open(observation(11, 300, 30), Reason::ActiveTimeout).unwrap();
    assert_eq!(first.delta.bytes_sent, 300);
    assert_eq!(first.window_start_ns, S);
    assert!(table.open(observation(15, 400, 40), Reason::ActiveTimeout).is_none());
    let second = table.open(observation(21, 700, 70), Reason::ActiveTimeout).unwrap();
    assert_eq!(second.delta.bytes_sent, 400);
    assert_eq!(second.window_start_ns, 11 * S);
    let last = table.end(observation(23, 1000, 100), Reason::Closed);
    assert_eq!(last.delta.bytes_sent, 300);
    assert_eq!(
        first.delta.bytes_received + second.delta.bytes_received + last.delta.bytes_received,
        100
    );
    assert!(table.is_empty());
    // A snapshot read just before the close must not bring the flow back.
    assert!(table.open(observation(40, 1000, 100), Reason::Shutdown).is_none());
}

#[test]
fn vanished_flows_are_forgotten() {
    let mut table = FlowTable::new(10 * S);
    table.open(observation(11, 1, 1), Reason::ActiveTimeout).unwrap();
    assert_eq!(table.len(), 1);
    table.retain(Transport::Udp, &Default::default(), 0);
    assert_eq!(table.len(), 1, "another transport's flows stay");
    table.retain(Transport::Tcp, &Default::default(), 0);
    assert!(table.is_empty());
}

#[test]
fn a_record_has_semconv_fields_and_process_attributes() {
    let mut table = FlowTable::new(10 * S);
    let update = table.end(observation(3, 500, 50), Reason::Closed);
    let clock = Clock::at(Timestamp::from_nanos(1_000 * S), 3 * S);
    let log = to_log(&update, &clock, &"node-1".into());
    assert_eq!(log.name.as_str(), FLOW_LOG);
    assert_eq!(log.timestamp, Timestamp::from_nanos(1_000 * S));
    let f = |k: &str| log.fields.get(k).cloned().unwrap_or_else(|| panic!("no field {k}"));
    assert_eq!(f(TRANSPORT), Value::from("tcp"));
    assert_eq!(f(NETWORK_TYPE), Value::from("ipv4"));
    // A client: it is the source.
    assert_eq!(f(SOURCE_ADDRESS), Value::from("127.0.0.1"));
    assert_eq!(f(SOURCE_PORT), Value::Int(40000));
    assert_eq!(f(DESTINATION_ADDRESS), Value::from("10.0.0.9"));
    assert_eq!(f(DESTINATION_PORT), Value::Int(443));
    assert_eq!(f(DIRECTION), Value::from("client"));
    assert_eq!(f(BYTES_SENT), Value::Int(500));
    assert_eq!(f(BYTES_RECEIVED), Value::Int(50));
    assert_eq!(f(DURATION_NS), Value::Int(2 * S as i64));
    assert_eq!(f(REASON), Value::from("closed"));
    assert_eq!(f(FINAL), Value::Bool(true));
    assert_eq!(f(RTT_US), Value::Int(30));
    assert_eq!(log.attributes.get(keys::PID), Some(&Value::Int(42)));
    assert_eq!(log.attributes.get(keys::COMM), Some(&Value::from("curl")));
    assert_eq!(log.attributes.get(keys::CGROUP_ID), Some(&Value::Int(7)));

    // The server's end of the same connection names the same source.
    let mut server = observation(3, 50, 500);
    server.direction = Direction::Server;
    std::mem::swap(&mut server.local, &mut server.remote);
    let log = to_log(&table.end(server, Reason::Closed), &clock, &"n".into());
    assert_eq!(log.fields.get(SOURCE_PORT), Some(&Value::Int(40000)));
    assert_eq!(log.fields.get(DESTINATION_PORT), Some(&Value::Int(443)));
}

#[test]
fn the_service_map_adds_bytes_per_edge_and_is_bounded() {
    let mut map = ServiceMap::new(1, metrics::Counter::noop());
    let mut table = FlowTable::new(S);
    map.add(&table.end(observation(2, 100, 10), Reason::Closed));
    let mut other = observation(2, 5, 5);
    other.id = FlowId::Tcp { sock: 1, start_ns: S };
    map.add(&table.end(other.clone(), Reason::Closed));
    other.remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)), 443);
    other.id = FlowId::Tcp { sock: 2, start_ns: S };
    map.add(&table.end(other, Reason::Closed));
    assert_eq!(map.len(), 1, "the second peer does not fit");
    let metrics = map.to_metrics(&"n".into(), Timestamp::from_nanos(1));
    let value = |io: &'static str| {
        metrics
            .iter()
            .find(|m| m.attributes.get(IO_DIRECTION) == Some(&Value::from(io)))
            .map(|m| m.value.clone())
    };
    use sonde_core::event::MetricValue;
    assert_eq!(value("transmit"), Some(MetricValue::Counter { value: 105.0 }));
    assert_eq!(value("receive"), Some(MetricValue::Counter { value: 15.0 }));
    assert_eq!(metrics[0].attributes.get(SERVICE_PORT), Some(&Value::Int(443)));
    assert_eq!(metrics[0].attributes.get(PEER), Some(&Value::from("10.0.0.9")));
}

#[test]
fn config_defaults_poll_period_and_unknown_options() {
    let config: NetFlowsSourceConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.active_timeout, DEFAULT_ACTIVE_TIMEOUT);
    assert!(config.udp && config.service_map);
    assert_eq!(
        config.tcp_poll_period().as_millis(),
        7500,
        "a quarter of the 30 s active timeout"
    );
    assert_eq!(
        config.udp_poll_period().map(|p| p.as_millis()),
        Some(3750),
        "a quarter of the 15 s idle timeout"
    );
    assert_eq!(config.longest_poll_period().as_millis(), 7500);
    let config: NetFlowsSourceConfig = serde_json::from_str(r#"{"active_timeout": "400ms", "udp": false}"#).unwrap();
    assert_eq!(config.tcp_poll_period().as_millis(), 100);
    assert_eq!(config.udp_poll_period(), None);
    let config: NetFlowsSourceConfig = serde_json::from_str(r#"{"active_timeout": "1h"}"#).unwrap();
    assert_eq!(config.udp_poll_period().map(|p| p.as_secs()), Some(3), "at most 5 s");
    assert!(serde_json::from_str::<NetFlowsSourceConfig>(r#"{"active_timout": "1s"}"#).is_err());
}

fn udp(at_s: u64, bytes_sent: u64) -> Observation {
    let mut o = observation(at_s, bytes_sent, 0);
    o.id = FlowId::Udp {
        key: super::bpf::UdpFlowKey {
            cookie: 0xdef,
            ..Default::default()
        },
        first_ns: S,
    };
    o.transport = Transport::Udp;
    o.srtt_us = None;
    o.totals.packets_sent = bytes_sent.div_ceil(100);
    o.totals.packets_received = 0;
    o
}

/// A UDP flow whose process stopped sending (or exited: UDP has no close)
/// gets no more interim records of 0 bytes; its next record, if it sends
/// again, covers the whole quiet time. Before the fix one came every
/// `active_timeout` until the idle timeout.
#[test]
fn quiet_udp_flows_get_no_empty_interim_records() {
    let mut table = FlowTable::new(10 * S);
    let first = table.open(udp(11, 300), Reason::ActiveTimeout).unwrap();
    assert_eq!(first.delta.bytes_sent, 300);
    assert!(table.open(udp(21, 300), Reason::ActiveTimeout).is_none(), "nothing new");
    assert!(table.open(udp(31, 300), Reason::ActiveTimeout).is_none(), "nothing new");
    let again = table.open(udp(41, 350), Reason::ActiveTimeout).unwrap();
    assert_eq!(again.delta.bytes_sent, 50);
    assert_eq!(again.window_start_ns, 11 * S, "the window spans the quiet time");
    // At shutdown every open flow has its record, quiet or not.
    assert!(table.open(udp(45, 350), Reason::Shutdown).is_some());
    // TCP keeps its interim records: an open connection is news.
    let mut table = FlowTable::new(10 * S);
    table.open(observation(11, 300, 30), Reason::ActiveTimeout).unwrap();
    assert!(table.open(observation(21, 300, 30), Reason::ActiveTimeout).is_some());
}
