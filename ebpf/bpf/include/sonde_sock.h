/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * sonde_sock: what tcp.bpf.c and net_flows.bpf.c both need from the kernel's
 * socket structs, declared CO-RE style: only the fields read, with
 * preserve_access_index, so every access is relocated by name against the
 * running kernel's BTF (no vmlinux.h frozen from one kernel). Shared by the
 * BPF programs only; nothing here is mirrored in Rust.
 *
 * Minimum kernel: 5.5 (BTF in sysfs, bpf_probe_read_kernel); the
 * `sock:inet_sock_set_state` tracepoint is 4.16+.
 */
#ifndef SONDE_SOCK_H
#define SONDE_SOCK_H

#include "sonde_slot.h"
#include <bpf/bpf_core_read.h>

#define SONDE_AF_INET 2
#define SONDE_AF_INET6 10
#define SONDE_IPPROTO_TCP 6
#define SONDE_IPPROTO_UDP 17

/* TCP states: linux/bpf.h's BPF_TCP_* equal the kernel's TCP_*. */

struct in6_addr___sonde {
	__u8 bytes[16];
};

struct sock_common___sonde {
	__u32 skc_daddr;
	__u32 skc_rcv_saddr;
	__u16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	unsigned char skc_state;
	struct in6_addr___sonde skc_v6_daddr;
	struct in6_addr___sonde skc_v6_rcv_saddr;
	/* sk_flags (a #define for it). */
	unsigned long skc_flags;
} __attribute__((preserve_access_index));

/*
 * Bit of sk_flags (enum sock_flags, stable since 2.6) that tcp_fin() sets
 * when the peer's FIN is processed. (sk_shutdown cannot tell: close() sets
 * RCV_SHUTDOWN too.)
 */
#define SONDE_SOCK_DONE 1


/*
 * The counters a TCP socket keeps about itself (4.2+; bytes_sent and
 * bytes_retrans 4.19+). bytes_received counts a received FIN as one byte.
 */
struct tcp_sock___sonde {
	__u32 srtt_us;
	__u32 segs_in;
	__u32 segs_out;
	__u32 total_retrans;
	__u64 bytes_received;
	__u64 bytes_sent;
	__u64 bytes_retrans;
} __attribute__((preserve_access_index));

/* sock:inet_sock_set_state, its own event class since 4.16. */
struct trace_event_raw_inet_sock_set_state___sonde {
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 protocol;
} __attribute__((preserve_access_index));

/*
 * Who owns a socket: filled in process context (connect, listen), or by
 * user space from /proc for listeners that existed before load. Mirrored
 * in Rust (ebpf/src/owners.rs, checked against BTF).
 */
struct sonde_owner {
	__u64 cgroup_id;
	__u32 pid;
	__u32 _pad;
	char comm[16];
};

static __always_inline void sonde_owner_now(struct sonde_owner *owner)
{
	owner->pid = bpf_get_current_pid_tgid() >> 32;
	owner->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(owner->comm, sizeof(owner->comm));
}

/* A connection's endpoints as the socket knows them, ports in host order. */
struct sonde_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
};

/*
 * The local and remote address and port of `sk`. IPv4 addresses fill the
 * first 4 bytes. Returns 0, or a negative error when a read failed.
 */
static __always_inline int sonde_read_tuple(const void *sk, struct sonde_tuple *t)
{
	const struct sock_common___sonde *skc = sk;
	__u16 dport_be = 0;
	long err = 0;

	t->family = BPF_CORE_READ(skc, skc_family);
	t->sport = BPF_CORE_READ(skc, skc_num);
	err |= bpf_probe_read_kernel(&dport_be, sizeof(dport_be), &skc->skc_dport);
	t->dport = __builtin_bswap16(dport_be);
	if (t->family == SONDE_AF_INET6) {
		err |= bpf_probe_read_kernel(t->saddr, 16, &skc->skc_v6_rcv_saddr);
		err |= bpf_probe_read_kernel(t->daddr, 16, &skc->skc_v6_daddr);
	} else {
		err |= bpf_probe_read_kernel(t->saddr, 4, &skc->skc_rcv_saddr);
		err |= bpf_probe_read_kernel(t->daddr, 4, &skc->skc_daddr);
	}
	return err ? -1 : 0;
}

#endif
