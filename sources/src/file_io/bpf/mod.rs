//! The `file_io` programs (`file_io.bpf.c`): reads, writes and syncs of
//! regular files timed from syscall tracepoints and added up per process
//! and file in the kernel; each new (process, file) pair announced through
//! a ring buffer so user space can name the file.
//!
//! Minimum kernel 5.5 (BTF in sysfs); 5.8 for the ring buffer.

mod abi;

pub use abi::*;

use sonde_ebpf::aya::maps::{HashMap, MapData, RingBuf};
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/file_io.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "file_io";
/// Totals per (process, file).
pub const MAP_FILES: &str = "fio_files";
/// Calls in flight, by thread.
pub const MAP_INFLIGHT: &str = "fio_inflight";
/// New (process, file) pairs.
pub const MAP_NEW: &str = "fio_new";
/// The processes counted, when the list is on.
pub const MAP_PIDS: &str = "fio_pids";
/// Per-CPU counters of what the programs lost (`FIO_STAT_*`).
pub const MAP_STATS: &str = "fio_stats";

/// The syscalls traced, with their entry programs (`enter_<syscall>`);
/// every exit goes to `call_exit_tp`.
pub const SYSCALLS: [(&str, &str); 12] = [
    ("read", "enter_read"),
    ("pread64", "enter_pread64"),
    ("readv", "enter_readv"),
    ("preadv", "enter_preadv"),
    ("preadv2", "enter_preadv2"),
    ("write", "enter_write"),
    ("pwrite64", "enter_pwrite64"),
    ("writev", "enter_writev"),
    ("pwritev", "enter_pwritev"),
    ("pwritev2", "enter_pwritev2"),
    ("fsync", "enter_fsync"),
    ("fdatasync", "enter_fdatasync"),
];
const EXIT_PROGRAM: &str = "call_exit_tp";

/// How the programs' stats slots (`FIO_STAT_*`) are exported.
pub const STATS: &[KernelStat] = &[
    KernelStat::map_full(FIO_STAT_FILES_FULL, MAP_FILES),
    KernelStat::lost(FIO_STAT_RING_FULL, "ringbuf_full"),
    KernelStat::map_full(FIO_STAT_INFLIGHT_FULL, MAP_INFLIGHT),
];

/// How to load the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    /// Capacity of the (process, file) map.
    pub max_files: u32,
    /// A process whose calls are not counted (the agent itself), or 0.
    pub exclude_pid: u32,
    /// Count only these processes (empty: all).
    pub pids: &'a [u32],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            max_files: FIO_MAX_FILES,
            exclude_pid: std::process::id(),
            pids: &[],
        }
    }
}

/// The loaded programs, with typed handles to their maps. Dropping it
/// detaches everything.
pub struct FileIoPrograms {
    object: Object,
    files: HashMap<MapData, FioKey, FioValue>,
    new_files: Option<RingBuf<MapData>>,
    stats: StatsArray,
}

impl std::fmt::Debug for FileIoPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIoPrograms")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl FileIoPrograms {
    /// Loads the programs and attaches them to the syscall tracepoints.
    pub fn load(options: Options) -> Result<Self, LoadError> {
        let only_listed = u8::from(!options.pids.is_empty());
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // Load-time constants, compared at each call's entry.
            loader.override_global("self_pid", &options.exclude_pid, true);
            loader.override_global("only_listed", &only_listed, true);
            loader.map_max_entries(MAP_FILES, options.max_files.max(1));
        })?;
        let mut pids: HashMap<MapData, u32, u8> = object.take_map(MAP_PIDS)?;
        for &pid in options.pids {
            pids.insert(pid, 1, 0).map_err(|e| LoadError::Map {
                object: OBJECT,
                map: MAP_PIDS,
                source: Box::new(e),
            })?;
        }
        // Exits first: an entry seen before its exit is attached would be
        // left in flight until the thread's next call.
        for (syscall, _) in SYSCALLS {
            object.attach_tracepoint(EXIT_PROGRAM, "syscalls", &format!("sys_exit_{syscall}"))?;
        }
        for (syscall, program) in SYSCALLS {
            object.attach_tracepoint(program, "syscalls", &format!("sys_enter_{syscall}"))?;
        }
        Ok(FileIoPrograms {
            files: object.take_map(MAP_FILES)?,
            new_files: Some(object.take_map(MAP_NEW)?),
            stats: StatsArray::take(&mut object, MAP_STATS, FIO_STAT_COUNT)?,
            object,
        })
    }

    /// The ring buffer of new (process, file) pairs (once: `None` after).
    pub fn take_new_files(&mut self) -> Option<RingBuf<MapData>> {
        self.new_files.take()
    }

    /// Every (process, file) pair's totals.
    pub fn files(&self) -> Result<Vec<(FioKey, FioValue)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.files.iter() {
            out.push(entry.map_err(ReadError::of(OBJECT, MAP_FILES))?);
        }
        Ok(out)
    }

    /// Removes a pair (its totals were taken over by user space).
    pub fn remove(&mut self, key: &FioKey) {
        let _ = self.files.remove(key);
    }

    /// What the programs lost so far (slots `FIO_STAT_*`).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Loads and attaches the programs, then detaches them: `sonde doctor`'s
/// trial.
pub fn trial() -> Result<(), LoadError> {
    FileIoPrograms::load(Options::default()).map(drop)
}
