//! The `runqueue` source's options.

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

use super::bpf::{Options, RQ_MAX_CGROUPS, RQ_MAX_FILTER, RQ_MAX_PROCESSES, RQ_MAX_THREADS};
use super::collect::Collector;

/// Default time between two emissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default capacity of the kernel's map of cgroup histograms.
pub const DEFAULT_MAX_CGROUPS: u32 = RQ_MAX_CGROUPS;
/// Default capacity of the kernel's map of process histograms.
pub const DEFAULT_MAX_PROCESSES: u32 = RQ_MAX_PROCESSES;
/// Default capacity of the kernel's map of threads.
pub const DEFAULT_MAX_THREADS: u32 = RQ_MAX_THREADS;

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_max_cgroups() -> u32 {
    DEFAULT_MAX_CGROUPS
}
const fn default_max_processes() -> u32 {
    DEFAULT_MAX_PROCESSES
}
const fn default_max_threads() -> u32 {
    DEFAULT_MAX_THREADS
}

/// Run-queue latency (the time a thread waits for a CPU after it was
/// woken or preempted) as histograms per cgroup, and per process when
/// asked, plus voluntary and involuntary context switches, counted in the
/// kernel at the scheduler tracepoints (`sched_wakeup`, `sched_wakeup_new`,
/// `sched_switch`; `tp_btf`, or `raw_tp` where the kernel's BTF lacks
/// them).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunqueueSourceConfig {
    /// Time between two emissions. Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Also count per process (`process.pid`), not only per cgroup. Costs
    /// one more hash update per context switch and a series per process:
    /// at most `max_processes` processes are tracked, the rest counted in
    /// their cgroup only (`sonde_ebpf_map_full_total{map="rq_processes"}`).
    /// Default `false`.
    #[serde(default)]
    pub per_process: bool,
    /// Watch only these process ids (the woken or switched task's, not the
    /// waker's). At most 4096. Default: empty (every process).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Watch only tasks in these cgroup v2 paths or below them
    /// (`/system.slice/nginx.service`, `/kubepods.slice`), relative to the
    /// cgroup v2 root. Cgroups created later join at the next interval.
    /// Default: empty (every cgroup).
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// Capacity of the kernel's map of per-cgroup histograms (232 bytes
    /// per CPU each, preallocated: per CPU, so switches on different CPUs
    /// never contend). A cgroup beyond it is not counted
    /// (`sonde_ebpf_map_full_total{map="rq_cgroups"}`). Removed cgroups
    /// are forgotten each interval. Default 1024.
    #[serde(default = "default_max_cgroups")]
    pub max_cgroups: u32,
    /// Capacity of the kernel's map of per-process histograms (with
    /// `per_process`). Exited processes are forgotten each interval.
    /// Default 4096.
    #[serde(default = "default_max_processes")]
    pub max_processes: u32,
    /// Capacity of the kernel's map of threads (24 bytes each, one per
    /// thread that waited, dropped when it exits). A thread beyond it is
    /// not measured (`sonde_ebpf_map_full_total{map="rq_threads"}`).
    /// Default 32768.
    #[serde(default = "default_max_threads")]
    pub max_threads: u32,
}

impl Default for RunqueueSourceConfig {
    fn default() -> Self {
        RunqueueSourceConfig {
            interval: DEFAULT_INTERVAL,
            per_process: false,
            pids: Vec::new(),
            cgroups: Vec::new(),
            max_cgroups: DEFAULT_MAX_CGROUPS,
            max_processes: DEFAULT_MAX_PROCESSES,
            max_threads: DEFAULT_MAX_THREADS,
        }
    }
}

impl RunqueueSourceConfig {
    /// The programs' load options.
    pub fn options(&self) -> Options {
        Options {
            per_process: self.per_process,
            pids: self.pids.clone(),
            filter_cgroups: !self.cgroups.is_empty(),
            max_threads: self.max_threads,
            max_cgroups: self.max_cgroups,
            max_processes: self.max_processes,
        }
    }
}

impl SourceType for RunqueueSourceConfig {
    const NAME: &'static str = "runqueue";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        // BTF in sysfs (CO-RE reads of task_struct), bpf_probe_read_kernel.
        min_kernel: (5, 5),
        attach_points: &[
            "tp_btf (or raw_tp) sched_wakeup, sched_wakeup_new, sched_switch",
            "tracepoint sched:sched_process_exit",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for RunqueueSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::METRIC
    }

    /// CAP_BPF and CAP_PERFMON load and attach the programs (tracing
    /// programs read kernel memory); CAP_DAC_READ_SEARCH reads tracepoint
    /// ids in tracefs and walks the cgroup tree.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[Capability::BPF, Capability::PERFMON, Capability::DAC_READ_SEARCH])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        check
            .that(self.max_cgroups > 0, "max_cgroups", "must be at least 1")
            .that(self.max_processes > 0, "max_processes", "must be at least 1")
            .that(self.max_threads > 0, "max_threads", "must be at least 1")
            .that(
                self.pids.len() <= RQ_MAX_FILTER as usize,
                "pids",
                format_args!("at most {RQ_MAX_FILTER} pids"),
            )
            .that(
                self.cgroups.iter().all(|c| c.starts_with('/')),
                "cgroups",
                "paths start with `/` (relative to the cgroup v2 root)",
            );
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        Ok(Box::pin(run_every(collector, self.interval, Rounds::Blocking, cx)))
    }
}
