//! The `disk_latency` programs (`bpf/disk_latency.bpf.c`): block request
//! latency (issue → complete), queue time (insert → issue) and size per
//! device and operation, as log2 histograms kept in a per-CPU hash map.
//!
//! Tracepoints `block:block_rq_insert`, `block:block_rq_issue`,
//! `block:block_rq_complete`. Minimum kernel 5.5 (BTF in sysfs,
//! `bpf_probe_read_kernel`). The completion event changed its event class
//! (`block_rq_complete` → `block_rq_completion`, when `block_rq_error` was
//! added): the object has one program per class and [`DiskLatency::load`]
//! picks the one the running kernel's BTF describes.

mod types;

pub use types::*;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use metrics::Label;

use crate::error::{LoadError, ReadError};
use crate::loader::{Object, ProgramStats};
use crate::telemetry::{self, KernelCounter};

/// The object's name, used in errors.
pub const OBJECT: &str = "disk_latency";
/// Per-CPU histograms by device and operation.
pub const MAP_HISTS: &str = "disk_hists";
/// Per-CPU counters of what the programs lost (`DISK_STAT_*`).
pub const MAP_STATS: &str = "disk_stats";
/// The completion program for kernels whose `block_rq_complete` event has
/// the `block_rq_completion` class.
pub const PROGRAM_COMPLETE: &str = "block_rq_complete";
/// The completion program for older kernels (class `block_rq_complete`).
pub const PROGRAM_COMPLETE_OLD: &str = "block_rq_complete_old";
/// The insert program (queue time).
pub const PROGRAM_INSERT: &str = "block_rq_insert";
/// The issue program.
pub const PROGRAM_ISSUE: &str = "block_rq_issue";

/// Which completion program fits the running kernel.
fn complete_program() -> Result<&'static str, LoadError> {
    let btf = crate::loader::kernel_btf()?;
    let has = |name| btf.id_by_type_name_kind(name, aya_obj::btf::BtfKind::Struct).is_ok();
    Ok(if has("trace_event_raw_block_rq_completion") {
        PROGRAM_COMPLETE
    } else {
        PROGRAM_COMPLETE_OLD
    })
}

/// How to load the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Attach `block_rq_insert` and measure queue time. Costs one more
    /// program run and one hash lookup per request.
    pub queue_time: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { queue_time: true }
    }
}

/// What the programs lost, as running totals since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Completions without a recorded issue (in flight at attach, or evicted).
    pub no_start: u64,
    /// Issue times the in-flight map rejected.
    pub start_map_full: u64,
    /// Insert times the queue map rejected.
    pub queue_map_full: u64,
    /// Devices/operations the histogram map had no room for.
    pub hist_map_full: u64,
    /// Failed copies of the tracepoint's `rwbs` field.
    pub read_failed: u64,
}

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct DiskLatency {
    object: Object,
    hists: PerCpuHashMap<MapData, DiskKey, DiskHist>,
    stats: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for DiskLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskLatency")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl DiskLatency {
    /// Loads the programs and attaches them.
    pub fn load(options: Options) -> Result<Self, LoadError> {
        let track_queue = u8::from(options.queue_time);
        let mut object = Object::load(OBJECT, crate::objects::DISK_LATENCY, |loader| {
            // A load-time constant: the verifier prunes the queue-time
            // lookup from block_rq_issue when it is off.
            loader.override_global("track_queue", &track_queue, true);
        })?;
        // Completions first, then inserts, then issues: no start is
        // recorded for a completion that would not be seen.
        object.attach_tracepoint(complete_program()?, "block", "block_rq_complete")?;
        if options.queue_time {
            object.attach_tracepoint(PROGRAM_INSERT, "block", "block_rq_insert")?;
        }
        object.attach_tracepoint(PROGRAM_ISSUE, "block", "block_rq_issue")?;
        let hists = object.take_map(MAP_HISTS)?;
        let stats = object.take_map(MAP_STATS)?;
        Ok(DiskLatency { object, hists, stats })
    }

    /// Every device and operation seen so far, summed over CPUs: running
    /// totals since load, sorted by key.
    pub fn read(&self) -> Result<Vec<(DiskKey, DiskHist)>, ReadError> {
        let err = |source| ReadError {
            object: OBJECT,
            map: MAP_HISTS,
            source: Box::new(source),
        };
        let mut out = Vec::new();
        for entry in self.hists.iter() {
            let (key, per_cpu) = entry.map_err(err)?;
            let mut sum = DiskHist::default();
            per_cpu.iter().for_each(|cpu| sum.add(cpu));
            out.push((key, sum));
        }
        out.sort_by_key(|(key, _)| *key);
        Ok(out)
    }

    /// What the programs lost so far.
    pub fn stats(&self) -> Result<DiskStats, ReadError> {
        let mut totals = [0u64; DISK_STAT_COUNT as usize];
        for (index, total) in totals.iter_mut().enumerate() {
            let per_cpu = self.stats.get(&(index as u32), 0).map_err(|source| ReadError {
                object: OBJECT,
                map: MAP_STATS,
                source: Box::new(source),
            })?;
            *total = per_cpu.iter().sum();
        }
        Ok(DiskStats {
            no_start: totals[DISK_STAT_NO_START as usize],
            start_map_full: totals[DISK_STAT_START_MAP_FULL as usize],
            queue_map_full: totals[DISK_STAT_QUEUE_MAP_FULL as usize],
            hist_map_full: totals[DISK_STAT_HIST_MAP_FULL as usize],
            read_failed: totals[DISK_STAT_READ_FAILED as usize],
        })
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Loads and attaches the programs, then detaches them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    DiskLatency::load(Options::default()).map(drop)
}

/// The `sonde_ebpf_*` counters of one running `disk_latency` source.
#[derive(Debug)]
pub struct DiskTelemetry {
    no_start: KernelCounter,
    start_map_full: KernelCounter,
    queue_map_full: KernelCounter,
    hist_map_full: KernelCounter,
    read_failed: KernelCounter,
    map_read_failed: metrics::Counter,
}

impl DiskTelemetry {
    /// Registers the counters with the component's `labels`.
    pub fn new(labels: &[Label]) -> Self {
        let labels = telemetry::with_label(labels, "object", OBJECT);
        let map_full = |map: &str| KernelCounter::new(telemetry::MAP_FULL, telemetry::with_label(&labels, "map", map));
        DiskTelemetry {
            no_start: KernelCounter::new(
                telemetry::LOST_EVENTS,
                telemetry::with_label(&labels, "reason", "no_start"),
            ),
            start_map_full: map_full("disk_starts"),
            queue_map_full: map_full("disk_queued"),
            hist_map_full: map_full(MAP_HISTS),
            read_failed: KernelCounter::new(
                telemetry::FAILED_READS,
                telemetry::with_label(&labels, "what", "kernel:rwbs"),
            ),
            map_read_failed: metrics::counter!(
                telemetry::FAILED_READS,
                telemetry::with_label(&labels, "what", format!("map:{MAP_HISTS}"))
            ),
        }
    }

    /// Exports the programs' running totals.
    pub fn observe(&mut self, stats: &DiskStats) {
        self.no_start.observe(stats.no_start);
        self.start_map_full.observe(stats.start_map_full);
        self.queue_map_full.observe(stats.queue_map_full);
        self.hist_map_full.observe(stats.hist_map_full);
        self.read_failed.observe(stats.read_failed);
    }

    /// Counts a failed read of a map by user space.
    pub fn map_read_failed(&self) {
        self.map_read_failed.increment(1);
    }
}
