//! The `runqueue` programs (`runqueue.bpf.c`): run-queue latency per
//! cgroup (and per process when asked) as log2 histograms, and context
//! switches by kind, counted in the kernel at `sched_wakeup`,
//! `sched_wakeup_new` and `sched_switch`.
//!
//! [`attach`] loads the programs as `tp_btf` where the kernel takes them
//! and as `raw_tp` otherwise (`offcpu` shares it). Minimum kernel 5.5 (BTF
//! in sysfs).

mod abi;
pub mod attach;

pub use abi::*;
pub use attach::Flavor;

use sonde_ebpf::aya::maps::{HashMap, MapData, MapError, PerCpuHashMap};
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

use attach::SchedProgram;

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/runqueue.bpf.o"));
/// The same programs, `tp_btf` only, with each thread's pending wait in
/// task storage instead of a hash keyed by thread id (kernel 5.11+):
/// loaded first where the kernel has task storage.
static ELF_TASK: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/runqueue_task.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "runqueue";
/// Every thread that waited, with its pending wait.
pub const MAP_THREADS: &str = "rq_threads";
/// Histograms by cgroup (per CPU).
pub const MAP_CGROUPS: &str = "rq_cgroups";
/// Histograms by process.
pub const MAP_PROCESSES: &str = "rq_processes";
/// Process ids watched (when filtering by pid).
pub const MAP_PID_FILTER: &str = "rq_pid_filter";
/// cgroup ids watched (when filtering by cgroup).
pub const MAP_CGROUP_FILTER: &str = "rq_cgroup_filter";
/// Per-CPU counters of what the programs lost (`RQ_STAT_*`).
pub const MAP_STATS: &str = "rq_stats";

/// The scheduler tracepoints and their programs.
const PROGRAMS: &[SchedProgram] = &[
    SchedProgram {
        tracepoint: "sched_wakeup",
        btf: "rq_wakeup_btf",
        raw: "rq_wakeup_raw",
    },
    SchedProgram {
        tracepoint: "sched_wakeup_new",
        btf: "rq_wakeup_new_btf",
        raw: "rq_wakeup_new_raw",
    },
    SchedProgram {
        tracepoint: "sched_switch",
        btf: "rq_switch_btf",
        raw: "rq_switch_raw",
    },
];
const PROGRAM_EXIT: &str = "rq_exit";

/// How the programs' stats slots (`RQ_STAT_*`) are exported.
pub const STATS: &[KernelStat] = &[
    KernelStat::map_full(RQ_STAT_THREADS_FULL, MAP_THREADS),
    KernelStat::map_full(RQ_STAT_CGROUPS_FULL, MAP_CGROUPS),
    KernelStat::map_full(RQ_STAT_PROCESSES_FULL, MAP_PROCESSES),
];

/// How to load the programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Also count per process.
    pub per_process: bool,
    /// Watch only these processes (none: every process).
    pub pids: Vec<u32>,
    /// Watch only the cgroups user space puts in the cgroup filter.
    pub filter_cgroups: bool,
    /// Capacity of the map of threads.
    pub max_threads: u32,
    /// Capacity of the map of cgroup histograms.
    pub max_cgroups: u32,
    /// Capacity of the map of process histograms.
    pub max_processes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            per_process: false,
            pids: Vec::new(),
            filter_cgroups: false,
            max_threads: RQ_MAX_THREADS,
            max_cgroups: RQ_MAX_CGROUPS,
            max_processes: RQ_MAX_PROCESSES,
        }
    }
}

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct RunqueuePrograms {
    object: Object,
    flavor: Flavor,
    task_storage: bool,
    cgroups: PerCpuHashMap<MapData, u64, RqHist>,
    processes: HashMap<MapData, RqProcessKey, RqProcess>,
    cgroup_filter: HashMap<MapData, u64, u8>,
    _pid_filter: HashMap<MapData, u32, u8>,
    stats: StatsArray,
}

impl std::fmt::Debug for RunqueuePrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunqueuePrograms")
            .field("object", &self.object)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}

fn map_error(map: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map {
        object: OBJECT,
        map,
        source: Box::new(source),
    }
}

impl RunqueuePrograms {
    /// Loads and attaches the programs.
    pub fn load(options: &Options) -> Result<Self, LoadError> {
        let forced_raw = std::env::var(attach::NO_TP_BTF_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        let task_storage = matches!(
            sonde_ebpf::aya::sys::is_map_supported(sonde_ebpf::aya::maps::MapType::TaskStorage),
            Ok(true)
        );
        if task_storage && !forced_raw {
            match Self::load_object(options, true) {
                Ok(programs) => return Ok(programs),
                // Task storage from tracing programs came after the map
                // (5.11/5.12), tp_btf may be refused: the hash object works.
                Err(error) => tracing::debug!(%error, "runqueue: task-storage programs refused, loading the hash ones"),
            }
        }
        Self::load_object(options, false)
    }

    /// Whether threads' waits are kept in task storage (the 5.11+ object).
    pub fn uses_task_storage(&self) -> bool {
        self.task_storage
    }

    fn load_object(options: &Options, task_storage: bool) -> Result<Self, LoadError> {
        let (per_process, filter_pids, filter_cgroups) = (
            u8::from(options.per_process),
            u8::from(!options.pids.is_empty()),
            u8::from(options.filter_cgroups),
        );
        let elf = if task_storage { ELF_TASK } else { ELF };
        let mut object = Object::load(OBJECT, elf, |loader| {
            // Load-time constants: the verifier prunes the branches that are off.
            loader.override_global("per_process", &per_process, true);
            loader.override_global("filter_pids", &filter_pids, true);
            loader.override_global("filter_cgroups", &filter_cgroups, true);
            if task_storage {
                // aya makes the task-storage map but has no type for it;
                // its size is the number of tasks (max_entries must be 0).
                loader.allow_unsupported_maps();
            } else {
                loader.map_max_entries(MAP_THREADS, options.max_threads.max(1));
            }
            loader.map_max_entries(MAP_CGROUPS, options.max_cgroups.max(1));
            loader.map_max_entries(MAP_PROCESSES, options.max_processes.max(1));
        })?;
        // The filters are filled before the programs run. Every map handle
        // is kept: the programs were relocated against their descriptors.
        let mut pid_filter: HashMap<MapData, u32, u8> = object.take_map(MAP_PID_FILTER)?;
        for pid in &options.pids {
            pid_filter.insert(pid, 1, 0).map_err(map_error(MAP_PID_FILTER))?;
        }
        let cgroups = object.take_map(MAP_CGROUPS)?;
        let processes = object.take_map(MAP_PROCESSES)?;
        let cgroup_filter = object.take_map(MAP_CGROUP_FILTER)?;
        let stats = StatsArray::take(&mut object, MAP_STATS, RQ_STAT_COUNT)?;
        if !task_storage {
            // Exits first: no pending wait outlives its thread. (Task
            // storage goes with its task.)
            object.attach_tracepoint(PROGRAM_EXIT, "sched", "sched_process_exit")?;
        }
        // The task-storage object has only tp_btf programs: a kernel that
        // refuses them fails this load, and the hash object is loaded.
        let flavor = attach::attach(&mut object, PROGRAMS)?;
        Ok(RunqueuePrograms {
            object,
            flavor,
            task_storage,
            cgroups,
            processes,
            cgroup_filter,
            _pid_filter: pid_filter,
            stats,
        })
    }

    /// Which flavour of the programs is attached.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Sets the cgroup ids watched (when loaded with `filter_cgroups`).
    pub fn set_cgroup_filter(&mut self, ids: &std::collections::HashSet<u64>) -> Result<(), ReadError> {
        let present = self
            .cgroup_filter
            .keys()
            .collect::<Result<Vec<u64>, _>>()
            .map_err(ReadError::of(OBJECT, MAP_CGROUP_FILTER))?;
        for id in present.iter().filter(|id| !ids.contains(id)) {
            let _ = self.cgroup_filter.remove(id);
        }
        for id in ids {
            if !present.contains(id) {
                self.cgroup_filter
                    .insert(id, 1, 0)
                    .map_err(ReadError::of(OBJECT, MAP_CGROUP_FILTER))?;
            }
        }
        Ok(())
    }

    /// Every cgroup's running totals, summed over CPUs.
    pub fn cgroups(&self) -> Result<Vec<(u64, RqHist)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.cgroups.iter() {
            let (id, per_cpu) = entry.map_err(ReadError::of(OBJECT, MAP_CGROUPS))?;
            let mut sum = RqHist::default();
            per_cpu.iter().for_each(|h| sum.add(h));
            out.push((id, sum));
        }
        Ok(out)
    }

    /// Every process' running totals.
    pub fn processes(&self) -> Result<Vec<(RqProcessKey, RqProcess)>, ReadError> {
        self.processes
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReadError::of(OBJECT, MAP_PROCESSES))
    }

    /// Forgets a cgroup (removed) or a process (exited).
    pub fn remove_cgroup(&mut self, id: u64) {
        let _ = self.cgroups.remove(&id);
    }

    /// Forgets a process (exited).
    pub fn remove_process(&mut self, key: &RqProcessKey) {
        let _ = self.processes.remove(key);
    }

    /// What the programs lost so far (slots `RQ_STAT_*`).
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
    RunqueuePrograms::load(&Options::default()).map(drop)
}
