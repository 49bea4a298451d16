//! The `process` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::bpf::{PROC_ARGS_MAX, PROC_MAX_PROCS, PROC_RING_BYTES};
use super::collect::Collector;

/// Default time between two emissions of the exec counters.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default number of ancestors each event carries.
pub const DEFAULT_ANCESTRY_DEPTH: usize = 8;
/// Default bytes of argv kept per exec.
pub const DEFAULT_MAX_ARGS_BYTES: u32 = PROC_ARGS_MAX;
/// Default capacity of the kernel's map of live processes.
pub const DEFAULT_MAX_PROCESSES: u32 = PROC_MAX_PROCS;
/// Default capacity of the user-space process cache (live processes).
pub const DEFAULT_CACHE_SIZE: usize = 65536;
/// Default ring buffer size, bytes.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = PROC_RING_BYTES;
/// Default bound on exec counter series (binary × cgroup).
pub const DEFAULT_MAX_EXEC_SERIES: usize = 2000;
/// Longest ancestry an event may carry.
pub const MAX_ANCESTRY_DEPTH: usize = 64;

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_true() -> bool {
    true
}
const fn default_ancestry_depth() -> usize {
    DEFAULT_ANCESTRY_DEPTH
}
const fn default_max_args_bytes() -> u32 {
    DEFAULT_MAX_ARGS_BYTES
}
const fn default_max_processes() -> u32 {
    DEFAULT_MAX_PROCESSES
}
const fn default_cache_size() -> usize {
    DEFAULT_CACHE_SIZE
}
const fn default_ring_buffer_bytes() -> u32 {
    DEFAULT_RING_BUFFER_BYTES
}
const fn default_max_exec_series() -> usize {
    DEFAULT_MAX_EXEC_SERIES
}

/// Process lifecycle: a `Log` event for each exec (`process.exec`: binary,
/// argv, cwd, credentials, cgroup, stable `sonde.process.exec_id`) and each exit
/// of a whole process (`process.exit`: exit code or signal, lifetime), and,
/// when asked, each new process (`process.fork`); every event with its
/// parent chain. From the tracepoints `sched:sched_process_exec`, `_fork`
/// and `_exit` (raw tracepoints, CO-RE). Exec counts per binary and cgroup
/// as metrics every `interval`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessSourceConfig {
    /// Time between two emissions of the exec counters
    /// (`sonde_process_execs_total`). Events are sent as they come (within
    /// 100 ms). Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Also emit `process.fork` for each new process (not threads).
    /// A busy node forks far more than it execs. Default `false`.
    #[serde(default)]
    pub fork: bool,
    /// Ancestors each event carries in `sonde.process.ancestry` (parent
    /// first). Default 8; 1 to 64.
    #[serde(default = "default_ancestry_depth")]
    pub ancestry_depth: usize,
    /// Bytes of argv kept per exec; a longer argv is cut there (a
    /// byte-exact prefix) and flagged `sonde.process.args_truncated`.
    /// Default 4096; 1 to 4096.
    #[serde(default = "default_max_args_bytes")]
    pub max_args_bytes: u32,
    /// Only processes in these cgroups (v2 paths, relative to the
    /// hierarchy's root, e.g. `kubepods.slice`) and their descendants,
    /// filtered in the kernel. Descendants created later are added every
    /// `interval` (until then, their processes are left out). Default: all.
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// Only processes with these names (the exec'd file's name as the
    /// kernel keeps it: its first 15 bytes), filtered in the kernel.
    /// Default: all.
    #[serde(default)]
    pub binaries: Vec<String>,
    /// Never processes with these names (first 15 bytes), filtered in the
    /// kernel. Default: none.
    #[serde(default)]
    pub exclude_binaries: Vec<String>,
    /// At most this many execs per second per cgroup are reported; beyond
    /// it, the exec and later the exit are dropped in the kernel and
    /// counted (`sonde_ebpf_lost_events_total{reason="throttled"}`,
    /// `sonde_process_throttled_total` per cgroup). 0: no limit (default).
    #[serde(default)]
    pub rate_limit: u64,
    /// Capacity of the kernel's map of live processes (about 40 bytes
    /// each). When full, a process' exit carries no key and is matched by
    /// start time (`sonde_ebpf_map_full_total{map="proc_keys"}`).
    /// Default 65536.
    #[serde(default = "default_max_processes")]
    pub max_processes: u32,
    /// Capacity of the user-space cache of live processes (ancestry).
    /// Beyond it, processes are read from /proc when needed. Default 65536.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Size of the ring buffer, bytes: a power of two, at least 64 KiB.
    /// An exec record is about 2.6 KiB plus its argv. Records it has no
    /// room for are counted (`sonde_ebpf_lost_events_total{reason="ringbuf_full"}`).
    /// Default 8 MiB.
    #[serde(default = "default_ring_buffer_bytes")]
    pub ring_buffer_bytes: u32,
    /// Emit `sonde_process_execs_total` per binary and cgroup. Default `true`.
    #[serde(default = "default_true")]
    pub metrics: bool,
    /// At most this many (binary, cgroup) series of
    /// `sonde_process_execs_total`; later ones are counted under binary
    /// `other`. Default 2000.
    #[serde(default = "default_max_exec_series")]
    pub max_exec_series: usize,
}

impl Default for ProcessSourceConfig {
    fn default() -> Self {
        ProcessSourceConfig {
            interval: DEFAULT_INTERVAL,
            fork: false,
            ancestry_depth: DEFAULT_ANCESTRY_DEPTH,
            max_args_bytes: DEFAULT_MAX_ARGS_BYTES,
            cgroups: Vec::new(),
            binaries: Vec::new(),
            exclude_binaries: Vec::new(),
            rate_limit: 0,
            max_processes: DEFAULT_MAX_PROCESSES,
            cache_size: DEFAULT_CACHE_SIZE,
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            metrics: true,
            max_exec_series: DEFAULT_MAX_EXEC_SERIES,
        }
    }
}

impl SourceType for ProcessSourceConfig {
    const NAME: &'static str = "process";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 8),
        attach_points: &[
            "raw_tracepoint sched_process_exec",
            "raw_tracepoint sched_process_fork",
            "raw_tracepoint sched_process_exit",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for ProcessSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::LOG.union(EventKinds::METRIC)
    }

    /// CAP_BPF and CAP_PERFMON load and attach the programs; CAP_SYS_PTRACE
    /// and CAP_DAC_READ_SEARCH read other processes' `/proc/PID/exe` and
    /// `status` (processes that predate the agent).
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
        let ring = self.ring_buffer_bytes;
        check
            .that(
                (1..=MAX_ANCESTRY_DEPTH).contains(&self.ancestry_depth),
                "ancestry_depth",
                format!("must be between 1 and {MAX_ANCESTRY_DEPTH}"),
            )
            .that(
                (1..=PROC_ARGS_MAX).contains(&self.max_args_bytes),
                "max_args_bytes",
                format!("must be between 1 and {PROC_ARGS_MAX}"),
            )
            .that(
                ring.is_power_of_two() && ring >= 1 << 16,
                "ring_buffer_bytes",
                "must be a power of two, at least 65536",
            )
            .that(self.max_processes > 0, "max_processes", "must be at least 1")
            .that(self.cache_size > 0, "cache_size", "must be at least 1")
            .that(
                self.interval >= Duration::from_millis(100),
                "interval",
                "must be at least 100ms",
            )
            .that(
                self.binaries
                    .iter()
                    .chain(&self.exclude_binaries)
                    .all(|b| !b.is_empty()),
                "binaries",
                "names must not be empty",
            );
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        // Load and attach now, so a node that cannot run the source fails
        // at startup with the program, attach point and reason.
        let labels = component_metrics::labels(&cx.info);
        let (collector, records) = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        Ok(Box::pin(super::run::run(collector, records, self.clone(), cx)))
    }
}
