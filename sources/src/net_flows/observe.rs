//! The kernel's records and map entries as [`Observation`]s.

use std::net::SocketAddr;

use super::bpf::{address, FlowRecord, UdpFlow, UdpFlowKey, FLOW_DIR_CLIENT};
use sonde_ebpf::owners::comm_str;

use super::flows::{Direction, FlowId, Observation, Totals, Transport};

fn direction(raw: u8) -> Direction {
    if u32::from(raw) == FLOW_DIR_CLIENT {
        Direction::Client
    } else {
        Direction::Server
    }
}

/// A TCP record (closed, or a snapshot of an open flow).
pub fn tcp(record: &FlowRecord) -> Observation {
    Observation {
        id: FlowId::Tcp {
            sock: record.sock,
            start_ns: record.start_ns,
        },
        transport: Transport::Tcp,
        direction: direction(record.direction),
        local: SocketAddr::new(record.local(), record.sport),
        remote: SocketAddr::new(record.remote(), record.dport),
        pid: record.pid,
        comm: comm_str(&record.comm),
        cgroup_id: record.cgroup_id,
        start_ns: record.start_ns,
        at_ns: record.end_ns,
        totals: Totals {
            bytes_sent: record.bytes_sent,
            bytes_received: record.bytes_received,
            packets_sent: record.packets_sent.into(),
            packets_received: record.packets_received.into(),
            retransmits: record.retransmits.into(),
        },
        srtt_us: (record.srtt_us > 0).then_some(record.srtt_us),
    }
}

/// A UDP flow's running totals, as of `at_ns`.
pub fn udp(key: &UdpFlowKey, flow: &UdpFlow, at_ns: u64) -> Observation {
    Observation {
        id: FlowId::Udp {
            key: *key,
            first_ns: flow.first_ns,
        },
        transport: Transport::Udp,
        direction: direction(flow.direction),
        local: SocketAddr::new(address(key.family, &flow.local), key.local_port),
        remote: SocketAddr::new(key.peer(), key.peer_port),
        pid: flow.pid,
        comm: comm_str(&flow.comm),
        cgroup_id: flow.cgroup_id,
        start_ns: flow.first_ns,
        at_ns,
        totals: Totals {
            bytes_sent: flow.bytes_sent,
            bytes_received: flow.bytes_received,
            packets_sent: flow.packets_sent.into(),
            packets_received: flow.packets_received.into(),
            retransmits: 0,
        },
        srtt_us: None,
    }
}
