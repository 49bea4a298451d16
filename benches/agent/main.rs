//! What the whole agent costs a node, `cargo xtask bench agent`:
//!
//! - **idle node**: CPU % of one core (the agent's user + system time from
//!   its own cgroup v2, all threads, plus the kernel-measured run time of
//!   its eBPF programs) and peak resident memory (VmHWM), for the default
//!   pipeline and for the default pipeline with every other eBPF source on;
//! - **loaded node, the overhead ledger** (`ledger.rs`): nginx (Debian's)
//!   serving a small page to wrk over loopback at fixed rates (keep-alive
//!   at 1k and 10k requests/s, a connection per request at 1k/s), with the
//!   agent off, default, all sources: per request, the agent's CPU, its
//!   eBPF run time and the workload's own CPU, off and on (requests/s only
//!   as context); and a micro workload, `getpgid` and `write` system calls
//!   in a loop pinned to one CPU, ns per call;
//! - **memory under a connection storm** (`burst.rs`): the all-sources
//!   agent's VmHWM before and after wrk opens a connection per request as
//!   fast as it can for `--burst-seconds`, once per round;
//! - **per eBPF program**: ns per run, from `BPF_ENABLE_STATS` during a
//!   separate loaded run (statistics slow every program a little, so they
//!   are off while throughput is measured).
//!
//! Modes take turns, `--rounds` of them (≥ 5), the order rotating each
//! round so drift on a shared machine hits all alike; each on-figure is
//! also given as the median of its per-round ratio to "off".
//! Peers doing the same jobs (perf and bpftrace profiling, bpftrace on the
//! disk and TCP tracepoints) are in the `profile`, `disk` and `net`
//! benchmarks of the same `cargo xtask bench` run.
//!
//! Needs root, nginx and wrk. Writes `agent.md` and `agent.json`.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../net/workload.rs"]
mod workload;

mod burst;
mod ledger;
mod modes;
mod report;
mod syscalls;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use common::arg;
use modes::{Agent, Mode};
use workload::{Connections, Nginx};

/// What one round of one mode measured.
#[derive(Clone, Debug, Default)]
pub struct Idle {
    pub cpu_percent: f64,
    pub bpf_percent: f64,
    pub hwm_mib: f64,
    pub rss_mib: f64,
}

/// One loaded round of one mode.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The ledger: one sample per workload of `common::rate::WORKLOADS`.
    pub ledger: Vec<ledger::Sample>,
    pub getpgid_ns: f64,
    pub write_ns: f64,
}

/// Everything measured, by mode.
#[derive(Debug, Default)]
pub struct Results {
    pub rounds: usize,
    pub idle_seconds: u64,
    pub wrk_seconds: u32,
    pub idle: Vec<(Mode, Vec<Idle>)>,
    pub loaded: Vec<(Mode, Vec<Loaded>)>,
    pub burst_seconds: u32,
    /// One connection storm per round, all sources on.
    pub bursts: Vec<burst::Burst>,
    /// (program, ns per run) per measurement, all sources on.
    pub programs: Vec<(String, Vec<f64>)>,
}

fn main() -> Result<()> {
    let out = PathBuf::from(arg("--out", "target/bench"));
    let rounds: usize = arg("--rounds", "5").parse()?;
    let warmup: u64 = arg("--warmup", "17").parse()?;
    let idle_seconds: u64 = arg("--idle-seconds", "30").parse()?;
    let wrk_seconds: u32 = arg("--wrk-seconds", "5").parse()?;
    let burst_seconds: u32 = arg("--burst-seconds", "15").parse()?;
    // /proc/self belongs to the effective user.
    if std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        != Some("0")
    {
        bail!("`cargo xtask bench agent` needs root (the agent loads eBPF programs)");
    }
    let dir = tempfile::tempdir()?;
    let mut results = Results {
        rounds,
        idle_seconds,
        wrk_seconds,
        burst_seconds,
        idle: Mode::AGENTS.iter().map(|m| (*m, Vec::new())).collect(),
        loaded: Mode::ALL.iter().map(|m| (*m, Vec::new())).collect(),
        ..Results::default()
    };

    // Idle: the agent alone. The warm-up covers the profile source's first
    // interval, which symbolizes every process of the node once.
    for round in 0..rounds {
        for m in rotated(Mode::AGENTS.len(), round) {
            let mode = Mode::AGENTS[m];
            let agent = Agent::start(mode, dir.path())?;
            std::thread::sleep(Duration::from_secs(warmup));
            let stats = sonde_ebpf::stats::enable()?;
            let start = agent.process.read();
            std::thread::sleep(Duration::from_secs(idle_seconds));
            let end = agent.process.read();
            drop(stats);
            let (cpu, bpf) = start.percent_until(&end);
            let (rss, hwm) = agent.process.memory_kib();
            eprintln!(
                "idle round {}: {:<28} {cpu:.3} % CPU + {bpf:.3} % eBPF, VmHWM {:.1} MiB",
                round + 1,
                mode.label(),
                hwm as f64 / 1024.0
            );
            results.idle[m].1.push(Idle {
                cpu_percent: cpu,
                bpf_percent: bpf,
                hwm_mib: hwm as f64 / 1024.0,
                rss_mib: rss as f64 / 1024.0,
            });
            agent.stop();
        }
    }

    // Loaded: nginx + wrk at fixed rates, and the system-call loop.
    let nginx = Nginx::start()?;
    workload::wrk(&nginx, Connections::KeepAlive, 2)?; // warm-up
    let loads = ledger::calibrate(&nginx)?;
    let mut programs: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for round in 0..rounds {
        for m in rotated(Mode::ALL.len(), round) {
            let mode = Mode::ALL[m];
            let agent = match mode {
                Mode::Off => None,
                _ => {
                    let agent = Agent::start(mode, dir.path())?;
                    // The same warm-up as idle: the profile source's first
                    // interval (symbolizing and loading the unwind tables of
                    // every process) otherwise lands in the first ledger
                    // workload (81 µs/request at 1k/s after a 3 s settle).
                    std::thread::sleep(Duration::from_secs(warmup));
                    Some(agent)
                }
            };
            eprintln!("loaded round {}: {}", round + 1, mode.label());
            let ledger = ledger::measure(&nginx, &loads, agent.as_ref().map(|a| &a.process), wrk_seconds)?;
            let (getpgid_ns, write_ns) = syscalls::measure(2_000_000)?;
            eprintln!(
                "loaded round {}: getpgid {getpgid_ns:.0} ns, write {write_ns:.0} ns",
                round + 1
            );
            results.loaded[m].1.push(Loaded {
                ledger,
                getpgid_ns,
                write_ns,
            });
            if let Some(agent) = agent {
                if mode == Mode::All {
                    for (name, ns) in agent.program_costs(&nginx)? {
                        programs.entry(name).or_default().push(ns);
                    }
                }
                agent.stop();
            }
        }
    }
    for round in 0..rounds {
        let burst = burst::measure(&nginx, dir.path(), warmup, burst_seconds)?;
        eprintln!(
            "burst round {}: {:.0} connections, VmHWM {:.1} -> {:.1} MiB, VmRSS {:.1} MiB after",
            round + 1,
            burst.connections,
            burst.hwm_before_mib,
            burst.hwm_after_mib,
            burst.rss_settled_mib
        );
        results.bursts.push(burst);
    }
    drop(nginx);
    results.programs = programs.into_iter().collect();

    let (markdown, figures) = report::render(&results);
    println!("{markdown}");
    common::write_report(&out, "agent", &markdown, &figures, report::details(&results));
    Ok(())
}

/// 0..n, rotated left by `round`.
fn rotated(n: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.rotate_left(round % n);
    order
}
