/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * offcpu: the structs and constants shared by offcpu.bpf.c and the Rust
 * loader (bpf/abi.rs). The one definition: build.rs turns every `#define
 * NAME <integer>` into a Rust constant, and a Rust test checks the mirrors
 * of the structs against the compiled object's BTF.
 */
#ifndef SONDE_OFFCPU_H
#define SONDE_OFFCPU_H

/* Frames kept per stack (the kernel's PERF_MAX_STACK_DEPTH, as profile). */
#define OFFCPU_STACK_DEPTH 127

/* Default capacities (entries); user space may override them before load. */
/* Threads with sampling state (every thread that left a CPU; deleted at exit). */
#define OFFCPU_MAX_THREADS 32768
/* Distinct stacks per stack map (two maps, one per epoch). */
#define OFFCPU_MAX_STACKS 16384
/* Distinct (process, stacks, state) per interval and counts set. */
#define OFFCPU_MAX_COUNTS 16384

/* Task states, as the samples are labelled. */
#define OFFCPU_STATE_RUNNABLE 0
#define OFFCPU_STATE_SLEEPING 1
#define OFFCPU_STATE_UNINTERRUPTIBLE 2
#define OFFCPU_STATE_IDLE 3
#define OFFCPU_STATE_STOPPED 4
#define OFFCPU_STATE_OTHER 5

/* A stack id that means "stored in a stack map that was reset since". */
#define OFFCPU_STACK_EXPIRED 116

/* Indexes of the `offcpu_stats` per-CPU array. */
/* `offcpu_threads` was full: a thread is not sampled. */
#define OFFCPU_STAT_THREADS_FULL 0
/* A counts map was full: a sample is lost. */
#define OFFCPU_STAT_COUNTS_FULL 1
/* A stack not stored: its bucket held another stack. */
#define OFFCPU_STAT_USER_COLLISION 2
#define OFFCPU_STAT_KERNEL_COLLISION 3
/* A stack not stored: the stack map was full. */
#define OFFCPU_STAT_STACK_MAP_FULL 4
/* A sample whose stacks were in a map reset since: counted, without stacks. */
#define OFFCPU_STAT_STACK_EXPIRED 5
/* Switch-outs sampled (not a loss: how many samples were taken). */
#define OFFCPU_STAT_SAMPLED 6
/* Samples shorter than min_block_ns, dropped (not a loss: the filter). */
#define OFFCPU_STAT_SHORT 7
#define OFFCPU_STAT_COUNT 8

/*
 * `offcpu_control`, written by user space: which counts map the programs
 * add to (switched every interval, so user space drains the other without
 * losing samples), and the stack epoch (which stack map is in use; a new
 * epoch starts when user space resets the other map).
 */
struct offcpu_control {
	__u32 counts_set;
	__u32 epoch;
};

/* Key of the counts maps: one process, state and pair of stacks. */
struct offcpu_key {
	/* Thread group id (the process id). */
	__u32 pid;
	/* OFFCPU_STATE_* of the thread when it left the CPU. */
	__u32 state;
	/* Id in stack map `stack_set`, or -errno (-OFFCPU_STACK_EXPIRED). */
	__s32 user_stack_id;
	__s32 kernel_stack_id;
	/* Which stack map the ids are in (0 or 1: the epoch's parity). */
	__u32 stack_set;
	__u32 _pad;
	/* The thread's comm: names processes that exit before user space looks. */
	char comm[16];
};

/* Value of the counts maps. */
struct offcpu_value {
	/* Time off CPU of the samples, ns (not yet scaled by 1/p). */
	__u64 total_ns;
	/* Samples. */
	__u64 count;
};

#endif
