/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * net_flows: the structs and constants shared by net_flows.bpf.c and the
 * Rust loader (ebpf/src/net_flows/types.rs). The one definition: build.rs
 * turns every `#define NAME <integer>` into a Rust constant, and a Rust test
 * checks the mirrors of the structs against the compiled object's BTF.
 */
#ifndef SONDE_NET_FLOWS_H
#define SONDE_NET_FLOWS_H

/* Which end of the flow this host's socket is. */
#define FLOW_DIR_CLIENT 0
#define FLOW_DIR_SERVER 1

/* Why a TCP record was written. */
/* The flow is open: a snapshot taken by the iterator. */
#define FLOW_END_OPEN 0
/* The connection closed. */
#define FLOW_END_CLOSED 1
/* The connect failed (SYN_SENT -> CLOSE). */
#define FLOW_END_FAILED 2

/* Indexes of the `flow_stats` per-CPU array. */
/* The ring buffer had no room for a closed flow's record: that record is lost. */
#define FLOW_STAT_RINGBUF_FULL 0
/* bpf_probe_read_kernel failed. */
#define FLOW_STAT_READ_FAILED 1
/* Entries added to and deleted from `flow_tcp`; user space derives evictions. */
#define FLOW_STAT_TCP_INSERTS 2
#define FLOW_STAT_TCP_DELETES 3
/* Entries added to `flow_udp` (user space deletes them, and counts that). */
#define FLOW_STAT_UDP_INSERTS 4
/* UDP packets whose headers could not be read (IPv6 extension headers). */
#define FLOW_STAT_UDP_UNPARSED 5
/* A passive open whose listener's owner is unknown (listening before load). */
#define FLOW_STAT_NO_OWNER 6
#define FLOW_STAT_COUNT 7

/* Default capacities (entries); user space may override them before load. */
#define FLOW_MAX_TCP 65536
#define FLOW_MAX_UDP 16384
#define FLOW_MAX_LISTENERS 4096
/* Size of the (internal) value of `flow_tcp`, which user space only counts. */
#define FLOW_TCP_VALUE_SIZE 80
/* Ring buffer of closed TCP flows: 2048 records. */
#define FLOW_RINGBUF_BYTES 262144
/*
 * Records are written without waking the reader until this many bytes
 * wait (a quarter of the ring); user space also drains on a short timer.
 * A wakeup per record would cost a wakeup of the agent per closed
 * connection on a busy server.
 */
#define FLOW_RINGBUF_WAKEUP_BYTES 65536

/* One TCP flow: written to the ring buffer when it ends, by the iterator while it is open. */
struct flow_record {
	/* The socket's kernel address: with start_ns, the flow's identity. */
	__u64 sock;
	/* bpf_ktime_get_ns() at connect() or at the passive open. */
	__u64 start_ns;
	/* bpf_ktime_get_ns() at the close, or at the snapshot. */
	__u64 end_ns;
	/* Payload bytes sent, each once (tcp_sock.bytes_sent - bytes_retrans). */
	__u64 bytes_sent;
	/* Payload bytes received (tcp_sock.bytes_received, less a received FIN). */
	__u64 bytes_received;
	/* cgroup v2 id of the owner (0 when unknown). */
	__u64 cgroup_id;
	/* Segments sent and received, all kinds (tcp_sock.segs_out, segs_in). */
	__u32 packets_sent;
	__u32 packets_received;
	/* Retransmitted segments (tcp_sock.total_retrans). */
	__u32 retransmits;
	/* Smoothed RTT, microseconds (0 = no sample). */
	__u32 srtt_us;
	/* Owner's process id (0 when unknown). */
	__u32 pid;
	/* Local and remote port, host order. */
	__u16 sport;
	__u16 dport;
	/* AF_INET or AF_INET6. */
	__u16 family;
	/* FLOW_DIR_*. */
	__u8 direction;
	/* FLOW_END_*. */
	__u8 end;
	/* Local and remote address, IPv4 in the first 4 bytes. */
	__u8 saddr[16];
	__u8 daddr[16];
	/* Owner's comm. */
	char comm[16];
	__u32 _reserved;
};

/* Key of `flow_udp`: one socket and one peer. */
struct udp_flow_key {
	/* The socket's cookie (bpf_get_socket_cookie). */
	__u64 cookie;
	/* The peer's address, IPv4 in the first 4 bytes. */
	__u8 peer[16];
	/* The peer's and the local port, host order. */
	__u16 peer_port;
	__u16 local_port;
	/* AF_INET or AF_INET6. */
	__u16 family;
	__u16 _pad;
};

/* Value of `flow_udp`: running totals, updated atomically. */
struct udp_flow {
	/* bpf_ktime_get_ns() of the first and the latest packet. */
	__u64 first_ns;
	__u64 last_ns;
	/* Payload bytes (UDP length minus header) sent and received. */
	__u64 bytes_sent;
	__u64 bytes_received;
	/* cgroup v2 id of the socket. */
	__u64 cgroup_id;
	/* Datagrams sent and received (GSO segments counted one by one). */
	__u32 packets_sent;
	__u32 packets_received;
	/* Owner's process id (0 when unknown). */
	__u32 pid;
	/* FLOW_DIR_CLIENT when the first packet was sent, SERVER when received. */
	__u8 direction;
	__u8 _pad[3];
	/* The local address, IPv4 in the first 4 bytes. */
	__u8 local[16];
	/* Owner's comm. */
	char comm[16];
};

#endif
