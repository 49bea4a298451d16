//! `source "offcpu"`: off-CPU profiles, where threads wait and for how
//! long, with user and kernel stacks, sampled in the kernel.
//!
//! The eBPF program ([`bpf`]: `bpf/offcpu.bpf.c` and its loader) runs at
//! every `sched_switch`. When a thread leaves the CPU, one switch-out in
//! each run of N = round(1/`probability`) of that thread is sampled (at a
//! random position in the run): its user and kernel stacks go to a stack
//! map, its state and the time to its entry in a per-thread hash. When it
//! gets a CPU back, the time it was off is added, in the kernel, to
//! (process, state, user stack, kernel stack). Every `interval` the source
//! drains the counts (two maps, switched, so nothing is lost to reading)
//! and emits one [`Profile`](sonde_core::event::Profile) per process and
//! state:
//!
//! - sample type `off_cpu`, unit `nanoseconds`, `period` 1000: each
//!   sample's count is microseconds off CPU, **already multiplied by N**
//!   (the estimate of the whole time, not of the sampled part), so pprof's
//!   `off_cpu/nanoseconds` value (count × period) is nanoseconds and
//!   folded stacks and flame graphs read in µs (as bcc's `offcputime`);
//! - attributes as `profile` (`process.pid`, `process.executable.name`,
//!   `process.executable.path`, `cgroup.path`, node) plus
//!   `sonde.offcpu.state`: `sleeping` (S: waiting for an event),
//!   `uninterruptible` (D: usually I/O), `preempted` (R: runnable, waiting
//!   for a CPU), `idle` (kernel threads' TASK_IDLE), `stopped`, `other`.
//!
//! Stacks are symbolized with `profile`'s machinery (blazesym, the same
//! caches and frame-pointer caveats): the kernel stack leaf is the
//! scheduler (`__schedule`), followed by what blocked (`do_nanosleep`,
//! `pipe_read` …) and the system call; the user stack ends in the libc
//! wrapper or the function that made the call.
//!
//! **Accuracy.** Time off CPU includes the run-queue wait after the wakeup.
//! Sampling every switch-out with probability 1/N is unbiased; because it
//! is one per run of N per thread rather than a coin flip per switch, a
//! thread's estimate has little variance (200 sleeps at N = 10: exactly 20
//! samples). Samples shorter than `min_block_us` are dropped. A thread
//! asleep while the stack maps were reset (when one fills halfway) keeps
//! its time but loses its stacks (`[lost … stack: stack map reset since]`,
//! counted as `reason="stack_expired"`).
//!
//! **Cost.** Every switch runs the program: a hash lookup for the thread
//! leaving and one for the thread arriving; a sampled switch-out also walks
//! two stacks (a few µs). `cargo xtask bench sched` measures it.
//!
//! Minimum kernel 5.5 (BTF): `tp_btf` where the kernel loads it, `raw_tp`
//! otherwise (`SONDE_SCHED_NO_TP_BTF=1` forces it). Needs CAP_BPF,
//! CAP_PERFMON, and CAP_SYS_PTRACE / CAP_SYSLOG to symbolize.

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
#[cfg(test)]
mod tests;

pub use collect::{scaled_units, without_tracing_frames, Collector, PERIOD_NS, SAMPLE_TYPE, SAMPLE_UNIT, STATE};
pub use config::{
    OffcpuSourceConfig, DEFAULT_INTERVAL, DEFAULT_MAX_COUNTS, DEFAULT_MAX_STACKS, DEFAULT_MAX_THREADS,
    DEFAULT_MIN_BLOCK_US, DEFAULT_PROBABILITY,
};
