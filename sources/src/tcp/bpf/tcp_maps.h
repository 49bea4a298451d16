/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * tcp_maps: the maps of tcp.bpf.c and the helpers that update them, kept
 * apart from the programs that decide what to count. Included by
 * tcp.bpf.c only (after sonde_sock.h and tcp.h); BPF-only, nothing here is
 * mirrored in Rust.
 */
#ifndef SONDE_TCP_MAPS_H
#define SONDE_TCP_MAPS_H

/*
 * Set from user space before load: when 0, keys carry no peer address, so
 * a server with many clients is one series per service port.
 */
const volatile __u8 track_peer = 1;

/*
 * What is remembered about a live socket: its state-count key and its
 * series key in one entry, so that each state change costs one lookup of
 * the socket (the two used to live in two maps, looked up one after the
 * other on every change).
 */
struct sock_state {
	/* Its owner, role, service port and last state: user space counts
	 * the entries per key and state (tcp_states.h). */
	struct tcp_state_key state;
	/* Its key in `tcp_series`: set once `series` is 1. */
	struct tcp_key key;
	/* bpf_ktime_get_ns() of connect(); 0 once the handshake ended. */
	__u64 connect_start_ns;
	/* 1 once connect() or the passive open set `key`; 0 for listeners,
	 * half-open children and sockets older than the programs. */
	__u8 series;
	__u8 _pad[7];
};

/*
 * Live sockets by address. A plain hash: an evicted socket would leave its
 * state counted forever; a full map refuses new sockets and counts it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCP_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct sock_state);
} tcp_socks SEC(".maps");

/* Listening ports (host order) and who listens. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TCP_MAX_LISTENERS);
	__type(key, __u32);
	__type(value, struct sonde_owner);
} tcp_listeners SEC(".maps");

/*
 * Running totals per key. A plain hash: a full map refuses new keys (and
 * counts it) instead of silently evicting totals; user space removes the
 * series of processes that are gone.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCP_MAX_SERIES);
	__type(key, struct tcp_key);
	__type(value, struct tcp_counts);
} tcp_series SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} tcp_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_DROP_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} tcp_drops SEC(".maps");

/* Inserted for a new key: too big for the 512-byte stack. */
static const struct tcp_counts zero_counts;

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&tcp_stats, &stat);

	if (value)
		*value += 1;
}

static __always_inline void fill_peer(struct tcp_key *key, const struct sonde_tuple *t)
{
	key->family = t->family == SONDE_AF_INET6 ? TCP_FAMILY_V6 : TCP_FAMILY_V4;
	if (track_peer)
		__builtin_memcpy(key->addr, t->daddr, sizeof(key->addr));
}

static __always_inline struct tcp_counts *counts_for(const struct tcp_key *key)
{
	struct tcp_counts *counts = bpf_map_lookup_elem(&tcp_series, key);
	long err;

	if (counts)
		return counts;
	/* -EEXIST: another CPU created it meanwhile, which is fine. */
	err = bpf_map_update_elem(&tcp_series, key, &zero_counts, BPF_NOEXIST);
	if (err && err != -17)
		count(TCP_STAT_SERIES_FULL);
	return bpf_map_lookup_elem(&tcp_series, key);
}

/* The key of a socket opened before load: the listener's owner, or pid 0. */
static __always_inline void untracked_key(const void *sk, struct tcp_key *key)
{
	struct sonde_tuple t = {};
	struct sonde_owner *owner;
	__u32 port;

	if (sonde_read_tuple(sk, &t))
		count(TCP_STAT_READ_FAILED);
	port = t.sport;
	owner = bpf_map_lookup_elem(&tcp_listeners, &port);
	if (owner) {
		/* Accepted before load: the listener's owner is known. */
		key->role = TCP_ROLE_SERVER;
		key->port = t.sport;
		key->pid = owner->pid;
		key->cgroup_id = owner->cgroup_id;
		__builtin_memcpy(key->comm, owner->comm, sizeof(key->comm));
	} else {
		key->role = TCP_ROLE_CLIENT;
		key->port = t.dport;
	}
	fill_peer(key, &t);
	count(TCP_STAT_UNTRACKED);
}

/* The totals of a socket: its own key, else the key of an untracked one. */
static __always_inline struct tcp_counts *counts_for_known(const void *sk, const struct sock_state *state)
{
	struct tcp_key key = {};

	if (state && state->series)
		return counts_for(&state->key);
	untracked_key(sk, &key);
	return counts_for(&key);
}

static __always_inline struct tcp_counts *counts_for_sock(const void *sk)
{
	__u64 addr = (__u64)sk;

	return counts_for_known(sk, bpf_map_lookup_elem(&tcp_socks, &addr));
}

static __always_inline void forget(__u64 addr)
{
	if (!bpf_map_delete_elem(&tcp_socks, &addr))
		count(TCP_STAT_SOCK_DELETES);
}

static __always_inline void observe(__u64 *slots, __u64 *sum, __u64 ns)
{
	__u32 s = sonde_slot(ns, TCP_LATENCY_MIN_SHIFT, TCP_LATENCY_SLOTS);

	__sync_fetch_and_add(&slots[s], 1);
	__sync_fetch_and_add(sum, ns);
}

#endif
