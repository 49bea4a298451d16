/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * connections: the structs and constants shared by connections.bpf.c and
 * the Rust loader (bpf/abi.rs). build.rs turns every `#define NAME
 * <integer>` into a Rust constant; a Rust test checks the struct mirror
 * against the compiled object's BTF.
 */
#ifndef SONDE_CONNECTIONS_H
#define SONDE_CONNECTIONS_H

/* What happened (`struct cn_event.kind`). */
#define CN_CONNECT 0
#define CN_ACCEPT 1
#define CN_LISTEN 2

/* Policy sizes. */
#define CN_MAX_CIDRS 256
#define CN_MAX_PORTS 256
#define CN_MAX_BINARIES 64
#define CN_MAX_CGROUPS 256
#define CN_MAX_PENDING 16384
/* Rate windows (cgroups) and dedup entries (process, peer) remembered. */
#define CN_RATE_ENTRIES 4096
#define CN_DEDUP_ENTRIES 16384
/* The event ring buffer (bytes). */
#define CN_RING_BYTES (1 << 20)

/* Indexes of the `cn_stats` per-CPU array. Left out on purpose: */
#define CN_STAT_FILTERED_CGROUP 0
#define CN_STAT_FILTERED_BINARY 1
#define CN_STAT_FILTERED_PROTOCOL 2
#define CN_STAT_FILTERED_CIDR 3
#define CN_STAT_FILTERED_PORT 4
#define CN_STAT_FILTERED_FAILED 5
/* ... and lost: */
#define CN_STAT_RING_FULL 6
#define CN_STAT_PENDING_FULL 7
#define CN_STAT_READ_FAILED 8
/* ... and left out on purpose again: repeated within the dedup window,
 * over the cgroup's rate. */
#define CN_STAT_DEDUPLICATED 9
#define CN_STAT_THROTTLED 10
#define CN_STAT_COUNT 11

/*
 * An address in a CIDR trie: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * so one trie holds both families (an IPv4 /n is a /96+n).
 */
struct cn_lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* What makes two events the same for the dedup window: the process, what
 * happened, and the other end (the peer for a connect or accept, the
 * local port for a listener). */
struct cn_dedup_key {
	__u32 pid;
	__u32 kind;
	__u16 family;
	__u16 protocol;
	__u16 port;
	__u16 _pad;
	__u8 addr[16];
};

/* One connect, accept or listen, through the `cn_events` ring buffer. */
struct cn_event {
	/* bpf_ktime_get_ns() at the call's return (listen: at the state change). */
	__u64 mono_ns;
	__u64 cgroup_id;
	/* The process' start (its group leader's start_boottime): with the
	 * pid, which process image this is. */
	__u64 start_ns;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	/* connect: 0, or -errno (-EINPROGRESS for a non-blocking one). */
	__s32 ret;
	/* CN_CONNECT, CN_ACCEPT, CN_LISTEN. */
	__u32 kind;
	/* AF_INET or AF_INET6; IPPROTO_TCP or IPPROTO_UDP. */
	__u16 family;
	__u16 protocol;
	/* Ports in host order: this end's, and the peer's (0 for a listener). */
	__u16 local_port;
	__u16 remote_port;
	/* IPv4 addresses fill the first 4 bytes. */
	__u8 local_addr[16];
	__u8 remote_addr[16];
	char comm[16];
};

#endif
