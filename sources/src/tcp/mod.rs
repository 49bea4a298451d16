//! `source "tcp"`: TCP connection metrics per process, role, service port
//! and peer, counted in the kernel from tracepoints (no kprobes needed).
//!
//! The eBPF programs ([`bpf`]: `bpf/tcp.bpf.c` and its loader)
//! follow each connection through `sock:inet_sock_set_state` and count
//! retransmits, resets and drops, in a kernel hash map keyed by (pid, comm,
//! cgroup, role, service port, peer address). Every `interval` the source
//! reads the map and emits:
//!
//! | metric (Prometheus name) | kind | unit |
//! |---|---|---|
//! | `sonde.tcp.connections.opened` (`sonde_tcp_connections_opened_total`) | counter | {connection} |
//! | `sonde.tcp.connections.closed` (`sonde_tcp_connections_closed_total`) | counter | {connection} |
//! | `sonde.tcp.connect.failures` (`sonde_tcp_connect_failures_total`) | counter | {connect} |
//! | `sonde.tcp.connect.duration` (`sonde_tcp_connect_duration_seconds`) | histogram, `sonde.tcp.connect.result` = `established` or `failed` | s |
//! | `sonde.tcp.rtt` (`sonde_tcp_rtt_seconds`) | histogram: smoothed RTT when a connection left ESTABLISHED | s |
//! | `sonde.tcp.retransmits` (`sonde_tcp_retransmits_total`) | counter | {segment} |
//! | `sonde.tcp.resets.sent`, `sonde.tcp.resets.received` (`sonde_tcp_resets_sent_total`, …) | counter | {reset} |
//! | `sonde.tcp.drops` (`sonde_tcp_drops_total`) | counter per kernel drop reason (`sonde.drop.reason`, node-wide, 5.17+) | {packet} |
//! | `system.network.connections` (`system_network_connections`) | gauge per `network.connection.state`, `network.transport` = `tcp` (no peer) | {connection} |
//!
//! with attributes `process.pid`, `process.executable.name`, `cgroup.id`
//! (pod enrichment keys on these), `sonde.tcp.role` (`client`: the process
//! connected; `server`: it accepted), `server.port` (the remote port of a
//! client, the local port of a server, so ephemeral ports never make
//! series), `network.peer.address` (unless `peer_addresses = false`),
//! `network.type` and the node name. A counter appears once it is non-zero.
//!
//! Connect latency is SYN_SENT → ESTABLISHED (`sonde.tcp.connect.result = "established"`) or
//! SYN_SENT → CLOSE (`failed`: refused, timed out, reset): exactly one
//! observation per connect whose start was seen. A passive open belongs to
//! the process that called `listen()` on the port. Events on sockets opened
//! before the source started are counted with pid 0 (and in
//! `sonde_ebpf_lost_events_total{reason="unattributed"}`); a reset sent for
//! a packet that matched no socket (a connect to a closed port) is counted
//! as the closed port answering, with no process, from kernel 6.10 on
//! (older kernels trace only resets sent on an existing socket; found by
//! the kernel matrix).
//!
//! **Sockets by state** (`system_network_connections`): the kernel keeps, per
//! socket, its key (owner, role, service port) and last state, which each
//! `inet_sock_set_state` sets in place; at each emission the source counts
//! the sockets per key and state (one map read per socket per interval,
//! instead of two more hash lookups on every transition: the program's
//! costliest part). Sockets older than the source are seeded
//! at start by an `iter/tcp` program (5.9+), owned by the process holding
//! the socket's inode (`/proc/PID/fd`), else by the listener of its port,
//! else pid 0. TIME_WAIT, FIN_WAIT2 after the process closed (the kernel
//! turns those into timewait sockets too) and half-open (`syn_received`)
//! sockets are kernel mini-sockets without state changes or process: an
//! `iter/tcp` lists them at each emission, by role and port only. A socket that reaches CLOSE
//! leaves the count (as it leaves `/proc/net/tcp`), so `closed` is never
//! reported. A CLOSE_WAIT pile-up (the peer closed, the process did not)
//! shows as a growing `close_wait` for that process and port. Sockets of
//! other network namespaces are followed from their transitions, but only
//! the agent's own namespace is seeded (Kubernetes: `hostNetwork`).
//!
//! **Cumulative temporality**, like `disk_latency`: running totals that
//! need no read-and-reset race with the kernel. The series of a process
//! that exited are emitted once more, then removed from the kernel map, so
//! the map holds live processes only; `max_series` bounds it, and an event
//! that finds it full is counted in `sonde_ebpf_map_full_total`. Whether a
//! process is alive is read from `/proc`, so in Kubernetes the agent needs
//! `hostPID` (without it, quiet series are removed and restart from zero).
//!
//! Minimum kernel 5.5 with BTF; drop reasons need 5.17. Needs CAP_BPF and
//! CAP_PERFMON (or CAP_SYS_ADMIN).

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
#[cfg(test)]
mod tests;

pub use collect::{
    Collector, CLOSES, CONNECTIONS, CONNECT_DURATION, CONNECT_FAILURES, DROPS, DROP_REASON, NETWORK_TYPE, OPENS, PEER,
    PORT, RESETS_RECEIVED, RESETS_SENT, RESULT, RETRANSMITS, ROLE, RTT, STATE, TRANSPORT,
};
pub use config::{TcpSourceConfig, DEFAULT_INTERVAL, DEFAULT_MAX_SERIES, DEFAULT_MAX_SOCKETS};
