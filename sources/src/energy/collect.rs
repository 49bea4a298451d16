//! One round: force a switch on every CPU, read the kernel's on-CPU times
//! and the meters, attribute, emit, and prune processes that exited.

use std::path::PathBuf;
use std::time::Instant;

use metrics::Label;
use sonde_core::event::{keys, Attributes, Event, Metric, SharedStr, Timestamp};
use sonde_ebpf::telemetry::LossCounters;

use super::bpf::{Energy, EnergyKey, MAP_TASKS, OBJECT, STATS};

use super::config::EnergySourceConfig;
use super::error::EnergyError;
use super::ledger::{Ledger, Round};
use super::meter::{Meters, PowerSource};
use super::model::PowerModel;

/// Counter: energy attributed to a process, J.
pub const PROCESS_ENERGY: &str = "sonde.process.energy";
/// Counter: node energy, J.
pub const NODE_ENERGY: &str = "sonde.node.energy";
/// Counter: the idle part of the node energy, J.
pub const NODE_IDLE_ENERGY: &str = "sonde.node.idle_energy";
/// Gauge: node power over the last interval, W.
pub const NODE_POWER: &str = "sonde.node.power";
/// Attribute: `package`, `core`, `uncore`, `dram`, `psys`, `cpu`, `gpu`.
pub const COMPONENT: &str = "sonde.energy.component";
/// Attribute: `rapl`, `nvml` or `model`.
pub const SOURCE: &str = "sonde.energy.source";

/// The loaded program, the meters and the ledger.
#[derive(Debug)]
pub struct Collector {
    programs: Energy,
    meters: Meters,
    ledger: Ledger,
    procfs_root: PathBuf,
    node: SharedStr,
    last: Instant,
    telemetry: LossCounters,
    round: Round,
}

impl Collector {
    /// Loads and attaches the program and opens the meters; the first
    /// interval starts now. `labels` identify the component in the
    /// `sonde_ebpf_*` internal metrics.
    pub fn load(config: &EnergySourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, EnergyError> {
        let model = PowerModel::new(config.idle_watts_per_cpu, config.max_watts_per_cpu)?;
        let programs = Energy::load()?;
        let meters = Meters::open(&config.sysfs_root, &config.procfs_root, model, config.gpu)?;
        programs.flush();
        let ledger = Ledger::new(meters.components().len(), &programs.read()?);
        Ok(Collector {
            programs,
            meters,
            ledger,
            procfs_root: config.procfs_root.clone(),
            node,
            last: Instant::now(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_TASKS),
            round: Round::default(),
        })
    }

    /// The interval since the previous call: node and process energy as
    /// cumulative counters stamped now, and the node power.
    pub fn collect(&mut self) -> Result<Vec<Event>, EnergyError> {
        self.programs.flush();
        let tasks = self.programs.read().inspect_err(|_| self.telemetry.map_read_failed())?;
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => tracing::warn!(%error, "cannot read energy loss counters"),
        }
        let now = Instant::now();
        let seconds = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let energy = self.meters.read(seconds)?;
        self.round = self.ledger.attribute(&tasks, &energy);

        let stamp = Timestamp::now();
        let mut events = Vec::new();
        for (c, (component, source)) in self.meters.components().iter().enumerate() {
            let attributes = Attributes::new()
                .with(COMPONENT, component.clone())
                .with(SOURCE, SharedStr::from_static(source.as_str()))
                .with(keys::node(), self.node.clone());
            let point = |metric: Metric| Event::from(metric.with_attributes(attributes.clone()).with_timestamp(stamp));
            let watts = if seconds > 0.0 { energy[c].joules / seconds } else { 0.0 };
            events.push(point(
                Metric::counter(NODE_ENERGY, self.ledger.node_joules[c])
                    .with_description("Node energy, measured (rapl, nvml) or modelled (model).")
                    .with_unit("J"),
            ));
            events.push(point(
                Metric::counter(NODE_IDLE_ENERGY, self.ledger.node_idle_joules[c])
                    .with_description("The idle part of the node energy (shared among processes by CPU time).")
                    .with_unit("J"),
            ));
            events.push(point(
                Metric::gauge(NODE_POWER, watts)
                    .with_description("Node power over the last interval.")
                    .with_unit("W"),
            ));
        }
        for (key, process) in self.ledger.active() {
            for (c, (component, source)) in self.meters.components().iter().enumerate() {
                events.push(Event::from(
                    Metric::counter(PROCESS_ENERGY, process.joules[c])
                        .with_description("Energy attributed to the process, by its share of on-CPU time.")
                        .with_unit("J")
                        .with_attributes(process_attributes(key, &process.comm, component, *source, &self.node))
                        .with_timestamp(stamp),
                ));
            }
        }
        self.prune();
        Ok(events)
    }

    /// Deletes processes that exited, in the kernel map and the ledger: their
    /// last totals went out in this round.
    fn prune(&mut self) {
        let gone: Vec<EnergyKey> = self
            .ledger
            .processes()
            .keys()
            .filter(|key| key.tgid != 0 && !self.procfs_root.join(key.tgid.to_string()).exists())
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        if let Err(error) = self.programs.remove(&gone) {
            self.telemetry.map_read_failed();
            tracing::warn!(%error, "cannot prune exited processes");
            return;
        }
        self.ledger.forget(&gone);
    }

    /// The last interval's attribution.
    pub fn round(&self) -> &Round {
        &self.round
    }

    /// The running totals of every process.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The components and where their figures come from.
    pub fn components(&self) -> &[(SharedStr, PowerSource)] {
        self.meters.components()
    }

    /// The loaded program (for its run-time statistics).
    pub fn programs(&self) -> &Energy {
        &self.programs
    }
}

fn process_attributes(
    key: &EnergyKey,
    comm: &SharedStr,
    component: &SharedStr,
    source: PowerSource,
    node: &SharedStr,
) -> Attributes {
    Attributes::new()
        .with(keys::PID, i64::from(key.tgid))
        .with(keys::COMM, comm.clone())
        .with(keys::CGROUP_ID, key.cgroup_id as i64)
        .with(COMPONENT, component.clone())
        .with(SOURCE, SharedStr::from_static(source.as_str()))
        .with(keys::node(), node.clone())
}

impl sonde_core::polling::Collect for Collector {
    type Error = EnergyError;

    fn collect(&mut self) -> Result<Vec<Event>, EnergyError> {
        Collector::collect(self)
    }
}
