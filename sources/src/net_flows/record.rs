//! A [`FlowUpdate`] as a `Log` event named [`FLOW_LOG`].

use sonde_core::event::{keys, Attributes, Log, SharedStr};

use super::flows::{Direction, FlowUpdate, Transport};

/// The name of flow records.
pub const FLOW_LOG: &str = "net.flow";

/// Field: `tcp` or `udp`.
pub const TRANSPORT: &str = "network.transport";
/// Field: `ipv4` or `ipv6`.
pub const NETWORK_TYPE: &str = "network.type";
/// Fields: the client (initiator) end.
pub const SOURCE_ADDRESS: &str = "source.address";
/// Field: the client's port.
pub const SOURCE_PORT: &str = "source.port";
/// Field: the server (responder) end.
pub const DESTINATION_ADDRESS: &str = "destination.address";
/// Field: the server's port.
pub const DESTINATION_PORT: &str = "destination.port";
/// Field: which end this host's socket is, `client` or `server`.
pub const DIRECTION: &str = "sonde.flow.direction";
/// Field: the flow's identity, the same in all its records.
pub const FLOW_ID: &str = "sonde.flow.id";
/// Field: why the record was written (`closed`, `connect_failed`,
/// `active_timeout`, `idle_timeout`, `shutdown`).
pub const REASON: &str = "sonde.flow.reason";
/// Field: whether this is the flow's last record.
pub const FINAL: &str = "sonde.flow.final";
/// Field: when the flow started (RFC 3339).
pub const START: &str = "sonde.flow.start";
/// Field: when the window of this record started (RFC 3339): the start,
/// or the previous record.
pub const WINDOW_START: &str = "sonde.flow.window_start";
/// Field: when this record's counts were read, or the flow ended (RFC 3339).
pub const END: &str = "sonde.flow.end";
/// Field: end − start, ns.
pub const DURATION_NS: &str = "sonde.flow.duration_ns";
/// Fields: payload bytes and packets in this record's window, as this
/// host's socket saw them.
pub const BYTES_SENT: &str = "sonde.flow.bytes_sent";
/// Payload bytes received in the window.
pub const BYTES_RECEIVED: &str = "sonde.flow.bytes_received";
/// Packets (TCP segments, UDP datagrams) sent in the window.
pub const PACKETS_SENT: &str = "sonde.flow.packets_sent";
/// Packets received in the window.
pub const PACKETS_RECEIVED: &str = "sonde.flow.packets_received";
/// Field: retransmitted segments in the window (TCP).
pub const RETRANSMITS: &str = "sonde.flow.retransmits";
/// Field: smoothed RTT, µs (TCP, when sampled).
pub const RTT_US: &str = "sonde.flow.rtt_us";

pub use crate::clock::Clock;

/// The record of `update`.
pub fn to_log(update: &FlowUpdate, clock: &Clock, node: &SharedStr) -> Log {
    let o = &update.observation;
    let (client, server) = match o.direction {
        Direction::Client => (o.local, o.remote),
        Direction::Server => (o.remote, o.local),
    };
    let network_type = if o.local.is_ipv4() { "ipv4" } else { "ipv6" };
    let mut fields = Attributes::new()
        .with(TRANSPORT, o.transport.as_str())
        .with(NETWORK_TYPE, network_type)
        .with(SOURCE_ADDRESS, client.ip().to_string())
        .with(SOURCE_PORT, u32::from(client.port()))
        .with(DESTINATION_ADDRESS, server.ip().to_string())
        .with(DESTINATION_PORT, u32::from(server.port()))
        .with(DIRECTION, o.direction.as_str())
        .with(FLOW_ID, o.id.to_hex())
        .with(REASON, update.reason.as_str())
        .with(FINAL, update.reason.is_final())
        .with(START, clock.wall(o.start_ns).to_string())
        .with(WINDOW_START, clock.wall(update.window_start_ns).to_string())
        .with(END, clock.wall(o.at_ns).to_string())
        .with(DURATION_NS, o.at_ns.saturating_sub(o.start_ns))
        .with(BYTES_SENT, update.delta.bytes_sent)
        .with(BYTES_RECEIVED, update.delta.bytes_received)
        .with(PACKETS_SENT, update.delta.packets_sent)
        .with(PACKETS_RECEIVED, update.delta.packets_received);
    if o.transport == Transport::Tcp {
        fields.insert(RETRANSMITS, update.delta.retransmits);
        if let Some(rtt) = o.srtt_us {
            fields.insert(RTT_US, rtt);
        }
    }
    let mut attributes = Attributes::new();
    if o.pid != 0 {
        attributes.insert(keys::PID, o.pid);
    }
    if !o.comm.is_empty() {
        attributes.insert(keys::COMM, o.comm.clone());
    }
    if o.cgroup_id != 0 {
        attributes.insert(keys::CGROUP_ID, o.cgroup_id);
    }
    attributes.insert(keys::node(), node.clone());
    let mut log = Log::new(FLOW_LOG);
    log.fields = fields;
    log.attributes = attributes;
    log.timestamp = clock.wall(o.at_ns);
    log
}
