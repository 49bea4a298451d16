//! The `disk_latency` source's options.

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

/// Default time between two emissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Queue time is measured by default.
pub const DEFAULT_QUEUE_TIME: bool = true;
/// Queue depth is kept by default.
pub const DEFAULT_QUEUE_DEPTH: bool = true;

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_queue_time() -> bool {
    DEFAULT_QUEUE_TIME
}
const fn default_queue_depth() -> bool {
    DEFAULT_QUEUE_DEPTH
}

/// Block I/O latency, queue time and request sizes per disk and operation,
/// measured in the kernel with eBPF (tracepoints `block:block_rq_*`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskLatencySourceConfig {
    /// Time between two emissions of the histograms and counters. Values
    /// are running totals (cumulative), so a longer interval loses nothing,
    /// it only makes points sparser. Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Also measure queue time (`block_rq_insert` → `block_rq_issue`), as
    /// `sonde_disk_queue_duration_seconds`. Costs one more program run per
    /// request that goes through the I/O scheduler. Default `true`.
    #[serde(default = "default_queue_time")]
    pub queue_time: bool,
    /// Keep the queue depth of each disk in the kernel: requests inserted
    /// into the I/O scheduler and not yet issued (`stage = "scheduler"`,
    /// disks with a scheduler only), and issued to the device and not yet
    /// completed (`stage = "device"`). Reported per interval as the
    /// time-weighted mean (`sonde_disk_queue_depth_average`, exact: the
    /// kernel integrates the depth over time at each transition, nothing
    /// is sampled) and the highest depth (`sonde_disk_queue_depth_max`),
    /// with the device's own count of requests in flight now
    /// (`/sys/block/DEV/inflight`, `sonde_disk_device_in_flight`)
    /// beside them. These are gauges of the last interval, unlike the
    /// cumulative histograms. Costs two atomic adds per request and stage.
    /// Default `true`.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: bool,
    /// Report only these disks, by kernel name (`vda`, `nvme0n1`, `loop3`).
    /// Empty reports every disk. The kernel counts all of them either way.
    /// Default: empty.
    #[serde(default)]
    pub devices: Vec<String>,
}

impl Default for DiskLatencySourceConfig {
    fn default() -> Self {
        DiskLatencySourceConfig {
            interval: DEFAULT_INTERVAL,
            queue_time: DEFAULT_QUEUE_TIME,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            devices: Vec::new(),
        }
    }
}

impl SourceType for DiskLatencySourceConfig {
    const NAME: &'static str = "disk_latency";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 5),
        attach_points: &[
            "tracepoint block:block_rq_insert",
            "tracepoint block:block_rq_issue",
            "tracepoint block:block_rq_complete",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for DiskLatencySourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::METRIC
    }

    /// Loading and attaching tracepoint programs needs CAP_BPF and
    /// CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8, which the agent
    /// substitutes); reading tracepoint ids in tracefs needs
    /// CAP_DAC_READ_SEARCH when tracefs is not world-readable. Declared so
    /// the agent keeps them after start and a reload can rebuild the source.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[Capability::BPF, Capability::PERFMON, Capability::DAC_READ_SEARCH])
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        // Load and attach now, so a node that cannot run the source fails
        // at startup with the program, attach point and reason.
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        // A filter that selects nothing looks like a broken source: say so, once.
        let absent: Vec<&str> = self
            .devices
            .iter()
            .map(String::as_str)
            .filter(|device| !std::path::Path::new("/sys/class/block").join(device).exists())
            .collect();
        if !absent.is_empty() {
            tracing::warn!(
                component = %cx.info,
                devices = %absent.join(", "),
                "no such block device on this node (/sys/class/block): nothing of it will be reported"
            );
        }
        Ok(Box::pin(run_every(collector, self.interval, Rounds::Inline, cx)))
    }
}
