//! The loaded programs and what turns their records into log records
//! (with the process and its ancestry) and their counters into metrics.

use std::path::Path;
use std::sync::Arc;

use sonde_core::event::{keys, Attributes, Event, Log, Metric, Severity, SharedStr, Timestamp};
use sonde_core::topology::component_metrics;
use sonde_core::SourceContext;
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{
    comm_str, CnEvent, ConnectionsPrograms, CN_ACCEPT, CN_CONNECT, DROPPED, IPPROTO_UDP, MAP_PENDING, OBJECT, STATS,
};
use super::config::ConnectionsSourceConfig;
use crate::clock::Clock;
use crate::process::ancestry::{published_process, Ancestry, Process};
use crate::process::events::{process_log, ANCESTRY, PARENT_PID};

/// Log record: an outbound connect.
pub const CONNECT: &str = "network.connect";
/// Log record: an accepted inbound connection.
pub const ACCEPT: &str = "network.accept";
/// Log record: a new listening socket.
pub const LISTEN: &str = "network.listen";
/// Counter of events not reported, by `reason`.
pub const DROPPED_TOTAL: &str = "sonde.connections.dropped";
/// Counter of events reported, by `direction` and `network.transport`.
pub const EVENTS_TOTAL: &str = "sonde.connections";

/// Field: `tcp` or `udp`.
pub const TRANSPORT: &str = "network.transport";
/// Field: `ipv4` or `ipv6`.
pub const NETWORK_TYPE: &str = "network.type";
/// Field: the initiator's address (a connect: this end; an accept: the peer).
pub const SOURCE_ADDRESS: &str = "source.address";
/// Field: the initiator's port.
pub const SOURCE_PORT: &str = "source.port";
/// Field: the responder's address (a connect: the peer; an accept: this end).
pub const DESTINATION_ADDRESS: &str = "destination.address";
/// Field: the responder's port.
pub const DESTINATION_PORT: &str = "destination.port";
/// Field: a listener's address.
pub const LOCAL_ADDRESS: &str = "network.local.address";
/// Field: a listener's port.
pub const LOCAL_PORT: &str = "network.local.port";
/// Field: `outbound`, `inbound` or `listen`.
pub const DIRECTION: &str = "sonde.network.direction";
/// Field: a non-blocking connect still under way when the call returned.
pub const IN_PROGRESS: &str = "sonde.network.connect_in_progress";
/// Field: a failed connect's error (`ECONNREFUSED`).
pub const ERROR: &str = "error.type";

const EINPROGRESS: i32 = 115;

/// The programs, the ancestry cache, the node's name, the counters.
#[derive(Debug)]
pub struct Collector {
    programs: ConnectionsPrograms,
    ancestry: Ancestry,
    depth: usize,
    node: SharedStr,
    telemetry: LossCounters,
    /// Events reported so far: [direction][udp].
    reported: [[u64; 2]; 3],
}

const DIRECTIONS: [&str; 3] = ["outbound", "inbound", "listen"];

impl Collector {
    /// Loads the programs with the configured policy.
    pub fn load(config: &ConnectionsSourceConfig, node: SharedStr, cx: &SourceContext) -> Result<Self, LoadError> {
        Self::load_with_labels(config, node, &component_metrics::labels(&cx.info))
    }

    /// [`Collector::load`] outside a pipeline (tests, the kernel check).
    pub fn load_with_labels(
        config: &ConnectionsSourceConfig,
        node: SharedStr,
        labels: &[metrics::Label],
    ) -> Result<Self, LoadError> {
        let mut policy = config.policy();
        policy.cgroups = sonde_ebpf::cgroup::v2_ids(&config.matching.cgroup, OBJECT, "enter_connect")?;
        Ok(Collector {
            programs: ConnectionsPrograms::load(&policy)?,
            ancestry: Ancestry::new(node.clone(), config.cache_size, Path::new("/proc")),
            depth: config.ancestry_depth,
            node,
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_PENDING),
            reported: [[0; 2]; 3],
        })
    }

    /// The programs (their ring buffer, their statistics).
    pub fn programs_mut(&mut self) -> &mut ConnectionsPrograms {
        &mut self.programs
    }

    /// The process image the event names: the `process` source's (same
    /// `sonde.process.exec_id` as its exec) when one runs and knows it, else this
    /// source's own cache, filled from `/proc`. An image is recognised by
    /// its start time and name: a pid reused, or a process that exec'd
    /// (its name changed), is read again.
    fn process(&mut self, e: &CnEvent, name: &str) -> Option<Arc<Process>> {
        let tick = self.ancestry.tick_ns().max(1);
        let fits = |p: &Process| p.start_ns / tick == e.start_ns / tick && (name.is_empty() || p.name == name);
        if let Some(process) = published_process(e.pid).filter(|p| fits(p)) {
            return Some(process);
        }
        if self.ancestry.get(e.pid).is_some_and(|p| !fits(p)) {
            self.ancestry.forget(e.pid);
        }
        self.ancestry
            .lookup(e.pid)
            .filter(|p| p.start_ns / tick == e.start_ns / tick)
    }

    /// The log record of one event.
    pub fn record(&mut self, e: &CnEvent, clock: &Clock) -> Event {
        let name = comm_str(&e.comm);
        let at = clock.wall(e.mono_ns);
        let (event_name, direction) = match e.kind {
            CN_CONNECT => (CONNECT, 0),
            CN_ACCEPT => (ACCEPT, 1),
            _ => (LISTEN, 2),
        };
        let udp = e.protocol == IPPROTO_UDP;
        self.reported[direction][usize::from(udp)] += 1;
        let mut log = match self.process(e, &name) {
            Some(process) => process_log(event_name, &process, self.depth, &self.node, at),
            None => {
                // Gone before we could read it: what the kernel said.
                let mut log = Log::new(event_name);
                log.timestamp = at;
                log.attributes = Attributes::new().with(keys::PID, e.pid);
                if !name.is_empty() {
                    log.attributes.insert(keys::COMM, name.clone());
                }
                log.attributes.insert(keys::node(), self.node.clone());
                if e.ppid != 0 {
                    log.fields.insert(PARENT_PID, e.ppid);
                }
                log.fields.insert(ANCESTRY, "[]");
                log
            }
        };
        if e.cgroup_id != 0 {
            log.attributes.insert(keys::CGROUP_ID, e.cgroup_id);
        }
        log.attributes.insert("process.user.id", i64::from(e.uid));
        let fields = &mut log.fields;
        fields.insert("thread.id", e.tid);
        fields.insert(TRANSPORT, if udp { "udp" } else { "tcp" });
        fields.insert(NETWORK_TYPE, if e.is_ipv6() { "ipv6" } else { "ipv4" });
        fields.insert(DIRECTION, DIRECTIONS[direction]);
        let (local, remote) = (e.local().to_string(), e.remote().to_string());
        let transport = if udp { "udp" } else { "tcp" };
        let message = match e.kind {
            CN_CONNECT => {
                fields.insert(SOURCE_ADDRESS, local.clone());
                fields.insert(SOURCE_PORT, i64::from(e.local_port));
                fields.insert(DESTINATION_ADDRESS, remote.clone());
                fields.insert(DESTINATION_PORT, i64::from(e.remote_port));
                if e.ret == -EINPROGRESS {
                    fields.insert(IN_PROGRESS, true);
                }
                if e.ret < 0 && e.ret != -EINPROGRESS {
                    let error = errno_name(-e.ret);
                    fields.insert(ERROR, error.clone());
                    log.severity = Severity::Warn;
                    format!(
                        "{name} failed to connect to {remote} port {} ({transport}): {error}",
                        e.remote_port
                    )
                } else {
                    format!("{name} connected to {remote} port {} ({transport})", e.remote_port)
                }
            }
            CN_ACCEPT => {
                fields.insert(SOURCE_ADDRESS, remote.clone());
                fields.insert(SOURCE_PORT, i64::from(e.remote_port));
                fields.insert(DESTINATION_ADDRESS, local.clone());
                fields.insert(DESTINATION_PORT, i64::from(e.local_port));
                format!("{name} accepted {remote} on port {} ({transport})", e.local_port)
            }
            _ => {
                fields.insert(LOCAL_ADDRESS, local.clone());
                fields.insert(LOCAL_PORT, i64::from(e.local_port));
                format!("{name} listens on {local} port {} ({transport})", e.local_port)
            }
        };
        Event::from(log.with_message(message))
    }

    /// The counters: events reported by direction and transport, events
    /// left out by reason; also exports the loss counters.
    pub fn counters(&mut self) -> Result<Vec<Event>, ReadError> {
        let stats = self.programs.stats()?;
        self.telemetry.observe(&stats);
        let now = Timestamp::now();
        let mut events: Vec<Event> = DROPPED
            .iter()
            .map(|(slot, reason)| {
                Event::from(
                    Metric::counter(DROPPED_TOTAL, stats.get(*slot) as f64)
                        .with_description(
                            "Connections not reported, by reason: filtered by the policy in the kernel, or no room \
                             in the ring buffer.",
                        )
                        .with_unit("{connection}")
                        .with_attributes(
                            Attributes::new()
                                .with("reason", *reason)
                                .with(keys::node(), self.node.clone()),
                        )
                        .with_timestamp(now),
                )
            })
            .collect();
        for (direction, counts) in DIRECTIONS.iter().zip(self.reported) {
            for (transport, count) in ["tcp", "udp"].iter().zip(counts) {
                if count == 0 {
                    continue;
                }
                events.push(Event::from(
                    Metric::counter(EVENTS_TOTAL, count as f64)
                        .with_description("Connections reported, by direction and transport.")
                        .with_unit("{connection}")
                        .with_attributes(
                            Attributes::new()
                                .with("direction", *direction)
                                .with(TRANSPORT, *transport)
                                .with(keys::node(), self.node.clone()),
                        )
                        .with_timestamp(now),
                ));
            }
        }
        Ok(events)
    }
}

/// The symbolic name of a connect's errno (`ECONNREFUSED`), else
/// `E<number>`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENETDOWN => "ENETDOWN",
        _ => return crate::file_access::errno_name(errno),
    };
    name.to_string()
}

/// Records turned into events per batch at most: under a connection storm
/// the ring buffer holds tens of thousands, and building them all at once
/// held them all in memory at once (~1.5 KiB each with their attributes).
pub const DRAIN_LIMIT: usize = 1024;

/// Reads every record waiting in `ring`.
pub fn drain(ring: &mut sonde_ebpf::aya::maps::RingBuf<sonde_ebpf::aya::maps::MapData>) -> Vec<CnEvent> {
    drain_some(ring, usize::MAX).0
}

/// Reads at most `limit` records from `ring`; and whether it stopped at
/// the limit (more may wait).
pub fn drain_some(
    ring: &mut sonde_ebpf::aya::maps::RingBuf<sonde_ebpf::aya::maps::MapData>,
    limit: usize,
) -> (Vec<CnEvent>, bool) {
    let mut out = Vec::new();
    let mut read = 0;
    while read < limit {
        let Some(record) = ring.next() else {
            return (out, false);
        };
        out.extend(CnEvent::from_bytes(&record));
        read += 1;
    }
    (out, true)
}
