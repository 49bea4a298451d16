//! The `profile` source's options.

use std::time::Duration;

use super::bpf::{Options, SampleEvent, PROFILE_MAX_STACKS};
use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::collect::Collector;
use super::filter::Targets;

/// Default samples per second per CPU: 99, not 100, so sampling does not
/// run in lockstep with timers that fire at round frequencies.
pub const DEFAULT_FREQUENCY_HZ: u64 = 99;
/// Highest accepted frequency: past it the sampling itself costs more than 1 % of a CPU.
pub const MAX_FREQUENCY_HZ: u64 = 1000;
/// Default time between two emissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default capacity of each stack map.
pub const DEFAULT_MAX_STACKS: u32 = PROFILE_MAX_STACKS;

const fn default_frequency_hz() -> u64 {
    DEFAULT_FREQUENCY_HZ
}
const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_max_stacks() -> u32 {
    DEFAULT_MAX_STACKS
}
const fn default_native_unwinding() -> bool {
    true
}
const fn default_unwind_table_mib() -> u32 {
    DEFAULT_UNWIND_TABLE_MIB
}

/// Default kernel memory for unwind tables, in MiB.
pub const DEFAULT_UNWIND_TABLE_MIB: u32 = 8;

/// The perf event that triggers samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileEvent {
    /// The software CPU clock (default): works everywhere, VMs without a
    /// virtual PMU included; cannot sample code that runs with interrupts off.
    #[default]
    CpuClock,
    /// Hardware CPU cycles: fails where there is no PMU.
    Cycles,
    /// Cycles where the PMU offers them, else the CPU clock.
    Auto,
}

/// CPU profiles of every process (or those selected), compiled and JIT
/// code, sampled in the kernel with eBPF (perf events) and symbolized in
/// the agent. Native user stacks are unwound in the kernel with the
/// binaries' `.eh_frame` tables (x86-64): no frame pointers needed.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSourceConfig {
    /// Samples per second on each CPU, 1 to 1000. Each sample of a process
    /// stands for 1/frequency seconds of CPU time. Higher gives finer
    /// profiles at a proportional cost (about 2 µs per sample). Default 99.
    #[serde(default = "default_frequency_hz")]
    pub frequency_hz: u64,
    /// Time covered by one profile: every interval the source emits one
    /// profile per sampled process and starts over. Default `15s`. At
    /// least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Report only these process ids. Default: empty (no pid filter).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Report only processes in these cgroup v2 paths or below them
    /// (`/kubepods.slice`, `/system.slice/nginx.service`). Default: empty.
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// Report only processes whose name (comm, 15 characters at most)
    /// matches one of these glob patterns (`*` and `?`), e.g. `["postgres*"]`.
    /// Default: empty.
    #[serde(default)]
    pub comms: Vec<String>,
    /// Also report the idle task (pid 0, `swapper`): shows how idle CPUs
    /// are. Default `false`.
    #[serde(default)]
    pub include_idle: bool,
    /// `cpu_clock` (default), `cycles` or `auto`: the perf event that
    /// triggers samples.
    #[serde(default)]
    pub event: ProfileEvent,
    /// Distinct stacks each of the kernel's two stack maps holds per
    /// interval (rounded up to a power of two). A stack whose hash slot is
    /// taken goes to a small spill map (counted in
    /// `sonde_ebpf_stack_spills_total`), and is lost only when its slot
    /// there is taken too (counted in `sonde_ebpf_lost_events_total`). A
    /// steady spill rate says the node needs more: each slot costs about
    /// 1 KiB of kernel memory, twice. With `native_unwinding` (the default)
    /// these maps hold kernel stacks and the user stacks of processes whose
    /// tables are not loaded (yet). Default 2048.
    #[serde(default = "default_max_stacks")]
    pub max_stacks: u32,
    /// Also read DWARF debug info, for source files and line numbers of
    /// native frames (function names come from ELF symbols either way).
    /// Parsing a binary's debug info costs CPU time and memory once per
    /// binary (hundreds of MB for the largest), which on a node that keeps
    /// starting new binaries (CI, builds) is most of the source's cost.
    /// Default `false`.
    #[serde(default)]
    pub line_numbers: bool,
    /// Walk native user stacks in the kernel with the programs' own
    /// `.eh_frame` unwind tables (x86-64), so that code built without frame
    /// pointers (most distribution binaries and libraries) gives whole
    /// stacks. The agent compiles each binary's table once (shared by every
    /// process that maps it) and loads it into BPF maps. `false`: the
    /// kernel walks frame pointers only. Default `true`.
    #[serde(default = "default_native_unwinding")]
    pub native_unwinding: bool,
    /// Kernel memory for unwind tables, in MiB (8 bytes per table row;
    /// libc's table is about 25,000 rows, a large C++ library a million).
    /// When a new table does not fit, the tables used least recently are
    /// evicted (`sonde_profile_unwind_table_evictions_total`); one larger
    /// than half the budget is not loaded
    /// (`sonde_profile_unwind_table_full_total`). Default 8, 1 to 1024.
    #[serde(default = "default_unwind_table_mib")]
    pub unwind_table_mib: u32,
    /// debuginfod servers (base URLs, as in `DEBUGINFOD_URLS`) asked for
    /// the debug file of a binary that has none installed under
    /// `/usr/lib/debug` (by build id or `.gnu_debuglink`), so stripped
    /// distribution binaries get their static functions named. Each debug
    /// file is fetched once (up to 256 MiB, 10 s per server) and kept in
    /// `debuginfod_cache`; a build id no server has is asked for again
    /// after 10 minutes. Fetching blocks symbolization meanwhile. Default:
    /// empty (no network access).
    #[serde(default)]
    pub debuginfod_urls: Vec<String>,
    /// Folder where debug files fetched from debuginfod are kept. Default
    /// `/var/cache/sonde/debuginfod`.
    #[serde(default = "default_debuginfod_cache")]
    pub debuginfod_cache: String,
}

/// Default of [`ProfileSourceConfig::debuginfod_cache`].
pub const DEFAULT_DEBUGINFOD_CACHE: &str = "/var/cache/sonde/debuginfod";

fn default_debuginfod_cache() -> String {
    DEFAULT_DEBUGINFOD_CACHE.to_string()
}

impl Default for ProfileSourceConfig {
    fn default() -> Self {
        ProfileSourceConfig {
            frequency_hz: DEFAULT_FREQUENCY_HZ,
            interval: DEFAULT_INTERVAL,
            pids: Vec::new(),
            cgroups: Vec::new(),
            comms: Vec::new(),
            include_idle: false,
            event: ProfileEvent::CpuClock,
            max_stacks: DEFAULT_MAX_STACKS,
            line_numbers: false,
            native_unwinding: true,
            unwind_table_mib: DEFAULT_UNWIND_TABLE_MIB,
            debuginfod_urls: Vec::new(),
            debuginfod_cache: default_debuginfod_cache(),
        }
    }
}

impl ProfileSourceConfig {
    /// The program's load options.
    pub fn options(&self) -> Options {
        Options {
            frequency_hz: self.frequency_hz,
            event: match self.event {
                ProfileEvent::CpuClock => SampleEvent::CpuClock,
                ProfileEvent::Cycles => SampleEvent::Cycles,
                ProfileEvent::Auto => SampleEvent::Auto,
            },
            include_idle: self.include_idle,
            max_stacks: self.max_stacks,
            unwind: self.native_unwinding,
            // 8-byte rows.
            unwind_rows: self.unwind_table_mib.clamp(1, 1024) * (1 << 20) / 8,
            oracle_every: 0,
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

impl SourceType for ProfileSourceConfig {
    const NAME: &'static str = "profile";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        // The BPF ring buffer that announces new processes.
        min_kernel: (5, 8),
        attach_points: &[
            "perf event software cpu-clock on every online CPU",
            "tracepoint sched:sched_process_exec",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for ProfileSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::PROFILE
    }

    /// CAP_BPF and CAP_PERFMON load the programs and open a CPU-clock perf
    /// event on every CPU; CAP_DAC_READ_SEARCH reads tracepoint ids in
    /// tracefs (the exec tracepoint); CAP_SYS_PTRACE reads /proc/PID/maps
    /// and the mapped ELF files of other users' processes to symbolize them;
    /// CAP_SYSLOG reads kernel addresses in /proc/kallsyms (zeros without
    /// it unless perf_event_paranoid ≤ 1), to name kernel frames. Declared
    /// so the agent keeps them after start.
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
                (1..=MAX_FREQUENCY_HZ).contains(&self.frequency_hz),
                "frequency_hz",
                format_args!("must be between 1 and {MAX_FREQUENCY_HZ}"),
            )
            .that(self.max_stacks > 0, "max_stacks", "must be at least 1")
            .that(
                (1..=1024).contains(&self.unwind_table_mib),
                "unwind_table_mib",
                "must be between 1 and 1024",
            );
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        // Load and attach now, so a node that cannot run the source fails
        // at startup with the program, attach point and reason.
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        // A filter that selects nothing looks like a broken profiler: say so, once.
        let absent: Vec<String> = self
            .pids
            .iter()
            .filter(|pid| **pid != 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .map(u32::to_string)
            .collect();
        if !absent.is_empty() {
            tracing::warn!(
                component = %cx.info,
                pids = %absent.join(", "),
                "no process has these pids: nothing of them will be profiled"
            );
        }
        Ok(Box::pin(super::run::run(collector, self.interval, cx)))
    }
}
