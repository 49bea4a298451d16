//! What user space remembers about each flow, to turn the kernel's running
//! totals into records that each carry the counts since the flow's
//! previous record: interim records of a long-lived flow, then its final
//! record, sum to the flow's totals.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::bpf::UdpFlowKey;

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP (OpenTelemetry's `network.transport` value `tcp`).
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// The `network.transport` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Which end of the flow this host's socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// It connected (TCP), or sent first (UDP).
    Client,
    /// It accepted (TCP), or received first (UDP).
    Server,
}

impl Direction {
    /// The `sonde.flow.direction` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Client => "client",
            Direction::Server => "server",
        }
    }
}

/// Why a record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The TCP connection closed (final).
    Closed,
    /// The connect failed (final).
    ConnectFailed,
    /// The flow has been open for `active_timeout` since its last record.
    ActiveTimeout,
    /// The UDP flow saw no packet for `idle_timeout` (final).
    IdleTimeout,
    /// The agent is stopping; the flow may go on.
    Shutdown,
}

impl Reason {
    /// The `sonde.flow.reason` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Closed => "closed",
            Reason::ConnectFailed => "connect_failed",
            Reason::ActiveTimeout => "active_timeout",
            Reason::IdleTimeout => "idle_timeout",
            Reason::Shutdown => "shutdown",
        }
    }

    /// Whether the flow ends with this record.
    pub const fn is_final(self) -> bool {
        matches!(self, Reason::Closed | Reason::ConnectFailed | Reason::IdleTimeout)
    }
}

/// A flow's identity: the kernel reuses socket addresses and UDP keys, so
/// the start time is part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowId {
    /// A TCP socket's address and start.
    Tcp {
        /// Kernel address of the socket.
        sock: u64,
        /// Monotonic start, ns.
        start_ns: u64,
    },
    /// A UDP socket and peer, and its first packet.
    Udp {
        /// The kernel's key.
        key: UdpFlowKey,
        /// Monotonic time of the first packet, ns.
        first_ns: u64,
    },
}

impl FlowId {
    /// A short stable text form, to join a flow's records.
    pub fn to_hex(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// Running totals of a flow at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Payload bytes this socket sent.
    pub bytes_sent: u64,
    /// Payload bytes it received.
    pub bytes_received: u64,
    /// Packets (TCP segments, UDP datagrams) it sent.
    pub packets_sent: u64,
    /// Packets it received.
    pub packets_received: u64,
    /// Retransmitted segments (TCP).
    pub retransmits: u64,
}

impl Totals {
    /// What was added since `earlier` (counters never go back; a value
    /// that did is treated as unchanged).
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            packets_sent: self.packets_sent.saturating_sub(earlier.packets_sent),
            packets_received: self.packets_received.saturating_sub(earlier.packets_received),
            retransmits: self.retransmits.saturating_sub(earlier.retransmits),
        }
    }
}

/// What the kernel says about a flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Which flow.
    pub id: FlowId,
    /// TCP or UDP.
    pub transport: Transport,
    /// This socket's role.
    pub direction: Direction,
    /// This socket's address.
    pub local: SocketAddr,
    /// The peer's.
    pub remote: SocketAddr,
    /// Owner's pid (0 when unknown).
    pub pid: u32,
    /// Owner's comm (empty when unknown).
    pub comm: String,
    /// Owner's cgroup v2 id (0 when unknown).
    pub cgroup_id: u64,
    /// Monotonic start, ns.
    pub start_ns: u64,
    /// Monotonic time of these totals, ns.
    pub at_ns: u64,
    /// Running totals since the start.
    pub totals: Totals,
    /// Smoothed RTT, µs (TCP, when sampled).
    pub srtt_us: Option<u32>,
}

/// A record to emit: the observation, and the counts since the flow's
/// previous record.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowUpdate {
    /// What the kernel said.
    pub observation: Observation,
    /// Counts since the previous record of the flow (since its start for the first).
    pub delta: Totals,
    /// Monotonic start of the window `delta` covers, ns.
    pub window_start_ns: u64,
    /// Why it is written.
    pub reason: Reason,
}

#[derive(Clone, Copy, Debug)]
struct Reported {
    totals: Totals,
    at_ns: u64,
}

/// Every open flow's last record.
#[derive(Debug)]
pub struct FlowTable {
    active_timeout_ns: u64,
    flows: HashMap<FlowId, Reported>,
    /// Flows that ended, by when: a snapshot taken just before the end was
    /// read must not bring them back.
    ended: HashMap<FlowId, u64>,
}

impl FlowTable {
    /// A table whose open flows get a record every `active_timeout_ns`.
    pub fn new(active_timeout_ns: u64) -> Self {
        FlowTable {
            active_timeout_ns: active_timeout_ns.max(1),
            flows: HashMap::new(),
            ended: HashMap::new(),
        }
    }

    /// An open flow: a record when `active_timeout` passed since its
    /// previous one (or its start), or when `reason` is `Shutdown`.
    pub fn open(&mut self, observation: Observation, reason: Reason) -> Option<FlowUpdate> {
        if self.ended.contains_key(&observation.id) {
            return None;
        }
        let start = observation.start_ns;
        let reported = self.flows.entry(observation.id).or_insert(Reported {
            totals: Totals::default(),
            at_ns: start,
        });
        let due = observation.at_ns.saturating_sub(reported.at_ns) >= self.active_timeout_ns;
        if !due && reason != Reason::Shutdown {
            return None;
        }
        // A UDP flow without a packet since its last record (its process
        // may be gone: UDP has no close) says nothing new; it ends at its
        // idle timeout. Its window goes on from the last record.
        let quiet = observation.totals.since(&reported.totals) == Totals::default();
        if quiet && observation.transport == Transport::Udp && reason != Reason::Shutdown {
            return None;
        }
        let update = FlowUpdate {
            delta: observation.totals.since(&reported.totals),
            window_start_ns: reported.at_ns,
            observation,
            reason,
        };
        *reported = Reported {
            totals: update.observation.totals,
            at_ns: update.observation.at_ns,
        };
        Some(update)
    }

    /// A flow that ended: its final record, with what was not reported yet.
    pub fn end(&mut self, observation: Observation, reason: Reason) -> FlowUpdate {
        let reported = self.flows.remove(&observation.id).unwrap_or(Reported {
            totals: Totals::default(),
            at_ns: observation.start_ns,
        });
        self.ended.insert(observation.id, observation.at_ns);
        FlowUpdate {
            delta: observation.totals.since(&reported.totals),
            window_start_ns: reported.at_ns,
            observation,
            reason,
        }
    }

    /// Forgets flows of `transport` the kernel no longer has (`present`),
    /// and ends remembered before `ended_before_ns`. A flow that vanished
    /// without an end was evicted or its record lost (both counted).
    pub fn retain(&mut self, transport: Transport, present: &HashSet<FlowId>, ended_before_ns: u64) {
        let is = |id: &FlowId| {
            matches!(
                (id, transport),
                (FlowId::Tcp { .. }, Transport::Tcp) | (FlowId::Udp { .. }, Transport::Udp)
            )
        };
        self.flows.retain(|id, _| !is(id) || present.contains(id));
        self.ended.retain(|_, at| *at >= ended_before_ns);
    }

    /// Number of open flows remembered.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no open flow is remembered.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}
