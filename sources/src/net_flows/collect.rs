//! Reading the kernel: closed TCP flows from the ring buffer, snapshots of
//! open TCP flows from the iterator, UDP flows from their map; each turned
//! into records through the [`FlowTable`], and added to the service map.

use std::collections::HashSet;

use metrics::Label;
use sonde_core::event::{Event, SharedStr, Timestamp};
use sonde_ebpf::telemetry::{self, LossCounters};
use sonde_ebpf::LoadError;

use super::bpf::{monotonic_ns, ClosedFlows, FlowRecord, NetFlowPrograms, Options, FLOW_END_FAILED, OBJECT, STATS};

use super::config::NetFlowsSourceConfig;
use super::flows::{FlowTable, FlowUpdate, Reason, Transport};
use super::names::ProcessNames;
use super::observe;
use super::record::{to_log, Clock};
use super::service_map::ServiceMap;

/// The loaded programs plus what turns their maps into events.
#[derive(Debug)]
pub struct Collector {
    programs: NetFlowPrograms,
    table: FlowTable,
    service_map: Option<ServiceMap>,
    idle_timeout_ns: u64,
    /// How long ends are remembered against stale snapshots.
    memory_ns: u64,
    node: SharedStr,
    telemetry: LossCounters,
    names: ProcessNames,
}

impl Collector {
    /// Loads and attaches the programs. `labels` identify the component in
    /// the `sonde_ebpf_*` internal metrics. The ring buffer of closed flows
    /// comes back separately, to be polled.
    pub fn load(
        config: &NetFlowsSourceConfig,
        node: SharedStr,
        labels: &[Label],
    ) -> Result<(Self, ClosedFlows), LoadError> {
        let mut programs = NetFlowPrograms::load(Options {
            udp: config.udp,
            max_tcp_flows: config.max_tcp_flows,
            max_udp_flows: config.max_udp_flows,
        })?;
        let closed = programs
            .take_closed()
            .expect("a freshly loaded object has its ring buffer");
        let service_map = config.service_map.then(|| {
            let full = metrics::counter!(telemetry::MAP_FULL, telemetry::with_label(labels, "map", "service_map"));
            ServiceMap::new(config.max_service_map_edges, full)
        });
        let collector = Collector {
            programs,
            table: FlowTable::new(config.active_timeout.as_nanos() as u64),
            service_map,
            idle_timeout_ns: config.idle_timeout.as_nanos() as u64,
            memory_ns: 4 * config.longest_poll_period().as_nanos() as u64,
            node,
            telemetry: LossCounters::new(labels, OBJECT, STATS, "flows"),
            names: ProcessNames::default(),
        };
        Ok((collector, closed))
    }

    /// The final records of TCP flows that closed.
    pub fn closed(&mut self, records: Vec<FlowRecord>) -> Vec<Event> {
        let clock = Clock::now();
        let updates = records.iter().map(|record| self.end_tcp(record)).collect();
        self.emit(updates, &clock)
    }

    fn end_tcp(&mut self, record: &FlowRecord) -> FlowUpdate {
        let reason = if u32::from(record.end) == FLOW_END_FAILED {
            Reason::ConnectFailed
        } else {
            Reason::Closed
        };
        self.table.end(observe::tcp(record), reason)
    }

    /// One round of both transports: final records of closed TCP flows and
    /// idle UDP flows, and interim records of open flows that are due (of
    /// all of them, with `Reason::Shutdown`).
    pub fn poll(&mut self, closed: &mut ClosedFlows, reason: Reason) -> Vec<Event> {
        let clock = Clock::now();
        let mut updates = self.tcp_updates(closed, reason);
        updates.extend(self.udp_updates(reason));
        self.observe_stats();
        self.emit(updates, &clock)
    }

    /// [`Collector::poll`] for TCP only.
    pub fn poll_tcp(&mut self, closed: &mut ClosedFlows, reason: Reason) -> Vec<Event> {
        let clock = Clock::now();
        let updates = self.tcp_updates(closed, reason);
        self.observe_stats();
        self.emit(updates, &clock)
    }

    /// [`Collector::poll`] for UDP only.
    pub fn poll_udp(&mut self, reason: Reason) -> Vec<Event> {
        let clock = Clock::now();
        let updates = self.udp_updates(reason);
        self.emit(updates, &clock)
    }

    /// Closed TCP flows, and open ones from a snapshot of the kernel's sockets.
    fn tcp_updates(&mut self, closed: &mut ClosedFlows, reason: Reason) -> Vec<FlowUpdate> {
        // Snapshot first, then the ring buffer: a flow missing from the
        // snapshot has its close record in the ring by then (the program
        // writes the record before it forgets the flow). Ends go first, so
        // a snapshot taken just before a close adds nothing.
        let snapshot = self.programs.snapshot();
        let mut updates: Vec<FlowUpdate> = closed.drain().iter().map(|r| self.end_tcp(r)).collect();
        match snapshot {
            Ok(records) => {
                let mut present = HashSet::with_capacity(records.len());
                for record in &records {
                    let observation = observe::tcp(record);
                    present.insert(observation.id);
                    updates.extend(self.table.open(observation, reason));
                }
                let forget_before = monotonic_ns().saturating_sub(self.memory_ns);
                self.table.retain(Transport::Tcp, &present, forget_before);
            }
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot snapshot open TCP flows");
            }
        }
        updates
    }

    /// UDP flows: idle ones end (and leave the kernel map), open ones get
    /// interim records when due.
    fn udp_updates(&mut self, reason: Reason) -> Vec<FlowUpdate> {
        let mut updates = Vec::new();
        let flows = match self.programs.udp_flows() {
            Ok(flows) => flows,
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read UDP flows");
                return updates;
            }
        };
        let now = monotonic_ns();
        let mut present = HashSet::with_capacity(flows.len());
        for (key, flow) in &flows {
            if now.saturating_sub(flow.last_ns) >= self.idle_timeout_ns {
                updates.push(
                    self.table
                        .end(observe::udp(key, flow, flow.last_ns), Reason::IdleTimeout),
                );
                if let Err(error) = self.programs.remove_udp(key) {
                    tracing::debug!(%error, "cannot remove an idle UDP flow");
                }
            } else {
                let observation = observe::udp(key, flow, now);
                present.insert(observation.id);
                updates.extend(self.table.open(observation, reason));
            }
        }
        self.table
            .retain(Transport::Udp, &present, now.saturating_sub(self.memory_ns));
        updates
    }

    fn emit(&mut self, mut updates: Vec<FlowUpdate>, clock: &Clock) -> Vec<Event> {
        let mut events = Vec::with_capacity(updates.len());
        for update in &mut updates {
            let observation = &mut update.observation;
            observation.comm = self.names.name(observation.pid, &observation.comm);
        }
        self.names.clear();
        for update in &updates {
            if let Some(map) = &mut self.service_map {
                map.add(update);
            }
            events.push(Event::from(to_log(update, clock, &self.node)));
        }
        events
    }

    fn observe_stats(&mut self) {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read net_flows loss counters");
            }
        }
    }

    /// The service-map counters now (empty when it is off).
    pub fn service_map(&self) -> Vec<Event> {
        let Some(map) = &self.service_map else {
            return Vec::new();
        };
        map.to_metrics(&self.node, Timestamp::now())
            .into_iter()
            .map(Event::from)
            .collect()
    }

    /// The loaded programs (for their statistics, and tests).
    pub fn programs(&self) -> &NetFlowPrograms {
        &self.programs
    }
}
