/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * tcp_events: CO-RE declarations of the tracepoint contexts tcp.bpf.c reads
 * (tcp:* and skb:kfree_skb), only the fields read, one struct per event
 * class: classes were renamed across kernels, and tcp.bpf.c has one
 * program per class; user space loads the one whose context type the
 * running kernel's BTF has. Plus the sk_buff fields the programs read.
 * BPF-only: nothing here is mirrored in Rust.
 */
#ifndef SONDE_TCP_EVENTS_H
#define SONDE_TCP_EVENTS_H

/* tcp_retransmit_skb: its own class since 6.16 (with `err`). */
struct trace_event_raw_tcp_retransmit_skb___sonde {
	const void *skbaddr;
	const void *skaddr;
} __attribute__((preserve_access_index));

/* tcp_retransmit_skb and tcp_send_reset before: class tcp_event_sk_skb. */
struct trace_event_raw_tcp_event_sk_skb___sonde {
	const void *skbaddr;
	const void *skaddr;
} __attribute__((preserve_access_index));

/* tcp_send_reset since 6.10, with the tuple of socketless resets. */
struct trace_event_raw_tcp_send_reset___sonde {
	const void *skaddr;
	__u8 saddr[28];
	__u8 daddr[28];
} __attribute__((preserve_access_index));

/* tcp_receive_reset: class tcp_event_sk since 4.15. */
struct trace_event_raw_tcp_event_sk___sonde {
	const void *skaddr;
} __attribute__((preserve_access_index));

/* tcp_retransmit_synack (4.16+): the listener and the request. */
struct trace_event_raw_tcp_retransmit_synack___sonde {
	const void *skaddr;
} __attribute__((preserve_access_index));

enum skb_drop_reason___sonde {
	SKB_DROP_REASON_NOT_SPECIFIED___sonde = 2,
};

/* kfree_skb with a drop reason (5.17+). */
struct trace_event_raw_kfree_skb___sonde {
	void *skbaddr;
	unsigned short protocol;
	enum skb_drop_reason___sonde reason;
} __attribute__((preserve_access_index));

struct tcp_skb_cb___sonde {
	__u16 tcp_gso_segs;
} __attribute__((preserve_access_index));

struct sk_buff___sonde {
	unsigned char *head;
	__u16 network_header;
	char cb[48];
} __attribute__((preserve_access_index));

#endif
