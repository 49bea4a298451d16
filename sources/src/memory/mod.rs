//! `source "memory"`: memory pressure and allocation patterns, counted in
//! the kernel.
//!
//! **Pressure.** OOM kills come from the raw tracepoint `oom:mark_victim`:
//! on kernels 6.9+ (and backports) it passes the victim's task, and the
//! program reads its pid, name, uid, `oom_score_adj`, its cgroup v2 id and
//! its memory cgroup's page counter (usage and limit at the kill); before
//! 6.9 it passes only the pid, and the cgroups read are those of the task
//! whose allocation failed (inside the cgroup under pressure; the record's
//! `sonde.oom.cgroup_of_victim` says which). User space names the memory
//! cgroup by path in whichever hierarchy holds the controller (v1 on
//! hybrid hosts, v2 elsewhere). Page faults come from the perf software
//! events `page-faults-min`/`-maj` on every CPU — the kernel counts them
//! where it counts a task's `min_flt`/`maj_flt`, so with `period = 1` the
//! totals equal `/proc/PID/stat`'s, except faults taken on a process'
//! behalf through `get_user_pages` (no registers, no perf event). Reclaim
//! stalls come from `vmscan:mm_vmscan_{direct,memcg}_reclaim_{begin,end}`,
//! timed per thread (a stalled task sleeps and may change CPU) and
//! attributed to the stalled task's cgroup.
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
//! | `process_paging_faults_total` | counter, by `process.paging.fault_type` (`minor`, `major`) | faults |
//! | `sonde_memory_page_faults_by_stack_total` | counter, the `top_stacks` stacks per process (`page_faults.stacks`) | faults |
//! | `sonde_memory_reclaim_stall_seconds` | histogram per cgroup, by `sonde.memory.reclaim` (`direct`, `memcg`) | s |
//! | `sonde_memory_oom_kills_total` | counter, by `sonde.memory.cgroup.path` | kills |
//!
//! and a `memory.oom_kill` log record per kill (severity warn), with the
//! victim's `process.pid`, `process.executable.name`, `cgroup.id`, and the
//! fields `sonde.oom.score_adj`, `user.id`, `sonde.memory.cgroup.path`,
//! `sonde.memory.cgroup.controller` (`v1`/`v2`), `sonde.memory.cgroup.limit`
//! and `.usage` (bytes; no limit field when unlimited).
//!
//! Metrics carry `process.pid`, `process.executable.name`, `cgroup.id` (pages) and
//! the node name; the stack gauges add `sonde.memory.stack` (the folded
//! stack, outermost frame first, symbolized with blazesym as `profile`
//! does) and `code.function.name` (the allocator's caller).
//!
//! **Cost.** The page tracepoints cost tens of nanoseconds per event, the
//! fault program about as much per fault at `period = 1` (raise the period
//! on nodes that fault millions of times a second). A
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
pub mod oom;
pub mod pressure;
#[cfg(test)]
mod tests;

pub use collect::{
    Collector, ALLOCATIONS, ALLOCATION_SIZE, FREES, FUNCTION, ORDER, OUTSTANDING_ALLOCATIONS, OUTSTANDING_BYTES,
    PAGES_ALLOCATED, PAGE_ALLOCATIONS, PAGE_FREES, STACK,
};
pub use config::{
    MemorySourceConfig, PageFaults, DEFAULT_INTERVAL, DEFAULT_MAX_ALLOCATIONS, DEFAULT_MAX_TRACKED_PER_PROCESS,
    DEFAULT_TOP_STACKS,
};
