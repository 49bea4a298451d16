//! `source "connections"`: an audit of who talked to what on the network
//! — outbound connects, inbound accepts and new listeners, IPv4 and IPv6 —
//! with the process and its ancestry, filtered in the kernel.
//!
//! The eBPF programs ([`bpf`]: `bpf/connections.bpf.c` and its loader)
//! hook the syscall tracepoints of `connect` (entry and exit), `accept` and
//! `accept4` (exit), and `sock:inet_sock_set_state` for sockets entering
//! LISTEN. Each event is taken in the context of the process that made the
//! call: a connect at its return (the local port is chosen by then; a
//! failed one reports the peer it asked for), an accept at its return from
//! the socket behind the new fd (not at the TCP handshake, which completes
//! in softirq context under whatever task the packet interrupted), a
//! listener when `listen()` moves the socket to LISTEN. The policy — peer
//! CIDRs allowed and excluded (one LPM trie each, IPv4 stored as
//! IPv4-mapped IPv6), service ports, process names, cgroups, transports,
//! failed connects — is applied in the kernel; every event left out is
//! counted by reason (`sonde_connections_dropped_total{reason}`), as is each
//! one the ring buffer had no room for (`reason="ringbuf_full"`, and
//! `sonde_ebpf_lost_events_total`).
//!
//! Each event is a log record, `network.connect`, `network.accept` or
//! `network.listen`, with the attributes of the `process` source
//! (`process.pid`, `process.executable.name`, `process.executable.path`,
//! `cgroup.id`, `user.id`: `pod_enrich` adds the pod) and its fields of
//! identity and ancestry (`sonde.process.exec_id`, `process.parent_pid`,
//! `sonde.process.parent.exec_id`, `sonde.process.parent.executable.path`,
//! `sonde.process.ancestry`); then `network.transport`, `network.type`,
//! `source.address`/`source.port` (the initiator) and
//! `destination.address`/`destination.port` (the responder) — or
//! `network.local.address`/`network.local.port` for a listener —,
//! `sonde.network.direction`, `thread.id`, and `error.type` for a failed
//! connect (severity warn). `sonde_connections_total{direction,
//! network.transport}` counts what was reported.
//!
//! **Process identity.** When a `process` source runs in the same agent,
//! a process it knows is named by its `sonde.process.exec_id` and chain (see
//! [`crate::process::ancestry`]); otherwise — or when this event is read
//! before that source has read the process' exec — the process is read from
//! `/proc` (origin `procfs`, its exec id from its start time), and a
//! process gone by then carries its pid, name and parent pid only.
//!
//! **Not seen:** connects and accepts through io_uring (they do not pass
//! the syscall tracepoints), TCP Fast Open connects by
//! `sendto(MSG_FASTOPEN)`, UDP traffic without `connect()`, listeners of
//! other protocols than TCP.
//!
//! Minimum kernel 5.8 (ring buffer, BTF).

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
mod run;
#[cfg(test)]
mod tests;

pub use collect::{
    drain, errno_name, Collector, ACCEPT, CONNECT, DESTINATION_ADDRESS, DESTINATION_PORT, DIRECTION, DROPPED_TOTAL,
    ERROR, EVENTS_TOTAL, IN_PROGRESS, LISTEN, LOCAL_ADDRESS, LOCAL_PORT, NETWORK_TYPE, SOURCE_ADDRESS, SOURCE_PORT,
    TRANSPORT,
};
pub use config::{ConnectionsSourceConfig, Match, DIRECTIONS, PROTOCOLS};
