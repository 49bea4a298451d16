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
#define MEM_STAT_COUNT 6

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

#endif
