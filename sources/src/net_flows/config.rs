//! The `net_flows` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::collect::Collector;

/// Default time after which an open flow gets an interim record.
pub const DEFAULT_ACTIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time without packets after which a UDP flow ends.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default time between two emissions of the service-map counters.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default capacity of the kernel's open-TCP-flow map.
pub const DEFAULT_MAX_TCP_FLOWS: u32 = super::bpf::FLOW_MAX_TCP;
/// Default capacity of the kernel's UDP flow map.
pub const DEFAULT_MAX_UDP_FLOWS: u32 = super::bpf::FLOW_MAX_UDP;
/// Default bound on service-map edges.
pub const DEFAULT_MAX_SERVICE_MAP_EDGES: usize = 10_000;

const fn default_active_timeout() -> Duration {
    DEFAULT_ACTIVE_TIMEOUT
}
const fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}
const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_true() -> bool {
    true
}
const fn default_max_tcp_flows() -> u32 {
    DEFAULT_MAX_TCP_FLOWS
}
const fn default_max_udp_flows() -> u32 {
    DEFAULT_MAX_UDP_FLOWS
}
const fn default_max_service_map_edges() -> usize {
    DEFAULT_MAX_SERVICE_MAP_EDGES
}

/// Network flow records (`net.flow` logs: 5-tuple, direction, process,
/// bytes and packets each way, RTT, retransmits) for TCP and UDP, and
/// service-map byte counters between endpoints, measured in the kernel
/// with eBPF.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetFlowsSourceConfig {
    /// An open flow gets an interim record once this long has passed since
    /// its start or its previous record; each record carries the counts of
    /// its window, so a flow's records sum to its totals. Shorter means
    /// fresher data for long connections and more records. Default `30s`. At least `100ms`.
    #[serde(default = "default_active_timeout", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub active_timeout: Duration,
    /// A UDP flow (one socket and peer) ends, with a final record, after
    /// this long without a packet. Default `15s`. At least `100ms`.
    #[serde(default = "default_idle_timeout", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub idle_timeout: Duration,
    /// Also record UDP flows. Counting UDP runs a program for every packet
    /// of every socket (TCP ones leave at once), attached to the cgroup v2
    /// root. Default `true`.
    #[serde(default = "default_true")]
    pub udp: bool,
    /// Also emit `sonde_network_flow_io_bytes_total`, payload bytes per process
    /// and peer (the service map). Default `true`.
    #[serde(default = "default_true")]
    pub service_map: bool,
    /// Time between two emissions of the service-map counters (running
    /// totals). Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Capacity of the kernel's map of open TCP flows, an LRU: when full,
    /// the least recently active flow is forgotten (no final record; counted
    /// in `sonde_ebpf_map_evictions_total`). About 100 bytes each.
    /// Default 65536.
    #[serde(default = "default_max_tcp_flows")]
    pub max_tcp_flows: u32,
    /// Capacity of the kernel's map of UDP flows, an LRU like the TCP one.
    /// About 150 bytes each. Default 16384.
    #[serde(default = "default_max_udp_flows")]
    pub max_udp_flows: u32,
    /// Most service-map edges kept; bytes of new edges beyond it are not
    /// counted, which `sonde_ebpf_map_full_total{map="service_map"}` counts.
    /// Default 10000.
    #[serde(default = "default_max_service_map_edges")]
    pub max_service_map_edges: usize,
}

impl Default for NetFlowsSourceConfig {
    fn default() -> Self {
        NetFlowsSourceConfig {
            active_timeout: DEFAULT_ACTIVE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            udp: true,
            service_map: true,
            interval: DEFAULT_INTERVAL,
            max_tcp_flows: DEFAULT_MAX_TCP_FLOWS,
            max_udp_flows: DEFAULT_MAX_UDP_FLOWS,
            max_service_map_edges: DEFAULT_MAX_SERVICE_MAP_EDGES,
        }
    }
}

/// The shortest time between two reads of the kernel's flows.
const MIN_POLL_PERIOD: Duration = Duration::from_millis(50);

impl NetFlowsSourceConfig {
    /// How often open TCP flows are read from the kernel: a quarter of
    /// `active_timeout` (at least 50 ms), so interim records come at most
    /// 25 % late. Each read walks the kernel's whole TCP socket hash table,
    /// empty buckets included (about half the CPU time of an idle agent
    /// with every source on, read every 3.75 s), so no more often than that.
    pub fn tcp_poll_period(&self) -> Duration {
        (self.active_timeout / 4).max(MIN_POLL_PERIOD)
    }

    /// How often UDP flows are read from the kernel (idle ones end, open
    /// ones get interim records): a quarter of the shorter timeout, within
    /// [50 ms, 5 s]; `None` when UDP is off.
    pub fn udp_poll_period(&self) -> Option<Duration> {
        self.udp
            .then(|| (self.active_timeout.min(self.idle_timeout) / 4).clamp(MIN_POLL_PERIOD, Duration::from_secs(5)))
    }

    /// The longest time between two reads of a flow's kernel state.
    pub fn longest_poll_period(&self) -> Duration {
        self.udp_poll_period()
            .map_or(self.tcp_poll_period(), |udp| udp.max(self.tcp_poll_period()))
    }
}

impl SourceType for NetFlowsSourceConfig {
    const NAME: &'static str = "net_flows";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 9),
        attach_points: &[
            "tracepoint sock:inet_sock_set_state",
            "iter/tcp",
            "cgroup/sock_create on the cgroup v2 root",
            "cgroup_skb ingress and egress on the cgroup v2 root",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for NetFlowsSourceConfig {
    fn outputs(&self) -> EventKinds {
        if self.service_map {
            EventKinds::LOG.union(EventKinds::METRIC)
        } else {
            EventKinds::LOG
        }
    }

    /// CAP_BPF and CAP_PERFMON load the tracepoint and iter/tcp programs;
    /// CAP_NET_ADMIN loads and attaches the cgroup_skb and cgroup/sock
    /// programs on the cgroup v2 root (the kernel treats them as network
    /// administration); CAP_DAC_READ_SEARCH reads tracepoint ids in tracefs;
    /// CAP_SYS_PTRACE reads /proc/PID/fd of other users' processes to find
    /// who owns the listeners that predate the programs. Declared so the
    /// agent keeps them after start.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[
            Capability::BPF,
            Capability::PERFMON,
            Capability::NET_ADMIN,
            Capability::DAC_READ_SEARCH,
            Capability::SYS_PTRACE,
        ])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        check
            .that(self.max_tcp_flows > 0, "max_tcp_flows", "must be at least 1")
            .that(self.max_udp_flows > 0, "max_udp_flows", "must be at least 1");
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        // Load and attach now, so a node that cannot run the source fails
        // at startup with the program, attach point and reason.
        let labels = component_metrics::labels(&cx.info);
        let (collector, closed) = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        Ok(Box::pin(super::run::run(collector, closed, self.clone(), cx)))
    }
}
