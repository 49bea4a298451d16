//! `source "runqueue"`: run-queue latency and context switches, counted in
//! the kernel.
//!
//! The eBPF programs ([`bpf`]: `bpf/runqueue.bpf.c` and its loader) run at
//! the scheduler tracepoints `sched_wakeup`, `sched_wakeup_new` (a task
//! becomes runnable: its wait starts) and `sched_switch` (`prev` leaves
//! the CPU: a voluntary or involuntary context switch, and if it is still
//! runnable, preempted, its wait starts again; `next` gets the CPU: its
//! wait ends). Waits go into log2 histograms per cgroup (and per process
//! with `per_process`), in the kernel; only the histograms cross to user
//! space, every `interval`:
//!
//! | metric | kind | unit | attributes |
//! |---|---|---|---|
//! | `sonde.scheduler.runqueue.latency` | histogram, 1.024 µs … 17 s | s | `cgroup.id`, `cgroup.path` |
//! | `sonde.scheduler.context_switches` | counter, by `process.context_switch.type` (`voluntary`, `involuntary`) | {switch} | same |
//! | `sonde.process.runqueue.latency` | histogram (`per_process`) | s | + `process.pid`, `process.executable.name` |
//! | `process.context_switches` | counter (`per_process`) | {switch} | same |
//!
//! plus the node name (Prometheus: `sonde_scheduler_runqueue_latency_seconds`,
//! `sonde_scheduler_context_switches_total`, …).
//!
//! **What is measured.** The same intervals as the kernel's schedstat
//! `run_delay` (`/proc/PID/schedstat`, field 2): from the wakeup (or the
//! preemption) to the switch onto a CPU; a task woken while it is still
//! queued keeps its first start. A switch is voluntary when the task
//! blocked, involuntary when it was preempted (or yielded), as the kernel
//! counts `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches`. The
//! filters (`pids`, `cgroups`) apply to the task the event is about (the
//! woken one, not the waker). Waiting tasks are kept in a hash by thread
//! id, not per CPU (tasks migrate), and dropped when a thread exits.
//!
//! **Cost.** Every context switch and wakeup on the node runs a program: a
//! few CO-RE reads, a hash update or delete, one or two histogram updates
//! (atomic adds). `cargo xtask bench sched` measures it per switch.
//!
//! Minimum kernel 5.5 (BTF): `tp_btf` programs where the kernel loads them,
//! `raw_tp` otherwise (`SONDE_SCHED_NO_TP_BTF=1` forces them). Needs
//! CAP_BPF and CAP_PERFMON.

pub mod bpf;
pub mod cgroups;
mod collect;
mod config;
pub mod conformance;
#[cfg(test)]
mod tests;

pub use collect::{
    Collector, CONTEXT_SWITCHES, PROCESS_CONTEXT_SWITCHES, PROCESS_RUNQUEUE_LATENCY, RUNQUEUE_LATENCY, SWITCH_TYPE,
};
pub use config::{
    RunqueueSourceConfig, DEFAULT_INTERVAL, DEFAULT_MAX_CGROUPS, DEFAULT_MAX_PROCESSES, DEFAULT_MAX_THREADS,
};
