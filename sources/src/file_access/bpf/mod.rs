//! The `file_access` programs (`file_access.bpf.c`): file opens checked
//! against the policy in the kernel, reported through a ring buffer.
//!
//! Minimum kernel 5.8 (ring buffer; BTF for CO-RE).

mod abi;

pub use abi::*;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sonde_ebpf::aya::maps::{Array, HashMap, MapData, RingBuf};
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object for kernels before 5.15, embedded: entry programs
/// keep each call's name and flags per thread for its exit.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/file_access.bpf.o"));
/// The same policy and events from exit programs alone (kernel 5.15+,
/// `bpf_task_pt_regs`): the arguments read from the task's entry registers
/// at the return. One tracepoint and no map update per open instead of
/// two and two; loaded where the kernel has the helper.
static ELF_ARGS: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/file_access_args.bpf.o"));

/// Set (to anything) to load the entry-and-exit object even where the
/// exit-only one would load (tests run both objects on one kernel).
pub const ENTRY_PROGRAMS_ENV: &str = "SONDE_FILE_ACCESS_ENTRY_PROGRAMS";

/// Whether the exit-only object may be loaded: see
/// [`sonde_ebpf::args_at_exit`], and [`ENTRY_PROGRAMS_ENV`] unset.
pub fn args_at_exit() -> bool {
    std::env::var_os(ENTRY_PROGRAMS_ENV).is_none() && sonde_ebpf::args_at_exit()
}

/// The object's name, used in errors.
pub const OBJECT: &str = "file_access";
/// The reported opens.
pub const MAP_EVENTS: &str = "fa_events";
/// Calls between their entry and exit.
pub const MAP_PENDING: &str = "fa_pending_calls";
/// Per-CPU counters (`FA_STAT_*`).
pub const MAP_STATS: &str = "fa_stats";

/// The syscalls traced: (syscall, entry program, exit program of the
/// exit-only object); every exit of the other object goes to
/// [`EXIT_PROGRAM`].
pub const SYSCALLS: [(&str, &str, &str); 4] = [
    ("open", "enter_open", "exit_open"),
    ("openat", "enter_openat", "exit_openat"),
    ("openat2", "enter_openat2", "exit_openat2"),
    ("creat", "enter_creat", "exit_creat"),
];
const EXIT_PROGRAM: &str = "call_exit_tp";

/// What is lost (the rest of `FA_STAT_*` are opens left out on purpose,
/// reported by the source as its own counters).
pub const STATS: &[KernelStat] = &[
    KernelStat::lost(FA_STAT_RING_FULL, "ringbuf_full"),
    KernelStat::map_full(FA_STAT_PENDING_FULL, MAP_PENDING),
];

/// The opens left out on purpose: (stat slot, reason).
pub const DROPPED: [(u32, &str); 7] = [
    (FA_STAT_FILTERED_CGROUP, "cgroup"),
    (FA_STAT_FILTERED_BINARY, "binary"),
    (FA_STAT_FILTERED_FLAGS, "flags"),
    (FA_STAT_FILTERED_PATH, "path"),
    (FA_STAT_FILTERED_FAILED, "failed"),
    (FA_STAT_DEDUPLICATED, "deduplicated"),
    (FA_STAT_THROTTLED, "throttled"),
];

/// The policy, in the kernel's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Paths (directories or files): an open of one of them or of anything
    /// below is reported. Empty: every path.
    pub path_prefixes: Vec<String>,
    /// FA_READ | FA_WRITE …: opens asking for any of these. 0: all.
    pub access: u32,
    /// Process names (comm). Empty: every process.
    pub binaries: Vec<String>,
    /// Cgroup ids (v2). Empty: every cgroup.
    pub cgroups: Vec<u64>,
    /// Report failed opens.
    pub failed: bool,
    /// Opens of a file by a process with the same flags within this many
    /// ns of the last one reported are counted, not reported. 0: all.
    pub dedup_ns: u64,
    /// Events per second per cgroup (0: no limit).
    pub rate_per_sec: u32,
    /// A process left out (the agent), or 0.
    pub exclude_pid: u32,
}

/// Words of a prefix in `struct fa_prefix`.
const WORDS: usize = FA_PREFIX_LEN as usize / 8;

/// `struct fa_prefix` of `prefix`: its bytes as native-endian words (as
/// the program reads the requested name), then a mask per word covering
/// the prefix's bytes. A directory prefix (`/etc`) also covers the `/`
/// after it, so `/etcetera` does not match.
pub fn prefix_words(prefix: &str) -> [u64; 2 * WORDS] {
    let mut text = prefix.trim_end_matches('/').as_bytes().to_vec();
    text.push(b'/');
    text.truncate(FA_PREFIX_LEN as usize);
    let mut bytes = [0u8; FA_PREFIX_LEN as usize];
    let mut mask = [0u8; FA_PREFIX_LEN as usize];
    bytes[..text.len()].copy_from_slice(&text);
    mask[..text.len()].fill(0xff);
    let mut out = [0u64; 2 * WORDS];
    for k in 0..WORDS {
        out[k] = u64::from_ne_bytes(bytes[8 * k..8 * k + 8].try_into().unwrap());
        out[WORDS + k] = u64::from_ne_bytes(mask[8 * k..8 * k + 8].try_into().unwrap());
    }
    out
}

/// The loaded programs. Dropping it detaches everything.
pub struct FileAccessPrograms {
    object: Object,
    at_exit: bool,
    events: Option<RingBuf<MapData>>,
    stats: StatsArray,
}

impl std::fmt::Debug for FileAccessPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAccessPrograms")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// A path's (device in the kernel's numbering, inode).
pub fn file_identity(path: &Path) -> std::io::Result<(u32, u64)> {
    let meta = std::fs::metadata(path)?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Ok((major << 20 | minor, meta.ino()))
}

fn map_error(map: &'static str) -> impl Fn(sonde_ebpf::aya::maps::MapError) -> LoadError {
    move |e| LoadError::Map {
        object: OBJECT,
        map,
        source: Box::new(e),
    }
}

impl FileAccessPrograms {
    /// Loads the programs with `policy` and attaches them.
    pub fn load(policy: &Policy) -> Result<Self, LoadError> {
        // Paths that exist are matched by identity; every prefix also as
        // text, for failed opens (which have no file).
        let dirs: Vec<(u32, u64)> = policy
            .path_prefixes
            .iter()
            .filter_map(|p| file_identity(Path::new(p)).ok())
            .collect();
        let bloom = dirs.iter().fold(0u64, |bloom, (_, ino)| bloom | 1 << (ino & 63));
        let flags = [
            ("use_cgroups", u8::from(!policy.cgroups.is_empty())),
            ("use_binaries", u8::from(!policy.binaries.is_empty())),
            ("use_dirs", u8::from(!policy.path_prefixes.is_empty())),
            ("report_failed", u8::from(policy.failed)),
        ];
        let at_exit = args_at_exit();
        let elf = if at_exit { ELF_ARGS } else { ELF };
        let mut object = Object::load(OBJECT, elf, |loader| {
            // Load-time constants: the verifier prunes what is off.
            for (name, value) in &flags {
                loader.override_global(name, value, true);
            }
            loader.override_global("self_pid", &policy.exclude_pid, true);
            loader.override_global("access_mask", &policy.access, true);
            loader.override_global("dir_bloom", &bloom, true);
            loader.override_global("dedup_ns", &policy.dedup_ns, true);
            loader.override_global("rate_per_sec", &policy.rate_per_sec, true);
        })?;
        {
            let mut map: HashMap<&mut MapData, [u64; 2], u8> =
                HashMap::try_from(object.ebpf_mut().map_mut("fa_dirs").ok_or(LoadError::NoSuchMap {
                    object: OBJECT,
                    map: "fa_dirs",
                })?)
                .map_err(map_error("fa_dirs"))?;
            for (dev, ino) in &dirs {
                // struct fa_dir: { u64 ino; u32 dev; u32 pad }.
                map.insert([*ino, u64::from(*dev)], 1, 0)
                    .map_err(map_error("fa_dirs"))?;
            }
        }
        {
            let mut map: Array<&mut MapData, [u64; 2 * WORDS]> =
                Array::try_from(object.ebpf_mut().map_mut("fa_prefixes").ok_or(LoadError::NoSuchMap {
                    object: OBJECT,
                    map: "fa_prefixes",
                })?)
                .map_err(map_error("fa_prefixes"))?;
            for (i, prefix) in policy.path_prefixes.iter().enumerate().take(FA_MAX_PREFIXES as usize) {
                map.set(i as u32, prefix_words(prefix), 0)
                    .map_err(map_error("fa_prefixes"))?;
            }
        }
        {
            let mut map: HashMap<&mut MapData, [u8; 16], u8> =
                HashMap::try_from(object.ebpf_mut().map_mut("fa_binaries").ok_or(LoadError::NoSuchMap {
                    object: OBJECT,
                    map: "fa_binaries",
                })?)
                .map_err(map_error("fa_binaries"))?;
            for binary in &policy.binaries {
                let mut comm = [0u8; 16];
                let bytes = binary.as_bytes();
                let len = bytes.len().min(15);
                comm[..len].copy_from_slice(&bytes[..len]);
                map.insert(comm, 1, 0).map_err(map_error("fa_binaries"))?;
            }
        }
        {
            let mut map: HashMap<&mut MapData, u64, u8> =
                HashMap::try_from(object.ebpf_mut().map_mut("fa_cgroups").ok_or(LoadError::NoSuchMap {
                    object: OBJECT,
                    map: "fa_cgroups",
                })?)
                .map_err(map_error("fa_cgroups"))?;
            for cgroup in &policy.cgroups {
                map.insert(*cgroup, 1, 0).map_err(map_error("fa_cgroups"))?;
            }
        }
        if at_exit {
            for (syscall, _, program) in SYSCALLS {
                object.attach_tracepoint(program, "syscalls", &format!("sys_exit_{syscall}"))?;
            }
        } else {
            // Exits first: an entry whose exit is not attached yet would
            // wait for the thread's next open.
            for (syscall, _, _) in SYSCALLS {
                object.attach_tracepoint(EXIT_PROGRAM, "syscalls", &format!("sys_exit_{syscall}"))?;
            }
            for (syscall, program, _) in SYSCALLS {
                object.attach_tracepoint(program, "syscalls", &format!("sys_enter_{syscall}"))?;
            }
        }
        Ok(FileAccessPrograms {
            events: Some(object.take_map(MAP_EVENTS)?),
            stats: StatsArray::take(&mut object, MAP_STATS, FA_STAT_COUNT)?,
            object,
            at_exit,
        })
    }

    /// Whether the exit-only object was loaded (see [`args_at_exit`]).
    pub fn reads_args_at_exit(&self) -> bool {
        self.at_exit
    }

    /// The ring buffer of reported opens (once: `None` after).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Every `FA_STAT_*` counter so far.
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Loads and attaches the programs with an empty policy, then detaches
/// them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    FileAccessPrograms::load(&Policy {
        failed: true,
        ..Policy::default()
    })
    .map(drop)
}
