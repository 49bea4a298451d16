//! One round: read the kernel map, turn each key into metric events, and
//! remove the keys of processes that are gone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use metrics::Label;
use sonde_core::event::{keys, Attributes, Event, Histogram, Metric, SharedStr, Temporality, Timestamp};
use sonde_ebpf::slot::log2_bounds;
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{
    drop_reason_names, reason_name, state_name, Options, Role, TcpCounts, TcpKey, TcpPrograms, TcpStateKey, TcpWaiting,
    LATENCY_SLOTS, MAP_SERIES, OBJECT, STATS, TCP_LATENCY_MIN_SHIFT,
};

use super::config::TcpSourceConfig;

/// Counter of established connections.
pub const OPENS: &str = "sonde.tcp.connections.opened";
/// Counter of established connections that ended.
pub const CLOSES: &str = "sonde.tcp.connections.closed";
/// Counter of connects that failed.
pub const CONNECT_FAILURES: &str = "sonde.tcp.connect.failures";
/// Histogram of connect latency, by `result`.
pub const CONNECT_DURATION: &str = "sonde.tcp.connect.duration";
/// Histogram of smoothed RTT when connections left ESTABLISHED.
pub const RTT: &str = "sonde.tcp.rtt";
/// Counter of retransmitted segments.
pub const RETRANSMITS: &str = "sonde.tcp.retransmits";
/// Counter of resets sent.
pub const RESETS_SENT: &str = "sonde.tcp.resets.sent";
/// Counter of resets received.
pub const RESETS_RECEIVED: &str = "sonde.tcp.resets.received";
/// Counter of dropped TCP packets, by `sonde.drop.reason`.
pub const DROPS: &str = "sonde.tcp.drops";

/// Gauge of sockets by owner, role, service port and state.
pub const CONNECTIONS: &str = "system.network.connections";

/// Attribute of [`CONNECTIONS`]: the TCP state, OpenTelemetry's
/// `network.connection.state` values (`established`, `close_wait`, …).
pub const STATE: &str = "network.connection.state";

/// Attribute of [`CONNECTIONS`]: always `tcp` (the convention's
/// `system.network.connections` counts every transport).
pub const TRANSPORT: &str = "network.transport";

/// Attribute: `client` or `server` (or `unknown`).
pub const ROLE: &str = "sonde.tcp.role";
/// Attribute: the service port (remote for clients, local for servers).
pub const PORT: &str = "server.port";
/// Attribute: the peer's address.
pub const PEER: &str = "network.peer.address";
/// Attribute: `ipv4` or `ipv6`.
pub const NETWORK_TYPE: &str = "network.type";
/// Attribute of the connect histogram: `established` or `failed`.
pub const RESULT: &str = "sonde.tcp.connect.result";
/// Attribute of drops: the kernel's drop reason (`NO_SOCKET`, `TCP_CSUM`).
pub const DROP_REASON: &str = "sonde.drop.reason";

const NS_PER_S: f64 = 1e9;

/// The loaded programs plus what turns their maps into events.
#[derive(Debug)]
pub struct Collector {
    programs: TcpPrograms,
    node: SharedStr,
    bounds: Arc<[f64]>,
    reasons: HashMap<u32, String>,
    /// Keys of exited processes, with their totals when first seen dead.
    exited: HashMap<TcpKey, u64>,
    /// TIME_WAIT and half-open series emitted last round (a zero is
    /// emitted once for those that emptied).
    waiting: HashSet<TcpWaiting>,
    /// Full-socket state series emitted so far: one that empties is
    /// emitted as zero until its process is gone.
    states: BTreeSet<TcpStateKey>,
    telemetry: LossCounters,
}

impl Collector {
    /// Loads and attaches the programs. `labels` identify the component in
    /// the `sonde_ebpf_*` internal metrics.
    pub fn load(config: &TcpSourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let programs = TcpPrograms::load(Options {
            peer_addresses: config.peer_addresses,
            drop_reasons: config.drop_reasons,
            max_series: config.max_series,
            max_sockets: config.max_sockets,
        })?;
        let reasons = if programs.drop_reasons() {
            drop_reason_names()
        } else {
            HashMap::new()
        };
        Ok(Collector {
            programs,
            node,
            bounds: log2_bounds(TCP_LATENCY_MIN_SHIFT, LATENCY_SLOTS, 1.0 / NS_PER_S).into(),
            reasons,
            exited: HashMap::new(),
            waiting: HashSet::new(),
            states: BTreeSet::new(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_SERIES),
        })
    }

    /// The running totals of every key, as metric events stamped now; also
    /// exports what the programs lost and prunes exited processes.
    pub fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read tcp loss counters");
            }
        }
        let series = self.programs.read().inspect_err(|_| self.telemetry.map_read_failed())?;
        let now = Timestamp::now();
        let mut events = Vec::with_capacity(series.len() * 4);
        for (key, counts) in &series {
            let attributes = attributes(key, &self.node);
            events.extend(
                to_metrics(counts, &attributes, &self.bounds, now)
                    .into_iter()
                    .map(Event::from),
            );
        }
        for (reason, total) in self.programs.drops()? {
            let attributes = Attributes::new()
                .with(DROP_REASON, reason_name(&self.reasons, reason))
                .with(keys::node(), self.node.clone());
            events.push(Event::from(
                Metric::counter(DROPS, total as f64)
                    .with_description("TCP packets the kernel dropped, by drop reason.")
                    .with_unit("{packet}")
                    .with_attributes(attributes)
                    .with_timestamp(now),
            ));
        }
        self.prune(&series);
        events.extend(self.collect_states(now)?);
        Ok(events)
    }

    /// The gauge of sockets per state: full sockets from the kernel's
    /// counts, TIME_WAIT and half-open ones listed now. Removes the keys of
    /// exited processes that hold no socket any more.
    fn collect_states(&mut self, now: Timestamp) -> Result<Vec<Event>, ReadError> {
        let (states, _) = self
            .programs
            .states()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        let waiting = self
            .programs
            .waiting()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        let mut events = Vec::with_capacity(states.len());
        let mut counts: BTreeMap<TcpStateKey, i64> = states.into_iter().collect();
        for key in &self.states {
            counts.entry(*key).or_insert(0);
        }
        self.states.clear();
        for (key, count) in &counts {
            events.push(state_gauge(state_attributes(key, &self.node), *count as f64, now));
            // Emptied series of a process that is gone are dropped.
            if *count > 0 || key.pid == 0 || process_alive(key.pid) {
                self.states.insert(*key);
            }
        }
        let mut counted: BTreeMap<TcpWaiting, u64> = BTreeMap::new();
        for record in waiting {
            *counted.entry(record).or_default() += 1;
        }
        let gone: Vec<TcpWaiting> = self
            .waiting
            .iter()
            .filter(|w| !counted.contains_key(w))
            .copied()
            .collect();
        for record in gone {
            counted.insert(record, 0);
        }
        self.waiting = counted.iter().filter(|(_, n)| **n > 0).map(|(w, _)| *w).collect();
        for (record, n) in counted {
            let key = TcpStateKey {
                port: record.port,
                role: record.role,
                state: record.state,
                ..TcpStateKey::default()
            };
            events.push(state_gauge(state_attributes(&key, &self.node), n as f64, now));
        }
        Ok(events)
    }

    /// Removes the keys of processes that exited and whose totals did not
    /// change for a whole round (a socket can still close after its
    /// process exits). They were emitted with their final totals first.
    fn prune(&mut self, series: &[(TcpKey, TcpCounts)]) {
        let mut still_exited = HashMap::new();
        for (key, counts) in series {
            if key.pid == 0 || process_alive(key.pid) {
                continue;
            }
            let fingerprint = fingerprint(counts);
            if self.exited.get(key) == Some(&fingerprint) {
                if let Err(error) = self.programs.remove(key) {
                    tracing::debug!(%error, pid = key.pid, "cannot remove an exited process' series");
                }
            } else {
                still_exited.insert(*key, fingerprint);
            }
        }
        self.exited = still_exited;
    }

    /// The loaded programs (for their statistics, and tests).
    pub fn programs(&self) -> &TcpPrograms {
        &self.programs
    }
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Changes whenever any total of `counts` does.
fn fingerprint(counts: &TcpCounts) -> u64 {
    [
        counts.opens,
        counts.closes,
        counts.connect_failures,
        counts.retransmits,
        counts.resets_sent,
        counts.resets_received,
        counts.rtt_sum_ns,
    ]
    .iter()
    .fold(0u64, |acc, v| acc.wrapping_mul(31).wrapping_add(*v))
}

/// The attributes of one key.
pub(super) fn attributes(key: &TcpKey, node: &SharedStr) -> Attributes {
    let mut attributes = Attributes::new();
    if key.pid != 0 {
        attributes.insert(keys::PID, key.pid);
    }
    let comm = key.comm();
    if !comm.is_empty() {
        attributes.insert(keys::COMM, comm);
    }
    if key.cgroup_id != 0 {
        attributes.insert(keys::CGROUP_ID, key.cgroup_id);
    }
    attributes.insert(ROLE, key.role().as_str());
    if key.port != 0 {
        attributes.insert(PORT, u32::from(key.port));
    }
    if let Some(peer) = key.peer() {
        attributes.insert(PEER, peer.to_string());
    }
    if let Some(network_type) = key.network_type() {
        attributes.insert(NETWORK_TYPE, network_type);
    }
    attributes.insert(keys::node(), node.clone());
    attributes
}

/// The attributes of one state series.
pub(super) fn state_attributes(key: &TcpStateKey, node: &SharedStr) -> Attributes {
    let mut attributes = Attributes::new();
    if key.pid != 0 {
        attributes.insert(keys::PID, key.pid);
    }
    let comm = key.comm();
    if !comm.is_empty() {
        attributes.insert(keys::COMM, comm);
    }
    if key.cgroup_id != 0 {
        attributes.insert(keys::CGROUP_ID, key.cgroup_id);
    }
    attributes.insert(ROLE, key.role().as_str());
    if key.port != 0 || key.role() == Role::Server {
        attributes.insert(PORT, u32::from(key.port));
    }
    attributes.insert(STATE, state_name(key.state));
    attributes.insert(TRANSPORT, "tcp");
    attributes.insert(keys::node(), node.clone());
    attributes
}

pub(super) fn state_gauge(attributes: Attributes, value: f64, now: Timestamp) -> Event {
    Event::from(
        Metric::gauge(CONNECTIONS, value)
            .with_description("TCP sockets by owner, role, service port and state.")
            .with_unit("{connection}")
            .with_attributes(attributes)
            .with_timestamp(now),
    )
}

/// The metrics of one key: counters that are non-zero, histograms that
/// have observations.
pub(super) fn to_metrics(
    counts: &TcpCounts,
    attributes: &Attributes,
    bounds: &Arc<[f64]>,
    now: Timestamp,
) -> Vec<Metric> {
    let point = |metric: Metric, attributes: Attributes| metric.with_attributes(attributes).with_timestamp(now);
    let mut out = Vec::new();
    let counters: [(&str, u64, &str, &str); 6] = [
        (OPENS, counts.opens, "TCP connections established.", "{connection}"),
        (
            CLOSES,
            counts.closes,
            "Established TCP connections that ended.",
            "{connection}",
        ),
        (
            CONNECT_FAILURES,
            counts.connect_failures,
            "TCP connects that failed (refused, timed out, reset).",
            "{connect}",
        ),
        (
            RETRANSMITS,
            counts.retransmits,
            "Retransmitted TCP segments.",
            "{segment}",
        ),
        (RESETS_SENT, counts.resets_sent, "TCP resets sent.", "{reset}"),
        (
            RESETS_RECEIVED,
            counts.resets_received,
            "TCP resets received.",
            "{reset}",
        ),
    ];
    for (name, value, description, unit) in counters {
        if value > 0 {
            out.push(
                point(Metric::counter(name, value as f64), attributes.clone())
                    .with_description(description)
                    .with_unit(unit),
            );
        }
    }
    let histogram = |counts: &[u64], sum_ns: u64| Histogram {
        bounds: Arc::clone(bounds),
        counts: counts.to_vec(),
        sum: sum_ns as f64 / NS_PER_S,
        count: counts.iter().sum(),
    };
    for (result, slots, sum) in [
        ("established", &counts.connect_ok, counts.connect_ok_sum_ns),
        ("failed", &counts.connect_failed, counts.connect_failed_sum_ns),
    ] {
        let h = histogram(slots, sum);
        if h.count > 0 {
            out.push(
                point(
                    Metric::histogram(CONNECT_DURATION, h, Temporality::Cumulative),
                    attributes.clone().with(RESULT, result),
                )
                .with_description("TCP connect latency, from SYN sent to established or failed.")
                .with_unit("s"),
            );
        }
    }
    let rtt = histogram(&counts.rtt, counts.rtt_sum_ns);
    if rtt.count > 0 {
        out.push(
            point(Metric::histogram(RTT, rtt, Temporality::Cumulative), attributes.clone())
                .with_description("Smoothed TCP round-trip time when a connection left ESTABLISHED.")
                .with_unit("s"),
        );
    }
    out
}

impl sonde_core::polling::Collect for Collector {
    type Error = ReadError;

    fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        Collector::collect(self)
    }
}
