/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The log2 histogram slot rule every source's kernel histograms share
 * (user space mirrors it to name bucket bounds).
 */
#ifndef SONDE_SLOT_H
#define SONDE_SLOT_H

/* floor(log2(v)) for v > 0. */
static __always_inline __u32 sonde_log2(__u64 v)
{
	__u32 r, shift;

	r = (v > 0xFFFFFFFFULL) << 5;
	v >>= r;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

/*
 * The log2 slot of v: slot 0 holds v <= 2^min_shift, slot i holds
 * (2^(min_shift+i-1), 2^(min_shift+i)], the last slot the rest
 * (upper-inclusive, like Prometheus' `le`).
 */
static __always_inline __u32 sonde_slot(__u64 v, __u32 min_shift, __u32 slots)
{
	__u32 s;

	if (v <= (1ULL << min_shift))
		return 0;
	s = sonde_log2(v - 1) - min_shift + 1;
	if (s >= slots)
		s = slots - 1;
	return s;
}

#endif
