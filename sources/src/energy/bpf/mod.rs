//! The `energy` program (`energy.bpf.c`): on-CPU nanoseconds per process
//! (tgid) and cgroup, accounted in the kernel at every `sched:sched_switch`,
//! kept as running totals in a hash map that user space reads each interval.
//! Slices are timed with the scheduler's task clock (`sum_exec_runtime`, the
//! clock of `/proc/PID/stat`), which leaves out hypervisor steal time.
//! Threads started after attach are accounted from their start; a thread
//! older than the attach is accounted from its first switch-out after it
//! (that first slice by the wall clock since its CPU's previous switch).
//!
//! Tracepoint `sched:sched_switch` only (no kprobe or fentry, which not
//! every kernel allows). Minimum kernel 5.5 (BTF in sysfs,
//! `bpf_probe_read_kernel`); cgroup ids are cgroup v2 ids.
//!
//! A slice still running at read time is accounted only when its CPU next
//! switches: a busy process on an otherwise idle CPU may run for seconds
//! without a switch. [`Energy::flush`] forces one on every CPU this process
//! may run on (it moves a thread of its own onto each in turn), so a read
//! right after it is exact to within microseconds.

mod abi;
mod flush;

pub use abi::*;
pub use flush::flush_cpus;

use sonde_ebpf::aya::maps::{HashMap, MapData};

use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/energy.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "energy";
/// On-CPU time per (tgid, cgroup).
pub const MAP_TASKS: &str = "energy_tasks";
/// Per-CPU counters of what the program lost (`ENERGY_STAT_*`).
pub const MAP_STATS: &str = "energy_stats";
/// The context-switch program.
pub const PROGRAM_SWITCH: &str = "sched_switch";

/// How the program's stats slots (`ENERGY_STAT_*`) are exported.
pub const STATS: &[KernelStat] = &[
    // New processes `energy_tasks` had no room for…
    KernelStat::map_full(ENERGY_STAT_MAP_FULL, MAP_TASKS),
    // …and their on-CPU time, attributed to no one: the lost "events"
    // here are nanoseconds, named so by the reason.
    KernelStat::lost(ENERGY_STAT_LOST_NS, "map_full_on_cpu_ns"),
    KernelStat::failed_read(ENERGY_STAT_COMM_FAILED, "kernel:group_leader_comm"),
    // Slices timed by the wall clock for want of a task-clock baseline.
    KernelStat::lost(ENERGY_STAT_NO_BASELINE, "no_task_clock_baseline"),
];

/// One process' running total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskTime {
    /// The map key (tgid 0 is the idle task).
    pub key: EnergyKey,
    /// On-CPU time since attach, ns.
    pub on_cpu_ns: u64,
    /// The process name when it was first seen.
    pub comm: String,
}

/// The loaded and attached program, with typed handles to its maps.
/// Dropping it detaches everything.
pub struct Energy {
    object: Object,
    tasks: HashMap<MapData, EnergyKey, EnergyValue>,
    stats: StatsArray,
}

impl std::fmt::Debug for Energy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Energy")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl Energy {
    /// Loads the program and attaches it.
    pub fn load() -> Result<Self, LoadError> {
        let attach_ns = monotonic_ns();
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // Threads started after this ran only while the program was
            // attached: their whole task clock is theirs to account.
            loader.override_global("attach_ns", &attach_ns, true);
        })?;
        object.attach_tracepoint(PROGRAM_SWITCH, "sched", "sched_switch")?;
        let tasks = object.take_map(MAP_TASKS)?;
        let stats = StatsArray::take(&mut object, MAP_STATS, ENERGY_STAT_COUNT)?;
        Ok(Energy { object, tasks, stats })
    }

    /// Forces a context switch on every CPU this process may use, so that
    /// the slices running now are in the map; see [`flush_cpus`].
    pub fn flush(&self) {
        flush_cpus();
    }

    /// Every process seen so far with its running total, sorted by key.
    pub fn read(&self) -> Result<Vec<TaskTime>, ReadError> {
        let mut out = Vec::new();
        for entry in self.tasks.iter() {
            let (key, value) = entry.map_err(ReadError::of(OBJECT, MAP_TASKS))?;
            out.push(TaskTime {
                key,
                on_cpu_ns: value.on_cpu_ns,
                comm: value.comm(),
            });
        }
        out.sort_by_key(|t| t.key);
        Ok(out)
    }

    /// Deletes the entries of processes that exited, after their last
    /// total was read. A key already gone is not an error.
    pub fn remove(&mut self, keys: &[EnergyKey]) -> Result<(), ReadError> {
        for key in keys {
            match self.tasks.remove(key) {
                Ok(()) => {}
                Err(sonde_ebpf::aya::maps::MapError::KeyNotFound) => {}
                Err(sonde_ebpf::aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => return Err(ReadError::of(OBJECT, MAP_TASKS)(source)),
            }
        }
        Ok(())
    }

    /// What the program lost so far (slots `ENERGY_STAT_*`).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }

    /// Run time and count of the program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

use crate::clock::monotonic_ns;

/// Loads and attaches the program, then detaches it: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    Energy::load().map(drop)
}
