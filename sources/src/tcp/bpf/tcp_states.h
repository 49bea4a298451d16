/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * tcp_states: sockets per (owner, role, service port, TCP state), kept in
 * the kernel from sock:inet_sock_set_state. Included by tcp.bpf.c only
 * (after tcp_maps.h); BPF-only except the structs of tcp.h.
 *
 *   tcp_socks         socket address -> its key and last state (with its
 *                     series key: tcp_maps.h)
 *   tcp_state_counts  key with state -> sockets, per CPU (signed: decrement
 *                     the old state, increment the new one at each
 *                     transition; a socket may change on one CPU and
 *                     again on another)
 *
 * Sockets older than the programs are seeded once at load by the
 * `tcp_states_seed` iterator (iter/tcp, 5.9+), whose owners come from user
 * space (socket inode -> process, from /proc/PID/fd) through
 * `tcp_seed_owners`. TIME_WAIT and half-open requests (NEW_SYN_RECV) are
 * mini-sockets the tracepoint never reports: `tcp_states_waiting` lists
 * them at each emission.
 */
#ifndef SONDE_TCP_STATES_H
#define SONDE_TCP_STATES_H

/*
 * Per CPU: each transition adds to two counts that both ends of every
 * connection, on both CPUs, update; a shared value bounced its cache line
 * between CPUs on every change. User space sums the CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, TCP_MAX_STATE_SERIES);
	__type(key, struct tcp_state_key);
	__type(value, __s64);
} tcp_state_counts SEC(".maps");

/* Filled by user space for the seed only, then emptied. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCP_MAX_SOCKETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct sonde_owner);
} tcp_seed_owners SEC(".maps");

/* What leads from a full socket to its inode (accepted or connected ones). */
struct inode___sonde {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file___sonde {
	struct inode___sonde *f_inode;
} __attribute__((preserve_access_index));

struct socket___sonde {
	struct file___sonde *file;
} __attribute__((preserve_access_index));

struct sock___sonde {
	struct socket___sonde *sk_socket;
} __attribute__((preserve_access_index));

static __always_inline void state_add(const struct tcp_state_key *key, __s64 delta)
{
	__s64 zero = 0, *n = bpf_map_lookup_elem(&tcp_state_counts, key);
	long err;

	if (!n) {
		/* A decrement of a key that was never counted (the map was full). */
		if (delta < 0)
			return;
		err = bpf_map_update_elem(&tcp_state_counts, key, &zero, BPF_NOEXIST);
		if (err && err != -17) {
			count(TCP_STAT_STATES_FULL);
			return;
		}
		n = bpf_map_lookup_elem(&tcp_state_counts, key);
		if (!n)
			return;
	}
	/* This CPU's count: the line stays in this CPU's cache. Still atomic:
	 * the tracepoint may interrupt the seed iterator on this CPU. */
	__sync_fetch_and_add(n, delta);
}

static __always_inline void key_owner(struct tcp_state_key *key, const struct sonde_owner *owner)
{
	key->pid = owner->pid;
	key->cgroup_id = owner->cgroup_id;
	__builtin_memcpy(key->comm, owner->comm, sizeof(key->comm));
}

/*
 * Role and service port of a socket without a known opening: a server if
 * its local port is a listening port (owned by the listener's owner, unless
 * `owner` says better), else a client of its remote port.
 */
static __always_inline void key_by_port(const void *sk, struct tcp_state_key *key, const struct sonde_owner *owner)
{
	struct sonde_tuple t = {};
	struct sonde_owner *listener;
	__u32 port;

	if (sonde_read_tuple(sk, &t))
		count(TCP_STAT_READ_FAILED);
	port = t.sport;
	listener = bpf_map_lookup_elem(&tcp_listeners, &port);
	if (listener) {
		key->role = TCP_ROLE_SERVER;
		key->port = t.sport;
	} else {
		key->role = TCP_ROLE_CLIENT;
		key->port = t.dport;
	}
	if (owner)
		key_owner(key, owner);
	else if (listener)
		key_owner(key, listener);
}

/* Moves a known socket out of its last state's count, and into `newstate`'s (but CLOSE). */
static __always_inline void state_move(struct sock_state *s, int newstate)
{
	struct tcp_state_key key = s->state;

	state_add(&key, -1);
	if (newstate == BPF_TCP_CLOSE)
		return;
	s->state.state = newstate;
	key.state = newstate;
	state_add(&key, 1);
}

/*
 * A socket starting a life (connect, listen, a new child, or one first
 * seen now): remembered, and counted in its state. `known` is its entry
 * when the address is already there (a close that was missed).
 */
static __always_inline void sock_start(__u64 addr, struct sock_state *known, const struct sock_state *fresh)
{
	struct sock_state *seeded;

	if (known) {
		state_add(&known->state, -1);
		*known = *fresh;
		state_add(&fresh->state, 1);
		return;
	}
	if (!bpf_map_update_elem(&tcp_socks, &addr, fresh, BPF_NOEXIST)) {
		count(TCP_STAT_SOCK_INSERTS);
		state_add(&fresh->state, 1);
		return;
	}
	/* -EEXIST: the seed got there first and counted its state. */
	seeded = bpf_map_lookup_elem(&tcp_socks, &addr);
	if (!seeded) {
		count(TCP_STAT_STATE_SOCKS_FULL);
		return;
	}
	if (fresh->series) {
		seeded->key = fresh->key;
		seeded->connect_start_ns = fresh->connect_start_ns;
		seeded->series = 1;
	}
}

/* A child cloned from its listener (LISTEN -> SYN_RECV): the listener's owner. */
static __always_inline void on_child(const void *sk, struct sock_state *known)
{
	const struct sock_common___sonde *skc = sk;
	struct sock_state s = {};
	struct sonde_owner *listener;
	__u32 port = BPF_CORE_READ(skc, skc_num);

	s.state.role = TCP_ROLE_SERVER;
	s.state.port = port;
	s.state.state = BPF_TCP_SYN_RECV;
	listener = bpf_map_lookup_elem(&tcp_listeners, &port);
	if (listener)
		key_owner(&s.state, listener);
	sock_start((__u64)sk, known, &s);
}

/* A socket older than the programs, missed by the seed: counted from now on. */
static __always_inline void on_unseeded(const void *sk, int newstate)
{
	struct sock_state s = {};

	count(TCP_STAT_STATE_UNSEEDED);
	key_by_port(sk, &s.state, 0);
	s.state.state = newstate;
	sock_start((__u64)sk, 0, &s);
}

struct bpf_iter_meta___sonde {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp___sonde {
	struct bpf_iter_meta___sonde *meta;
	struct sock_common___sonde *sk_common;
} __attribute__((preserve_access_index));

/*
 * Run once at load, after the tracepoint is attached: every full socket
 * not yet known is counted in its current state, owned by the process
 * holding its inode (from tcp_seed_owners), else by its listener's owner.
 */
SEC("iter/tcp")
int tcp_states_seed(struct bpf_iter__tcp___sonde *ctx)
{
	struct sock_common___sonde *skc = ctx->sk_common;
	const struct sock___sonde *sk;
	struct sock_state entry = {};
	struct tcp_state_key *key = &entry.state;
	struct sonde_owner *owner;
	__u64 addr, inode;
	__u8 state;

	if (!skc)
		return 0;
	state = skc->skc_state;
	/* Mini-sockets (listed at each emission) and sockets already gone. */
	if (state == BPF_TCP_TIME_WAIT || state == BPF_TCP_NEW_SYN_RECV || state == BPF_TCP_CLOSE)
		return 0;
	addr = (__u64)skc;
	if (bpf_map_lookup_elem(&tcp_socks, &addr))
		return 0;
	sk = (const void *)skc;
	inode = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	owner = inode ? bpf_map_lookup_elem(&tcp_seed_owners, &inode) : 0;
	if (state == BPF_TCP_LISTEN) {
		key->role = TCP_ROLE_SERVER;
		key->port = skc->skc_num;
		if (owner)
			key_owner(key, owner);
	} else {
		key_by_port(skc, key, owner);
	}
	key->state = state;
	if (bpf_map_update_elem(&tcp_socks, &addr, &entry, BPF_NOEXIST)) {
		if (!bpf_map_lookup_elem(&tcp_socks, &addr))
			count(TCP_STAT_STATE_SOCKS_FULL);
		return 0;
	}
	count(TCP_STAT_SOCK_INSERTS);
	state_add(key, 1);
	return 0;
}

/*
 * A timewait socket: TIME_WAIT, or an orphaned FIN_WAIT2 (closed by its
 * process) that the kernel turned into one, which ss and /proc/net/tcp
 * show by this substate.
 */
struct inet_timewait_sock___sonde {
	unsigned char tw_substate;
} __attribute__((preserve_access_index));

/*
 * Not inlined: a function taking `struct tcp_waiting *` puts the struct in
 * the object's BTF, where the Rust mirror's layout test finds it.
 */
static __noinline void fill_waiting(struct tcp_waiting *rec, __u16 port, __u8 role)
{
	rec->port = port;
	rec->role = role;
}

/*
 * Run at each emission: one record per timewait (TIME_WAIT, orphaned
 * FIN_WAIT2) or half-open socket.
 */
SEC("iter/tcp")
int tcp_states_waiting(struct bpf_iter__tcp___sonde *ctx)
{
	struct sock_common___sonde *skc = ctx->sk_common;
	struct tcp_waiting rec = {};
	__u16 dport;
	__u32 port;

	if (!skc)
		return 0;
	rec.state = skc->skc_state;
	if (rec.state != BPF_TCP_TIME_WAIT && rec.state != BPF_TCP_NEW_SYN_RECV)
		return 0;
	if (rec.state == BPF_TCP_TIME_WAIT)
		rec.state = BPF_CORE_READ((const struct inet_timewait_sock___sonde *)skc, tw_substate);
	port = skc->skc_num;
	dport = __builtin_bswap16(skc->skc_dport);
	/* A request is always to a listener; a timewait socket may be either end. */
	if (rec.state == BPF_TCP_NEW_SYN_RECV || bpf_map_lookup_elem(&tcp_listeners, &port))
		fill_waiting(&rec, port, TCP_ROLE_SERVER);
	else
		fill_waiting(&rec, dport, TCP_ROLE_CLIENT);
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

#endif
