//! One round: read the kernel's histograms and counters, name the cgroups,
//! turn each cgroup (and process) into metric events, forget the cgroups
//! removed and the processes exited.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use metrics::Label;
use sonde_core::event::{keys, Attributes, Event, Histogram, Metric, SharedStr, Temporality, Timestamp};
use sonde_ebpf::slot::log2_bounds;
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{comm_str, Flavor, RqHist, RunqueuePrograms, MAP_CGROUPS, OBJECT, RQ_LATENCY_MIN_SHIFT, SLOTS, STATS};
use super::cgroups::CgroupTree;
use super::config::RunqueueSourceConfig;

/// Histogram of run-queue latency per cgroup: woken or preempted → running.
pub const RUNQUEUE_LATENCY: &str = "sonde.scheduler.runqueue.latency";
/// Counter of context switches away from a cgroup's tasks, by [`SWITCH_TYPE`].
pub const CONTEXT_SWITCHES: &str = "sonde.scheduler.context_switches";
/// Histogram of run-queue latency per process (`per_process`).
pub const PROCESS_RUNQUEUE_LATENCY: &str = "sonde.process.runqueue.latency";
/// Counter of a process' context switches, by [`SWITCH_TYPE`] (`per_process`;
/// the OpenTelemetry process metric).
pub const PROCESS_CONTEXT_SWITCHES: &str = "process.context_switches";
/// Attribute: `voluntary` (the task blocked) or `involuntary` (preempted).
pub const SWITCH_TYPE: &str = "process.context_switch.type";

const NS_PER_S: f64 = 1e9;

/// The loaded programs plus what turns their maps into events.
#[derive(Debug)]
pub struct Collector {
    programs: RunqueuePrograms,
    cgroup_root: Option<PathBuf>,
    cgroup_filter: Vec<String>,
    tree: CgroupTree,
    node: SharedStr,
    bounds: Arc<[f64]>,
    telemetry: LossCounters,
}

impl Collector {
    /// Loads and attaches the programs. `labels` identify the component in
    /// the `sonde_ebpf_*` internal metrics.
    pub fn load(config: &RunqueueSourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let programs = RunqueuePrograms::load(&config.options())?;
        let cgroup_root = match sonde_ebpf::cgroup::cgroup2_root() {
            Ok(root) => Some(root),
            Err(error) => {
                tracing::warn!(%error, "no cgroup v2 hierarchy: cgroups are reported by id only");
                None
            }
        };
        let mut collector = Collector {
            programs,
            cgroup_root,
            cgroup_filter: config.cgroups.clone(),
            tree: CgroupTree::default(),
            node,
            bounds: log2_bounds(RQ_LATENCY_MIN_SHIFT, SLOTS, 1.0 / NS_PER_S).into(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_CGROUPS),
        };
        // The cgroup filter is filled now; a map that refuses it is a load error.
        collector.rescan().map_err(|e| LoadError::Map {
            object: e.object,
            map: e.map,
            source: e.source,
        })?;
        Ok(collector)
    }

    /// Which flavour of the programs is attached.
    pub fn flavor(&self) -> Flavor {
        self.programs.flavor()
    }

    /// The loaded programs (statistics, tests).
    pub fn programs(&self) -> &RunqueuePrograms {
        &self.programs
    }

    /// Reads the cgroup tree again and, when filtering by cgroup, watches
    /// the cgroups now under the configured paths.
    fn rescan(&mut self) -> Result<(), ReadError> {
        if let Some(root) = &self.cgroup_root {
            self.tree = CgroupTree::scan(root);
        }
        if !self.cgroup_filter.is_empty() {
            let ids = self.tree.under(&self.cgroup_filter);
            self.programs.set_cgroup_filter(&ids)?;
        }
        Ok(())
    }

    /// The running totals of every cgroup (and process), stamped now.
    pub fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read runqueue loss counters");
            }
        }
        let before = self.tree.clone();
        self.rescan()?;
        let now = Timestamp::now();
        let cgroups = self
            .programs
            .cgroups()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        let mut events = Vec::with_capacity(cgroups.len() * 3);
        for (id, hist) in &cgroups {
            let path = self.tree.path(*id).or_else(|| before.path(*id));
            let attributes = cgroup_attributes(*id, path, &self.node);
            events.extend(metrics(
                RUNQUEUE_LATENCY,
                CONTEXT_SWITCHES,
                hist,
                &attributes,
                &self.bounds,
                now,
            ));
            // Removed since the last scan: reported one last time.
            if self.cgroup_root.is_some() && !self.tree.contains(*id) && !before.contains(*id) {
                self.programs.remove_cgroup(*id);
            }
        }
        for (key, process) in self.programs.processes()? {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", key.pid))
                .map(|c| c.trim_end().to_string())
                .ok();
            let alive = comm.is_some();
            let comm = comm.unwrap_or_else(|| comm_str(&process.comm));
            let attributes = cgroup_attributes(key.cgroup_id, self.tree.path(key.cgroup_id), &self.node)
                .with(keys::PID, key.pid)
                .with(keys::COMM, comm);
            events.extend(metrics(
                PROCESS_RUNQUEUE_LATENCY,
                PROCESS_CONTEXT_SWITCHES,
                &process.hist,
                &attributes,
                &self.bounds,
                now,
            ));
            if !alive && !Path::new(&format!("/proc/{}", key.pid)).exists() {
                // Exited: reported one last time; a reused pid starts from zero.
                self.programs.remove_process(&key);
            }
        }
        Ok(events)
    }
}

fn cgroup_attributes(id: u64, path: Option<&str>, node: &SharedStr) -> Attributes {
    let mut attributes = Attributes::new().with(keys::CGROUP_ID, id);
    if let Some(path) = path {
        attributes.insert(keys::CGROUP_PATH, path.to_string());
    }
    attributes.with(keys::node(), node.clone())
}

/// The latency histogram and the two switch counters of one cgroup or process.
pub(super) fn metrics(
    latency: &'static str,
    switches: &'static str,
    hist: &RqHist,
    attributes: &Attributes,
    bounds: &Arc<[f64]>,
    now: Timestamp,
) -> Vec<Event> {
    let mut out = vec![Event::from(
        Metric::histogram(
            latency,
            Histogram {
                bounds: Arc::clone(bounds),
                counts: hist.slots.to_vec(),
                sum: hist.sum_ns as f64 / NS_PER_S,
                count: hist.waits(),
            },
            Temporality::Cumulative,
        )
        .with_description("Time tasks waited on a run queue after being woken or preempted, until they ran.")
        .with_unit("s")
        .with_attributes(attributes.clone())
        .with_timestamp(now),
    )];
    for (kind, n) in [("voluntary", hist.voluntary), ("involuntary", hist.involuntary)] {
        out.push(Event::from(
            Metric::counter(switches, n as f64)
                .with_description(
                    "Context switches away from the tasks: voluntary (blocked) or involuntary (preempted).",
                )
                .with_unit("{switch}")
                .with_attributes(attributes.clone().with(SWITCH_TYPE, kind))
                .with_timestamp(now),
        ));
    }
    out
}

impl sonde_core::polling::Collect for Collector {
    type Error = ReadError;

    fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        Collector::collect(self)
    }
}
