/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * When a ring-buffer record wakes user space. A wakeup is an irq_work, a
 * self-IPI: on a VM an exit to the hypervisor of several microseconds.
 * Waking on every record while more than a mark waits (what
 * `avail >= mark` does) costs one such interrupt per record for as long as
 * the reader is late, so the cost grows exactly when the node is busiest:
 * measured at ~75 % of net_flows' run time and ~80 % of protocols' when
 * their readers lagged. Only the record that takes what waits past a
 * multiple of `mark` wakes the reader; the records after it wait for the
 * reader already woken, or for its drain timer (every source has one).
 * Two CPUs racing past a mark may both miss it: the next mark or the timer
 * picks them up.
 */
#ifndef SONDE_RING_H
#define SONDE_RING_H

/* The flags for a record of `size` bytes sent when `avail` bytes wait. */
static __always_inline __u64 sonde_ring_wakeup(__u64 avail, __u64 size, __u64 mark)
{
	/* BPF division by 0 gives 0: a 0 mark never wakes (the timer does). */
	return avail / mark != (avail + size) / mark ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

#endif
