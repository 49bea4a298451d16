//! The `profile` program (`profile.bpf.c`): CPU stack sampling on every
//! online CPU, counted in the kernel per (process, thread, user stack,
//! kernel stack).
//!
//! [`Profiler::load`] opens one perf event per online CPU (software
//! `cpu-clock`, or hardware `cycles` where the PMU offers it) and attaches
//! the program to each. [`Profiler::drain`] switches the program to the
//! other of its two map sets, then reads and clears the one it left: no
//! sample is lost while user space reads. [`NewPids`] hands out the pids
//! the program saw for the first time, so their memory maps can be read
//! while they live.
//!
//! Minimum kernel 5.8 (BPF ring buffer); CPUs brought online after load
//! are not sampled.

mod abi;
mod unwind_abi;

mod attach;
mod maps;
mod new_pids;
mod options;

pub use abi::*;
pub use new_pids::NewPids;
pub use options::{Options, SampleEvent};
pub use unwind_abi::*;

use attach::attach;
use maps::{drain_stacks, drain_unwound, remove};

use std::collections::{HashMap as StdHashMap, HashSet};
use std::time::Duration;

use sonde_ebpf::aya::maps::{Array, HashMap, Map, MapData, MapError, ProgramArray, RingBuf, StackTraceMap};

use sonde_ebpf::loader::{load_error, Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

use super::python::{PythonMaps, PythonStack};

/// The compiled object, embedded.
pub(crate) static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profile.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "profile";
/// The sampling program.
pub const PROGRAM: &str = "profile_cpu";
/// The program that forgets a process when it runs a new program.
pub const PROGRAM_EXEC: &str = "profile_exec";
/// The counts maps of set 0 and 1.
pub const MAP_COUNTS: [&str; 2] = ["counts_0", "counts_1"];
/// The stack maps of set 0 and 1.
pub const MAP_STACKS: [&str; 2] = ["stacks_0", "stacks_1"];
/// The spill maps of set 0 and 1: stacks that collided in the stack map.
pub const MAP_SPILL: [&str; 2] = ["spill_0", "spill_1"];
/// Which set the program writes to.
pub const MAP_CONTROL: &str = "profile_control";
/// Per-CPU loss counters (`PROFILE_STAT_*`).
pub const MAP_STATS: &str = "profile_stats";
/// Processes already announced.
pub const MAP_KNOWN_PIDS: &str = "known_pids";
/// Ring buffer of new pids.
pub const MAP_NEW_PIDS: &str = "new_pids";
/// The user stack walker, tail-called by the sampling program and itself.
pub const PROGRAM_UNWIND: &str = "profile_unwind";
/// The walker's program array (index 0: [`PROGRAM_UNWIND`]).
pub const MAP_UNWIND_PROGS: &str = "unwind_progs";
/// The unwound user stacks of set 0 and 1.
pub const MAP_UNWOUND: [&str; 2] = ["unwound_0", "unwound_1"];
/// Per process: its executable mappings and their tables.
pub const MAP_UNWIND_PIDS: &str = "unwind_pids";
/// Per file id: its rows in the pool.
pub const MAP_UNWIND_FILES: &str = "unwind_files";
/// The row pool.
pub const MAP_UNWIND_ROWS: &str = "unwind_rows";
/// The oracle's ring buffer (tests).
pub const MAP_UNWIND_ORACLE: &str = "unwind_oracle";

/// How long [`Profiler::drain`] waits after switching sets before it reads
/// the old one: a program run that read the old set index just before the
/// switch finishes within microseconds (it runs with interrupts off).
pub const SWITCH_GRACE: Duration = Duration::from_millis(2);

/// How the program's stats slots (`PROFILE_STAT_*`) are exported. Both
/// map sets share one name in the labels: they take turns. Not exported:
/// `PROFILE_STAT_SAMPLES` (program runs, idle ones included) and
/// `PROFILE_STAT_IDLE` (idle samples not recorded), which are not losses.
pub const STATS: &[KernelStat] = &[
    // Stacks lost to hash collisions in both the stack and the spill map.
    KernelStat::lost(PROFILE_STAT_USER_COLLISION, "user_stack_collision"),
    KernelStat::lost(PROFILE_STAT_KERNEL_COLLISION, "kernel_stack_collision"),
    KernelStat::map_full(PROFILE_STAT_STACK_MAP_FULL, "stacks"),
    KernelStat::map_full(PROFILE_STAT_COUNTS_FULL, "counts"),
    // New processes not announced (ring buffer full).
    KernelStat::lost(PROFILE_STAT_NOTIFY_LOST, "new_pid_notification"),
    // Stacks kept in the spill map after a collision in the stack map.
    KernelStat::spills(PROFILE_STAT_SPILLED),
    KernelStat::map_full(PROFILE_STAT_UNWOUND_FULL, "unwound_stacks"),
    // Stacks walked by frame pointers because the walker could not be entered.
    KernelStat::lost(PROFILE_STAT_TAIL_CALL_FAILED, "unwind_tail_call"),
];

/// The maps user space fills for the stack walker (moved to the thread
/// that compiles and loads tables: [`crate::profile::unwind`]).
pub struct UnwindMaps {
    /// pid → its mappings.
    pub pids: HashMap<MapData, u32, UnwindMappings>,
    /// file id → its rows.
    pub files: Array<MapData, UnwindFile>,
    /// The row pool (raw, for batch updates).
    pub rows: MapData,
    /// Rows the pool holds.
    pub capacity: u32,
}

impl std::fmt::Debug for UnwindMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnwindMaps")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// One drained set: sample counts and the stacks they refer to.
#[derive(Clone, Debug, Default)]
pub struct Drained {
    /// Each distinct key with its number of samples.
    pub counts: Vec<(ProfileKey, u64)>,
    /// Instruction pointers of each stack id (spill map ids included, with
    /// their [`PROFILE_SPILL_BIT`]), innermost first.
    pub stacks: StdHashMap<u32, Vec<u64>>,
    /// The Python stacks the counts refer to (`python_stack_id`), by id.
    pub python: StdHashMap<u64, PythonStack>,
}

/// The loaded and attached program, with typed handles to its maps.
/// Dropping it detaches everything.
pub struct Profiler {
    object: Object,
    counts: [HashMap<MapData, ProfileKey, u64>; 2],
    stacks: [StackTraceMap<MapData>; 2],
    spill: [StackTraceMap<MapData>; 2],
    control: Array<MapData, u32>,
    stats: StatsArray,
    known_pids: HashMap<MapData, u32, u8>,
    unwound: [HashMap<MapData, u64, UnwindStack>; 2],
    // Kept open: the kernel empties a program array when its last user fd closes.
    _unwind_progs: Option<ProgramArray<MapData>>,
    unwind_maps: Option<UnwindMaps>,
    oracle: Option<RingBuf<MapData>>,
    python: PythonMaps,
    active: u32,
    event: SampleEvent,
    cpus: usize,
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiler")
            .field("event", &self.event)
            .field("cpus", &self.cpus)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Profiler {
    /// Loads the program and attaches it to a sampling perf event on every online CPU.
    pub fn load(options: &Options) -> Result<Self, LoadError> {
        let include_idle = u8::from(options.include_idle);
        let max_stacks = options.max_stacks.max(1);
        // The walker reads x86-64 registers; elsewhere the kernel walks frame pointers.
        let unwind = options.unwind && cfg!(target_arch = "x86_64");
        let unwind_enabled = u8::from(unwind);
        let release = sonde_ebpf::probe::kernel_release();
        let have_task_pt_regs = u8::from(sonde_ebpf::probe::parse_release(&release).is_some_and(|v| v >= (5, 15)));
        // THREAD_SIZE (16 KiB on x86-64) less sizeof(struct pt_regs), for kernels before 5.15.
        let task_regs_offset: u64 = 16384 - 168;
        let unwind_rows = options.unwind_rows.max(1);
        let oracle_every = if unwind { options.oracle_every } else { 0 };
        let oracle_bytes = if oracle_every > 0 { UNWIND_ORACLE_BYTES } else { 4096 };
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // A load-time constant: the verifier prunes the idle branch.
            loader.override_global("include_idle", &include_idle, true);
            loader.override_global("unwind_enabled", &unwind_enabled, true);
            loader.override_global("have_task_pt_regs", &have_task_pt_regs, true);
            loader.override_global("task_regs_offset", &task_regs_offset, true);
            for map in MAP_STACKS {
                loader.map_max_entries(map, max_stacks);
            }
            // Off, the walker's maps are never written: one entry each.
            loader.map_max_entries(MAP_UNWIND_ROWS, if unwind { unwind_rows } else { 1 });
            if !unwind {
                for map in MAP_UNWOUND.into_iter().chain([MAP_UNWIND_PIDS]) {
                    loader.map_max_entries(map, 1);
                }
            }
            loader.override_global("oracle_every", &oracle_every, true);
            loader.map_max_entries(MAP_UNWIND_ORACLE, oracle_bytes);
        })?;
        let cpus = sonde_ebpf::aya::util::online_cpus().map_err(|(path, error)| LoadError::Attach {
            object: OBJECT,
            program: PROGRAM,
            attach_point: format!("perf events (cannot read {path})"),
            source: Box::new(sonde_ebpf::aya::programs::ProgramError::IOError(error)),
        })?;
        {
            let program: &mut sonde_ebpf::aya::programs::PerfEvent = object.program_as(PROGRAM)?;
            program.load().map_err(|e| load_error(OBJECT, PROGRAM, e))?;
        }
        let unwind_progs = if unwind {
            let program: &mut sonde_ebpf::aya::programs::PerfEvent = object.program_as(PROGRAM_UNWIND)?;
            program.load().map_err(|e| load_error(OBJECT, PROGRAM_UNWIND, e))?;
            let fd = program
                .fd()
                .map_err(|e| load_error(OBJECT, PROGRAM_UNWIND, e))?
                .try_clone()
                .map_err(|e| load_error(OBJECT, PROGRAM_UNWIND, e.into()))?;
            let mut progs: ProgramArray<MapData> = object.take_map(MAP_UNWIND_PROGS)?;
            progs.set(0, &fd, 0).map_err(|source| LoadError::Map {
                object: OBJECT,
                map: MAP_UNWIND_PROGS,
                source: Box::new(source),
            })?;
            Some(progs)
        } else {
            None
        };
        // Before sampling starts, so no exec goes unseen.
        object.attach_tracepoint(PROGRAM_EXEC, "sched", "sched_process_exec")?;
        let event = attach(&mut object, &cpus, options)?;
        let counts = [object.take_map(MAP_COUNTS[0])?, object.take_map(MAP_COUNTS[1])?];
        let stacks = [object.take_map(MAP_STACKS[0])?, object.take_map(MAP_STACKS[1])?];
        let spill = [object.take_map(MAP_SPILL[0])?, object.take_map(MAP_SPILL[1])?];
        let control = object.take_map(MAP_CONTROL)?;
        let stats = StatsArray::take(&mut object, MAP_STATS, PROFILE_STAT_COUNT)?;
        let known_pids = object.take_map(MAP_KNOWN_PIDS)?;
        let unwound = [object.take_map(MAP_UNWOUND[0])?, object.take_map(MAP_UNWOUND[1])?];
        let unwind_maps = if unwind {
            let rows = match object.ebpf_mut().take_map(MAP_UNWIND_ROWS) {
                Some(Map::Array(data)) => data,
                _ => {
                    return Err(LoadError::NoSuchMap {
                        object: OBJECT,
                        map: MAP_UNWIND_ROWS,
                    })
                }
            };
            Some(UnwindMaps {
                pids: object.take_map(MAP_UNWIND_PIDS)?,
                files: object.take_map(MAP_UNWIND_FILES)?,
                rows,
                capacity: unwind_rows,
            })
        } else {
            None
        };
        let oracle = if oracle_every > 0 {
            Some(object.take_map(MAP_UNWIND_ORACLE)?)
        } else {
            None
        };
        let python = PythonMaps::take(&mut object)?;
        Ok(Profiler {
            object,
            oracle,
            counts,
            stacks,
            spill,
            control,
            stats,
            known_pids,
            unwound,
            _unwind_progs: unwind_progs,
            unwind_maps,
            python,
            active: 0,
            event,
            cpus: cpus.len(),
        })
    }

    /// The maps of the stack walker (once; `None` when unwinding is off).
    pub fn take_unwind_maps(&mut self) -> Option<UnwindMaps> {
        self.unwind_maps.take()
    }

    /// The oracle's ring buffer of [`UnwindOracle`] records (once; `None`
    /// unless [`Options::oracle_every`] was set).
    pub fn take_oracle(&mut self) -> Option<RingBuf<MapData>> {
        self.oracle.take()
    }

    /// The perf event in use (never `Auto`).
    pub fn event(&self) -> SampleEvent {
        self.event
    }

    /// Number of CPUs sampled.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The ring buffer of new pids (once: a second call fails with `NoSuchMap`).
    pub fn take_new_pids(&mut self) -> Result<NewPids, LoadError> {
        Ok(NewPids {
            ring: self.object.take_map(MAP_NEW_PIDS)?,
        })
    }

    /// Switches the program to the other map set, waits [`SWITCH_GRACE`],
    /// then reads and clears the set it left.
    pub fn drain(&mut self) -> Result<Drained, ReadError> {
        let old = self.active as usize;
        let new = 1 - self.active;
        self.control
            .set(0, new, 0)
            .map_err(ReadError::of(OBJECT, MAP_CONTROL))?;
        self.active = new;
        std::thread::sleep(SWITCH_GRACE);

        let counts = &mut self.counts[old];
        let keys = counts
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReadError::of(OBJECT, MAP_COUNTS[old]))?;
        let mut drained = Drained {
            counts: Vec::with_capacity(keys.len()),
            stacks: StdHashMap::new(),
            python: StdHashMap::new(),
        };
        let mut wanted = HashSet::new();
        for key in keys {
            match counts.get(&key, 0) {
                Ok(n) => drained.counts.push((key, n)),
                Err(MapError::KeyNotFound) => continue,
                Err(source) => return Err(ReadError::of(OBJECT, MAP_COUNTS[old])(source)),
            }
            for stack in [key.user_stack(), key.kernel_stack()] {
                if let StackRef::Id(id) = stack {
                    wanted.insert(id);
                }
            }
            remove(counts, &key, MAP_COUNTS[old])?;
        }

        // Every stored stack goes, referenced or not (a stack whose count
        // did not fit would otherwise stay forever).
        drain_stacks(&mut self.stacks[old], MAP_STACKS[old], 0, &wanted, &mut drained.stacks)?;
        drain_stacks(
            &mut self.spill[old],
            MAP_SPILL[old],
            PROFILE_SPILL_BIT,
            &wanted,
            &mut drained.stacks,
        )?;
        let ids = drain_unwound(&mut self.unwound[old], MAP_UNWOUND[old], &mut drained.stacks)?;
        for (key, _) in &mut drained.counts {
            if key.user_stack_id == -(UNWIND_STACK_ID as i32) {
                if let Some(id) = ids.get(&key.user_stack_hash) {
                    key.user_stack_id = *id as i32;
                }
            }
        }
        drained.python = self.python.drain(old)?;
        Ok(drained)
    }

    /// Forgets that `pid` was announced, so that a new process reusing the
    /// pid is announced again.
    pub fn forget_pid(&mut self, pid: u32) -> Result<(), ReadError> {
        remove(&mut self.known_pids, &pid, MAP_KNOWN_PIDS)
    }

    /// The Python maps (processes described, walk counters).
    pub fn python(&mut self) -> &mut PythonMaps {
        &mut self.python
    }

    /// What the Python walk counted so far (slots `PYTHON_STAT_*`).
    pub fn python_stats(&self) -> Result<StatTotals, ReadError> {
        self.python.stats()
    }

    /// What the program counted so far (slots `PROFILE_STAT_*`).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }

    /// Kernel memory of the program's maps, in bytes (their `memlock`):
    /// what `max_stacks`, `unwind_table_mib` and the fixed map sizes cost.
    pub fn map_memory_bytes(&self) -> u64 {
        self.object.map_memory_bytes()
    }

    /// [`Profiler::map_memory_bytes`] per map, largest first.
    pub fn map_memory(&self) -> Vec<(String, u64)> {
        self.object.map_memory()
    }

    /// Run time and count of the program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Loads and attaches the program on every CPU, then detaches: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    Profiler::load(&Options::default()).map(drop)
}
