//! The `memory` programs (`memory.bpf.c`): page allocations and frees by
//! order per process (tracepoints `kmem:mm_page_alloc`, `kmem:mm_page_free`),
//! page faults per process (perf software events `page-faults-min` and
//! `page-faults-maj`, sampled every `period` faults on every CPU), reclaim
//! stalls per cgroup (`vmscan:mm_vmscan_{direct,memcg}_reclaim_{begin,end}`),
//! OOM kills (raw tracepoint `oom:mark_victim`, through a ring buffer), and,
//! for chosen processes only, user-space allocations through uprobes on
//! libc's `malloc`, `calloc`, `realloc` and `free`: sizes, counts, and the
//! bytes not yet freed per allocation stack.
//!
//! Minimum kernel 5.5 (BTF in sysfs). The uprobes are attached per process
//! (`perf_event_open` with its pid), so other processes using the same libc
//! never trap.

mod abi;

pub use abi::*;

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::PathBuf;

use sonde_ebpf::aya::maps::{HashMap, MapData, PerCpuHashMap, RingBuf, StackTraceMap};
use sonde_ebpf::aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
use sonde_ebpf::aya::programs::uprobe::UProbeScope;
use sonde_ebpf::aya::programs::{PerfEvent, RawTracePoint, UProbe};
use sonde_ebpf::loader::{load_error, Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memory.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "memory";
/// Page allocations by process (per CPU).
pub const MAP_PAGES: &str = "mem_pages";
/// Traced processes and their allocation totals.
pub const MAP_PROCS: &str = "mem_procs";
/// Allocations not yet freed.
pub const MAP_ALLOCS: &str = "mem_allocs";
/// Outstanding bytes by process and stack.
pub const MAP_OUTSTANDING: &str = "mem_outstanding";
/// Allocation stacks.
pub const MAP_STACKS: &str = "mem_stacks";
/// Per-CPU counters of what the programs lost (`MEM_STAT_*`).
pub const MAP_STATS: &str = "mem_stats";
/// Page faults by process (and stack), per CPU.
pub const MAP_FAULTS: &str = "mem_faults";
/// Reclaim stalls by cgroup and kind, per CPU.
pub const MAP_RECLAIM: &str = "mem_reclaim";
/// OOM kills, one record each.
pub const MAP_OOM: &str = "mem_oom";

/// The page-fault programs: (program, perf software event).
const FAULT_PROGRAMS: [(&str, SoftwareEvent); 2] = [
    ("page_fault_minor", SoftwareEvent::PageFaultsMin),
    ("page_fault_major", SoftwareEvent::PageFaultsMaj),
];
/// The reclaim tracepoints: (program, vmscan event). Both ends share one.
const RECLAIM_TRACEPOINTS: [(&str, &str); 4] = [
    ("direct_reclaim_begin", "mm_vmscan_direct_reclaim_begin"),
    ("memcg_reclaim_begin", "mm_vmscan_memcg_reclaim_begin"),
    ("reclaim_end_tp", "mm_vmscan_direct_reclaim_end"),
    ("reclaim_end_tp", "mm_vmscan_memcg_reclaim_end"),
];
const OOM_PROGRAM: &str = "oom_mark_victim";

/// The libc functions probed: (function, entry program). Every allocation
/// returns through `alloc_return`.
const PROBES: &[(&str, &str)] = &[
    ("malloc", "malloc_enter"),
    ("calloc", "calloc_enter"),
    ("realloc", "realloc_enter"),
    ("free", "free_enter"),
];
const RETURN_PROGRAM: &str = "alloc_return";

/// How the programs' stats slots (`MEM_STAT_*`) are exported.
pub const STATS: &[KernelStat] = &[
    KernelStat::map_full(MEM_STAT_PAGE_KEYS_FULL, MAP_PAGES),
    KernelStat::map_full(MEM_STAT_ALLOCS_FULL, MAP_ALLOCS),
    // Allocations beyond the per-process cap: counted, not tracked.
    KernelStat::lost(MEM_STAT_PROCESS_CAP, "process_cap"),
    KernelStat::lost(MEM_STAT_NO_STACK, "no_stack"),
    KernelStat::map_full(MEM_STAT_OUTSTANDING_FULL, MAP_OUTSTANDING),
    KernelStat::lost(MEM_STAT_NO_ENTRY, "no_entry"),
    KernelStat::map_full(MEM_STAT_FAULT_KEYS_FULL, MAP_FAULTS),
    KernelStat::lost(MEM_STAT_OOM_LOST, "ringbuf_full"),
    KernelStat::map_full(MEM_STAT_RECLAIM_KEYS_FULL, MAP_RECLAIM),
    KernelStat::lost(MEM_STAT_RECLAIM_NO_BEGIN, "no_begin"),
];

/// How page faults are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultOptions {
    /// One sample every `period` faults of a kind on a CPU (1: every fault).
    pub period: u64,
    /// Take the user stack of each sample.
    pub stacks: bool,
}

/// How to load the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Attach the page allocation tracepoints.
    pub pages: bool,
    /// Tracked (not yet freed) allocations per process.
    pub per_process_cap: u32,
    /// Capacity of the map of tracked allocations, all processes.
    pub max_allocations: u32,
    /// Sample page faults (None: off).
    pub faults: Option<FaultOptions>,
    /// Attach the reclaim tracepoints.
    pub reclaim: bool,
    /// Attach the OOM-kill tracepoint.
    pub oom: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pages: true,
            per_process_cap: MEM_PER_PROCESS_CAP,
            max_allocations: MEM_MAX_ALLOCS,
            faults: None,
            reclaim: true,
            oom: true,
        }
    }
}

/// The loaded programs, with typed handles to their maps. Dropping it
/// detaches everything.
pub struct MemoryPrograms {
    object: Object,
    pages: PerCpuHashMap<MapData, MemPageKey, MemPageCounts>,
    procs: HashMap<MapData, u32, MemProc>,
    outstanding: HashMap<MapData, MemStackKey, MemOutstanding>,
    stacks: StackTraceMap<MapData>,
    stats: StatsArray,
    attached: HashSet<u32>,
    faults: PerCpuHashMap<MapData, MemFaultKey, MemFaultCounts>,
    reclaim: PerCpuHashMap<MapData, MemReclaimKey, MemReclaimHist>,
    oom: RingBuf<MapData>,
}

impl std::fmt::Debug for MemoryPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPrograms")
            .field("object", &self.object)
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl MemoryPrograms {
    /// Loads the programs, attaches the page tracepoints (unless off) and
    /// loads the uprobes, which [`MemoryPrograms::trace`] attaches.
    pub fn load(options: Options) -> Result<Self, LoadError> {
        let cap = i64::from(options.per_process_cap);
        let fault_stacks = u8::from(options.faults.is_some_and(|f| f.stacks));
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // Load-time constants: the verifier prunes what they turn off.
            loader.override_global("per_process_cap", &cap, true);
            loader.override_global("fault_stacks", &fault_stacks, true);
            loader.map_max_entries(MAP_ALLOCS, options.max_allocations.max(1));
        })?;
        if options.pages {
            object.attach_tracepoint("mm_page_alloc", "kmem", "mm_page_alloc")?;
            object.attach_tracepoint("mm_page_free", "kmem", "mm_page_free")?;
        }
        if options.oom {
            attach_oom(&mut object)?;
        }
        if options.reclaim {
            for (program, event) in RECLAIM_TRACEPOINTS {
                object.attach_tracepoint(program, "vmscan", event)?;
            }
        }
        if let Some(faults) = options.faults {
            attach_faults(&mut object, faults.period)?;
        }
        for program in PROBES.iter().map(|(_, p)| *p).chain([RETURN_PROGRAM]) {
            let prog: &mut UProbe = object.program_as(program)?;
            prog.load()
                .map_err(|e| sonde_ebpf::loader::load_error(OBJECT, program, e))?;
        }
        Ok(MemoryPrograms {
            pages: object.take_map(MAP_PAGES)?,
            procs: object.take_map(MAP_PROCS)?,
            outstanding: object.take_map(MAP_OUTSTANDING)?,
            stacks: object.take_map(MAP_STACKS)?,
            stats: StatsArray::take(&mut object, MAP_STATS, MEM_STAT_COUNT)?,
            attached: HashSet::new(),
            faults: object.take_map(MAP_FAULTS)?,
            reclaim: object.take_map(MAP_RECLAIM)?,
            oom: object.take_map(MAP_OOM)?,
            object,
        })
    }

    /// Page faults per process (and stack), summed over CPUs.
    pub fn faults(&self) -> Result<Vec<(MemFaultKey, MemFaultCounts)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.faults.iter() {
            let (key, per_cpu) = entry.map_err(ReadError::of(OBJECT, MAP_FAULTS))?;
            let mut sum = MemFaultCounts::default();
            for counts in per_cpu.iter() {
                for (a, b) in sum.faults.iter_mut().zip(counts.faults) {
                    *a = a.wrapping_add(b);
                }
            }
            out.push((key, sum));
        }
        Ok(out)
    }

    /// Removes a process' fault counts (it exited).
    pub fn remove_faults(&mut self, key: &MemFaultKey) {
        let _ = self.faults.remove(key);
    }

    /// Reclaim stalls per cgroup and kind, summed over CPUs.
    pub fn reclaim(&self) -> Result<Vec<(MemReclaimKey, MemReclaimHist)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.reclaim.iter() {
            let (key, per_cpu) = entry.map_err(ReadError::of(OBJECT, MAP_RECLAIM))?;
            let mut sum = MemReclaimHist::default();
            per_cpu.iter().for_each(|h| sum.add(h));
            out.push((key, sum));
        }
        Ok(out)
    }

    /// The OOM kills reported since the last call, oldest first.
    pub fn oom_kills(&mut self) -> Vec<MemOomEvent> {
        let mut out = Vec::new();
        while let Some(record) = self.oom.next() {
            out.extend(MemOomEvent::from_bytes(&record));
        }
        out
    }

    /// Starts tracing process `pid`'s allocations: attaches the uprobes to
    /// the libc it maps, for it only. Already traced: nothing to do.
    pub fn trace(&mut self, pid: u32) -> Result<(), LoadError> {
        if self.attached.contains(&pid) {
            return Ok(());
        }
        let Some(scope) = NonZeroU32::new(pid).map(UProbeScope::OneProcess) else {
            return Ok(());
        };
        let libc = libc_of(pid).ok_or_else(|| LoadError::Attach {
            object: OBJECT,
            program: PROBES[0].1,
            attach_point: format!("uprobe libc:malloc of process {pid}"),
            source: Box::new(sonde_ebpf::aya::programs::ProgramError::IOError(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the process maps no libc.so (gone, or statically linked)",
            ))),
        })?;
        // Known before its first allocation returns.
        self.procs
            .insert(pid, MemProc::default(), 0)
            .map_err(|e| LoadError::Map {
                object: OBJECT,
                map: MAP_PROCS,
                source: Box::new(e),
            })?;
        for (function, program) in PROBES {
            self.attach(program, function, &libc, scope, "uprobe")?;
            if *function != "free" {
                self.attach(RETURN_PROGRAM, function, &libc, scope, "uretprobe")?;
            }
        }
        self.attached.insert(pid);
        Ok(())
    }

    fn attach(
        &mut self,
        program: &'static str,
        function: &str,
        libc: &std::path::Path,
        scope: UProbeScope,
        point: &str,
    ) -> Result<(), LoadError> {
        let prog: &mut UProbe = self.object.program_as(program)?;
        prog.attach(function, libc, scope)
            .map(drop)
            .map_err(|source| LoadError::Attach {
                object: OBJECT,
                program,
                attach_point: format!("{point} {}:{function}", libc.display()),
                source: Box::new(source),
            })
    }

    /// Page allocations and frees per process, summed over CPUs.
    pub fn pages(&self) -> Result<Vec<(MemPageKey, MemPageCounts)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.pages.iter() {
            let (key, per_cpu) = entry.map_err(ReadError::of(OBJECT, MAP_PAGES))?;
            let mut sum = MemPageCounts::default();
            per_cpu.iter().for_each(|c| sum.add(c));
            out.push((key, sum));
        }
        Ok(out)
    }

    /// Removes a process' page counts (it exited).
    pub fn remove_pages(&mut self, key: &MemPageKey) {
        let _ = self.pages.remove(key);
    }

    /// Each traced process' allocation totals.
    pub fn procs(&self) -> Result<Vec<(u32, MemProc)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.procs.iter() {
            out.push(entry.map_err(ReadError::of(OBJECT, MAP_PROCS))?);
        }
        Ok(out)
    }

    /// Outstanding bytes by process and stack.
    pub fn outstanding(&self) -> Result<Vec<(MemStackKey, MemOutstanding)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.outstanding.iter() {
            out.push(entry.map_err(ReadError::of(OBJECT, MAP_OUTSTANDING))?);
        }
        Ok(out)
    }

    /// The user addresses of stack `id`, innermost first.
    pub fn stack(&self, id: i32) -> Vec<u64> {
        let Ok(id) = u32::try_from(id) else { return Vec::new() };
        self.stacks
            .get(&id, 0)
            .map(|trace| trace.frames().iter().map(|f| f.ip).collect())
            .unwrap_or_default()
    }

    /// What the programs lost so far (slots `MEM_STAT_*`).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Attaches `oom_mark_victim` to the raw tracepoint `oom:mark_victim`.
fn attach_oom(object: &mut Object) -> Result<(), LoadError> {
    let program: &mut RawTracePoint = object.program_as(OOM_PROGRAM)?;
    program.load().map_err(|e| load_error(OBJECT, OOM_PROGRAM, e))?;
    program
        .attach("mark_victim")
        .map(drop)
        .map_err(|source| LoadError::Attach {
            object: OBJECT,
            program: OOM_PROGRAM,
            attach_point: "raw_tracepoint oom:mark_victim".to_string(),
            source: Box::new(source),
        })
}

/// Attaches the page-fault programs to a sampling software perf event on
/// every online CPU.
fn attach_faults(object: &mut Object, period: u64) -> Result<(), LoadError> {
    let cpus = sonde_ebpf::aya::util::online_cpus().map_err(|(path, error)| LoadError::Attach {
        object: OBJECT,
        program: FAULT_PROGRAMS[0].0,
        attach_point: format!("perf events (cannot read {path})"),
        source: Box::new(sonde_ebpf::aya::programs::ProgramError::IOError(error)),
    })?;
    for (program, event) in FAULT_PROGRAMS {
        let prog: &mut PerfEvent = object.program_as(program)?;
        prog.load().map_err(|e| load_error(OBJECT, program, e))?;
        for &cpu in &cpus {
            prog.attach(
                PerfEventConfig::Software(event),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Period(period.max(1)),
                false,
            )
            .map(drop)
            .map_err(|source| LoadError::Attach {
                object: OBJECT,
                program,
                attach_point: format!("perf_event software:{program} cpu {cpu}"),
                source: Box::new(source),
            })?;
        }
    }
    Ok(())
}

/// The libc that process `pid` maps, as a path this process can open.
fn libc_of(pid: u32) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let path = maps.lines().find_map(|line| {
        let path = line.split_whitespace().nth(5)?;
        let name = path.rsplit('/').next()?;
        (name.starts_with("libc.so") || (name.starts_with("libc-") && name.ends_with(".so"))).then_some(path)
    })?;
    Some(PathBuf::from(format!("/proc/{pid}/root{path}")))
}

/// Loads the programs and attaches the page tracepoints, then detaches
/// them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    MemoryPrograms::load(Options {
        faults: Some(FaultOptions {
            period: 1000,
            stacks: false,
        }),
        ..Options::default()
    })
    .map(drop)
}
