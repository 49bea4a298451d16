//! The program's Python maps: the processes user space describes
//! (`python_procs`), the Python stacks of each map set (`pystacks_N`,
//! drained with the counts that refer to them), and the walk's counters.

use std::collections::HashMap as StdHashMap;

use sonde_ebpf::aya::maps::{HashMap, MapData, MapError};
use sonde_ebpf::loader::Object;
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

use super::abi::{PythonProc, PythonStack, PYTHON_STAT_COUNT};

const OBJECT: &str = "profile";
/// pid → where its Python state is.
pub const MAP_PROCS: &str = "python_procs";
/// The Python stacks of set 0 and 1.
pub const MAP_STACKS: [&str; 2] = ["pystacks_0", "pystacks_1"];
/// Per-CPU counters of the walk (`PYTHON_STAT_*`).
pub const MAP_STATS: &str = "python_stats";

/// How the walk's counters are exported (samples walked or without a
/// thread state are not losses).
pub const STATS: &[KernelStat] = &[
    // A thread state or frame that could not be read (a race with the
    // interpreter, or wrong offsets).
    KernelStat::lost(super::abi::PYTHON_STAT_FAULT, "python_read_fault"),
    // Frames past PYTHON_MAX_FRAMES, cut.
    KernelStat::lost(super::abi::PYTHON_STAT_TRUNCATED, "python_stack_truncated"),
    KernelStat::map_full(super::abi::PYTHON_STAT_MAP_FULL, "pystacks"),
];

/// Typed handles to the Python maps.
pub struct PythonMaps {
    procs: HashMap<MapData, u32, PythonProc>,
    stacks: [HashMap<MapData, u64, PythonStack>; 2],
    stats: StatsArray,
}

impl std::fmt::Debug for PythonMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonMaps").finish_non_exhaustive()
    }
}

impl PythonMaps {
    /// Takes the maps out of the loaded object.
    pub fn take(object: &mut Object) -> Result<Self, LoadError> {
        Ok(PythonMaps {
            procs: object.take_map(MAP_PROCS)?,
            stacks: [object.take_map(MAP_STACKS[0])?, object.take_map(MAP_STACKS[1])?],
            stats: StatsArray::take(object, MAP_STATS, PYTHON_STAT_COUNT)?,
        })
    }

    /// Describes process `pid` to the program (from its next sample on).
    pub fn insert(&mut self, pid: u32, proc: &PythonProc) -> Result<(), ReadError> {
        self.procs
            .insert(pid, *proc, 0)
            .map_err(ReadError::of(OBJECT, MAP_PROCS))
    }

    /// Forgets process `pid`.
    pub fn remove(&mut self, pid: u32) -> Result<(), ReadError> {
        match self.procs.remove(&pid) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(ReadError::of(OBJECT, MAP_PROCS)(source)),
        }
    }

    /// Reads and clears the Python stacks of set `set` (not written to any more).
    pub fn drain(&mut self, set: usize) -> Result<StdHashMap<u64, PythonStack>, ReadError> {
        let name = MAP_STACKS[set];
        let map = &mut self.stacks[set];
        let keys = map
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReadError::of(OBJECT, name))?;
        let mut out = StdHashMap::with_capacity(keys.len());
        for key in keys {
            match map.get(&key, 0) {
                Ok(stack) => {
                    out.insert(key, stack);
                }
                Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(ReadError::of(OBJECT, name)(source)),
            }
            match map.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(ReadError::of(OBJECT, name)(source)),
            }
        }
        Ok(out)
    }

    /// The walk's counters since load (slots `PYTHON_STAT_*`).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }
}
