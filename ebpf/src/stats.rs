//! Kernel-measured run time of BPF programs (`BPF_ENABLE_STATS`, kernel
//! 5.8+; the same counters `kernel.bpf_stats_enabled=1` turns on). For
//! benchmarks: the cost of a program per run, ours or another tool's.

use std::io;
use std::os::fd::OwnedFd;

/// Keeps run-time statistics on while it lives.
#[derive(Debug)]
pub struct StatsGuard(#[allow(dead_code)] OwnedFd);

/// Turns on run-time statistics for every program until the guard drops.
pub fn enable() -> io::Result<StatsGuard> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map(StatsGuard)
        .map_err(|e| io::Error::new(e.io_error.kind(), format!("BPF_ENABLE_STATS: {}", e.io_error)))
}

/// One program loaded in the kernel, by anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedProgram {
    /// Its kernel id.
    pub id: u32,
    /// Its name (at most 15 bytes).
    pub name: String,
    /// Total run time, ns (while stats are on).
    pub run_time_ns: u64,
    /// Number of runs (while stats are on).
    pub run_count: u64,
}

/// Every program loaded in the kernel now.
pub fn loaded_programs() -> Vec<LoadedProgram> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|info| LoadedProgram {
            id: info.id(),
            name: info.name_as_str().unwrap_or("").to_string(),
            run_time_ns: info.run_time().as_nanos() as u64,
            run_count: info.run_count(),
        })
        .collect()
}
