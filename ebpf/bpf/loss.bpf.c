// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * loss: a packet dropper for tests, because netem is not available on
 * every kernel. A cgroup_skb ingress program on the cgroup v2 root drops
 * a share of the TCP segments with payload that arrive for one port, as if
 * the network had lost them: the sender sees no ACK and retransmits.
 * (Dropping on egress does not work: TCP sees the local error and sends
 * the data again as new data, not as a retransmission.)
 *
 * Not used by any source; `sonde_ebpf::loss` loads it for tests.
 * Minimum kernel 4.10 (cgroup_skb), 5.7 for bpf_link attachment.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set before load: the destination port (host order) and the drop rate. */
const volatile __u16 port = 0;
const volatile __u32 per_million = 0;

/* [0]: segments dropped, [1]: segments for the port seen. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} loss_counts SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&loss_counts, &index);

	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("cgroup_skb/ingress")
int loss_ingress(struct __sk_buff *skb)
{
	__u8 ip[20], tcp[14];
	__u32 ihl, doff;

	if (skb->protocol != __builtin_bswap16(0x0800))
		return 1;
	if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)) || ip[9] != 6)
		return 1;
	ihl = (ip[0] & 0xf) * 4;
	if (ihl < 20 || ihl > 60 || bpf_skb_load_bytes(skb, ihl, tcp, sizeof(tcp)))
		return 1;
	if (((tcp[2] << 8) | tcp[3]) != port)
		return 1;
	doff = (tcp[12] >> 4) * 4;
	/* Only segments with payload: a lost SYN or pure ACK is another story. */
	if (skb->len <= ihl + doff)
		return 1;
	count(1);
	if (bpf_get_prandom_u32() % 1000000 < per_million) {
		count(0);
		return 0;
	}
	return 1;
}
