//! The `offcpu` program (`offcpu.bpf.c`): time off CPU by process, task
//! state and (user, kernel) stack, sampled at switch-out and counted at
//! switch-in, in the kernel.
//!
//! [`OffcpuPrograms::drain`] switches the program to its other counts map,
//! then reads and clears the one it left (no sample lost to reading), with
//! the stacks they refer to. The stack maps are not cleared every
//! interval: a thread asleep for minutes keeps its stacks. When the active
//! one is half full, the other is cleared and a new epoch starts on it;
//! samples taken before come back with their stacks marked expired.
//!
//! Attached as `tp_btf` where the kernel takes it, `raw_tp` otherwise
//! (shared with `runqueue`). Minimum kernel 5.5 (BTF).

mod abi;

pub use abi::*;

use std::collections::HashSet;
use std::time::Duration;

use sonde_ebpf::aya::maps::{Array, HashMap, MapData, MapError, StackTraceMap};
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

use crate::profile::stacks::StackTable;
use crate::runqueue::bpf::attach::{self, Flavor, SchedProgram};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/offcpu.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "offcpu";
/// Per-thread sampling state.
pub const MAP_THREADS: &str = "offcpu_threads";
/// The counts maps of set 0 and 1.
pub const MAP_COUNTS: [&str; 2] = ["offcpu_counts_0", "offcpu_counts_1"];
/// The stack maps of even and odd epochs.
pub const MAP_STACKS: [&str; 2] = ["offcpu_stacks_0", "offcpu_stacks_1"];
/// The active counts set and the stack epoch.
pub const MAP_CONTROL: &str = "offcpu_control";
/// Per-CPU counters (`OFFCPU_STAT_*`).
pub const MAP_STATS: &str = "offcpu_stats";

/// Set in a drained stack id that refers to the odd epoch's stack map
/// (ids are below 2^30), so one [`StackTable`] holds both.
pub const STACK_SET_BIT: u32 = 1 << 30;

/// How long [`OffcpuPrograms::drain`] waits after switching counts maps
/// before it reads the old one: a program run that read the old index just
/// before finishes within microseconds.
pub const SWITCH_GRACE: Duration = Duration::from_millis(2);

const PROGRAM: SchedProgram = SchedProgram {
    tracepoint: "sched_switch",
    btf: "offcpu_switch_btf",
    raw: "offcpu_switch_raw",
};
const PROGRAM_EXIT: &str = "offcpu_exit";

/// How the program's stats slots (`OFFCPU_STAT_*`) are exported. Not
/// exported: `OFFCPU_STAT_SAMPLED` and `OFFCPU_STAT_SHORT`, which are not
/// losses.
pub const STATS: &[KernelStat] = &[
    KernelStat::map_full(OFFCPU_STAT_THREADS_FULL, MAP_THREADS),
    KernelStat::map_full(OFFCPU_STAT_COUNTS_FULL, "offcpu_counts"),
    KernelStat::lost(OFFCPU_STAT_USER_COLLISION, "user_stack_collision"),
    KernelStat::lost(OFFCPU_STAT_KERNEL_COLLISION, "kernel_stack_collision"),
    KernelStat::map_full(OFFCPU_STAT_STACK_MAP_FULL, "offcpu_stacks"),
    // Time counted, stacks gone: the thread slept across a stack map reset.
    KernelStat::lost(OFFCPU_STAT_STACK_EXPIRED, "stack_expired"),
];

/// How to load the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Sample one switch-out in each run of this many per thread; 0: none.
    pub sample_every: u32,
    /// Drop samples off CPU for less than this, ns.
    pub min_block_ns: u64,
    /// Capacity of the per-thread map.
    pub max_threads: u32,
    /// Capacity of each stack map.
    pub max_stacks: u32,
    /// Capacity of each counts map.
    pub max_counts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sample_every: 1,
            min_block_ns: 0,
            max_threads: OFFCPU_MAX_THREADS,
            max_stacks: OFFCPU_MAX_STACKS,
            max_counts: OFFCPU_MAX_COUNTS,
        }
    }
}

/// One drained counts map: time off CPU by key, and the stacks it names.
#[derive(Clone, Debug, Default)]
pub struct Drained {
    /// Each distinct key with its time and samples; stack ids of the odd
    /// epoch's map carry [`STACK_SET_BIT`].
    pub counts: Vec<(OffcpuKey, OffcpuValue)>,
    /// Instruction pointers of each stack id, innermost first.
    pub stacks: StackTable,
}

/// The loaded and attached program, with typed handles to its maps.
/// Dropping it detaches everything.
pub struct OffcpuPrograms {
    object: Object,
    flavor: Flavor,
    counts: [HashMap<MapData, OffcpuKey, OffcpuValue>; 2],
    stacks: [StackTraceMap<MapData>; 2],
    control: Array<MapData, OffcpuControl>,
    stats: StatsArray,
    state: OffcpuControl,
    max_stacks: u32,
}

impl std::fmt::Debug for OffcpuPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffcpuPrograms")
            .field("flavor", &self.flavor)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl OffcpuPrograms {
    /// Loads and attaches the program.
    pub fn load(options: &Options) -> Result<Self, LoadError> {
        let max_stacks = options.max_stacks.max(2);
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // Load-time constants: p = 0 prunes the switch-out half.
            loader.override_global("sample_every", &options.sample_every, true);
            loader.override_global("min_block_ns", &options.min_block_ns, true);
            loader.map_max_entries(MAP_THREADS, options.max_threads.max(1));
            for map in MAP_STACKS {
                loader.map_max_entries(map, max_stacks);
            }
            for map in MAP_COUNTS {
                loader.map_max_entries(map, options.max_counts.max(1));
            }
        })?;
        let counts = [object.take_map(MAP_COUNTS[0])?, object.take_map(MAP_COUNTS[1])?];
        let stacks = [object.take_map(MAP_STACKS[0])?, object.take_map(MAP_STACKS[1])?];
        let control = object.take_map(MAP_CONTROL)?;
        let stats = StatsArray::take(&mut object, MAP_STATS, OFFCPU_STAT_COUNT)?;
        object.attach_tracepoint(PROGRAM_EXIT, "sched", "sched_process_exit")?;
        let flavor = attach::attach(&mut object, &[PROGRAM])?;
        Ok(OffcpuPrograms {
            object,
            flavor,
            counts,
            stacks,
            control,
            stats,
            state: OffcpuControl::default(),
            max_stacks,
        })
    }

    /// Which flavour of the program is attached.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The current stack epoch (a new one starts at each stack map reset).
    pub fn epoch(&self) -> u32 {
        self.state.epoch
    }

    fn write_control(&mut self) -> Result<(), ReadError> {
        self.control
            .set(0, self.state, 0)
            .map_err(ReadError::of(OBJECT, MAP_CONTROL))
    }

    /// Switches the program to the other counts map, waits
    /// [`SWITCH_GRACE`], reads and clears the map it left, with the stacks
    /// its keys name; then resets the idle stack map and starts a new epoch
    /// if the active one is half full.
    pub fn drain(&mut self) -> Result<Drained, ReadError> {
        let old = self.state.counts_set as usize;
        self.state.counts_set = 1 - self.state.counts_set;
        self.write_control()?;
        std::thread::sleep(SWITCH_GRACE);

        let name = MAP_COUNTS[old];
        let counts = &mut self.counts[old];
        let keys = counts
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReadError::of(OBJECT, name))?;
        let mut drained = Drained::default();
        let mut wanted: [HashSet<u32>; 2] = Default::default();
        for key in keys {
            match counts.get(&key, 0) {
                Ok(value) => {
                    let set = (key.stack_set & 1) as usize;
                    let mut named = key;
                    for id in [&mut named.user_stack_id, &mut named.kernel_stack_id] {
                        if *id >= 0 {
                            wanted[set].insert(*id as u32);
                            if set == 1 {
                                *id |= STACK_SET_BIT as i32;
                            }
                        }
                    }
                    drained.counts.push((named, value));
                }
                Err(MapError::KeyNotFound) => continue,
                Err(source) => return Err(ReadError::of(OBJECT, name)(source)),
            }
            match counts.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(ReadError::of(OBJECT, name)(source)),
            }
        }
        for (set, ids) in wanted.iter().enumerate() {
            for id in ids {
                match self.stacks[set].get(id, 0) {
                    Ok(trace) => {
                        let bit = if set == 1 { STACK_SET_BIT } else { 0 };
                        drained
                            .stacks
                            .insert(id | bit, trace.frames().iter().map(|f| f.ip).collect());
                    }
                    Err(MapError::KeyNotFound) => {}
                    Err(source) => return Err(ReadError::of(OBJECT, MAP_STACKS[set])(source)),
                }
            }
        }
        self.maybe_reset_stacks()?;
        Ok(drained)
    }

    /// Starts a new epoch on the idle stack map, cleared, when the active
    /// one is half full. The idle map is no longer referenced: samples of
    /// its epoch that came back since were counted and drained, and those
    /// still pending come back expired.
    fn maybe_reset_stacks(&mut self) -> Result<(), ReadError> {
        let active = (self.state.epoch & 1) as usize;
        let used = self.stacks[active].stack_ids().count();
        if used < (self.max_stacks / 2) as usize {
            return Ok(());
        }
        let idle = 1 - active;
        let ids = self.stacks[idle]
            .stack_ids()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReadError::of(OBJECT, MAP_STACKS[idle]))?;
        for id in ids {
            match self.stacks[idle].remove(&id) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(ReadError::of(OBJECT, MAP_STACKS[idle])(source)),
            }
        }
        self.state.epoch = self.state.epoch.wrapping_add(1);
        tracing::debug!(epoch = self.state.epoch, used, "offcpu stack map reset");
        self.write_control()
    }

    /// What the program counted so far (slots `OFFCPU_STAT_*`).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }

    /// Run time and count of the programs (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// The probability p as "one in every N switch-outs": N = round(1/p), 0
/// for p = 0 (nothing sampled).
pub fn sample_every(probability: f64) -> u32 {
    if probability <= 0.0 {
        0
    } else {
        (1.0 / probability).round().clamp(1.0, u32::MAX as f64) as u32
    }
}

/// Loads and attaches the program, then detaches it: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    OffcpuPrograms::load(&Options::default()).map(drop)
}
