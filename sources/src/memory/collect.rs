//! One round: find processes to trace, read the kernel maps, and turn them
//! into metric events, the top stacks symbolized.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use metrics::Label;
use sonde_core::event::{keys, Attributes, Event, Histogram, Metric, SharedStr, Temporality, Timestamp};
use sonde_ebpf::slot::log2_bounds;
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{
    comm_str, FaultOptions, MemFaultCounts, MemFaultKey, MemOutstanding, MemPageCounts, MemPageKey, MemProc,
    MemStackKey, MemoryPrograms, Options, MAP_PAGES, MEM_RECLAIM_MIN_SHIFT, MEM_SIZE_MIN_SHIFT, OBJECT, ORDERS,
    RECLAIM_SLOTS, SIZE_SLOTS, STATS,
};
use super::config::MemorySourceConfig;
use super::oom::{OomReporter, OOM_KILLS};
use super::pressure::{fault_metrics, reclaim_metric, FAULTS_BY_STACK, PAGE_FAULTS};
use crate::clock::Clock;
use crate::profile::procs::{read_process, Process};
use crate::profile::Symbols;

/// Counter of page allocations, by `order`.
pub const PAGE_ALLOCATIONS: &str = "sonde.memory.page.allocations";
/// Counter of page frees, by `order`.
pub const PAGE_FREES: &str = "sonde.memory.page.frees";
/// Counter of pages allocated (an allocation of order n is 2^n pages).
pub const PAGES_ALLOCATED: &str = "sonde.memory.pages_allocated";
/// Counter of user-space allocations of a traced process.
pub const ALLOCATIONS: &str = "sonde.memory.allocations";
/// Counter of user-space frees of a traced process.
pub const FREES: &str = "sonde.memory.frees";
/// Histogram of user-space allocation sizes.
pub const ALLOCATION_SIZE: &str = "sonde.memory.allocation.size";
/// Gauge: bytes allocated and not yet freed, by allocation stack.
pub const OUTSTANDING_BYTES: &str = "sonde.memory.outstanding";
/// Gauge: allocations not yet freed, by allocation stack.
pub const OUTSTANDING_ALLOCATIONS: &str = "sonde.memory.outstanding_allocations";

/// Attribute: the page order (0: one page).
pub const ORDER: &str = "sonde.memory.page.order";
/// Attribute: the allocation stack, folded (`main;serve;leak`, outermost first).
pub const STACK: &str = "sonde.memory.stack";
/// Attribute: the function that called the allocator.
pub const FUNCTION: &str = "code.function.name";

/// The loaded programs plus what turns their maps into events.
#[derive(Debug)]
pub struct Collector {
    programs: MemoryPrograms,
    pids: Vec<u32>,
    comms: HashSet<String>,
    top_stacks: usize,
    node: SharedStr,
    size_bounds: Arc<[f64]>,
    reclaim_bounds: Arc<[f64]>,
    fault_stacks: bool,
    oom: OomReporter,
    telemetry: LossCounters,
}

impl Collector {
    /// Loads the programs and starts tracing the configured processes.
    pub fn load(config: &MemorySourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let programs = MemoryPrograms::load(Options {
            pages: config.page_allocations,
            per_process_cap: config.max_tracked_per_process,
            max_allocations: config.max_allocations,
            faults: config.page_faults.enabled.then_some(FaultOptions {
                period: config.page_faults.period,
                stacks: config.page_faults.stacks,
            }),
            reclaim: config.reclaim,
            oom: config.oom_kills,
        })?;
        let mut collector = Collector {
            programs,
            pids: config.pids.clone(),
            comms: config.comm.iter().cloned().collect(),
            top_stacks: config.top_stacks,
            node,
            size_bounds: log2_bounds(MEM_SIZE_MIN_SHIFT, SIZE_SLOTS, 1.0).into(),
            // Stall durations are counted in ns, reported in seconds.
            reclaim_bounds: log2_bounds(MEM_RECLAIM_MIN_SHIFT, RECLAIM_SLOTS, 1e-9).into(),
            fault_stacks: config.page_faults.enabled && config.page_faults.stacks,
            oom: OomReporter::new(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_PAGES),
        };
        // A named pid that cannot be traced is a configuration error.
        for pid in collector.pids.clone() {
            collector.programs.trace(pid)?;
        }
        collector.trace_comms();
        Ok(collector)
    }

    /// Starts tracing the processes whose comm matches, not traced yet.
    fn trace_comms(&mut self) {
        if self.comms.is_empty() {
            return;
        }
        let Ok(dir) = std::fs::read_dir("/proc") else { return };
        for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            if pid != std::process::id() && self.comms.contains(comm.trim_end()) {
                if let Err(error) = self.programs.trace(pid) {
                    tracing::debug!(%error, pid, "cannot trace a process' allocations");
                }
            }
        }
    }

    /// This round's events.
    pub fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read memory loss counters");
            }
        }
        self.trace_comms();
        let now = Timestamp::now();
        let mut events = Vec::new();
        let pages = self
            .programs
            .pages()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        for (key, counts) in &pages {
            events.extend(page_metrics(key, counts, &self.node, now));
            if key.pid != 0 && !Path::new(&format!("/proc/{}", key.pid)).exists() {
                // Emitted one last time; a pid reused later starts from zero.
                self.programs.remove_pages(key);
            }
        }
        let clock = Clock::now();
        for oom in self.programs.oom_kills() {
            events.push(self.oom.report(&oom, &clock, &self.node));
        }
        for (path, kills) in &self.oom.kills {
            events.push(Event::from(
                Metric::counter(OOM_KILLS, *kills as f64)
                    .with_description("Processes killed by the OOM killer, by memory cgroup.")
                    .with_unit("{kill}")
                    .with_attributes(
                        Attributes::new()
                            .with(super::oom::MEMCG_PATH, path.clone())
                            .with(keys::node(), self.node.clone()),
                    )
                    .with_timestamp(now),
            ));
        }
        let reclaim = self.programs.reclaim()?;
        for (key, hist) in &reclaim {
            events.push(reclaim_metric(key, hist, &self.reclaim_bounds, &self.node, now));
        }
        let mut symbols = Symbols::new(Path::new("/proc"), false);
        let faults = self.programs.faults()?;
        self.fault_events(&faults, &mut symbols, now, &mut events);
        let procs = self.programs.procs()?;
        let outstanding = self.programs.outstanding()?;
        for (pid, proc) in &procs {
            let process = read_process(Path::new("/proc"), *pid, true);
            let comm = process.as_ref().map(|p| p.comm.to_string()).unwrap_or_default();
            let attributes = process_attributes(*pid, &comm, &self.node);
            events.extend(proc_metrics(proc, &attributes, &self.size_bounds, now));
            let mut stacks: Vec<(MemStackKey, MemOutstanding)> = outstanding
                .iter()
                .filter(|(k, v)| k.pid == *pid && v.bytes > 0)
                .copied()
                .collect();
            stacks.sort_by_key(|(_, v)| std::cmp::Reverse(v.bytes));
            stacks.truncate(self.top_stacks);
            let ids: Vec<i32> = stacks.iter().map(|(key, _)| key.stack_id).collect();
            let named = self.name_stacks(&mut symbols, process.as_ref(), &ids);
            for ((_, value), (folded, function)) in stacks.into_iter().zip(named) {
                let attributes = attributes.clone().with(STACK, folded).with(FUNCTION, function);
                events.push(Event::from(
                    Metric::gauge(OUTSTANDING_BYTES, value.bytes as f64)
                        .with_description("Bytes allocated from this stack and not yet freed.")
                        .with_unit("By")
                        .with_attributes(attributes.clone())
                        .with_timestamp(now),
                ));
                events.push(Event::from(
                    Metric::gauge(OUTSTANDING_ALLOCATIONS, value.allocs as f64)
                        .with_description("Allocations from this stack not yet freed.")
                        .with_unit("{allocation}")
                        .with_attributes(attributes)
                        .with_timestamp(now),
                ));
            }
        }
        Ok(events)
    }

    /// The page-fault counters: per process, and per stack (the
    /// `top_stacks` with the most faults) when stacks are on. Entries of
    /// processes that exited are emitted one last time, then removed.
    fn fault_events(
        &mut self,
        faults: &[(MemFaultKey, MemFaultCounts)],
        symbols: &mut Symbols,
        now: Timestamp,
        events: &mut Vec<Event>,
    ) {
        let mut per_process: std::collections::BTreeMap<(u32, u64, [u8; 16]), MemFaultCounts> = Default::default();
        for (key, counts) in faults {
            let total = per_process.entry((key.pid, key.cgroup_id, key.comm)).or_default();
            for (a, b) in total.faults.iter_mut().zip(counts.faults) {
                *a += b;
            }
        }
        for (&(pid, cgroup_id, comm), counts) in &per_process {
            let key = MemFaultKey {
                cgroup_id,
                pid,
                stack_id: -1,
                comm,
            };
            events.extend(fault_metrics(PAGE_FAULTS, &key, counts, None, &self.node, now));
            if !self.fault_stacks {
                continue;
            }
            let mut stacks: Vec<&(MemFaultKey, MemFaultCounts)> = faults
                .iter()
                .filter(|(k, _)| k.pid == pid && k.cgroup_id == cgroup_id && k.comm == comm)
                .collect();
            stacks.sort_by_key(|(_, c)| std::cmp::Reverse(c.faults.iter().sum::<u64>()));
            stacks.truncate(self.top_stacks);
            let process = read_process(Path::new("/proc"), pid, true);
            let ids: Vec<i32> = stacks.iter().map(|(k, _)| k.stack_id).collect();
            let named = self.name_stacks(symbols, process.as_ref(), &ids);
            for ((key, counts), stack) in stacks.into_iter().zip(named) {
                events.extend(fault_metrics(
                    FAULTS_BY_STACK,
                    key,
                    counts,
                    Some(stack),
                    &self.node,
                    now,
                ));
            }
        }
        for (key, _) in faults {
            if !Path::new(&format!("/proc/{}", key.pid)).exists() {
                self.programs.remove_faults(key);
            }
        }
    }

    /// Each stack id as (folded stack outermost first, innermost
    /// function), symbolized in `process` ("[unknown]" when it cannot be).
    fn name_stacks(&self, symbols: &mut Symbols, process: Option<&Process>, ids: &[i32]) -> Vec<(String, String)> {
        let unknown = || "[unknown]".to_string();
        let Some(process) = process else {
            return ids.iter().map(|_| (unknown(), unknown())).collect();
        };
        symbols.open_files(process);
        // Lookup addresses: a return address minus one.
        let addresses: Vec<u64> = ids
            .iter()
            .flat_map(|id| self.programs.stack(*id))
            .map(|ip| ip.saturating_sub(1))
            .collect();
        symbols.prefetch_user(process, addresses);
        ids.iter()
            .map(|id| {
                let functions: Vec<String> = self
                    .programs
                    .stack(*id)
                    .into_iter()
                    .map(|ip| match symbols.user_frame(process, ip.saturating_sub(1)) {
                        Ok(frame) | Err((frame, _)) => frame.function.to_string(),
                    })
                    .collect();
                let folded = functions.iter().rev().cloned().collect::<Vec<_>>().join(";");
                (
                    if folded.is_empty() { unknown() } else { folded },
                    functions.first().cloned().unwrap_or_else(unknown),
                )
            })
            .collect()
    }

    /// The loaded programs (for their statistics, and tests).
    pub fn programs(&self) -> &MemoryPrograms {
        &self.programs
    }
}

fn process_attributes(pid: u32, comm: &str, node: &SharedStr) -> Attributes {
    let mut attributes = Attributes::new().with(keys::PID, pid);
    if !comm.is_empty() {
        attributes.insert(keys::COMM, comm.to_string());
    }
    attributes.with(keys::node(), node.clone())
}

/// The page counters of one process: per order, and pages in all.
pub(super) fn page_metrics(key: &MemPageKey, counts: &MemPageCounts, node: &SharedStr, now: Timestamp) -> Vec<Event> {
    let mut attributes = Attributes::new();
    if key.pid != 0 {
        attributes.insert(keys::PID, key.pid);
    }
    let comm = comm_str(&key.comm);
    if !comm.is_empty() {
        attributes.insert(keys::COMM, comm);
    }
    if key.cgroup_id != 0 {
        attributes.insert(keys::CGROUP_ID, key.cgroup_id);
    }
    attributes.insert(keys::node(), node.clone());
    let mut out = Vec::new();
    for order in 0..ORDERS {
        for (name, n, description) in [
            (PAGE_ALLOCATIONS, counts.allocs[order], "Page allocations, by order."),
            (PAGE_FREES, counts.frees[order], "Page frees, by order."),
        ] {
            if n > 0 {
                out.push(Event::from(
                    Metric::counter(name, n as f64)
                        .with_description(description)
                        .with_unit("{allocation}")
                        .with_attributes(attributes.clone().with(ORDER, order as u32))
                        .with_timestamp(now),
                ));
            }
        }
    }
    out.push(Event::from(
        Metric::counter(PAGES_ALLOCATED, counts.pages_allocated() as f64)
            .with_description("Pages allocated (an allocation of order n is 2^n pages).")
            .with_unit("{page}")
            .with_attributes(attributes)
            .with_timestamp(now),
    ));
    out
}

/// The allocation counters and size histogram of one traced process.
pub(super) fn proc_metrics(proc: &MemProc, attributes: &Attributes, bounds: &Arc<[f64]>, now: Timestamp) -> Vec<Event> {
    let point = |metric: Metric| Event::from(metric.with_attributes(attributes.clone()).with_timestamp(now));
    vec![
        point(
            Metric::counter(ALLOCATIONS, proc.allocs as f64)
                .with_description("User-space allocations (malloc, calloc, realloc) of a traced process.")
                .with_unit("{allocation}"),
        ),
        point(
            Metric::counter(FREES, proc.frees as f64)
                .with_description("User-space frees (free, realloc) of a traced process.")
                .with_unit("{free}"),
        ),
        point(
            Metric::histogram(
                ALLOCATION_SIZE,
                Histogram {
                    bounds: Arc::clone(bounds),
                    counts: proc.size.to_vec(),
                    sum: proc.alloc_bytes as f64,
                    count: proc.size.iter().sum(),
                },
                Temporality::Cumulative,
            )
            .with_description("Sizes of user-space allocations of a traced process.")
            .with_unit("By"),
        ),
    ]
}

impl sonde_core::polling::Collect for Collector {
    type Error = ReadError;

    fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        Collector::collect(self)
    }
}
