//! The `tcp` source's options.

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
/// Default capacity of the kernel's series map.
pub const DEFAULT_MAX_SERIES: u32 = super::bpf::TCP_MAX_SERIES;
/// Default capacity of the kernel's live-socket map.
pub const DEFAULT_MAX_SOCKETS: u32 = super::bpf::TCP_MAX_SOCKETS;

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_true() -> bool {
    true
}
const fn default_max_series() -> u32 {
    DEFAULT_MAX_SERIES
}
const fn default_max_sockets() -> u32 {
    DEFAULT_MAX_SOCKETS
}

/// TCP connections, connect latency, RTT, retransmits, resets and drops
/// per process and peer, and sockets by state per process and port,
/// counted in the kernel with eBPF (tracepoints `sock:inet_sock_set_state`,
/// `tcp:*`, `skb:kfree_skb`; `iter/tcp` for the sockets older than sonde).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpSourceConfig {
    /// Time between two emissions. Values are running totals (cumulative),
    /// so a longer interval loses nothing, it only makes points sparser.
    /// Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Keep the peer's address as `network.peer.address`: one series per
    /// peer. Turn it off for servers with very many clients, to have one
    /// series per process and port. Default `true`.
    #[serde(default = "default_true")]
    pub peer_addresses: bool,
    /// Count drops of TCP packets by the kernel's drop reason
    /// (`sonde_tcp_drops_total`, kernel 5.17+; ignored with a warning on
    /// older kernels). Costs one program run per dropped packet. Default `true`.
    #[serde(default = "default_true")]
    pub drop_reasons: bool,
    /// Capacity of the kernel's series map (process, role, port, peer).
    /// When full, events of new series are not counted, and that is counted
    /// in `sonde_ebpf_map_full_total`. About 750 bytes each. Default 8192.
    #[serde(default = "default_max_series")]
    pub max_series: u32,
    /// Capacity of the kernel's map of live sockets, which holds each
    /// socket's owner, series key and state (a plain hash: a socket that
    /// finds it full is not counted by state, its events count with pid 0,
    /// and `sonde_ebpf_map_full_total{map="tcp_socks"}` counts it). About
    /// 100 bytes each. Default 65536.
    #[serde(default = "default_max_sockets")]
    pub max_sockets: u32,
}

impl Default for TcpSourceConfig {
    fn default() -> Self {
        TcpSourceConfig {
            interval: DEFAULT_INTERVAL,
            peer_addresses: true,
            drop_reasons: true,
            max_series: DEFAULT_MAX_SERIES,
            max_sockets: DEFAULT_MAX_SOCKETS,
        }
    }
}

impl SourceType for TcpSourceConfig {
    const NAME: &'static str = "tcp";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 5),
        attach_points: &[
            "tracepoint sock:inet_sock_set_state",
            "tracepoint tcp:tcp_retransmit_skb",
            "tracepoint tcp:tcp_retransmit_synack",
            "tracepoint tcp:tcp_send_reset",
            "tracepoint tcp:tcp_receive_reset",
            "tracepoint skb:kfree_skb (optional, 5.17+)",
            "iter/tcp (optional, 5.9+: the seed of sockets by state)",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for TcpSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::METRIC
    }

    /// CAP_BPF and CAP_PERFMON load and attach the tracepoint programs
    /// (and the iter/tcp snapshot of connections open at start);
    /// CAP_DAC_READ_SEARCH reads tracepoint ids in tracefs; CAP_SYS_PTRACE
    /// reads /proc/PID/fd of other users' processes to find who owns the
    /// listeners that predate the programs. Declared so the agent keeps
    /// them after start.
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
            .that(self.max_series > 0, "max_series", "must be at least 1")
            .that(self.max_sockets > 0, "max_sockets", "must be at least 1");
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        // Load and attach now, so a node that cannot run the source fails
        // at startup with the program, attach point and reason.
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        Ok(Box::pin(run_every(collector, self.interval, Rounds::Inline, cx)))
    }
}
