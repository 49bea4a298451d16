//! `source "profile"`: CPU profiles of every process on the node, sampled
//! in the kernel and symbolized in the agent.
//!
//! The eBPF program ([`bpf`]: `bpf/profile.bpf.c` and its loader) runs on a perf event on every online CPU,
//! `frequency_hz` times a second, and counts (process, thread, user stack,
//! kernel stack) in the kernel. Every `interval` the source switches the
//! program to its second set of maps, drains the first, and emits one
//! [`Profile`](sonde_core::event::Profile) per process: its distinct
//! stacks with sample counts, `period` = 1/frequency in nanoseconds, the
//! time range, and attributes `process.pid`, `process.executable.name`,
//! `process.executable.path`, `cgroup.path` and the node name, for
//! enrichment.
//!
//! Symbolization ([`symbolize`]): kernel frames from `/proc/kallsyms`,
//! native frames from ELF symbols and DWARF line info where present, JIT
//! frames from `/tmp/perf-PID.map` read through `/proc/PID/root` (Node
//! `--perf-basic-prof-only-functions`, the JVM with `jcmd PID
//! Compiler.perfmap`; see [`perf_map`]), static functions of stripped
//! binaries from their separate debug files ([`debuginfo`]), CPython
//! 3.8–3.13 frames walked in the kernel and resolved from the process'
//! memory ([`python`]). Results are cached per file content (build id, or
//! device and inode), so a steady state costs little. The program announces
//! each new process on a ring buffer: the source reads its memory maps and
//! opens its files right away, so a process that exits before the interval
//! ends is still symbolized. Frames that cannot be named (a process that
//! exited before it could be read, a stripped binary) are kept as
//! addresses and counted in `sonde_profile_unknown_frames_total{reason}`.
//! A stack whose slot in the kernel's stack map holds another stack goes
//! to a spill map (`sonde_ebpf_stack_spills_total`) rather than being
//! refused for the rest of the interval. Stacks the kernel could not store
//! (collisions in both maps, full maps) are counted in
//! `sonde_ebpf_lost_events_total` / `sonde_ebpf_map_full_total` and appear
//! as a `[lost … stack]` frame, so sample counts stay whole.
//!
//! **Unwinding.** User stacks of the reported processes are walked in BPF
//! with each binary's `.eh_frame` table ([`unwind`], `bpf/unwind_walk.h`;
//! x86-64), so code built without frame pointers gives whole stacks; code
//! without tables (JIT, a process whose tables are not loaded yet) is
//! walked by frame pointers. Every sample's outcome is counted in
//! `sonde_profile_stacks_total{outcome}` ([`unwind::completeness`]).
//! CPython's frames are walked from its thread state ([`python`]) and take
//! the place of the interpreter loop's native frames; other interpreters
//! (Ruby, PHP) show the interpreter's frames unless they write a perf map.
//!
//! Minimum kernel 5.8 (BPF ring buffer) with BTF; needs CAP_BPF and
//! CAP_PERFMON (or CAP_SYS_ADMIN), and CAP_SYS_PTRACE to read other
//! processes' maps and files.

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
pub mod debuginfo;
pub mod filter;
mod frames;
pub mod perf_map;
pub mod procs;
pub mod python;
pub mod run;
pub mod stacks;
pub mod symbolize;
#[cfg(test)]
mod tests;
pub mod unwind;

pub use collect::{Collector, IDLE_COMM, SAMPLE_TYPE, SAMPLE_UNIT, UNKNOWN_FRAMES};
pub use config::{
    ProfileEvent, ProfileSourceConfig, DEFAULT_FREQUENCY_HZ, DEFAULT_INTERVAL, DEFAULT_MAX_STACKS, MAX_FREQUENCY_HZ,
};
pub use symbolize::Symbols;
