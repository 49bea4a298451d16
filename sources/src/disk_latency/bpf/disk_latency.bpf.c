// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * disk_latency: block request latency, queue time and size, per device and
 * operation, aggregated in the kernel.
 *
 *   block:block_rq_insert    remember when a request entered the scheduler
 *   block:block_rq_issue     queue time = issue - insert; remember the issue
 *   block:block_rq_complete  latency = complete - issue; sizes, bytes, count
 *
 * and, per device, the queue depth of each stage (inserted, not issued;
 * issued, not completed) as an exact time integral and a maximum per
 * interval (disk_depth, disk_depth_max).
 *
 * Requests are matched by (dev, sector), as the tracepoints carry no request
 * pointer. Histograms live in a per-CPU hash keyed by (dev, op) that is never
 * reset: user space sums the CPUs and reports running totals.
 *
 * Tracepoint contexts are declared below with only the fields read and with
 * preserve_access_index, so CO-RE relocates each field by name against the
 * running kernel's BTF (the event classes were renamed across versions).
 * Minimum kernel: 5.5 (BTF in sysfs, bpf_probe_read_kernel).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "disk_latency.h"
#include "sonde_slot.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Set from user space before load (EbpfLoader::set_global): when 0, the
 * issue program skips the queue-time lookup, which is wasted work when
 * block_rq_insert is not attached.
 */
const volatile __u8 track_queue = 1;

/*
 * Set from user space before load: when 0, no queue depth is kept (the
 * verifier prunes the depth updates).
 */
const volatile __u8 track_depth = 1;

/*
 * Devices (hashed into DISK_INSERT_SLOTS) that ever had a request inserted
 * into an I/O scheduler. Devices without a scheduler (most NVMe, loop)
 * never do, and their issues skip the queue-time lookup, which is most of
 * the issue program's cost. A collision only costs a useless lookup.
 */
#define DISK_INSERT_SLOTS 256
__u8 insert_seen[DISK_INSERT_SLOTS];

static __always_inline __u32 insert_slot(__u32 dev)
{
	return (dev ^ (dev >> 20)) & (DISK_INSERT_SLOTS - 1);
}

/* block_rq_insert, block_rq_issue: event class `block_rq` since 2.6.x. */
struct trace_event_raw_block_rq___sonde {
	__u32 dev;
	__u64 sector;
	char rwbs[8];
} __attribute__((preserve_access_index));

/* block_rq_complete on kernels with block_rq_error: class `block_rq_completion`. */
struct trace_event_raw_block_rq_completion___sonde {
	__u32 dev;
	__u64 sector;
	__u32 nr_sector;
	char rwbs[8];
} __attribute__((preserve_access_index));

/* block_rq_complete on older kernels: its own event, `block_rq_complete`. */
struct trace_event_raw_block_rq_complete___sonde {
	__u32 dev;
	__u64 sector;
	__u32 nr_sector;
	char rwbs[8];
} __attribute__((preserve_access_index));

/* One request in flight, as the tracepoints can name it. */
struct request_key {
	__u32 dev;
	__u32 _pad;
	__u64 sector;
};

struct request_start {
	__u64 ts;
	__u32 op;
	__u32 _pad;
};

/* Issue times. LRU: a request that never completes is evicted, not leaked. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DISK_MAX_IN_FLIGHT);
	__type(key, struct request_key);
	__type(value, struct request_start);
} disk_starts SEC(".maps");

/* Insert times; a request merged away before issue is evicted in time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DISK_MAX_IN_FLIGHT);
	__type(key, struct request_key);
	__type(value, __u64);
} disk_queued SEC(".maps");

/*
 * Not preallocated: a preallocated per-CPU hash costs max_entries x CPUs x
 * 608 bytes up front (60 MB on a 96-CPU node); this one holds only the
 * (device, operation) pairs seen. Entries are created once per pair, so
 * the allocation is off the hot path.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, DISK_MAX_HISTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct disk_key);
	__type(value, struct disk_hist);
} disk_hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DISK_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} disk_stats SEC(".maps");

/* Queue depth per device (see struct disk_depth for the integral). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DISK_MAX_DEVICES);
	__type(key, __u32);
	__type(value, struct disk_depth);
} disk_depth SEC(".maps");

/*
 * The highest depths per device and epoch. User space flips the epoch at
 * each read, then reads and deletes the previous epoch's entries: no write
 * of user space ever races the programs' updates of the current one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * DISK_MAX_DEVICES);
	__type(key, struct disk_depth_max_key);
	__type(value, struct disk_depth_max);
} disk_depth_max SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} disk_epoch SEC(".maps");

/* Inserted into disk_hists for a new key: too big for the 512-byte stack. */
static const struct disk_hist zero_hist;

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&disk_stats, &stat);

	if (value)
		*value += 1;
}

/*
 * The operation from the first two rwbs characters: an optional 'F'
 * (REQ_PREFLUSH), then R, W, D (discard, secure erase), F (flush) or N.
 */
static __always_inline __u32 rwbs_op(const char *rwbs)
{
	char c = rwbs[0];

	if (c == 'F') {
		char next = rwbs[1];

		if (next != 'R' && next != 'W' && next != 'D' && next != 'N')
			return DISK_OP_FLUSH;
		c = next;
	}
	switch (c) {
	case 'R':
		return DISK_OP_READ;
	case 'W':
		return DISK_OP_WRITE;
	case 'D':
		return DISK_OP_DISCARD;
	default:
		return DISK_OP_OTHER;
	}
}

/*
 * rwbs sits at a 2-byte-aligned offset: a direct context load of it is
 * rejected ("dereference of modified ctx ptr"), so it is copied.
 */
static __always_inline __u32 read_op(const void *rwbs)
{
	char buf[2];

	if (bpf_probe_read_kernel(buf, sizeof(buf), rwbs)) {
		count(DISK_STAT_READ_FAILED);
		return DISK_OP_OTHER;
	}
	return rwbs_op(buf);
}

static __always_inline struct disk_hist *hist_for(struct disk_key *key)
{
	struct disk_hist *hist = bpf_map_lookup_elem(&disk_hists, key);
	long err;

	if (hist)
		return hist;
	/* -EEXIST: another CPU created it meanwhile, which is fine. */
	err = bpf_map_update_elem(&disk_hists, key, &zero_hist, BPF_NOEXIST);
	if (err && err != -17)
		count(DISK_STAT_HIST_MAP_FULL);
	return bpf_map_lookup_elem(&disk_hists, key);
}

#define STAGE_QUEUED 0
#define STAGE_ISSUED 1

static __always_inline void raise_max(__u32 dev, int stage, __s64 depth)
{
	__u32 zero = 0, *epoch = bpf_map_lookup_elem(&disk_epoch, &zero);
	struct disk_depth_max_key key = { .dev = dev, .epoch = epoch ? *epoch & 1 : 0 };
	struct disk_depth_max none = {}, *max = bpf_map_lookup_elem(&disk_depth_max, &key);
	long err;

	if (!max) {
		err = bpf_map_update_elem(&disk_depth_max, &key, &none, BPF_NOEXIST);
		if (err && err != -17)
			count(DISK_STAT_DEPTH_MAP_FULL);
		max = bpf_map_lookup_elem(&disk_depth_max, &key);
		if (!max)
			return;
	}
	/* Not atomic: two CPUs raising it at the same instant may keep the lower. */
	if (stage == STAGE_QUEUED) {
		if (depth > max->queued)
			max->queued = depth;
	} else if (depth > max->issued) {
		max->issued = depth;
	}
}

/* A request enters (`enter`) or leaves a stage of device `dev` at `now`. */
static __always_inline void depth_move(__u32 dev, int stage, int enter, __u64 now)
{
	struct disk_depth none = {}, *d = bpf_map_lookup_elem(&disk_depth, &dev);
	__s64 step = enter ? 1 : -1, ts = enter ? (__s64)now : -(__s64)now;
	long err;

	if (!track_depth)
		return;
	if (!d) {
		/* A leave without an enter (the map was full): nothing to undo. */
		if (!enter)
			return;
		err = bpf_map_update_elem(&disk_depth, &dev, &none, BPF_NOEXIST);
		if (err && err != -17)
			count(DISK_STAT_DEPTH_MAP_FULL);
		d = bpf_map_lookup_elem(&disk_depth, &dev);
		if (!d)
			return;
	}
	if (stage == STAGE_QUEUED) {
		__sync_fetch_and_add(&d->queued, step);
		__sync_fetch_and_add(&d->queued_ts_sum, ts);
		if (enter)
			raise_max(dev, stage, d->queued);
	} else {
		__sync_fetch_and_add(&d->issued, step);
		__sync_fetch_and_add(&d->issued_ts_sum, ts);
		if (enter)
			raise_max(dev, stage, d->issued);
	}
}

/*
 * Records a request's entry into `map` at `now` (`value`); true when it is
 * new there, so that a re-insert or re-issue (a requeued request) does not
 * count it twice in the depth.
 */
static __always_inline int enter_map(void *map, struct request_key *key, void *value, __u32 full_stat)
{
	long err = bpf_map_update_elem(map, key, value, BPF_NOEXIST);

	if (!err)
		return 1;
	if (err != -17 || bpf_map_update_elem(map, key, value, BPF_ANY))
		count(full_stat);
	return 0;
}

SEC("tracepoint/block/block_rq_insert")
int block_rq_insert(struct trace_event_raw_block_rq___sonde *ctx)
{
	struct request_key key = { .dev = ctx->dev, .sector = ctx->sector };
	__u64 now = bpf_ktime_get_ns();

	__u32 seen = insert_slot(key.dev);

	if (enter_map(&disk_queued, &key, &now, DISK_STAT_QUEUE_MAP_FULL))
		depth_move(key.dev, STAGE_QUEUED, 1, now);
	/* Written once per device, so the cache line stays shared. */
	if (!insert_seen[seen])
		insert_seen[seen] = 1;
	return 0;
}

SEC("tracepoint/block/block_rq_issue")
int block_rq_issue(struct trace_event_raw_block_rq___sonde *ctx)
{
	struct request_key key = { .dev = ctx->dev, .sector = ctx->sector };
	/* Byte loads at fixed offsets: aligned, so the verifier allows them. */
	char rwbs[2] = { ctx->rwbs[0], ctx->rwbs[1] };
	struct request_start start = { .op = rwbs_op(rwbs) };

	start.ts = bpf_ktime_get_ns();
	if (track_queue && insert_seen[insert_slot(key.dev)]) {
		__u64 *queued = bpf_map_lookup_elem(&disk_queued, &key);

		if (queued) {
			struct disk_key hkey = { .dev = key.dev, .op = start.op };
			__u64 delta = start.ts - *queued;
			struct disk_hist *hist;

			bpf_map_delete_elem(&disk_queued, &key);
			depth_move(key.dev, STAGE_QUEUED, 0, start.ts);
			hist = hist_for(&hkey);
			if (hist) {
				hist->queue[sonde_slot(delta, DISK_LATENCY_MIN_SHIFT, DISK_LATENCY_SLOTS)] += 1;
				hist->queue_sum_ns += delta;
			}
		}
	}
	if (enter_map(&disk_starts, &key, &start, DISK_STAT_START_MAP_FULL))
		depth_move(key.dev, STAGE_ISSUED, 1, start.ts);
	return 0;
}

/* The completion, whichever event class delivered it. */
static __always_inline int on_complete(__u32 dev, __u64 sector, __u32 nr_sector, const void *rwbs)
{
	struct request_key key = { .dev = dev, .sector = sector };
	struct disk_key hkey = { .dev = dev };
	struct request_start *start;
	struct disk_hist *hist;
	__u64 now, bytes, latency = 0;
	int timed = 0;

	now = bpf_ktime_get_ns();
	start = bpf_map_lookup_elem(&disk_starts, &key);
	if (start) {
		hkey.op = start->op;
		latency = now - start->ts;
		timed = 1;
		bpf_map_delete_elem(&disk_starts, &key);
		depth_move(dev, STAGE_ISSUED, 0, now);
	} else {
		/* In flight when we attached, or evicted: counted, not timed. */
		count(DISK_STAT_NO_START);
		hkey.op = read_op(rwbs);
	}
	hist = hist_for(&hkey);
	if (!hist)
		return 0;
	bytes = (__u64)nr_sector << 9;
	hist->requests += 1;
	hist->bytes += bytes;
	hist->size[sonde_slot(bytes, DISK_SIZE_MIN_SHIFT, DISK_SIZE_SLOTS)] += 1;
	if (timed) {
		hist->latency[sonde_slot(latency, DISK_LATENCY_MIN_SHIFT, DISK_LATENCY_SLOTS)] += 1;
		hist->latency_sum_ns += latency;
	}
	return 0;
}

/*
 * Two programs for one tracepoint, one per event class; user space loads
 * the one whose context type the kernel's BTF has. (One program testing
 * bpf_core_type_exists() does not work: clang merges both branches into
 * ctx-pointer arithmetic, which the verifier rejects.)
 */
SEC("tracepoint/block/block_rq_complete")
int block_rq_complete(struct trace_event_raw_block_rq_completion___sonde *ctx)
{
	return on_complete(ctx->dev, ctx->sector, ctx->nr_sector, &ctx->rwbs);
}

SEC("tracepoint/block/block_rq_complete")
int block_rq_complete_old(struct trace_event_raw_block_rq_complete___sonde *ctx)
{
	return on_complete(ctx->dev, ctx->sector, ctx->nr_sector, &ctx->rwbs);
}
