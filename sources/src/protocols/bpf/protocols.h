/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * protocols: what the kernel programs share with user space (mirrored in
 * bpf/abi.rs, checked against the object's BTF). Every #define here is
 * also a Rust constant (sonde-ebpf-build).
 */
#ifndef PROTOCOLS_H
#define PROTOCOLS_H

/* Largest capture per call (capture_bytes ≤ this); a power of two. */
#define PROTO_MAX_CAPTURE 16384
/* iovecs (readv, sendmsg …) copied per call; the rest is a gap. gRPC
 * (C-core) writes a call's frames as up to ~20 slices. */
#define PROTO_MAX_IOV 32
/* Messages of one sendmmsg/recvmmsg looked at; the rest is a gap. */
#define PROTO_MAX_MMSG 8
/* Calls of a connection that may be inspected before it is ignored for
 * not looking like any enabled protocol (several for connections found
 * mid-stream, whose first bytes seen may be the middle of a body). */
#define PROTO_INSPECT_BUDGET 8

/* Record kinds. */
#define PROTO_EVENT_DATA 1
#define PROTO_EVENT_OPEN 2
#define PROTO_EVENT_CLOSE 3
#define PROTO_EVENT_EXIT 4
/* A connection started a TLS handshake: user space looks for the
 * process's TLS library (once per process) to attach to it. */
#define PROTO_EVENT_ENCRYPTED 5

/* Directions, seen from the traced process. */
#define PROTO_DIR_EGRESS 0
#define PROTO_DIR_INGRESS 1

/* Roles. */
#define PROTO_ROLE_UNKNOWN 0
#define PROTO_ROLE_CLIENT 1
#define PROTO_ROLE_SERVER 2

/* Protocol gates (bits of `protocols`). */
#define PROTO_HTTP1 1
#define PROTO_POSTGRES 2
#define PROTO_MYSQL 4
#define PROTO_REDIS 8
#define PROTO_DNS 16
#define PROTO_HTTP2 32

/* DNS server ports a datagram socket is captured for. */
#define PROTO_MAX_DNS_PORTS 4

/* Stats slots (per-CPU counters). */
#define PROTO_STAT_RINGBUF_FULL 0
#define PROTO_STAT_CONNS_FULL 1
#define PROTO_STAT_READ_FAILED 2
#define PROTO_STAT_TLS_UNMAPPED 3
#define PROTO_STAT_IOV_TRUNCATED 4
#define PROTO_STAT_CONN_INSERTS 5
#define PROTO_STAT_CONN_DELETES 6
#define PROTO_STAT_IGNORED 7
#define PROTO_STAT_COUNT 8

/*
 * Every record starts with this. DATA records are followed by `captured`
 * bytes (of `length` moved); OPEN records are a `struct proto_open`.
 */
struct proto_event {
	__u64 timestamp_ns;
	__u64 generation;
	__u64 position;
	__u32 pid;
	__u32 tid;
	__u32 fd;
	__u32 length;
	__u32 captured;
	__u8 kind;
	__u8 direction;
	__u8 tls;
	__u8 role;
	/* Datagram sockets: the datagram's other end when the call named it
	 * (sendto, recvfrom, *msg's msg_name); family 0 when it did not. */
	__u8 peer_addr[16];
	__u16 peer_port;
	__u16 peer_family;
	/* 1 on a datagram (UDP) socket. */
	__u8 datagram;
	__u8 _pad[3];
};

/* What is known of a connection: the OPEN record's body, and kept in the
 * kernel's connection map. Addresses: IPv4 in the first 4 bytes. */
struct proto_peer {
	__u64 cgroup_id;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 role;
	__u8 discovered;
	char comm[16];
};

/* Go crypto/tls: where a *tls.Conn's socket fd is, per process (user
 * space fills them from the binary's DWARF, else by its Go version). */
struct proto_go_offsets {
	/* tls.Conn.conn, a net.Conn interface (its data word follows the itab). */
	__u32 conn;
	/* net.TCPConn's conn.fd (*netFD). */
	__u32 netfd;
	/* netFD.pfd (internal/poll.FD). */
	__u32 pfd;
	/* poll.FD.Sysfd. */
	__u32 sysfd;
};

struct proto_open {
	struct proto_event head;
	struct proto_peer peer;
};

#endif
