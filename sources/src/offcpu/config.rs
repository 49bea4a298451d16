//! The `offcpu` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::bpf::{sample_every, Options, OFFCPU_MAX_COUNTS, OFFCPU_MAX_STACKS, OFFCPU_MAX_THREADS};
use super::collect::Collector;
use crate::profile::filter::Targets;

/// Default probability that a switch-out is sampled.
pub const DEFAULT_PROBABILITY: f64 = 0.01;
/// Default minimum time off CPU of a sample, µs.
pub const DEFAULT_MIN_BLOCK_US: u64 = 1;
/// Default time between two emissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default capacity of the kernel's per-thread map.
pub const DEFAULT_MAX_THREADS: u32 = OFFCPU_MAX_THREADS;
/// Default capacity of each stack map.
pub const DEFAULT_MAX_STACKS: u32 = OFFCPU_MAX_STACKS;
/// Default capacity of each counts map.
pub const DEFAULT_MAX_COUNTS: u32 = OFFCPU_MAX_COUNTS;

const fn default_probability() -> f64 {
    DEFAULT_PROBABILITY
}
const fn default_min_block_us() -> u64 {
    DEFAULT_MIN_BLOCK_US
}
const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_max_threads() -> u32 {
    DEFAULT_MAX_THREADS
}
const fn default_max_stacks() -> u32 {
    DEFAULT_MAX_STACKS
}
const fn default_max_counts() -> u32 {
    DEFAULT_MAX_COUNTS
}

/// Off-CPU profiles: where threads wait (sleeping, blocked in the kernel,
/// preempted) and for how long, with user and kernel stacks, sampled at
/// the scheduler's `sched_switch` and aggregated in the kernel. Emitted as
/// `Profile`s with sample type `off_cpu`/`nanoseconds`, so every profile
/// sink shows them.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffcpuSourceConfig {
    /// Probability that a thread's switch-out is sampled, 0 to 1. Applied
    /// as one in every round(1/p) switch-outs of each thread, at a random
    /// position in each run of that many: every switch-out has probability
    /// 1/round(1/p), and the times reported are scaled by round(1/p). A
    /// sampled switch-out costs two stack walks (a few µs); an unsampled
    /// one two hash lookups. 0 attaches the program but samples nothing.
    /// Default 0.01.
    #[serde(default = "default_probability")]
    pub probability: f64,
    /// Samples off CPU for less than this many microseconds are dropped.
    /// Default 1.
    #[serde(default = "default_min_block_us")]
    pub min_block_us: u64,
    /// Time covered by one profile. Default `15s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Report only these process ids. Default: empty (no pid filter).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Report only processes in these cgroup v2 paths or below them.
    /// Default: empty.
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// Report only processes whose comm matches one of these glob patterns
    /// (`*`, `?`). Default: empty.
    #[serde(default)]
    pub comms: Vec<String>,
    /// Capacity of the kernel's per-thread sampling state (about 100 bytes
    /// each, preallocated); entries go when threads exit. A thread beyond
    /// it is not sampled (`sonde_ebpf_map_full_total{map="offcpu_threads"}`).
    /// Default 32768.
    #[serde(default = "default_max_threads")]
    pub max_threads: u32,
    /// Distinct stacks each of the two stack maps holds (1 KiB each). When
    /// the active one is half full, the other is cleared and takes over;
    /// threads asleep across that lose their stacks (counted in
    /// `sonde_ebpf_lost_events_total{reason="stack_expired"}`, their time
    /// still reported). Default 16384.
    #[serde(default = "default_max_stacks")]
    pub max_stacks: u32,
    /// Distinct (process, state, stacks) per interval in each of the two
    /// counts maps. Default 16384.
    #[serde(default = "default_max_counts")]
    pub max_counts: u32,
    /// Also read DWARF debug info for file and line numbers (as `profile`).
    /// Default `false`.
    #[serde(default)]
    pub line_numbers: bool,
}

impl Default for OffcpuSourceConfig {
    fn default() -> Self {
        OffcpuSourceConfig {
            probability: DEFAULT_PROBABILITY,
            min_block_us: DEFAULT_MIN_BLOCK_US,
            interval: DEFAULT_INTERVAL,
            pids: Vec::new(),
            cgroups: Vec::new(),
            comms: Vec::new(),
            max_threads: DEFAULT_MAX_THREADS,
            max_stacks: DEFAULT_MAX_STACKS,
            max_counts: DEFAULT_MAX_COUNTS,
            line_numbers: false,
        }
    }
}

impl OffcpuSourceConfig {
    /// The program's load options.
    pub fn options(&self) -> Options {
        Options {
            sample_every: sample_every(self.probability),
            min_block_ns: self.min_block_us.saturating_mul(1000),
            max_threads: self.max_threads,
            max_stacks: self.max_stacks,
            max_counts: self.max_counts,
        }
    }

    /// The target filters.
    pub fn targets(&self) -> Targets {
        Targets {
            pids: self.pids.clone(),
            cgroups: self.cgroups.clone(),
            comms: self.comms.clone(),
        }
    }
}

impl SourceType for OffcpuSourceConfig {
    const NAME: &'static str = "offcpu";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        // BTF in sysfs (CO-RE reads of task_struct).
        min_kernel: (5, 5),
        attach_points: &["tp_btf (or raw_tp) sched_switch", "tracepoint sched:sched_process_exit"],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for OffcpuSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::PROFILE
    }

    /// As `profile`: CAP_BPF and CAP_PERFMON load the program and walk
    /// stacks; CAP_DAC_READ_SEARCH reads tracepoint ids; CAP_SYS_PTRACE
    /// reads other processes' maps and files; CAP_SYSLOG reads kernel
    /// addresses in /proc/kallsyms.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[
            Capability::BPF,
            Capability::PERFMON,
            Capability::DAC_READ_SEARCH,
            Capability::SYS_PTRACE,
            Capability::SYSLOG,
        ])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        check
            .that(
                (0.0..=1.0).contains(&self.probability),
                "probability",
                "must be between 0 and 1",
            )
            .that(self.max_threads > 0, "max_threads", "must be at least 1")
            .that(self.max_stacks > 1, "max_stacks", "must be at least 2")
            .that(self.max_counts > 0, "max_counts", "must be at least 1");
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        Ok(Box::pin(crate::profile::run::run(collector, self.interval, cx)))
    }
}
