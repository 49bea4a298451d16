//! The `disk_latency` programs (`disk_latency.bpf.c`): block request
//! latency (issue → complete), queue time (insert → issue) and size per
//! device and operation, as log2 histograms kept in a per-CPU hash map.
//!
//! Tracepoints `block:block_rq_insert`, `block:block_rq_issue`,
//! `block:block_rq_complete`. Minimum kernel 5.5 (BTF in sysfs,
//! `bpf_probe_read_kernel`). The completion event changed its event class
//! (`block_rq_complete` → `block_rq_completion`, when `block_rq_error` was
//! added): the object has one program per class and [`DiskLatency::load`]
//! picks the one the running kernel's BTF describes.

mod abi;

pub use abi::*;

use sonde_ebpf::aya::maps::{Array, HashMap, MapData, PerCpuHashMap};
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/disk_latency.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "disk_latency";
/// Per-CPU histograms by device and operation.
pub const MAP_HISTS: &str = "disk_hists";
/// Per-CPU counters of what the programs lost (`DISK_STAT_*`).
pub const MAP_STATS: &str = "disk_stats";
/// Queue depth per device.
pub const MAP_DEPTH: &str = "disk_depth";
/// Highest queue depths per device and epoch.
pub const MAP_DEPTH_MAX: &str = "disk_depth_max";
/// The current epoch of `disk_depth_max`.
pub const MAP_EPOCH: &str = "disk_epoch";
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
    let btf = sonde_ebpf::loader::kernel_btf()?;
    let has = |name| {
        btf.id_by_type_name_kind(name, sonde_ebpf::aya_obj::btf::BtfKind::Struct)
            .is_ok()
    };
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
    /// Keep the queue depth per device (two atomic adds per transition).
    pub queue_depth: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue_time: true,
            queue_depth: true,
        }
    }
}

/// How the programs' stats slots (`DISK_STAT_*`) are exported.
pub const STATS: &[KernelStat] = &[
    // Completions without a recorded issue (in flight at attach, or evicted).
    KernelStat::lost(DISK_STAT_NO_START, "no_start"),
    KernelStat::map_full(DISK_STAT_START_MAP_FULL, "disk_starts"),
    KernelStat::map_full(DISK_STAT_QUEUE_MAP_FULL, "disk_queued"),
    KernelStat::map_full(DISK_STAT_HIST_MAP_FULL, MAP_HISTS),
    KernelStat::failed_read(DISK_STAT_READ_FAILED, "kernel:rwbs"),
    KernelStat::map_full(DISK_STAT_DEPTH_MAP_FULL, MAP_DEPTH),
];

/// One read of the queue depths: the programs' clock then, each device's
/// depths, and the highest depths since the previous read.
#[derive(Clone, Debug, Default)]
pub struct DepthRead {
    /// CLOCK_MONOTONIC at the read, ns.
    pub now_ns: u64,
    /// Depths by device (dev_t).
    pub depths: Vec<(u32, DiskDepth)>,
    /// Highest depths since the previous read, by device.
    pub max: std::collections::HashMap<u32, DiskDepthMax>,
}

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct DiskLatency {
    object: Object,
    hists: PerCpuHashMap<MapData, DiskKey, DiskHist>,
    stats: StatsArray,
    depth: HashMap<MapData, u32, DiskDepth>,
    depth_max: HashMap<MapData, DiskDepthMaxKey, DiskDepthMax>,
    epoch: Array<MapData, u32>,
    current_epoch: u32,
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
        let track_depth = u8::from(options.queue_depth);
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // Load-time constants: the verifier prunes the queue-time
            // lookup from block_rq_issue, and the depth updates, when off.
            loader.override_global("track_queue", &track_queue, true);
            loader.override_global("track_depth", &track_depth, true);
        })?;
        // Completions first, then inserts, then issues: no start is
        // recorded for a completion that would not be seen.
        object.attach_tracepoint(complete_program()?, "block", "block_rq_complete")?;
        if options.queue_time {
            object.attach_tracepoint(PROGRAM_INSERT, "block", "block_rq_insert")?;
        }
        object.attach_tracepoint(PROGRAM_ISSUE, "block", "block_rq_issue")?;
        let hists = object.take_map(MAP_HISTS)?;
        let stats = StatsArray::take(&mut object, MAP_STATS, DISK_STAT_COUNT)?;
        let depth = object.take_map(MAP_DEPTH)?;
        let depth_max = object.take_map(MAP_DEPTH_MAX)?;
        let epoch = object.take_map(MAP_EPOCH)?;
        Ok(DiskLatency {
            object,
            hists,
            stats,
            depth,
            depth_max,
            epoch,
            current_epoch: 0,
        })
    }

    /// Reads the queue depths: flips the epoch of the maxima first, so
    /// that the programs raise the new epoch's while the old one is read
    /// and deleted here.
    pub fn read_depth(&mut self) -> Result<DepthRead, ReadError> {
        let previous = self.current_epoch;
        self.current_epoch ^= 1;
        self.epoch
            .set(0, self.current_epoch, 0)
            .map_err(ReadError::of(OBJECT, MAP_EPOCH))?;
        let mut max = std::collections::HashMap::new();
        let mut done = Vec::new();
        for entry in self.depth_max.iter() {
            let (key, value) = entry.map_err(ReadError::of(OBJECT, MAP_DEPTH_MAX))?;
            if key.epoch == previous {
                max.insert(key.dev, value);
                done.push(key);
            }
        }
        for key in done {
            let _ = self.depth_max.remove(&key);
        }
        let (now_ns, depths) = self.depths()?;
        Ok(DepthRead { now_ns, depths, max })
    }

    /// The programs' clock now, and every device's depths.
    pub fn depths(&self) -> Result<(u64, Vec<(u32, DiskDepth)>), ReadError> {
        let now_ns = sonde_ebpf::loader::monotonic_ns();
        let mut depths = Vec::new();
        for entry in self.depth.iter() {
            depths.push(entry.map_err(ReadError::of(OBJECT, MAP_DEPTH))?);
        }
        Ok((now_ns, depths))
    }

    /// Every device and operation seen so far, summed over CPUs: running
    /// totals since load, sorted by key.
    pub fn read(&self) -> Result<Vec<(DiskKey, DiskHist)>, ReadError> {
        let err = ReadError::of(OBJECT, MAP_HISTS);
        let mut out = Vec::new();
        for entry in self.hists.iter() {
            let (key, per_cpu) = entry.map_err(&err)?;
            let mut sum = DiskHist::default();
            per_cpu.iter().for_each(|cpu| sum.add(cpu));
            out.push((key, sum));
        }
        out.sort_by_key(|(key, _)| *key);
        Ok(out)
    }

    /// What the programs lost so far (slots `DISK_STAT_*`).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
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
