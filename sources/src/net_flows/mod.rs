//! `source "net_flows"`: one `Log` record per network flow, TCP and UDP,
//! with its process, and bytes between endpoints (the service map).
//!
//! The eBPF programs ([`bpf`]: `bpf/net_flows.bpf.c` and its loader) follow TCP connections through
//! `sock:inet_sock_set_state` and read the socket's own exact counters
//! (so TCP costs nothing per packet): a closed connection's record arrives
//! through a ring buffer as soon as it closes; open connections are read
//! by an `iter/tcp` iterator every quarter of `active_timeout`. UDP is
//! counted per packet by cgroup_skb programs on the cgroup v2 root, per
//! socket and peer.
//!
//! Each record is a `Log` named `net.flow` (timestamp: its end) with fields
//! `network.transport`, `network.type`, `source.address`/`source.port`
//! (the client, which connected or sent first), `destination.address`/
//! `destination.port` (the server), `sonde.flow.direction` (which of the two
//! this host's socket is), `sonde.flow.id` (the same in all records of a
//! flow), `sonde.flow.reason` (`closed`, `connect_failed`,
//! `active_timeout`, `idle_timeout`, `shutdown`), `sonde.flow.final`,
//! `sonde.flow.start`, `sonde.flow.window_start`, `sonde.flow.end`,
//! `sonde.flow.duration_ns`, and for the record's window
//! `sonde.flow.bytes_sent`, `bytes_received` (payload bytes, as this socket
//! saw them: retransmitted bytes once, no headers), `packets_sent`,
//! `packets_received`, `retransmits` (TCP), plus `sonde.flow.rtt_us`
//! (smoothed RTT, TCP). Attributes: `process.pid`,
//! `process.executable.name` (the process' name, its main thread's comm;
//! the socket owner thread's comm when the process is gone), `cgroup.id`
//! (of the process that connected, or that listens, for accepted
//! connections), and the node name.
//!
//! A flow open for `active_timeout` gets an interim record, and another
//! every `active_timeout` after; each carries the counts since the
//! previous one, so a flow's records sum to its totals; a UDP flow with
//! nothing new since its previous record gets none (its final record
//! comes at `idle_timeout`). A loopback
//! connection shows twice, once from each end.
//!
//! `sonde_network_flow_io_bytes_total{network.io.direction="transmit"|"receive"}`
//! adds every record up per process (cgroup, comm), role, peer address,
//! server port and transport: after `pod_enrich`, the service map.
//!
//! Lost data is counted, never silent: flows evicted from the full kernel
//! maps (`sonde_ebpf_map_evictions_total`), records the ring buffer had no
//! room for (`sonde_ebpf_lost_events_total{reason="ringbuf_full"}`).
//! Connections opened before the source started have no record.
//!
//! Minimum kernel 5.9 with BTF and cgroup v2 (mounted by sonde if
//! missing). The iterator sees the agent's network namespace: run it with
//! `hostNetwork` in Kubernetes. Needs CAP_BPF, CAP_PERFMON and
//! CAP_NET_ADMIN (cgroup programs), or CAP_SYS_ADMIN.

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
mod flows;
mod names;
mod observe;
mod record;
mod run;
mod service_map;
#[cfg(test)]
mod tests;

pub use collect::Collector;
pub use config::{
    NetFlowsSourceConfig, DEFAULT_ACTIVE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_INTERVAL,
    DEFAULT_MAX_SERVICE_MAP_EDGES, DEFAULT_MAX_TCP_FLOWS, DEFAULT_MAX_UDP_FLOWS,
};
pub use flows::{Direction, FlowId, FlowTable, FlowUpdate, Observation, Reason, Totals, Transport};
pub use record::*;
pub use service_map::{ServiceMap, BYTES, IO_DIRECTION, PEER, SERVICE_PORT};
