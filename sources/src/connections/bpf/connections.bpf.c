// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * connections: an audit of who connects where, who accepts whom, and who
 * listens — each with the process (its pid, name, cgroup, user) — filtered
 * in the kernel.
 *
 *   syscalls:sys_enter_connect          the process filters (cgroup, name);
 *                                       the fd and address kept for the exit
 *                                       (only AF_INET/AF_INET6 addresses)
 *   syscalls:sys_exit_connect           the socket behind the fd: protocol,
 *                                       local address and port (chosen by
 *                                       now), the peer; the CIDR and port
 *                                       policies; sent
 *   syscalls:sys_exit_accept{,4}        the socket behind the returned fd:
 *                                       the accepting process and the peer
 *   sock:inet_sock_set_state (-> LISTEN) listen(), in its caller's context
 *
 * Accepts are taken at the syscall's return, not at the TCP state change:
 * a passive open completes in softirq context, where the current task is
 * whoever the packet interrupted; the accept(2) that takes the connection
 * is the process that owns it. A failed connect has no peer left in its
 * socket (tcp_disconnect clears it): its peer is the address it asked for.
 *
 * Repeats within the dedup window and events over their cgroup's rate are
 * left out too (sonde_rate.h). Every event left out is counted by reason
 * in `cn_stats`; so is each one the ring buffer had no room for. No loops
 * (5.10's verifier), no kprobes.
 * Minimum kernel 5.8 (ring buffer).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "connections.h"
#include "sonde_sock.h"
#include "sonde_fd.h"
#include "sonde_rate.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set from user space before load. */
const volatile __u32 self_pid = 0;
const volatile __u8 use_cgroups = 0;
const volatile __u8 use_binaries = 0;
const volatile __u8 use_allow = 0;
const volatile __u8 use_deny = 0;
const volatile __u8 use_ports = 0;
const volatile __u8 report_tcp = 1;
const volatile __u8 report_udp = 0;
const volatile __u8 report_failed = 1;
/* Repeats of an event within this window are counted, not sent; 0: off. */
const volatile __u64 dedup_ns = 0;
/* Events per second per cgroup; 0: no limit. */
const volatile __u32 rate_per_sec = 0;

#define EINPROGRESS___cn 115
#define EALREADY___cn 114
#define EISCONN___cn 106
#define S_IFMT___cn 00170000
#define S_IFSOCK___cn 0140000

struct cn_pending {
	__u64 uaddr;
	__s64 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CN_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, __u8);
} cn_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CN_MAX_BINARIES);
	__type(key, char[16]);
	__type(value, __u8);
} cn_binaries SEC(".maps");

/* Peers reported (any of these CIDRs), and peers never reported. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, CN_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cn_lpm_key);
	__type(value, __u8);
} cn_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, CN_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cn_lpm_key);
	__type(value, __u8);
} cn_deny SEC(".maps");

/* Service ports reported (host order). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CN_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} cn_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CN_MAX_PENDING);
	__type(key, __u32);
	__type(value, struct cn_pending);
} cn_pending_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, CN_RING_BYTES);
} cn_events SEC(".maps");

SONDE_RATE_MAP(cn_rate, CN_RATE_ENTRIES);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CN_DEDUP_ENTRIES);
	__type(key, struct cn_dedup_key);
	__type(value, __u64);
} cn_dedup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CN_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} cn_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&cn_stats, &stat);

	if (value)
		*value += 1;
}

/* ---- kernel types read by CO-RE (only the fields used) ---- */

struct kuid___cn {
	__u32 val;
};

struct cred___cn {
	struct kuid___cn uid;
} __attribute__((preserve_access_index));

struct task_struct___cn {
	int tgid;
	__u64 start_boottime;
	struct task_struct___cn *real_parent;
	struct task_struct___cn *group_leader;
	const struct cred___cn *cred;
	char comm[16];
} __attribute__((preserve_access_index));

struct inode___cn {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct file___cn {
	struct inode___cn *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct socket___cn {
	void *sk;
} __attribute__((preserve_access_index));

/* A plain __u16 since 5.6 (a bitfield before). */
struct sock___cn {
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct sockaddr_in___cn {
	__u16 family;
	__u16 port;
	__u8 addr[4];
};

struct sockaddr_in6___cn {
	__u16 family;
	__u16 port;
	__u32 flowinfo;
	__u8 addr[16];
};

/* Whether the current process passes the process filters (counted when not). */
static __always_inline int process_passes(void)
{
	if ((bpf_get_current_pid_tgid() >> 32) == self_pid)
		return 0;
	if (use_cgroups) {
		__u64 cgroup = bpf_get_current_cgroup_id();

		if (!bpf_map_lookup_elem(&cn_cgroups, &cgroup)) {
			count(CN_STAT_FILTERED_CGROUP);
			return 0;
		}
	}
	if (use_binaries) {
		char comm[16] = {};

		bpf_get_current_comm(comm, sizeof(comm));
		if (!bpf_map_lookup_elem(&cn_binaries, comm)) {
			count(CN_STAT_FILTERED_BINARY);
			return 0;
		}
	}
	return 1;
}

/* The struct sock behind fd `fd` of the current task, or 0 (not a socket). */
static __always_inline void *fd_sock(__s64 fd)
{
	struct file___cn *file = sonde_fd_file(fd);
	struct socket___cn *sock;
	__u16 mode;

	if (!file)
		return 0;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT___cn) != S_IFSOCK___cn)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

/* Whether the protocol is one reported (counted when not). */
static __always_inline int protocol_passes(__u16 protocol)
{
	if ((protocol == SONDE_IPPROTO_TCP && report_tcp) || (protocol == SONDE_IPPROTO_UDP && report_udp))
		return 1;
	count(CN_STAT_FILTERED_PROTOCOL);
	return 0;
}

/* Whether the service port passes the port policy (counted when not). */
static __always_inline int port_passes(__u16 port)
{
	if (use_ports && !bpf_map_lookup_elem(&cn_ports, &port)) {
		count(CN_STAT_FILTERED_PORT);
		return 0;
	}
	return 1;
}

/* Whether the peer `addr` (of `family`) passes the CIDR policies (counted
 * when not). */
static __always_inline int peer_passes(__u16 family, const __u8 *addr)
{
	struct cn_lpm_key key = { .prefixlen = 128 };

	if (!use_allow && !use_deny)
		return 1;
	if (family == SONDE_AF_INET6) {
		__builtin_memcpy(key.addr, addr, 16);
	} else {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], addr, 4);
	}
	if ((use_allow && !bpf_map_lookup_elem(&cn_allow, &key)) ||
	    (use_deny && bpf_map_lookup_elem(&cn_deny, &key))) {
		count(CN_STAT_FILTERED_CIDR);
		return 0;
	}
	return 1;
}

/*
 * Sends `t` (local = saddr/sport, peer = daddr/dport) as an event of the
 * current process. Not inlined: a function taking `struct cn_event *` puts
 * the struct in the object's BTF, where the Rust mirror is checked.
 */
static __noinline void fill(struct cn_event *e, const struct sonde_tuple *t, __u32 kind, __s32 ret, __u16 protocol)
{
	struct task_struct___cn *task = (void *)bpf_get_current_task();
	struct task_struct___cn *leader = BPF_CORE_READ(task, group_leader);
	__u64 id = bpf_get_current_pid_tgid();

	e->mono_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->start_ns = BPF_CORE_READ(leader, start_boottime);
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->ret = ret;
	e->kind = kind;
	e->family = t->family;
	e->protocol = protocol;
	e->local_port = t->sport;
	e->remote_port = t->dport;
	__builtin_memcpy(e->local_addr, t->saddr, 16);
	__builtin_memcpy(e->remote_addr, t->daddr, 16);
	/* The process' name (its main thread's), as /proc/PID/stat has it. */
	if (bpf_core_read_str(e->comm, sizeof(e->comm), &leader->comm) < 0)
		e->comm[0] = 0;
}

/* Whether the event repeats one sent within the dedup window, or its
 * cgroup is over its rate; counted. A failed connect is never a repeat. */
static __always_inline int left_out(const struct sonde_tuple *t, __u32 kind, __s32 ret, __u16 protocol)
{
	__u64 now = bpf_ktime_get_ns();

	if (dedup_ns && ret >= 0) {
		struct cn_dedup_key key = {
			.pid = bpf_get_current_pid_tgid() >> 32,
			.kind = kind,
			.family = t->family,
			.protocol = protocol,
			.port = kind == CN_CONNECT ? t->dport : t->sport,
		};

		if (kind != CN_LISTEN)
			__builtin_memcpy(key.addr, t->daddr, 16);
		if (sonde_seen_within(&cn_dedup, &key, now, dedup_ns)) {
			count(CN_STAT_DEDUPLICATED);
			return 1;
		}
	}
	if (!sonde_within_rate(&cn_rate, bpf_get_current_cgroup_id(), now, rate_per_sec)) {
		count(CN_STAT_THROTTLED);
		return 1;
	}
	return 0;
}

static __always_inline void send(const struct sonde_tuple *t, __u32 kind, __s32 ret, __u16 protocol)
{
	struct cn_event *e;

	if (left_out(t, kind, ret, protocol))
		return;
	e = bpf_ringbuf_reserve(&cn_events, sizeof(*e), 0);
	if (!e) {
		count(CN_STAT_RING_FULL);
		return;
	}
	fill(e, t, kind, ret, protocol);
	bpf_ringbuf_submit(e, 0);
}

/* ---- connect ---- */

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct sonde_sys_enter *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct cn_pending pending = { .fd = (__s64)ctx->args[0], .uaddr = ctx->args[1] };
	__u16 family = 0;

	/* Not a network address (AF_UNIX, AF_UNSPEC to disconnect): not ours. */
	if (bpf_probe_read_user(&family, sizeof(family), (void *)pending.uaddr) ||
	    (family != SONDE_AF_INET && family != SONDE_AF_INET6))
		return 0;
	if (!process_passes())
		return 0;
	if (bpf_map_update_elem(&cn_pending_calls, &tid, &pending, BPF_ANY))
		count(CN_STAT_PENDING_FULL);
	return 0;
}

/* The peer a connect asked for, from its (user) address. */
static __always_inline int requested_peer(__u64 uaddr, struct sonde_tuple *t)
{
	struct sockaddr_in6___cn sa = {};

	if (bpf_probe_read_user(&sa, sizeof(struct sockaddr_in___cn), (void *)uaddr))
		return -1;
	if (sa.family == SONDE_AF_INET6 && bpf_probe_read_user(&sa, sizeof(sa), (void *)uaddr))
		return -1;
	t->dport = __builtin_bswap16(sa.port);
	__builtin_memset(t->daddr, 0, 16);
	if (sa.family == SONDE_AF_INET6) {
		__builtin_memcpy(t->daddr, sa.addr, 16);
	} else {
		const struct sockaddr_in___cn *in = (const void *)&sa;

		__builtin_memcpy(t->daddr, in->addr, 4);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct sonde_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct sonde_tuple t = {};
	struct cn_pending *pending;
	__s64 ret = ctx->ret;
	__u16 protocol;
	int failed;
	void *sk;

	pending = bpf_map_lookup_elem(&cn_pending_calls, &tid);
	if (!pending)
		return 0;
	/* A connect already under way or made: not a new attempt. */
	if (ret == -EALREADY___cn || ret == -EISCONN___cn)
		goto done;
	failed = ret < 0 && ret != -EINPROGRESS___cn;
	sk = fd_sock(pending->fd);
	if (!sk)
		goto done;
	protocol = BPF_CORE_READ((struct sock___cn *)sk, sk_protocol);
	if (!protocol_passes(protocol))
		goto done;
	if (failed && !report_failed) {
		count(CN_STAT_FILTERED_FAILED);
		goto done;
	}
	if (sonde_read_tuple(sk, &t) || (failed && requested_peer(pending->uaddr, &t))) {
		count(CN_STAT_READ_FAILED);
		goto done;
	}
	if (t.family != SONDE_AF_INET && t.family != SONDE_AF_INET6)
		goto done;
	if (!port_passes(t.dport) || !peer_passes(t.family, t.daddr))
		goto done;
	send(&t, CN_CONNECT, (__s32)ret, protocol);
done:
	bpf_map_delete_elem(&cn_pending_calls, &tid);
	return 0;
}

/* ---- accept ---- */

static __always_inline int accepted(struct sonde_sys_exit *ctx)
{
	struct sonde_tuple t = {};
	__u16 protocol;
	void *sk;

	if (ctx->ret < 0)
		return 0;
	sk = fd_sock(ctx->ret);
	if (!sk)
		return 0;
	if (sonde_read_tuple(sk, &t)) {
		count(CN_STAT_READ_FAILED);
		return 0;
	}
	/* AF_UNIX and the rest: not ours, not counted. */
	if (t.family != SONDE_AF_INET && t.family != SONDE_AF_INET6)
		return 0;
	protocol = BPF_CORE_READ((struct sock___cn *)sk, sk_protocol);
	if (!process_passes() || !protocol_passes(protocol))
		return 0;
	if (!port_passes(t.sport) || !peer_passes(t.family, t.daddr))
		return 0;
	send(&t, CN_ACCEPT, 0, protocol);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct sonde_sys_exit *ctx)
{
	return accepted(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct sonde_sys_exit *ctx)
{
	return accepted(ctx);
}

/* ---- listen ---- */

SEC("tracepoint/sock/inet_sock_set_state")
int set_state(struct trace_event_raw_inet_sock_set_state___sonde *ctx)
{
	struct sonde_tuple t = {};
	const void *sk = ctx->skaddr;

	if (ctx->newstate != BPF_TCP_LISTEN || ctx->protocol != SONDE_IPPROTO_TCP)
		return 0;
	/* listen(2) moves the socket to LISTEN in its caller's context. */
	if (!process_passes() || !protocol_passes(SONDE_IPPROTO_TCP))
		return 0;
	if (sonde_read_tuple(sk, &t)) {
		count(CN_STAT_READ_FAILED);
		return 0;
	}
	if (!port_passes(t.sport))
		return 0;
	__builtin_memset(t.daddr, 0, 16);
	t.dport = 0;
	send(&t, CN_LISTEN, 0, SONDE_IPPROTO_TCP);
	return 0;
}
