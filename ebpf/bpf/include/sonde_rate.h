/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Rate limits per cgroup and dedup windows, for the audit sources
 * (file_access, connections): a noisy container or a client that connects
 * in a loop must not flood the pipeline, and what is left out is counted
 * by the caller.
 *
 * A rate is kept in one-second windows per cgroup id, in an LRU hash the
 * caller declares with SONDE_RATE_MAP (least recently active cgroups go
 * first when it is full: they start a fresh window, which errs towards
 * reporting). A dedup window remembers when a key was last reported.
 * Counts are not atomic: two CPUs racing in one window may let one event
 * more through, never one fewer.
 */
#ifndef SONDE_RATE_H
#define SONDE_RATE_H

#define SONDE_NS_PER_SEC 1000000000ULL

/* One cgroup's current window. */
struct sonde_rate {
	__u64 window_ns;
	__u64 count;
};

/* Declares `name`, an LRU hash of `entries` cgroups' windows. */
#define SONDE_RATE_MAP(name, entries)                 \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);  \
		__uint(max_entries, entries);         \
		__type(key, __u64);                   \
		__type(value, struct sonde_rate);     \
	} name SEC(".maps")

/*
 * Whether `cgroup` is within `limit` events in the current second, with
 * this one counted against it. `limit` 0: no limit.
 */
static __always_inline int sonde_within_rate(void *map, __u64 cgroup, __u64 now, __u32 limit)
{
	struct sonde_rate fresh = { .window_ns = now, .count = 1 }, *rate;

	if (!limit)
		return 1;
	rate = bpf_map_lookup_elem(map, &cgroup);
	if (!rate || now - rate->window_ns >= SONDE_NS_PER_SEC) {
		bpf_map_update_elem(map, &cgroup, &fresh, BPF_ANY);
		return 1;
	}
	rate->count += 1;
	return rate->count <= limit;
}

/*
 * Whether `key` (in `map`, an LRU hash of key → last report time) was
 * reported less than `window_ns` ago; if not, it is reported now. `window_ns`
 * 0: never a duplicate.
 */
static __always_inline int sonde_seen_within(void *map, const void *key, __u64 now, __u64 window_ns)
{
	__u64 *seen;

	if (!window_ns)
		return 0;
	seen = bpf_map_lookup_elem(map, key);
	if (seen && now - *seen < window_ns)
		return 1;
	bpf_map_update_elem(map, key, &now, BPF_ANY);
	return 0;
}

#endif
