/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * tcp: the structs and constants shared by tcp.bpf.c and the Rust loader
 * (ebpf/src/tcp/types.rs). The one definition: build.rs turns every
 * `#define NAME <integer>` into a Rust constant, and a Rust test checks the
 * mirrors of the structs against the compiled object's BTF.
 */
#ifndef SONDE_TCP_H
#define SONDE_TCP_H

/*
 * Connect latency and RTT histograms, log2 of nanoseconds, the slot rule of
 * sonde_slot(): slot 0 counts values <= 2^TCP_LATENCY_MIN_SHIFT ns (~1 us),
 * the last slot everything above 2^(MIN_SHIFT + SLOTS - 2) ns (~69 s).
 */
#define TCP_LATENCY_MIN_SHIFT 10
#define TCP_LATENCY_SLOTS 28

/* Which end of the connection the process is. */
#define TCP_ROLE_CLIENT 0
#define TCP_ROLE_SERVER 1
/* A reset sent for a packet that matched no socket and no readable tuple. */
#define TCP_ROLE_UNKNOWN 2

/* `family` of a key. */
#define TCP_FAMILY_NONE 0
#define TCP_FAMILY_V4 4
#define TCP_FAMILY_V6 6

/* Indexes of the `tcp_stats` per-CPU array: what the programs lost. */
/* `tcp_series` had no room for a new key: that event is not counted. */
#define TCP_STAT_SERIES_FULL 0
/* A handshake ended whose start was not seen (attached mid-handshake, or evicted). */
#define TCP_STAT_NO_CONNECT_START 1
/* An event on a socket opened before attach (or evicted): counted with pid 0. */
#define TCP_STAT_UNTRACKED 2
/* bpf_probe_read_kernel failed. */
#define TCP_STAT_READ_FAILED 3
/* Entries added to and deleted from `tcp_socks`; user space derives evictions. */
#define TCP_STAT_SOCK_INSERTS 4
#define TCP_STAT_SOCK_DELETES 5
/* `tcp_socks` had no room for a socket: its states are not counted, its events go untracked. */
#define TCP_STAT_STATE_SOCKS_FULL 6
/* Unused since the states are counted from `tcp_socks` (its slot kept). */
#define TCP_STAT_STATES_FULL 7
/* A state change of a socket neither seen opening nor seeded at load. */
#define TCP_STAT_STATE_UNSEEDED 8
#define TCP_STAT_COUNT 9

/* Drop reasons counted (`enum skb_drop_reason`); larger ones land in the last. */
#define TCP_DROP_REASONS 256

/* Default capacities (entries); user space may override them before load. */
#define TCP_MAX_SERIES 8192
#define TCP_MAX_SOCKETS 65536
#define TCP_MAX_LISTENERS 4096

/*
 * TCP states (the kernel's TCP_*, equal to linux/bpf.h's BPF_TCP_*), the
 * values of `tcp_state_key.state` and `tcp_waiting.state`.
 */
#define TCP_STATE_ESTABLISHED 1
#define TCP_STATE_SYN_SENT 2
#define TCP_STATE_SYN_RECV 3
#define TCP_STATE_FIN_WAIT1 4
#define TCP_STATE_FIN_WAIT2 5
#define TCP_STATE_TIME_WAIT 6
#define TCP_STATE_CLOSE 7
#define TCP_STATE_CLOSE_WAIT 8
#define TCP_STATE_LAST_ACK 9
#define TCP_STATE_LISTEN 10
#define TCP_STATE_CLOSING 11
#define TCP_STATE_NEW_SYN_RECV 12

/* Key of `tcp_series`: one process, role, service port and peer. */
struct tcp_key {
	/* cgroup v2 id of the process (0 when unknown). */
	__u64 cgroup_id;
	/* Thread-group id of the process (0 when unknown). */
	__u32 pid;
	/* The service port, host order: the remote port of a client, the local port of a server. */
	__u16 port;
	/* TCP_ROLE_*. */
	__u8 role;
	/* TCP_FAMILY_*. */
	__u8 family;
	/* The peer's address (IPv4 in the first 4 bytes); zero when peers are not tracked. */
	__u8 addr[16];
	/* The process' comm. */
	char comm[16];
};

/* Value of `tcp_series`: running totals since load, updated atomically. */
struct tcp_counts {
	/* Connections established (active opens for clients, passive for servers). */
	__u64 opens;
	/* Established connections that ended (left ESTABLISHED). */
	__u64 closes;
	/* Connects that ended in CLOSE without being established. */
	__u64 connect_failures;
	/* Retransmitted segments (including SYN-ACKs). */
	__u64 retransmits;
	/* Resets sent. */
	__u64 resets_sent;
	/* Resets received. */
	__u64 resets_received;
	/* SYN_SENT -> ESTABLISHED, log2 ns slots. */
	__u64 connect_ok[TCP_LATENCY_SLOTS];
	/* SYN_SENT -> CLOSE, log2 ns slots. */
	__u64 connect_failed[TCP_LATENCY_SLOTS];
	/* Smoothed RTT when a connection left ESTABLISHED, log2 ns slots. */
	__u64 rtt[TCP_LATENCY_SLOTS];
	/* Sums of the values in the histograms above, ns. */
	__u64 connect_ok_sum_ns;
	__u64 connect_failed_sum_ns;
	__u64 rtt_sum_ns;
};

/*
 * Part of the value of `tcp_socks`: a socket's owner, role, service port
 * and last state, which user space counts per key and state.
 */
struct tcp_state_key {
	/* cgroup v2 id of the owner (0 when unknown). */
	__u64 cgroup_id;
	/* Thread-group id of the owner (0 when unknown). */
	__u32 pid;
	/* The service port, host order (remote for clients, local for servers). */
	__u16 port;
	/* TCP_ROLE_*. */
	__u8 role;
	/* TCP_STATE_*. */
	__u8 state;
	/* The owner's comm. */
	char comm[16];
};

/*
 * A socket that has no process and no state changes to follow, written by
 * the `tcp_states_waiting` iterator: TIME_WAIT (timewait sockets) and
 * NEW_SYN_RECV (half-open connection requests).
 */
struct tcp_waiting {
	/* The service port, host order. */
	__u16 port;
	/* TCP_ROLE_*. */
	__u8 role;
	/* TCP_STATE_TIME_WAIT, TCP_STATE_FIN_WAIT2 (orphaned, a timewait socket) or TCP_STATE_NEW_SYN_RECV. */
	__u8 state;
};

#endif
