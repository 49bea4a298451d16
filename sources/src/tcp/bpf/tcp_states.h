/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * tcp_states: what the sockets-by-state gauge needs, kept in the kernel
 * from sock:inet_sock_set_state. Included by tcp.bpf.c only (after
 * tcp_maps.h); BPF-only except the structs of tcp.h.
 *
 * Each live socket's entry in `tcp_socks` (tcp_maps.h) holds its key
 * (owner, role, service port) and its last state, which a transition sets
 * in place; user space counts the entries per key and state at each
 * emission. (Counts kept per transition cost two more hash lookups on
 * every change, the costliest part of the program: ~40 % of its time was
 * hash lookups.)
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

/*
 * A socket starting a life (connect, listen, a new child, or one first
 * seen now): remembered with its state. An entry already there for the
 * address is replaced: a socket whose close was missed, or the seed's own
 * (which raced this change). Inserted without a lookup first: a new
 * socket's address is almost never there.
 */
static __always_inline void sock_start(__u64 addr, const struct sock_state *fresh)
{
	struct sock_state *known;

	if (!bpf_map_update_elem(&tcp_socks, &addr, fresh, BPF_NOEXIST)) {
		count(TCP_STAT_SOCK_INSERTS);
		return;
	}
	known = bpf_map_lookup_elem(&tcp_socks, &addr);
	if (!known) {
		count(TCP_STAT_STATE_SOCKS_FULL);
		return;
	}
	*known = *fresh;
}

/* A child cloned from its listener (LISTEN -> SYN_RECV): the listener's owner. */
static __always_inline void on_child(const void *sk)
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
	sock_start((__u64)sk, &s);
}

/* A socket older than the programs, missed by the seed: counted from now on. */
static __always_inline void on_unseeded(const void *sk, int newstate)
{
	struct sock_state s = {};

	count(TCP_STAT_STATE_UNSEEDED);
	key_by_port(sk, &s.state, 0);
	s.state.state = newstate;
	sock_start((__u64)sk, &s);
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
 * not yet known is remembered in its current state, owned by the process
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
