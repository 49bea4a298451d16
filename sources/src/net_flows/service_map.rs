//! Bytes between endpoint pairs, the service map: every record's counts
//! added up per (process cgroup and comm, role, peer address, service port,
//! transport), emitted as cumulative counters. After `pod_enrich` turns
//! the cgroup into a pod, these are pod → peer edges with bytes each way.

use std::collections::HashMap;
use std::net::IpAddr;

use metrics::Counter;
use sonde_core::event::{keys, Attributes, Metric, SharedStr, Timestamp};

use super::flows::{Direction, FlowUpdate, Transport};

/// Counter of payload bytes between this host's process and a peer, by
/// `network.io.direction` (`transmit`, `receive`).
pub const BYTES: &str = "sonde.network.flow.io";
/// Attribute: `transmit` (this process sent) or `receive`.
pub const IO_DIRECTION: &str = "network.io.direction";
/// Attribute: the peer's address.
pub const PEER: &str = "network.peer.address";
/// Attribute: the service's port (the server's port).
pub const SERVICE_PORT: &str = "server.port";

/// One edge of the map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Edge {
    transport: Transport,
    direction: Direction,
    peer: IpAddr,
    port: u16,
    cgroup_id: u64,
    comm: String,
}

/// Running byte totals per edge, bounded.
#[derive(Debug)]
pub struct ServiceMap {
    edges: HashMap<Edge, (u64, u64)>,
    max_edges: usize,
    full: Counter,
}

impl ServiceMap {
    /// A map of at most `max_edges` edges; updates for new edges beyond
    /// that are counted in `full` and not added.
    pub fn new(max_edges: usize, full: Counter) -> Self {
        ServiceMap {
            edges: HashMap::new(),
            max_edges,
            full,
        }
    }

    /// Adds a record's counts.
    pub fn add(&mut self, update: &FlowUpdate) {
        let o = &update.observation;
        if update.delta.bytes_sent == 0 && update.delta.bytes_received == 0 {
            return;
        }
        let port = match o.direction {
            Direction::Client => o.remote.port(),
            Direction::Server => o.local.port(),
        };
        let edge = Edge {
            transport: o.transport,
            direction: o.direction,
            peer: o.remote.ip(),
            port,
            cgroup_id: o.cgroup_id,
            comm: o.comm.clone(),
        };
        let at_capacity = self.edges.len() >= self.max_edges;
        match self.edges.get_mut(&edge) {
            Some(totals) => {
                totals.0 += update.delta.bytes_sent;
                totals.1 += update.delta.bytes_received;
            }
            None if at_capacity => self.full.increment(1),
            None => {
                self.edges
                    .insert(edge, (update.delta.bytes_sent, update.delta.bytes_received));
            }
        }
    }

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Two counters per edge, stamped `now`.
    pub fn to_metrics(&self, node: &SharedStr, now: Timestamp) -> Vec<Metric> {
        let mut out = Vec::with_capacity(self.edges.len() * 2);
        for (edge, (sent, received)) in &self.edges {
            let mut attributes = Attributes::new()
                .with("network.transport", edge.transport.as_str())
                .with("sonde.flow.direction", edge.direction.as_str())
                .with(PEER, edge.peer.to_string())
                .with(SERVICE_PORT, u32::from(edge.port));
            if edge.cgroup_id != 0 {
                attributes.insert(keys::CGROUP_ID, edge.cgroup_id);
            }
            if !edge.comm.is_empty() {
                attributes.insert(keys::COMM, edge.comm.clone());
            }
            attributes.insert(keys::node(), node.clone());
            for (io, value) in [("transmit", sent), ("receive", received)] {
                out.push(
                    Metric::counter(BYTES, *value as f64)
                        .with_description("Payload bytes between a process on this node and a peer.")
                        .with_unit("By")
                        .with_attributes(attributes.clone().with(IO_DIRECTION, io))
                        .with_timestamp(now),
                );
            }
        }
        out
    }
}
