//! `source "memory"`: allocation patterns, counted in the kernel.
//!
//! The eBPF programs ([`bpf`]: `bpf/memory.bpf.c` and its loader) count
//! page allocations and frees by order per process from the tracepoints
//! `kmem:mm_page_alloc` and `kmem:mm_page_free` (every event: a per-CPU
//! hash lookup and an add, no sampling, so the totals agree with
//! `/proc/vmstat`'s `pgalloc_*`). For the processes named in `pids` or
//! `comm` only, uprobes on libc's `malloc`, `calloc`, `realloc` and `free`
//! (attached to those processes, not to every user of libc) count
//! allocations, their sizes, and the bytes not yet freed per allocation
//! stack (`bpf_get_stackid` of the user stack at malloc's return: walked by
//! frame pointers, so code built without them shows short stacks). Every
//! `interval` the source emits:
//!
//! | metric | kind | unit |
//! |---|---|---|
//! | `sonde_memory_page_allocations_total`, `sonde_memory_page_frees_total` | counter, by `order` | allocations |
//! | `sonde_memory_pages_allocated_total` | counter | pages |
//! | `sonde_memory_allocations_total`, `sonde_memory_frees_total` | counter (traced processes) | calls |
//! | `sonde_memory_allocation_size_bytes` | histogram (traced processes) | By |
//! | `sonde_memory_outstanding_bytes`, `sonde_memory_outstanding_allocations` | gauge, by stack: the `top_stacks` largest per process | By, allocations |
//!
//! with `process.pid`, `process.executable.name`, `cgroup.id` (pages) and
//! the node name; the stack gauges add `sonde.memory.stack` (the folded
//! stack, outermost frame first, symbolized with blazesym as `profile`
//! does) and `code.function.name` (the allocator's caller).
//!
//! **Cost.** The page tracepoints cost tens of nanoseconds per event. A
//! uprobe costs a trap into the kernel, about 1–3 µs per hit: an
//! allocation is two (entry and return), a free one. That is why user-space
//! tracing is opt-in per process. A page free is counted for the process
//! that ran it (often kswapd or a softirq), not the one that allocated.
//! Each traced process tracks at most `max_tracked_per_process`
//! allocations; more are counted but not attributed (and counted in
//! `sonde_ebpf_lost_events_total{reason="process_cap"}`). Allocations made
//! before tracing started are unknown, so their frees change nothing.
//!
//! Minimum kernel 5.5 with BTF; needs CAP_BPF, CAP_PERFMON and, for other
//! users' processes, CAP_SYS_PTRACE.

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
#[cfg(test)]
mod tests;

pub use collect::{
    Collector, ALLOCATIONS, ALLOCATION_SIZE, FREES, FUNCTION, ORDER, OUTSTANDING_ALLOCATIONS, OUTSTANDING_BYTES,
    PAGES_ALLOCATED, PAGE_ALLOCATIONS, PAGE_FREES, STACK,
};
pub use config::{
    MemorySourceConfig, DEFAULT_INTERVAL, DEFAULT_MAX_ALLOCATIONS, DEFAULT_MAX_TRACKED_PER_PROCESS, DEFAULT_TOP_STACKS,
};
