/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * memory: the structs and constants shared by memory.bpf.c and the Rust
 * loader (bpf/abi.rs). The one definition: build.rs turns every `#define
 * NAME <integer>` into a Rust constant, and a Rust test checks the mirrors
 * of the structs against the compiled object's BTF.
 */
#ifndef SONDE_MEMORY_H
#define SONDE_MEMORY_H

/* Page orders counted (0..MEM_ORDERS-2); larger orders land in the last. */
#define MEM_ORDERS 12

/* Allocation sizes, log2 of bytes, the sonde_slot() rule: slot 0 <= 8 B. */
#define MEM_SIZE_MIN_SHIFT 3
#define MEM_SIZE_SLOTS 30

/* User stacks kept per allocation site (frames). */
#define MEM_STACK_DEPTH 64

/* Default capacities (entries); user space may override them before load. */
#define MEM_MAX_PAGE_KEYS 8192
#define MEM_MAX_ALLOCS 262144
#define MEM_MAX_STACKS 16384
#define MEM_MAX_TARGETS 1024
/* Default cap of tracked (not yet freed) allocations per process. */
#define MEM_PER_PROCESS_CAP 65536

/* Indexes of the `mem_stats` per-CPU array: what the programs lost. */
/* `mem_pages` had no room for a new process: its page events are not counted. */
#define MEM_STAT_PAGE_KEYS_FULL 0
/* `mem_allocs` had no room: an allocation is counted but not tracked. */
#define MEM_STAT_ALLOCS_FULL 1
/* A process reached its cap of tracked allocations: counted, not tracked. */
#define MEM_STAT_PROCESS_CAP 2
/* bpf_get_stackid failed (stack map full, no frames): tracked without stack. */
#define MEM_STAT_NO_STACK 3
/* `mem_outstanding` had no room for a new stack: tracked without bytes. */
#define MEM_STAT_OUTSTANDING_FULL 4
/* A return probe whose entry was not seen (attached mid-call). */
#define MEM_STAT_NO_ENTRY 5
/* `mem_faults` had no room for a new process (or stack): faults not counted. */
#define MEM_STAT_FAULT_KEYS_FULL 6
/* The OOM ring buffer was full: an OOM kill was not reported (still counted). */
#define MEM_STAT_OOM_LOST 7
/* `mem_reclaim` had no room for a new cgroup: a stall was not counted. */
#define MEM_STAT_RECLAIM_KEYS_FULL 8
/* A reclaim end whose begin was not seen (attached mid-stall). */
#define MEM_STAT_RECLAIM_NO_BEGIN 9
#define MEM_STAT_COUNT 10

/* Page fault kinds, the index of `mem_fault_counts.faults`. */
#define MEM_FAULT_MINOR 0
#define MEM_FAULT_MAJOR 1
#define MEM_FAULT_KINDS 2
#define MEM_MAX_FAULT_KEYS 8192

/* Reclaim kinds: a task reclaiming for the page allocator (direct) or to
 * charge its memory cgroup (memcg). */
#define MEM_RECLAIM_DIRECT 0
#define MEM_RECLAIM_MEMCG 1
/* Reclaim stall durations, log2 of nanoseconds: slot 0 <= 1 us (2^10 ns). */
#define MEM_RECLAIM_MIN_SHIFT 10
#define MEM_RECLAIM_SLOTS 26
#define MEM_MAX_RECLAIM_KEYS 4096
/* Size of the OOM-kill ring buffer (bytes). */
#define MEM_OOM_RING_BYTES 16384

/* Key of `mem_pages`: one process. */
struct mem_page_key {
	__u64 cgroup_id;
	__u32 pid;
	__u32 _pad;
	char comm[16];
};

/* Value of `mem_pages` (per CPU): page allocations and frees by order. */
struct mem_page_counts {
	__u64 allocs[MEM_ORDERS];
	__u64 frees[MEM_ORDERS];
};

/* Value of `mem_procs`: one traced process' user-space allocations. */
struct mem_proc {
	/* Allocations (malloc, calloc, realloc) and frees seen. */
	__u64 allocs;
	__u64 frees;
	/* Bytes allocated (running total). */
	__u64 alloc_bytes;
	/* Allocations tracked now (not yet freed), against the cap. */
	__s64 tracked;
	/* Allocation sizes, log2 slots. */
	__u64 size[MEM_SIZE_SLOTS];
};

/* Key of `mem_outstanding`: a process and an allocation stack. */
struct mem_stack_key {
	__u32 pid;
	/* bpf_get_stackid() of `mem_stacks`; -1 when the stack was lost. */
	__s32 stack_id;
};

/* Value of `mem_outstanding`: bytes and allocations not yet freed. */
struct mem_outstanding {
	__s64 bytes;
	__s64 allocs;
};

/* Key of `mem_faults`: a process, and a user stack when stacks are asked. */
struct mem_fault_key {
	__u64 cgroup_id;
	__u32 pid;
	/* bpf_get_stackid() of `mem_stacks`; -1 without stacks (or lost). */
	__s32 stack_id;
	char comm[16];
};

/* Value of `mem_faults` (per CPU): faults by kind, the sample period added
 * for each sample (so the totals estimate every fault). */
struct mem_fault_counts {
	__u64 faults[MEM_FAULT_KINDS];
};

/* Key of `mem_reclaim`: a cgroup and a reclaim kind. */
struct mem_reclaim_key {
	__u64 cgroup_id;
	__u32 kind;
	__u32 _pad;
};

/* Value of `mem_reclaim` (per CPU): stall durations. */
struct mem_reclaim_hist {
	__u64 slots[MEM_RECLAIM_SLOTS];
	__u64 sum_ns;
};

/* One OOM kill (`oom:mark_victim`), through the `mem_oom` ring buffer. */
struct mem_oom_event {
	/* bpf_ktime_get_ns() at the kill. */
	__u64 mono_ns;
	/* The cgroup v2 id of the task read (see `from_victim`). */
	__u64 cgroup_id;
	/* The id of the memory cgroup of that task (an inode of the memory
	 * hierarchy: v1 or v2), and its page counter at the kill, in pages;
	 * max is PAGE_COUNTER_MAX when unlimited. */
	__u64 memcg_id;
	__u64 memcg_usage_pages;
	__u64 memcg_max_pages;
	/* The victim's process id. */
	__u32 pid;
	/* The victim's uid (from_victim only). */
	__u32 uid;
	/* The victim's oom_score_adj (from_victim only). */
	__s16 oom_score_adj;
	/* 1: the tracepoint passed the victim's task (kernel 6.9+ and
	 * backports), every field is the victim's. 0: only its pid (5.10 ..
	 * 6.8): comm, cgroup and memcg are those of the task that ran out of
	 * memory (the OOM invoker, inside the cgroup under pressure). */
	__u8 from_victim;
	__u8 _pad[5];
	char comm[16];
};

#endif
