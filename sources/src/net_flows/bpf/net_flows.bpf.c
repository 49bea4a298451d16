// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * net_flows: one record per network flow, with its process, bytes and
 * packets each way, RTT and retransmits.
 *
 * TCP costs nothing per packet: the socket keeps exact counters itself
 * (tcp_sock.bytes_acked, bytes_received, segs_in/out, total_retrans,
 * srtt_us), so they are read, not counted.
 *
 *   sock:inet_sock_set_state  a flow starts at connect() (the owner is the
 *                             caller) or at a passive open (the owner is the
 *                             listener's), and ends at CLOSE: its record
 *                             goes to the `flow_closed` ring buffer
 *   iter/tcp                  run by user space every so often: a snapshot
 *                             record of every open flow, for interim records
 *
 * UDP has no such counters, so cgroup_skb programs on the cgroup v2 root
 * count it per packet, per socket and peer (a socket may talk to many
 * peers); cgroup/sock_create remembers each UDP socket's owner in socket
 * local storage, freed with the socket.
 *
 * Minimum kernel 5.9 (iter/tcp, bpf_skc_to_tcp_sock, cgroup links 5.7,
 * socket storage from cgroup_skb 5.2).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "sonde_sock.h"
#include "sonde_ring.h"
#include "net_flows.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct tcp_flow {
	struct sonde_owner owner;
	/*
	 * Taken when the flow is established: at CLOSE the local port is
	 * already released (inet_put_port runs before the tracepoint).
	 */
	struct sonde_tuple tuple;
	__u8 direction;
	__u8 _pad;
	__u64 start_ns;
};

_Static_assert(sizeof(struct tcp_flow) == FLOW_TCP_VALUE_SIZE, "FLOW_TCP_VALUE_SIZE");

/* Open TCP flows by socket address. LRU: a flow whose close is missed ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_MAX_TCP);
	__type(key, __u64);
	__type(value, struct tcp_flow);
} flow_tcp SEC(".maps");

/* Listening ports (host order) and who listens. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_MAX_LISTENERS);
	__type(key, __u32);
	__type(value, struct sonde_owner);
} flow_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FLOW_RINGBUF_BYTES);
} flow_closed SEC(".maps");

/* UDP flows. LRU: user space expires idle ones; under pressure the oldest go. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_MAX_UDP);
	__type(key, struct udp_flow_key);
	__type(value, struct udp_flow);
} flow_udp SEC(".maps");

/* Owners of UDP sockets, stored with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sonde_owner);
} flow_udp_owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} flow_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&flow_stats, &stat);

	if (value)
		*value += 1;
}

/* ---- TCP ---- */

static __always_inline void track(__u64 addr, const struct tcp_flow *flow)
{
	if (!bpf_map_update_elem(&flow_tcp, &addr, flow, BPF_NOEXIST)) {
		count(FLOW_STAT_TCP_INSERTS);
		return;
	}
	/* A stale entry for a reused address: replace it, no net insert. */
	bpf_map_update_elem(&flow_tcp, &addr, flow, BPF_ANY);
}

/*
 * The record of `flow`, with the socket's counters now. Not inlined: a
 * function taking `struct flow_record *` puts the struct in the object's
 * BTF, where the Rust mirror's layout test finds it.
 */
static __noinline void fill_record(struct flow_record *rec, const void *sk, const struct tcp_flow *flow,
					__u8 end)
{
	const struct tcp_sock___sonde *tp = sk;
	const struct sock_common___sonde *skc = sk;
	__u64 sent = 0, retrans = 0, flags = 0;
	long err = 0;

	__builtin_memcpy(rec->saddr, flow->tuple.saddr, sizeof(rec->saddr));
	__builtin_memcpy(rec->daddr, flow->tuple.daddr, sizeof(rec->daddr));
	rec->sport = flow->tuple.sport;
	rec->dport = flow->tuple.dport;
	rec->family = flow->tuple.family;
	rec->sock = (__u64)sk;
	rec->start_ns = flow->start_ns;
	rec->end_ns = bpf_ktime_get_ns();
	rec->cgroup_id = flow->owner.cgroup_id;
	rec->pid = flow->owner.pid;
	__builtin_memcpy(rec->comm, flow->owner.comm, sizeof(rec->comm));
	rec->direction = flow->direction;
	rec->end = end;
	err |= bpf_probe_read_kernel(&sent, 8, &tp->bytes_sent);
	err |= bpf_probe_read_kernel(&retrans, 8, &tp->bytes_retrans);
	err |= bpf_probe_read_kernel(&rec->bytes_received, 8, &tp->bytes_received);
	err |= bpf_probe_read_kernel(&rec->packets_sent, 4, &tp->segs_out);
	err |= bpf_probe_read_kernel(&rec->packets_received, 4, &tp->segs_in);
	err |= bpf_probe_read_kernel(&rec->retransmits, 4, &tp->total_retrans);
	err |= bpf_probe_read_kernel(&rec->srtt_us, 4, &tp->srtt_us);
	err |= bpf_probe_read_kernel(&flags, sizeof(flags), &skc->skc_flags);
	if (err)
		count(FLOW_STAT_READ_FAILED);
	/* Payload only: a retransmitted byte once, a received FIN not at all. */
	rec->bytes_sent = sent > retrans ? sent - retrans : 0;
	if (rec->bytes_received && (flags & (1ULL << SONDE_SOCK_DONE)))
		rec->bytes_received -= 1;
	/* srtt_us holds 8 x the smoothed RTT in microseconds. */
	rec->srtt_us >>= 3;
}

/* The flow's tuple, read from the socket. */
static __always_inline void read_tuple(const void *sk, struct tcp_flow *flow)
{
	if (sonde_read_tuple(sk, &flow->tuple))
		count(FLOW_STAT_READ_FAILED);
}

static __always_inline void on_connect(const void *sk)
{
	struct tcp_flow flow = { .direction = FLOW_DIR_CLIENT };

	sonde_owner_now(&flow.owner);
	/* The local port is not chosen yet: it is read when established. */
	read_tuple(sk, &flow);
	flow.start_ns = bpf_ktime_get_ns();
	track((__u64)sk, &flow);
}

/* Addresses and the remote port are set before SYN_SENT; the local port only now. */
static __always_inline void on_established(const void *sk)
{
	const struct sock_common___sonde *skc = sk;
	__u64 addr = (__u64)sk;
	struct tcp_flow *flow = bpf_map_lookup_elem(&flow_tcp, &addr);

	if (flow)
		flow->tuple.sport = BPF_CORE_READ(skc, skc_num);
}

static __always_inline void on_accept(const void *sk)
{
	const struct sock_common___sonde *skc = sk;
	struct tcp_flow flow = { .direction = FLOW_DIR_SERVER };
	__u32 port = BPF_CORE_READ(skc, skc_num);
	struct sonde_owner *owner = bpf_map_lookup_elem(&flow_listeners, &port);

	if (owner)
		flow.owner = *owner;
	else
		count(FLOW_STAT_NO_OWNER);
	read_tuple(sk, &flow);
	flow.start_ns = bpf_ktime_get_ns();
	track((__u64)sk, &flow);
}

static __always_inline void on_listen(const void *sk, int listening)
{
	const struct sock_common___sonde *skc = sk;
	__u32 port = BPF_CORE_READ(skc, skc_num);
	struct sonde_owner owner = {}, *known;

	if (!port)
		return;
	sonde_owner_now(&owner);
	if (listening) {
		bpf_map_update_elem(&flow_listeners, &port, &owner, BPF_ANY);
		return;
	}
	/* Only its own listener: another process may listen on the port (SO_REUSEPORT). */
	known = bpf_map_lookup_elem(&flow_listeners, &port);
	if (known && known->pid == owner.pid)
		bpf_map_delete_elem(&flow_listeners, &port);
}

static __always_inline void on_close(const void *sk, int oldstate)
{
	__u64 addr = (__u64)sk;
	struct tcp_flow *flow = bpf_map_lookup_elem(&flow_tcp, &addr);
	struct flow_record rec = {};
	__u64 wakeup;

	if (!flow)
		return;
	fill_record(&rec, sk, flow, oldstate == BPF_TCP_SYN_SENT ? FLOW_END_FAILED : FLOW_END_CLOSED);
	/* Wake the reader once per threshold crossed, not for every record
	 * above it (sonde_ring.h: that cost ~75 % of this program). */
	wakeup = sonde_ring_wakeup(bpf_ringbuf_query(&flow_closed, BPF_RB_AVAIL_DATA), sizeof(rec) + 8,
				   FLOW_RINGBUF_WAKEUP_BYTES);
	if (bpf_ringbuf_output(&flow_closed, &rec, sizeof(rec), wakeup))
		count(FLOW_STAT_RINGBUF_FULL);
	if (!bpf_map_delete_elem(&flow_tcp, &addr))
		count(FLOW_STAT_TCP_DELETES);
}

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct trace_event_raw_inet_sock_set_state___sonde *ctx)
{
	const void *sk = ctx->skaddr;
	int oldstate = ctx->oldstate;
	int newstate = ctx->newstate;

	if (ctx->protocol != SONDE_IPPROTO_TCP)
		return 0;
	if (newstate == BPF_TCP_SYN_SENT)
		on_connect(sk);
	else if (newstate == BPF_TCP_LISTEN)
		on_listen(sk, 1);
	/* LISTEN -> SYN_RECV is a child socket being cloned from its listener. */
	else if (oldstate == BPF_TCP_LISTEN && newstate == BPF_TCP_CLOSE)
		on_listen(sk, 0);
	else if (oldstate == BPF_TCP_SYN_RECV && newstate == BPF_TCP_ESTABLISHED)
		on_accept(sk);
	else if (oldstate == BPF_TCP_SYN_SENT && newstate == BPF_TCP_ESTABLISHED)
		on_established(sk);
	else if (newstate == BPF_TCP_CLOSE)
		on_close(sk, oldstate);
	return 0;
}

struct seq_file;

struct bpf_iter_meta___sonde {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp___sonde {
	struct bpf_iter_meta___sonde *meta;
	struct sock_common___sonde *sk_common;
} __attribute__((preserve_access_index));

/* A snapshot of every open flow we track; other sockets are skipped. */
SEC("iter/tcp")
int flow_snapshot(struct bpf_iter__tcp___sonde *ctx)
{
	struct sock_common___sonde *skc = ctx->sk_common;
	struct flow_record rec = {};
	struct tcp_flow *flow;
	__u64 addr;

	if (!skc)
		return 0;
	/* Listeners, time-wait and request sockets are never flows: no lookup. */
	switch (skc->skc_state) {
	case BPF_TCP_LISTEN:
	case BPF_TCP_TIME_WAIT:
	case BPF_TCP_NEW_SYN_RECV:
		return 0;
	}
	addr = (__u64)skc;
	flow = bpf_map_lookup_elem(&flow_tcp, &addr);
	/* Full sockets only: time-wait and request sockets have no counters. */
	if (!flow || !bpf_skc_to_tcp_sock(skc))
		return 0;
	fill_record(&rec, skc, flow, FLOW_END_OPEN);
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

/* ---- UDP ---- */

/*
 * Whether a UDP socket created before the programs were attached learns
 * its owner from the task sending on it (in cgroup_skb egress, which runs
 * in the sender's context). 0 where the kernel refuses those helpers to
 * cgroup_skb programs: such sockets then have no owner.
 */
const volatile __u8 learn_owner_on_egress = 1;

SEC("cgroup/sock_create")
int flow_sock_create(struct bpf_sock *sk)
{
	struct sonde_owner *owner;

	if (sk->protocol != SONDE_IPPROTO_UDP)
		return 1;
	owner = bpf_sk_storage_get(&flow_udp_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (owner)
		sonde_owner_now(owner);
	return 1;
}

/*
 * Counts one UDP packet of `skb` (data starts at the IP header). Sends run
 * in the sender's context, so an unknown owner is learnt on egress; a
 * receive runs in softirq, where the current task is anyone.
 */
static __always_inline int count_udp(struct __sk_buff *skb, int egress)
{
	struct udp_flow_key key = {};
	struct udp_flow *flow, fresh = {};
	struct bpf_sock *sk = skb->sk;
	struct sonde_owner *owner;
	__u8 hdr[40];
	__u16 ports[2];
	__u32 l3len, segs;
	__u64 bytes, now;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != SONDE_IPPROTO_UDP)
		return 1;
	if (skb->protocol == __builtin_bswap16(0x0800)) {
		if (bpf_skb_load_bytes(skb, 0, hdr, 20))
			goto unparsed;
		l3len = (hdr[0] & 0xf) * 4;
		key.family = SONDE_AF_INET;
		__builtin_memcpy(key.peer, egress ? &hdr[16] : &hdr[12], 4);
		__builtin_memcpy(fresh.local, egress ? &hdr[12] : &hdr[16], 4);
	} else if (skb->protocol == __builtin_bswap16(0x86DD)) {
		if (bpf_skb_load_bytes(skb, 0, hdr, 40) || hdr[6] != SONDE_IPPROTO_UDP)
			goto unparsed;
		l3len = 40;
		key.family = SONDE_AF_INET6;
		__builtin_memcpy(key.peer, egress ? &hdr[24] : &hdr[8], 16);
		__builtin_memcpy(fresh.local, egress ? &hdr[8] : &hdr[24], 16);
	} else {
		return 1;
	}
	if (l3len < 20 || l3len > 60 || bpf_skb_load_bytes(skb, l3len, ports, sizeof(ports)))
		goto unparsed;
	key.local_port = __builtin_bswap16(egress ? ports[0] : ports[1]);
	key.peer_port = __builtin_bswap16(egress ? ports[1] : ports[0]);
	key.cookie = bpf_get_socket_cookie(skb);
	bytes = skb->len > l3len + 8 ? skb->len - l3len - 8 : 0;
	segs = skb->gso_segs ? skb->gso_segs : 1;
	now = bpf_ktime_get_ns();

	flow = bpf_map_lookup_elem(&flow_udp, &key);
	if (!flow) {
		owner = bpf_sk_storage_get(&flow_udp_owners, sk, 0, egress ? BPF_SK_STORAGE_GET_F_CREATE : 0);
		/* Tested first, so that where it is 0 the verifier drops the
		 * call: kernels before ~6.13 refuse the current-task helpers to
		 * cgroup_skb programs, and user space then loads with 0. */
		if (learn_owner_on_egress && owner && egress && !owner->pid)
			sonde_owner_now(owner);
		if (owner) {
			fresh.pid = owner->pid;
			__builtin_memcpy(fresh.comm, owner->comm, sizeof(fresh.comm));
		}
		fresh.cgroup_id = bpf_sk_cgroup_id(sk);
		fresh.first_ns = now;
		fresh.direction = egress ? FLOW_DIR_CLIENT : FLOW_DIR_SERVER;
		if (!bpf_map_update_elem(&flow_udp, &key, &fresh, BPF_NOEXIST))
			count(FLOW_STAT_UDP_INSERTS);
		flow = bpf_map_lookup_elem(&flow_udp, &key);
		if (!flow)
			return 1;
	}
	flow->last_ns = now;
	if (egress) {
		__sync_fetch_and_add(&flow->bytes_sent, bytes);
		__sync_fetch_and_add(&flow->packets_sent, segs);
	} else {
		__sync_fetch_and_add(&flow->bytes_received, bytes);
		__sync_fetch_and_add(&flow->packets_received, segs);
	}
	return 1;
unparsed:
	count(FLOW_STAT_UDP_UNPARSED);
	return 1;
}

/* Both always let the packet through (return 1): they only count. */
SEC("cgroup_skb/egress")
int flow_udp_egress(struct __sk_buff *skb)
{
	return count_udp(skb, 1);
}

SEC("cgroup_skb/ingress")
int flow_udp_ingress(struct __sk_buff *skb)
{
	return count_udp(skb, 0);
}
