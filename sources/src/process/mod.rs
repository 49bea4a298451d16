//! `source "process"`: process lifecycle, with each process' ancestry.
//!
//! The eBPF programs ([`bpf`]: `bpf/process.bpf.c` and its loader) run on
//! the raw tracepoints `sched_process_exec`, `sched_process_fork` and
//! `sched_process_exit` and send records through a ring buffer:
//!
//! - `process.exec` (`Log`): the executable (`process.executable.path`,
//!   resolved from the opened file by a dentry walk, as the process' mount
//!   namespace shows it), argv (`process.command_args`, a JSON array; at
//!   most `max_args_bytes`, a byte-exact prefix flagged
//!   `sonde.process.args_truncated`), `process.working_directory`, real
//!   and effective uid and gid, the login uid, `cgroup.id`,
//!   `process.creation.time`;
//! - `process.exit` (`Log`): only when the whole process ends (its last
//!   thread: `signal->live` is 0 at the tracepoint, since `do_exit`
//!   decrements it first), with `process.exit.code` or
//!   `sonde.process.exit.signal` as wait(2) would report them,
//!   `sonde.process.lifetime_ns` and the last thread (`thread.id`);
//! - `process.fork` (`Log`, with `fork = true`): each new process (threads
//!   are not processes and are left out, as are kernel threads).
//!
//! Every event carries `sonde.process.exec_id` (`node:key_ns:pid`, stable and
//! unique across pid reuse and across execs: see [`ancestry`]), its parent
//! (`process.parent_pid`, `sonde.process.parent.exec_id`,
//! `sonde.process.parent.executable.path`) and the chain of ancestors in
//! `sonde.process.ancestry` (up to `ancestry_depth`), each with its origin:
//! `exec`, `fork`, or `procfs` for processes that predate the agent (read
//! from `/proc` at start; their exits still carry their status). The
//! attributes are those other sources carry (`process.pid`,
//! `process.executable.name`, `process.executable.path`, `cgroup.id`), so
//! `pod_enrich` adds the pod: for a process still alive when the event
//! reaches it, or one it has already seen (a short-lived process gone
//! before its first event reaches `pod_enrich` gets no pod attributes:
//! `pod_enrich` reads `/proc/PID`).
//!
//! `sonde_process_execs_total` counts execs per binary and cgroup every
//! `interval` (bounded by `max_exec_series`).
//!
//! **In the kernel.** Filters on cgroups (and their descendants), on
//! process names, and a per-cgroup exec rate limit drop records before
//! they are sent; a process left out at its exec is left out at its exit
//! too, so execs and exits stay paired. Every drop and loss is counted:
//! `sonde_ebpf_lost_events_total{reason="filtered"|"throttled"|"ringbuf_full"}`,
//! `sonde_ebpf_map_full_total{map="proc_keys"}`,
//! `sonde_ebpf_failed_reads_total{what="kernel:user:argv"}`.
//!
//! **What the hooks cannot see.** Failed execs (no `sched_process_exec`);
//! argv beyond `max_args_bytes` and the environment; the interpreter of a
//! script (the path is the script; its `#!` line is not read); paths whose
//! components exceed 1024 bytes or 40 levels (flagged in the record, cut);
//! processes of other pid namespaces appear with their host pids. A
//! process reparented to init keeps its birth parent in its ancestry.
//!
//! Minimum kernel 5.8 with BTF (ring buffer, `bpf_ktime_get_boot_ns`). No
//! kprobes or fentry. Needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN);
//! CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to read other processes' `/proc`.

pub mod ancestry;
pub mod bpf;
mod collect;
mod config;
pub mod conformance;
pub mod events;
pub mod metrics;
pub mod procfs;
mod run;
#[cfg(test)]
mod tests;

pub use collect::{boottime_ns, cgroup_ids, Collector, DRAIN_LIMIT};
pub use config::{
    ProcessSourceConfig, DEFAULT_ANCESTRY_DEPTH, DEFAULT_CACHE_SIZE, DEFAULT_INTERVAL, DEFAULT_MAX_ARGS_BYTES,
    DEFAULT_MAX_EXEC_SERIES, DEFAULT_MAX_PROCESSES, DEFAULT_RING_BUFFER_BYTES, MAX_ANCESTRY_DEPTH,
};
