//! The `memory` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::polling::{run_every, Rounds};
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::collect::Collector;

/// Default time between two emissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default cap of tracked (not yet freed) allocations per process.
pub const DEFAULT_MAX_TRACKED_PER_PROCESS: u32 = super::bpf::MEM_PER_PROCESS_CAP;
/// Default capacity of the kernel's map of tracked allocations.
pub const DEFAULT_MAX_ALLOCATIONS: u32 = super::bpf::MEM_MAX_ALLOCS;
/// Default number of stacks reported per process.
pub const DEFAULT_TOP_STACKS: usize = 20;

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_true() -> bool {
    true
}
const fn default_max_tracked() -> u32 {
    DEFAULT_MAX_TRACKED_PER_PROCESS
}
const fn default_max_allocations() -> u32 {
    DEFAULT_MAX_ALLOCATIONS
}
const fn default_top_stacks() -> usize {
    DEFAULT_TOP_STACKS
}

/// Memory: kernel page allocations per process (tracepoints
/// `kmem:mm_page_alloc`, `kmem:mm_page_free`), page faults per process
/// (perf software events, sampled), reclaim stalls per cgroup
/// (`vmscan` tracepoints), OOM kills as `memory.oom_kill` log records
/// (`oom:mark_victim`), and, for the processes named in `pids` or `comm`
/// only, user-space allocations through uprobes on libc `malloc`,
/// `calloc`, `realloc` and `free`: size histogram, rate, and the bytes not
/// yet freed per allocation stack (the memleak view).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySourceConfig {
    /// Time between two emissions (and between two looks for new
    /// processes matching `comm`). Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Count page allocations and frees per process and order
    /// (`sonde_memory_page_allocations_total`). Every event is counted (one
    /// hash lookup and an add in the kernel, no sampling). Default `true`.
    #[serde(default = "default_true")]
    pub page_allocations: bool,
    /// Page faults per process, minor and major
    /// (`process_paging_faults_total`).
    #[serde(default)]
    pub page_faults: PageFaults,
    /// Report OOM kills: a `memory.oom_kill` log record per victim (pid,
    /// name, score adjustment, its memory cgroup with the limit and usage
    /// at the kill) and `sonde_memory_oom_kills_total` per cgroup.
    /// Default `true`.
    #[serde(default = "default_true")]
    pub oom_kills: bool,
    /// Time tasks spend stalled in memory reclaim, per cgroup: direct
    /// reclaim (the page allocator ran short) and memory-cgroup reclaim
    /// (a cgroup reached its limit), as the histogram
    /// `sonde_memory_reclaim_stall_seconds`. Default `true`.
    #[serde(default = "default_true")]
    pub reclaim: bool,
    /// Trace the user-space allocations of these processes. Each malloc,
    /// calloc, realloc and free of a traced process then costs a few
    /// microseconds (two uprobe traps for an allocation, one for a free):
    /// opt in for the processes you are investigating only. Default: none.
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Trace the user-space allocations of processes whose name
    /// (`/proc/PID/comm`) is one of these; looked for each interval, so a
    /// process started later is traced from the next interval on. Same cost
    /// as `pids`. Default: none.
    #[serde(default)]
    pub comm: Vec<String>,
    /// At most this many allocations tracked (not yet freed) per traced
    /// process; beyond it, allocations are still counted and sized but not
    /// attributed to a stack, and `sonde_ebpf_lost_events_total{reason="process_cap"}`
    /// counts them. Default 65536.
    #[serde(default = "default_max_tracked")]
    pub max_tracked_per_process: u32,
    /// Capacity of the kernel's map of tracked allocations, all traced
    /// processes together (about 90 bytes each, preallocated). When full,
    /// allocations are not tracked and `sonde_ebpf_map_full_total` counts
    /// them. Default 262144.
    #[serde(default = "default_max_allocations")]
    pub max_allocations: u32,
    /// Report the outstanding bytes of this many stacks per traced process,
    /// the largest. Default 20.
    #[serde(default = "default_top_stacks")]
    pub top_stacks: usize,
}

/// How page faults are counted.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageFaults {
    /// Count page faults. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Run the counting program once every `period` faults of a kind on a
    /// CPU, adding `period` each time: 1 counts every fault exactly (about
    /// 0.1-0.3 µs added to each fault); larger periods cost proportionally
    /// less and make the counts estimates. Default 1.
    #[serde(default = "default_period")]
    pub period: u64,
    /// Also count faults by user stack (symbolized; the `top_stacks`
    /// stacks with the most faults per process are reported). A stack walk
    /// per sample: raise `period` with it on busy nodes. Default `false`.
    #[serde(default)]
    pub stacks: bool,
}

const fn default_period() -> u64 {
    1
}

impl Default for PageFaults {
    fn default() -> Self {
        PageFaults {
            enabled: true,
            period: default_period(),
            stacks: false,
        }
    }
}

impl Default for MemorySourceConfig {
    fn default() -> Self {
        MemorySourceConfig {
            interval: DEFAULT_INTERVAL,
            page_allocations: true,
            page_faults: PageFaults::default(),
            oom_kills: true,
            reclaim: true,
            pids: Vec::new(),
            comm: Vec::new(),
            max_tracked_per_process: DEFAULT_MAX_TRACKED_PER_PROCESS,
            max_allocations: DEFAULT_MAX_ALLOCATIONS,
            top_stacks: DEFAULT_TOP_STACKS,
        }
    }
}

impl SourceType for MemorySourceConfig {
    const NAME: &'static str = "memory";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 5),
        attach_points: &[
            "tracepoint kmem:mm_page_alloc",
            "tracepoint kmem:mm_page_free",
            "perf_event software:page-faults-min, page-faults-maj (every CPU)",
            "tracepoint vmscan:mm_vmscan_{direct,memcg}_reclaim_{begin,end}",
            "raw_tracepoint oom:mark_victim",
            "uprobe libc:malloc, calloc, realloc, free (+ uretprobes; chosen processes only)",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for MemorySourceConfig {
    fn outputs(&self) -> EventKinds {
        if self.oom_kills {
            EventKinds::METRIC.union(EventKinds::LOG)
        } else {
            EventKinds::METRIC
        }
    }

    /// CAP_BPF and CAP_PERFMON load and attach the programs (uprobes are
    /// perf events); CAP_DAC_READ_SEARCH reads tracepoint ids in tracefs;
    /// CAP_SYS_PTRACE reads other processes' `/proc/PID/maps` and files
    /// (the libc to probe, symbols of their stacks).
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[
            Capability::BPF,
            Capability::PERFMON,
            Capability::DAC_READ_SEARCH,
            Capability::SYS_PTRACE,
        ])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        check
            .that(self.max_allocations > 0, "max_allocations", "must be at least 1")
            .that(self.top_stacks > 0, "top_stacks", "must be at least 1")
            .that(self.page_faults.period > 0, "page_faults.period", "must be at least 1");
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        Ok(Box::pin(run_every(collector, self.interval, Rounds::Blocking, cx)))
    }
}
