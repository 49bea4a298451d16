/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * runqueue: the structs and constants shared by runqueue.bpf.c and the
 * Rust loader (bpf/abi.rs). The one definition: build.rs turns every
 * `#define NAME <integer>` into a Rust constant, and a Rust test checks the
 * mirrors of the structs against the compiled object's BTF.
 */
#ifndef SONDE_RUNQUEUE_H
#define SONDE_RUNQUEUE_H

/*
 * Run-queue latency, log2 of nanoseconds, the sonde_slot() rule: slot 0
 * holds waits up to 2^10 ns (1.024 µs), slot i up to 2^(10+i), the last
 * one everything above 2^34 ns (17 s).
 */
#define RQ_LATENCY_MIN_SHIFT 10
#define RQ_SLOTS 26

/* Default capacities (entries); user space may override them before load. */
/* Threads with a wait start (every thread that waited; deleted at exit). */
#define RQ_MAX_THREADS 32768
/* cgroups with a histogram. */
#define RQ_MAX_CGROUPS 1024
/* Processes with a histogram (per_process only). */
#define RQ_MAX_PROCESSES 4096
/* Entries of each filter set (pids, cgroup ids). */
#define RQ_MAX_FILTER 4096

/* Indexes of the `rq_stats` per-CPU array: what the programs lost. */
/* `rq_threads` was full: a thread's waits are not measured. */
#define RQ_STAT_THREADS_FULL 0
/* `rq_cgroups` had no room for a new cgroup: its events are not counted. */
#define RQ_STAT_CGROUPS_FULL 1
/* `rq_processes` had no room for a new process: counted for its cgroup only. */
#define RQ_STAT_PROCESSES_FULL 2
#define RQ_STAT_COUNT 3

/* A thread's wait (`rq_threads`, by thread id). */
struct rq_thread {
	/* When it became runnable (bpf_ktime_get_ns); 0: not waiting. */
	__u64 since_ns;
	/* Its cgroup v2 id and process then. */
	__u64 cgroup_id;
	__u32 pid;
	__u32 _pad;
};

/* What is counted per cgroup (`rq_cgroups`) and per process (`rq_processes`). */
struct rq_hist {
	/* Run-queue waits by log2 slot. */
	__u64 slots[RQ_SLOTS];
	/* Sum of the waits, ns. */
	__u64 sum_ns;
	/* Context switches away from the tasks: blocked (voluntary) and preempted. */
	__u64 voluntary;
	__u64 involuntary;
};

/* Key of `rq_processes`. */
struct rq_process_key {
	__u64 cgroup_id;
	__u32 pid;
	__u32 _pad;
};

/* Value of `rq_processes`: the histogram and the name at first sight. */
struct rq_process {
	struct rq_hist hist;
	char comm[16];
};

#endif
