/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * profile: the structs and constants shared by profile.bpf.c and the Rust
 * loader (ebpf/src/profile/types.rs).
 *
 * This header is the one definition. build.rs turns every `#define NAME
 * <integer>` below into a Rust constant; a test in the Rust crate reads the
 * compiled object's BTF and checks that the Rust mirror of `profile_key`
 * has the same size and field offsets. Keep every value here a plain integer.
 */
#ifndef SONDE_PROFILE_H
#define SONDE_PROFILE_H

/*
 * Frames kept per stack: the kernel's own limit (PERF_MAX_STACK_DEPTH,
 * sysctl kernel.perf_event_max_stack defaults to it). A stack map value is
 * this many u64 instruction pointers.
 */
#define PROFILE_STACK_DEPTH 127

/*
 * Default capacity of each stack map (distinct stacks per interval, per
 * set). The kernel rounds it up to a power of two; user space may change it
 * before load (`max_stacks`), at 1 KiB of kernel memory per entry and set.
 * With user stacks walked by profile_unwind into the unwound maps, these
 * hold kernel stacks, and user stacks of processes without tables (yet).
 *
 * A stack map keeps one stack per hash bucket, and a stack whose bucket is
 * taken is refused for the rest of the interval, however hot it is. Such a
 * stack goes to the set's spill map instead (PROFILE_STAT_SPILLED), whose
 * ids carry PROFILE_SPILL_BIT. Only when its spill bucket is taken too is
 * it lost (PROFILE_STAT_*_COLLISION).
 */
#define PROFILE_MAX_STACKS 2048

/* Capacity of each spill map: stacks that collided in the stack map. */
#define PROFILE_MAX_SPILL_STACKS 2048

/* Set in a stack id that refers to the spill map (ids are below 2^30). */
#define PROFILE_SPILL_BIT 1073741824

/* Capacity of each counts map: distinct (process, thread, stacks) per interval. */
#define PROFILE_MAX_COUNTS 16384

/* Processes remembered as already announced to user space (LRU). */
#define PROFILE_MAX_KNOWN_PIDS 8192

/*
 * Samples of a process before its unwind tables are loaded: its sample
 * that makes this many is announced again, with PROFILE_ANNOUNCE_UNWIND.
 * Loading a process' tables costs the agent reading its maps, compiling
 * the CFI of files not seen before and writing their rows into the pool;
 * a build runs thousands of processes that live a few samples (compiler
 * drivers, shells, build scripts), and their stacks gain little from it.
 * Until then a process' stacks are walked by frame pointers; at 99 Hz a
 * busy thread reaches the count in 80 ms.
 */
#define PROFILE_UNWIND_AFTER_SAMPLES 8

/* Set in an announced pid: the process reached PROFILE_UNWIND_AFTER_SAMPLES. */
#define PROFILE_ANNOUNCE_UNWIND 2147483648

/* Bytes of the ring buffer announcing new processes (a power of two, >= page). */
#define PROFILE_NEW_PIDS_BYTES 65536

/*
 * Indexes of the `profile_stats` per-CPU array: running totals since load.
 */
/* Every run of the program (every sample, idle ones included). */
#define PROFILE_STAT_SAMPLES 0
/* Samples of the idle task, not recorded (include_idle = 0). */
#define PROFILE_STAT_IDLE 1
/* A user stack not stored: its buckets held other stacks (stack and spill map). */
#define PROFILE_STAT_USER_COLLISION 2
/* A kernel stack not stored: its buckets held other stacks (stack and spill map). */
#define PROFILE_STAT_KERNEL_COLLISION 3
/* A stack not stored: the stack map had no free entry. */
#define PROFILE_STAT_STACK_MAP_FULL 4
/* A sample lost: the counts map was full. */
#define PROFILE_STAT_COUNTS_FULL 5
/* A new process not announced: the ring buffer was full or busy. */
#define PROFILE_STAT_NOTIFY_LOST 6
/* A stack stored in the spill map: its stack map bucket held another stack. */
#define PROFILE_STAT_SPILLED 7
/* An unwound user stack not stored: the unwound stack map was full. */
#define PROFILE_STAT_UNWOUND_FULL 8
/* A tail call into the unwinder failed (the user stack was walked by frame pointers). */
#define PROFILE_STAT_TAIL_CALL_FAILED 9
/*
 * A sample whose walk spanned a switch of map sets: recorded whole in the
 * set it started in (not a loss; shows how often the switch's grace matters).
 */
#define PROFILE_STAT_SET_SWITCHED 10
#define PROFILE_STAT_COUNT 11

/* Length of a task's comm, with its NUL (TASK_COMM_LEN). */
#define PROFILE_COMM_LEN 16

/*
 * Key of the counts maps: one process, thread and pair of stacks. A stack
 * id below zero is the negative errno bpf_get_stackid() returned: -EFAULT
 * (14) when there is no such stack (a kernel thread has no user stack, a
 * sample in user mode no kernel stack), -EEXIST (17) on a collision,
 * -ENOMEM (12) when the stack map is full.
 */
struct profile_key {
	/* Thread group id: the process id users know. 0 for the idle task. */
	__u32 pid;
	/* Thread id. */
	__u32 tid;
	/* Id in the active stack map (or spill map, with PROFILE_SPILL_BIT), or -errno. */
	__s32 user_stack_id;
	/* Id in the active stack map (or spill map, with PROFILE_SPILL_BIT), or -errno. */
	__s32 kernel_stack_id;
	/* The thread's comm: names processes that exit before user space looks. */
	char comm[PROFILE_COMM_LEN];
	/* Hash of the unwound user stack (user_stack_id -UNWIND_STACK_ID), else 0. */
	__u64 user_stack_hash;
	/* The Python stack in the set's pystacks map (python.h), or PYTHON_STACK_*. */
	__u64 python_stack_id;
	/* Why the user stack ends: UNWIND_OUTCOME_* (unwind.h). */
	__u8 unwind_outcome;
	__u8 pad[7];
};

#endif
