// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * tcp: TCP connection metrics per process, role, service port and peer,
 * aggregated in the kernel. Tracepoints only (no kprobes on some kernels):
 *
 *   sock:inet_sock_set_state   lifecycle: connect (CLOSE -> SYN_SENT),
 *                              established (SYN_SENT or SYN_RECV ->
 *                              ESTABLISHED), failed connect (SYN_SENT ->
 *                              CLOSE), end (leaving ESTABLISHED: smoothed
 *                              RTT), listen (the owner of passive opens)
 *   tcp:tcp_retransmit_skb     retransmitted segments (tcp_skb_pcount)
 *   tcp:tcp_retransmit_synack  retransmitted SYN-ACKs
 *   tcp:tcp_send_reset, tcp:tcp_receive_reset
 *   skb:kfree_skb              drops of TCP packets by reason (5.17+)
 *   iter/tcp                   sockets per state: the seed of those older
 *                              than the programs, and TIME_WAIT and
 *                              half-open ones at each emission
 *                              (tcp_states.h, 5.9+)
 *
 * Softirq events (retransmits, resets, the end of a handshake) run in
 * whatever task was interrupted, so the process is remembered per socket
 * when it is known for sure: at connect() and listen(), which run in the
 * owner's context. A passive open belongs to the listener's owner.
 *
 * Minimum kernel 5.5 (BTF, bpf_probe_read_kernel); drop reasons 5.17.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "sonde_sock.h"
#include "tcp.h"
#include "tcp_events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "tcp_maps.h"
#include "tcp_states.h"

/*
 * connect(): runs in the caller's context, so the owner is current. The
 * tuple and owner are read once, for the state key and the series key.
 */
static __always_inline void on_connect(const void *sk)
{
	struct sock_state s = {};
	struct sonde_owner owner = {};
	struct sonde_tuple t = {};

	if (sonde_read_tuple(sk, &t))
		count(TCP_STAT_READ_FAILED);
	sonde_owner_now(&owner);
	key_owner(&s.state, &owner);
	s.state.role = TCP_ROLE_CLIENT;
	s.state.port = t.dport;
	s.state.state = BPF_TCP_SYN_SENT;
	s.key.pid = owner.pid;
	s.key.cgroup_id = owner.cgroup_id;
	__builtin_memcpy(s.key.comm, owner.comm, sizeof(s.key.comm));
	s.key.role = TCP_ROLE_CLIENT;
	s.key.port = t.dport;
	fill_peer(&s.key, &t);
	s.connect_start_ns = bpf_ktime_get_ns();
	s.series = 1;
	sock_start((__u64)sk, &s);
}

/* listen(): also the caller's context. The port is set unless autobound. */
static __always_inline void on_listen(const void *sk)
{
	const struct sock_common___sonde *skc = sk;
	struct sonde_owner owner = {};
	struct sock_state s = {};
	__u32 port = BPF_CORE_READ(skc, skc_num);

	sonde_owner_now(&owner);
	key_owner(&s.state, &owner);
	s.state.role = TCP_ROLE_SERVER;
	s.state.port = port;
	s.state.state = BPF_TCP_LISTEN;
	sock_start((__u64)sk, &s);
	if (port)
		bpf_map_update_elem(&tcp_listeners, &port, &owner, BPF_ANY);
}

static __always_inline void on_unlisten(const void *sk)
{
	const struct sock_common___sonde *skc = sk;
	__u32 port = BPF_CORE_READ(skc, skc_num);
	struct sonde_owner *owner = bpf_map_lookup_elem(&tcp_listeners, &port);

	/* Only its own listener: another process may listen on the port (SO_REUSEPORT). */
	if (owner && owner->pid == bpf_get_current_pid_tgid() >> 32)
		bpf_map_delete_elem(&tcp_listeners, &port);
}

/* SYN_SENT -> ESTABLISHED or CLOSE: the end of an active open. */
static __always_inline void on_connect_end(const void *sk, struct sock_state *state, int newstate)
{
	__u64 start = 0, now = bpf_ktime_get_ns();
	struct tcp_counts *counts;
	struct tcp_key key = {};

	if (state && state->series) {
		key = state->key;
		start = state->connect_start_ns;
		state->connect_start_ns = 0;
	} else {
		untracked_key(sk, &key);
	}
	if (!start)
		count(TCP_STAT_NO_CONNECT_START);
	counts = counts_for(&key);
	if (!counts)
		return;
	if (newstate == BPF_TCP_ESTABLISHED) {
		__sync_fetch_and_add(&counts->opens, 1);
		if (start)
			observe(counts->connect_ok, &counts->connect_ok_sum_ns, now - start);
	} else {
		__sync_fetch_and_add(&counts->connect_failures, 1);
		if (start)
			observe(counts->connect_failed, &counts->connect_failed_sum_ns, now - start);
	}
}

/*
 * SYN_RECV -> ESTABLISHED: a passive open, owned by the listener's owner,
 * which the child's entry holds since LISTEN -> SYN_RECV (on_child): the
 * listener is looked up again only for a child without one.
 */
static __always_inline void on_accept(const void *sk, struct sock_state *state)
{
	struct sonde_tuple t = {};
	struct tcp_counts *counts;
	struct sonde_owner *owner;
	struct tcp_key key = {};
	__u64 addr = (__u64)sk;
	__u32 port;

	if (sonde_read_tuple(sk, &t))
		count(TCP_STAT_READ_FAILED);
	/* A child older than the programs was inserted just now (on_unseeded). */
	if (!state)
		state = bpf_map_lookup_elem(&tcp_socks, &addr);
	if (state && state->state.pid) {
		key.pid = state->state.pid;
		key.cgroup_id = state->state.cgroup_id;
		__builtin_memcpy(key.comm, state->state.comm, sizeof(key.comm));
	} else {
		port = t.sport;
		owner = bpf_map_lookup_elem(&tcp_listeners, &port);
		if (owner) {
			key.pid = owner->pid;
			key.cgroup_id = owner->cgroup_id;
			__builtin_memcpy(key.comm, owner->comm, sizeof(key.comm));
		} else {
			count(TCP_STAT_UNTRACKED);
		}
	}
	key.role = TCP_ROLE_SERVER;
	key.port = t.sport;
	fill_peer(&key, &t);
	if (state) {
		state->key = key;
		state->series = 1;
		state->connect_start_ns = 0;
	}
	counts = counts_for(&key);
	if (counts)
		__sync_fetch_and_add(&counts->opens, 1);
}

/* Leaving ESTABLISHED: the connection ends; its smoothed RTT is final. */
static __always_inline void on_end(const void *sk, const struct sock_state *state)
{
	const struct tcp_sock___sonde *tp = sk;
	struct tcp_counts *counts = counts_for_known(sk, state);
	__u32 srtt = 0;

	if (!counts)
		return;
	__sync_fetch_and_add(&counts->closes, 1);
	if (bpf_probe_read_kernel(&srtt, sizeof(srtt), &tp->srtt_us)) {
		count(TCP_STAT_READ_FAILED);
		return;
	}
	/* srtt_us holds 8 x the smoothed RTT in microseconds; 0 = no sample. */
	srtt >>= 3;
	if (srtt)
		observe(counts->rtt, &counts->rtt_sum_ns, (__u64)srtt * 1000);
}

/*
 * One lookup of the socket per change, none for a socket starting: its
 * entry (tcp_maps.h) holds its state key, last state and series key.
 */
SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct trace_event_raw_inet_sock_set_state___sonde *ctx)
{
	const void *sk = ctx->skaddr;
	int oldstate = ctx->oldstate;
	int newstate = ctx->newstate;
	__u64 addr = (__u64)sk;
	struct sock_state *state;

	if (ctx->protocol != SONDE_IPPROTO_TCP)
		return 0;
	if (newstate == BPF_TCP_SYN_SENT) {
		on_connect(sk);
		return 0;
	}
	if (newstate == BPF_TCP_LISTEN) {
		on_listen(sk);
		return 0;
	}
	if (oldstate == BPF_TCP_LISTEN) {
		/* LISTEN -> SYN_RECV is a child socket being cloned from its listener. */
		if (newstate == BPF_TCP_SYN_RECV) {
			on_child(sk);
			return 0;
		}
		if (newstate == BPF_TCP_CLOSE)
			on_unlisten(sk);
	}
	state = bpf_map_lookup_elem(&tcp_socks, &addr);
	if (state)
		/* Read by user space for the sockets-by-state gauge. */
		state->state.state = newstate;
	else if (newstate != BPF_TCP_CLOSE)
		/* A socket in CLOSE is gone (unhashed): it is not counted. */
		on_unseeded(sk, newstate);
	if (oldstate == BPF_TCP_SYN_SENT)
		on_connect_end(sk, state, newstate);
	else if (oldstate == BPF_TCP_SYN_RECV && newstate == BPF_TCP_ESTABLISHED)
		on_accept(sk, state);
	else if (oldstate == BPF_TCP_ESTABLISHED)
		on_end(sk, state);
	if (newstate == BPF_TCP_CLOSE && state)
		forget(addr);
	return 0;
}

/*
 * The other events, one program per tracepoint event class: classes were
 * renamed across kernels, and user space loads the program whose context
 * type the running kernel's BTF has (as disk_latency does).
 */

/* One retransmission of `skb`: as many segments as RetransSegs counts. */
static __always_inline int on_retransmit(const void *sk, const void *skb)
{
	const struct sk_buff___sonde *s = skb;
	const struct tcp_skb_cb___sonde *cb = (const void *)s->cb;
	struct tcp_counts *counts;
	__u16 segs = 1;

	if (bpf_probe_read_kernel(&segs, sizeof(segs), &cb->tcp_gso_segs)) {
		count(TCP_STAT_READ_FAILED);
		segs = 1;
	}
	if (!segs)
		segs = 1;
	counts = counts_for_sock(sk);
	if (counts)
		__sync_fetch_and_add(&counts->retransmits, segs);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_retransmit_skb(struct trace_event_raw_tcp_retransmit_skb___sonde *ctx)
{
	return on_retransmit(ctx->skaddr, ctx->skbaddr);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_retransmit_skb_old(struct trace_event_raw_tcp_event_sk_skb___sonde *ctx)
{
	return on_retransmit(ctx->skaddr, ctx->skbaddr);
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int tcp_retransmit_synack(struct trace_event_raw_tcp_retransmit_synack___sonde *ctx)
{
	struct tcp_counts *counts = counts_for_sock(ctx->skaddr);

	if (counts)
		__sync_fetch_and_add(&counts->retransmits, 1);
	return 0;
}

static __always_inline void count_reset_sent(struct tcp_counts *counts)
{
	if (counts)
		__sync_fetch_and_add(&counts->resets_sent, 1);
}

/*
 * A reset for a packet that matched no socket (a connect to a closed
 * port): the tracepoint gives the reset's tuple, so it is counted as the
 * closed port answering, with no process.
 */
SEC("tracepoint/tcp/tcp_send_reset")
int tcp_send_reset(struct trace_event_raw_tcp_send_reset___sonde *ctx)
{
	/* sockaddr_in / sockaddr_in6: family, port (big endian), address. */
	__u8 src[28] = {}, dst[28] = {};
	struct tcp_key key = {};
	__u16 family;

	if (ctx->skaddr) {
		count_reset_sent(counts_for_sock(ctx->skaddr));
		return 0;
	}
	if (bpf_probe_read_kernel(src, sizeof(src), ctx->saddr) ||
	    bpf_probe_read_kernel(dst, sizeof(dst), ctx->daddr)) {
		count(TCP_STAT_READ_FAILED);
		key.role = TCP_ROLE_UNKNOWN;
		count_reset_sent(counts_for(&key));
		return 0;
	}
	family = src[0] | (src[1] << 8);
	key.role = TCP_ROLE_SERVER;
	key.port = (src[2] << 8) | src[3];
	if (family == SONDE_AF_INET6) {
		key.family = TCP_FAMILY_V6;
		if (track_peer)
			__builtin_memcpy(key.addr, &dst[8], 16);
	} else if (family == SONDE_AF_INET) {
		key.family = TCP_FAMILY_V4;
		if (track_peer)
			__builtin_memcpy(key.addr, &dst[4], 4);
	} else {
		key.role = TCP_ROLE_UNKNOWN;
		key.port = 0;
	}
	count_reset_sent(counts_for(&key));
	return 0;
}

/* Older kernels give no tuple for socketless resets. */
SEC("tracepoint/tcp/tcp_send_reset")
int tcp_send_reset_old(struct trace_event_raw_tcp_event_sk_skb___sonde *ctx)
{
	struct tcp_key key = { .role = TCP_ROLE_UNKNOWN };

	if (ctx->skaddr)
		count_reset_sent(counts_for_sock(ctx->skaddr));
	else
		count_reset_sent(counts_for(&key));
	return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset")
int tcp_receive_reset(struct trace_event_raw_tcp_event_sk___sonde *ctx)
{
	struct tcp_counts *counts = counts_for_sock(ctx->skaddr);

	if (counts)
		__sync_fetch_and_add(&counts->resets_received, 1);
	return 0;
}

/* A dropped packet: counted by reason when it is TCP over IPv4 or IPv6. */
SEC("tracepoint/skb/kfree_skb")
int kfree_skb(struct trace_event_raw_kfree_skb___sonde *ctx)
{
	const struct sk_buff___sonde *skb = ctx->skbaddr;
	/* Host order already: the event stores ntohs(skb->protocol). */
	__u16 proto = ctx->protocol;
	__u32 reason = ctx->reason;
	unsigned char *head;
	__u8 l4 = 0;
	__u16 nh;
	__u64 *value;

	if (proto != 0x0800 && proto != 0x86DD)
		return 0;
	head = BPF_CORE_READ(skb, head);
	nh = BPF_CORE_READ(skb, network_header);
	/* IPv4 protocol at byte 9, IPv6 next header at byte 6. */
	if (bpf_probe_read_kernel(&l4, 1, head + nh + (proto == 0x0800 ? 9 : 6))) {
		count(TCP_STAT_READ_FAILED);
		return 0;
	}
	if (l4 != SONDE_IPPROTO_TCP)
		return 0;
	if (reason >= TCP_DROP_REASONS)
		reason = TCP_DROP_REASONS - 1;
	value = bpf_map_lookup_elem(&tcp_drops, &reason);
	if (value)
		*value += 1;
	return 0;
}
