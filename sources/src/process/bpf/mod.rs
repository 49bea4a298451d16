//! The `process` programs (`process.bpf.c`): exec, fork and exit records
//! from the raw tracepoints `sched_process_exec`, `sched_process_fork` and
//! `sched_process_exit`, through a ring buffer ([`Records`]).
//!
//! Minimum kernel 5.8 (ring buffers, `bpf_ktime_get_boot_ns`) with BTF.
//! Raw tracepoints and CO-RE reads only: no kprobe, no fentry, no
//! dependence on the tracepoints' event formats.

mod abi;
mod records;

pub use abi::*;
pub use records::{path_from_components, split_args, ExecRecord, Record, Records};

use sonde_ebpf::aya::maps::{HashMap, MapData};
use sonde_ebpf::aya::programs::RawTracePoint;
use sonde_ebpf::loader::{load_error, Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/process.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "process";
/// Live processes' identities.
pub const MAP_KEYS: &str = "proc_keys";
/// The records (ring buffer).
pub const MAP_EVENTS: &str = "proc_events";
/// Exec rate windows per cgroup.
pub const MAP_RATES: &str = "proc_rates";
/// cgroup ids reported (with a cgroup filter).
pub const MAP_CGROUPS: &str = "proc_cgroups";
/// Process names included or excluded.
pub const MAP_BINARIES: &str = "proc_binaries";
/// Per-CPU counters of what the programs lost (`PROC_STAT_*`).
pub const MAP_STATS: &str = "proc_stats";

/// How the programs' stats slots are exported. Filtered and throttled
/// records are dropped on purpose, but counted the same way: nothing
/// leaves silently.
pub const STATS: &[KernelStat] = &[
    KernelStat::lost(PROC_STAT_RINGBUF_FULL, "ringbuf_full"),
    KernelStat::map_full(PROC_STAT_KEYS_FULL, MAP_KEYS),
    KernelStat::failed_read(PROC_STAT_ARGS_FAILED, "user:argv"),
    KernelStat::lost(PROC_STAT_FILTERED, "filtered"),
    KernelStat::lost(PROC_STAT_THROTTLED, "throttled"),
];

/// The programs, in attach order: (program, raw tracepoint).
const PROGRAMS: &[(&str, &str)] = &[
    ("process_fork", "sched_process_fork"),
    ("process_exec", "sched_process_exec"),
    ("process_exit", "sched_process_exit"),
];

/// How to load the programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Bytes of argv kept per exec (at most [`PROC_ARGS_MAX`]).
    pub args_max: u32,
    /// Send a record for each new process.
    pub forks: bool,
    /// Only processes in these cgroups (ids); empty: all.
    pub cgroups: Vec<u64>,
    /// Only processes with these names (comm, 15 bytes); empty: all.
    pub binaries: Vec<String>,
    /// Never processes with these names.
    pub exclude_binaries: Vec<String>,
    /// Execs per second per cgroup; 0: no limit.
    pub rate_limit: u64,
    /// Capacity of the map of live processes.
    pub max_processes: u32,
    /// Ring buffer size, bytes (a power of two, a multiple of the page).
    pub ring_bytes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            args_max: PROC_ARGS_MAX,
            forks: false,
            cgroups: Vec::new(),
            binaries: Vec::new(),
            exclude_binaries: Vec::new(),
            rate_limit: 0,
            max_processes: PROC_MAX_PROCS,
            ring_bytes: PROC_RING_BYTES,
        }
    }
}

/// A process name as the kernel keeps it: 15 bytes and a NUL.
pub fn comm_key(name: &str) -> [u8; 16] {
    let mut comm = [0u8; 16];
    let bytes = name.as_bytes();
    let n = bytes.len().min(15);
    comm[..n].copy_from_slice(&bytes[..n]);
    comm
}

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct ProcessPrograms {
    object: Object,
    cgroups: HashMap<MapData, u64, u8>,
    rates: HashMap<MapData, u64, ProcRate>,
    stats: StatsArray,
    records: Option<Records>,
    _binaries: HashMap<MapData, [u8; 16], u8>,
}

impl std::fmt::Debug for ProcessPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPrograms")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

fn map_error(map: &'static str) -> impl Fn(sonde_ebpf::aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map {
        object: OBJECT,
        map,
        source: Box::new(source),
    }
}

impl ProcessPrograms {
    /// Loads the programs, fills the filters and attaches the tracepoints.
    pub fn load(options: &Options) -> Result<Self, LoadError> {
        let args_max = options.args_max.min(PROC_ARGS_MAX);
        let forks = u8::from(options.forks);
        let filter_cgroups = u8::from(!options.cgroups.is_empty());
        let filter_binaries = u8::from(!options.binaries.is_empty());
        let filter_exclude = u8::from(!options.exclude_binaries.is_empty());
        let wakeup_bytes = u64::from(options.ring_bytes / 4);
        let mut object = Object::load(OBJECT, ELF, |loader| {
            loader.override_global("args_max", &args_max, true);
            loader.override_global("emit_forks", &forks, true);
            loader.override_global("filter_cgroups", &filter_cgroups, true);
            loader.override_global("filter_binaries", &filter_binaries, true);
            loader.override_global("filter_exclude", &filter_exclude, true);
            loader.override_global("rate_limit", &options.rate_limit, true);
            loader.override_global("wakeup_bytes", &wakeup_bytes, true);
            loader.map_max_entries(MAP_KEYS, options.max_processes.max(1));
            loader.map_max_entries(MAP_EVENTS, options.ring_bytes);
        })?;
        let mut cgroups: HashMap<_, u64, u8> = object.take_map(MAP_CGROUPS)?;
        for id in &options.cgroups {
            cgroups.insert(id, 1, 0).map_err(map_error(MAP_CGROUPS))?;
        }
        let mut binaries: HashMap<_, [u8; 16], u8> = object.take_map(MAP_BINARIES)?;
        for (names, verdict) in [
            (&options.binaries, PROC_BINARY_INCLUDE),
            (&options.exclude_binaries, PROC_BINARY_EXCLUDE),
        ] {
            for name in names {
                binaries
                    .insert(comm_key(name), verdict as u8, 0)
                    .map_err(map_error(MAP_BINARIES))?;
            }
        }
        for (program, tracepoint) in PROGRAMS {
            let prog: &mut RawTracePoint = object.program_as(program)?;
            prog.load().map_err(|e| load_error(OBJECT, program, e))?;
            prog.attach(tracepoint).map_err(|source| LoadError::Attach {
                object: OBJECT,
                program,
                attach_point: format!("raw_tracepoint {tracepoint}"),
                source: Box::new(source),
            })?;
        }
        Ok(ProcessPrograms {
            cgroups,
            rates: object.take_map(MAP_RATES)?,
            stats: StatsArray::take(&mut object, MAP_STATS, PROC_STAT_COUNT)?,
            records: Some(Records::new(object.take_map(MAP_EVENTS)?)),
            _binaries: binaries,
            object,
        })
    }

    /// The ring buffer of records (once; `None` afterwards).
    pub fn take_records(&mut self) -> Option<Records> {
        self.records.take()
    }

    /// Adds a cgroup to those reported (a new descendant of a configured
    /// one). Returns whether it was new.
    pub fn add_cgroup(&mut self, id: u64) -> Result<bool, ReadError> {
        if self.cgroups.get(&id, 0).is_ok() {
            return Ok(false);
        }
        self.cgroups
            .insert(id, 1, 0)
            .map_err(ReadError::of(OBJECT, MAP_CGROUPS))?;
        Ok(true)
    }

    /// Execs refused so far, per cgroup id (cgroups over their rate).
    pub fn throttled(&self) -> Result<Vec<(u64, u64)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.rates.iter() {
            let (cgroup, rate) = entry.map_err(ReadError::of(OBJECT, MAP_RATES))?;
            if rate.throttled > 0 {
                out.push((cgroup, rate.throttled));
            }
        }
        Ok(out)
    }

    /// The programs' counters so far (slots `PROC_STAT_*`).
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
    ProcessPrograms::load(&Options::default()).map(drop)
}
