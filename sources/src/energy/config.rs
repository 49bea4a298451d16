//! The `energy` source's options.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::event::EventKinds;
use sonde_core::polling::{run_every, Rounds};
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::collect::Collector;
use super::model::{DEFAULT_IDLE_WATTS_PER_CPU, DEFAULT_MAX_WATTS_PER_CPU};

/// Default time between two emissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Where sysfs is mounted by default.
pub const DEFAULT_SYSFS_ROOT: &str = "/sys";
/// Where procfs is mounted by default.
pub const DEFAULT_PROCFS_ROOT: &str = "/proc";

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
fn default_sysfs_root() -> PathBuf {
    PathBuf::from(DEFAULT_SYSFS_ROOT)
}
fn default_procfs_root() -> PathBuf {
    PathBuf::from(DEFAULT_PROCFS_ROOT)
}
const fn default_idle_watts() -> f64 {
    DEFAULT_IDLE_WATTS_PER_CPU
}
const fn default_max_watts() -> f64 {
    DEFAULT_MAX_WATTS_PER_CPU
}
const fn default_gpu() -> bool {
    true
}

/// Node energy (RAPL, NVIDIA GPUs, or a CPU power model) attributed to
/// processes by their on-CPU time, measured in the kernel with eBPF
/// (tracepoint `sched:sched_switch`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnergySourceConfig {
    /// Time between two rounds. Each round reads the meters, attributes the
    /// interval's energy and emits running totals, so a longer interval
    /// loses nothing; node power is the interval's average. Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Where sysfs is mounted: RAPL zones are read from
    /// `<sysfs_root>/class/powercap/intel-rapl:*`. Change it when the
    /// host's /sys is mounted elsewhere in the agent's container. Default
    /// `/sys`.
    #[serde(default = "default_sysfs_root")]
    pub sysfs_root: PathBuf,
    /// Where procfs is mounted: `<procfs_root>/stat` drives the power model,
    /// and `<procfs_root>/PID` tells which processes exited. Default `/proc`.
    #[serde(default = "default_procfs_root")]
    pub procfs_root: PathBuf,
    /// Power model (used when the node has no readable RAPL): watts per
    /// online CPU when idle. Default 0.74 (Cloud Carbon Footprint's AWS
    /// average, from SPECpower results).
    #[serde(default = "default_idle_watts")]
    pub idle_watts_per_cpu: f64,
    /// Power model: watts per online CPU at 100 % utilisation; power is
    /// linear in between. Default 3.5 (Cloud Carbon Footprint's AWS average).
    #[serde(default = "default_max_watts")]
    pub max_watts_per_cpu: f64,
    /// Measure NVIDIA GPUs through NVML when its library and a device are
    /// present (component `gpu`, node level). Nodes without them are not
    /// affected. Default `true`.
    #[serde(default = "default_gpu")]
    pub gpu: bool,
}

impl Default for EnergySourceConfig {
    fn default() -> Self {
        EnergySourceConfig {
            interval: DEFAULT_INTERVAL,
            sysfs_root: default_sysfs_root(),
            procfs_root: default_procfs_root(),
            idle_watts_per_cpu: DEFAULT_IDLE_WATTS_PER_CPU,
            max_watts_per_cpu: DEFAULT_MAX_WATTS_PER_CPU,
            gpu: true,
        }
    }
}

impl SourceType for EnergySourceConfig {
    const NAME: &'static str = "energy";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 5),
        attach_points: &["tracepoint sched:sched_switch"],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for EnergySourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::METRIC
    }

    /// Loading and attaching the tracepoint program needs CAP_BPF and
    /// CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8, which the agent
    /// substitutes); reading the tracepoint id in tracefs and the root-only
    /// RAPL `energy_uj` files (when the agent is not uid 0) needs
    /// CAP_DAC_READ_SEARCH. Declared so the agent keeps them after start.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[Capability::BPF, Capability::PERFMON, Capability::DAC_READ_SEARCH])
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        // Load, attach and open the meters now, so a node that cannot run
        // the source fails at startup with the reason.
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        // A round blocks: it moves a thread across the CPUs and reads files.
        Ok(Box::pin(run_every(collector, self.interval, Rounds::Blocking, cx)))
    }
}
