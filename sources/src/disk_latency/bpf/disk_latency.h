/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * disk_latency: the structs and constants shared by disk_latency.bpf.c and
 * the Rust loader (ebpf/src/disk_latency/types.rs).
 *
 * This header is the one definition. build.rs turns every `#define NAME
 * <integer>` below into a Rust constant; a test in the Rust crate reads the
 * compiled object's BTF and checks that the Rust mirrors of the structs have
 * the same size and field offsets. Keep every value here a plain integer.
 */
#ifndef SONDE_DISK_LATENCY_H
#define SONDE_DISK_LATENCY_H

/*
 * Latency histograms (request issue -> complete, insert -> issue), log2 of
 * nanoseconds. Slot 0 counts values <= 2^DISK_LATENCY_MIN_SHIFT ns; slot i
 * (1 <= i < DISK_LATENCY_SLOTS - 1) counts values in
 * (2^(MIN_SHIFT + i - 1), 2^(MIN_SHIFT + i)] ns; the last slot counts the rest.
 * Upper-inclusive, like Prometheus' `le`. 2^10 ns ~ 1 us; 2^36 ns ~ 69 s.
 */
#define DISK_LATENCY_MIN_SHIFT 10
#define DISK_LATENCY_SLOTS 28

/* Request-size histogram, log2 of bytes, same slot rule. 2^9 = 512 B. */
#define DISK_SIZE_MIN_SHIFT 9
#define DISK_SIZE_SLOTS 16

/* Operations, from the request's rwbs string. */
#define DISK_OP_READ 0
#define DISK_OP_WRITE 1
#define DISK_OP_FLUSH 2
#define DISK_OP_DISCARD 3
#define DISK_OP_OTHER 4
#define DISK_OP_COUNT 5

/* Indexes of the `disk_stats` per-CPU array: what the programs lost. */
/* A completion whose issue was not seen (in flight at attach, or evicted). */
#define DISK_STAT_NO_START 0
/* `disk_starts` rejected an insert. */
#define DISK_STAT_START_MAP_FULL 1
/* `disk_queued` rejected an insert. */
#define DISK_STAT_QUEUE_MAP_FULL 2
/* `disk_hists` had no room for a new device/operation. */
#define DISK_STAT_HIST_MAP_FULL 3
/* bpf_probe_read_kernel of the rwbs field failed. */
#define DISK_STAT_READ_FAILED 4
/* `disk_depth` or `disk_depth_max` had no room for a new device. */
#define DISK_STAT_DEPTH_MAP_FULL 5
#define DISK_STAT_COUNT 6

/* Capacity of the maps (entries). */
#define DISK_MAX_IN_FLIGHT 10240
#define DISK_MAX_HISTS 4096
#define DISK_MAX_DEVICES 1024

/* Key of `disk_hists`: one device and one operation. */
struct disk_key {
	/* Kernel dev_t: major << 20 | minor. */
	__u32 dev;
	/* DISK_OP_*. */
	__u32 op;
};

/* Value of `disk_hists` (per CPU): everything known about one key. */
struct disk_hist {
	/* Issue -> complete, log2 ns slots. */
	__u64 latency[DISK_LATENCY_SLOTS];
	/* Insert -> issue, log2 ns slots. */
	__u64 queue[DISK_LATENCY_SLOTS];
	/* Completed bytes, log2 slots. */
	__u64 size[DISK_SIZE_SLOTS];
	/* Sum of the latencies in `latency`, ns. */
	__u64 latency_sum_ns;
	/* Sum of the queue times in `queue`, ns. */
	__u64 queue_sum_ns;
	/* Completed requests, timed or not. */
	__u64 requests;
	/* Completed bytes. */
	__u64 bytes;
};

/*
 * Value of `disk_depth` (key: the device's dev_t): requests in each stage
 * now, and the sum of their stage entry times minus their exit times, so
 * that the time integral of the depth up to T is `depth x T - ts_sum`
 * (each request counts T - entry while in the stage, exit - entry once
 * out). Every transition is two atomic adds, with no lock and no
 * read-modify-write race between CPUs.
 */
struct disk_depth {
	/* Inserted into the I/O scheduler, not yet issued. */
	__s64 queued;
	__s64 queued_ts_sum;
	/* Issued to the device, not yet completed. */
	__s64 issued;
	__s64 issued_ts_sum;
};

/* Key of `disk_depth_max`: a device and an interval's epoch (0 or 1). */
struct disk_depth_max_key {
	__u32 dev;
	__u32 epoch;
};

/* Value of `disk_depth_max`: the highest depths seen in an epoch. */
struct disk_depth_max {
	__s64 queued;
	__s64 issued;
};

#endif
