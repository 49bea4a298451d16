/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * energy: the structs and constants shared by energy.bpf.c and the Rust
 * loader (ebpf/src/energy/types.rs).
 *
 * This header is the one definition. build.rs turns every `#define NAME
 * <integer>` below into a Rust constant; a test in the Rust crate checks the
 * Rust mirrors of the structs against the compiled object's BTF. Keep every
 * value here a plain integer.
 */
#ifndef SONDE_ENERGY_H
#define SONDE_ENERGY_H

/*
 * Capacity of `energy_tasks` (entries, one per process and cgroup seen).
 * User space deletes the entries of exited processes every interval, so this
 * bounds the processes alive (or exited) within one interval. A process that
 * finds the map full is not accounted, and counted (ENERGY_STAT_MAP_FULL).
 */
#define ENERGY_MAX_TASKS 32768

/*
 * Capacity of `energy_threads` (LRU, one per thread seen): the task-clock
 * reading of each thread at its last switch-out. An evicted thread's next
 * slice is timed by the wall clock instead (ENERGY_STAT_NO_BASELINE).
 */
#define ENERGY_MAX_THREADS 65536

/* Bytes of a process name, as the kernel's TASK_COMM_LEN. */
#define ENERGY_COMM_LEN 16

/* Indexes of the `energy_stats` per-CPU array: what the program lost. */
/* `energy_tasks` had no room for a new process. */
#define ENERGY_STAT_MAP_FULL 0
/* On-CPU nanoseconds of those processes, not attributed to anyone. */
#define ENERGY_STAT_LOST_NS 1
/* The group leader's name could not be read (the thread's is used). */
#define ENERGY_STAT_COMM_FAILED 2
/*
 * A slice of a thread that existed before attach and had no baseline (its
 * first slice, or evicted): timed by the wall clock, steal time included.
 */
#define ENERGY_STAT_NO_BASELINE 3
#define ENERGY_STAT_COUNT 4

/* Key of `energy_tasks`: one process in one cgroup. */
struct energy_key {
	/* Thread-group id (the pid users know); 0 is the idle task. */
	__u32 tgid;
	__u32 _pad;
	/* cgroup v2 id (inode of the cgroup directory). */
	__u64 cgroup_id;
};

/* Value of `energy_threads`, keyed by thread id. */
struct energy_thread {
	/* The thread's se.sum_exec_runtime at its last switch-out, ns. */
	__u64 sum_exec_ns;
	/* Its start_time, so a reused thread id is not taken for it. */
	__u64 start_time;
};

/* Value of `energy_tasks`. */
struct energy_value {
	/* On-CPU time since the program attached, ns, all CPUs and threads. */
	__u64 on_cpu_ns;
	/* The process' (group leader's) name when it was first seen. */
	char comm[ENERGY_COMM_LEN];
};

#endif
