//! `cargo xtask bench file_access`: what the `file_access` source adds to
//! an open storm that its path policy filters out (the common case: a
//! policy on `/etc/`, a workload opening its own files).
//!
//! The workload: 2 threads each open and close a file under /var/tmp
//! [`OPENS`] / 2 times. Runs alternate, [`REPETITIONS`] times each:
//!
//! - no programs (the baseline);
//! - the floor: an empty program on `syscalls:sys_exit_openat`, what any
//!   tool built on syscall tracepoints pays before doing anything;
//! - the source's exit-only object (kernel 5.15+) with
//!   `path_prefix = ["/etc/"]`;
//! - the source's entry-and-exit object (the one older kernels load), same
//!   policy.
//!
//! Reported: the workload's wall time each way and what each adds in
//! percent, and the kernel's ns per open (`BPF_ENABLE_STATS`: the openat
//! programs' run time per run, summed). Needs root, kernel 5.8+ (5.15+ for
//! the exit-only rows).

mod common;

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use common::Figure;
use sonde_ebpf::aya::programs::TracePoint;
use sonde_ebpf::stats;
use sonde_sources::file_access::bpf::{args_at_exit, FileAccessPrograms, Policy, ENTRY_PROGRAMS_ENV};

const REPETITIONS: usize = 5;
/// Opens per run, all threads.
const OPENS: usize = 1_000_000;
const THREADS: usize = 2;

/// The open storm; its wall time in seconds.
fn storm(path: &std::path::Path) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..OPENS / THREADS {
                    drop(std::fs::File::open(path).expect("open"));
                }
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// eBPF ns per open of the loaded programs: the openat programs' mean run
/// time, summed (entry and exit, or the exit alone).
fn ns_per_open(programs: &FileAccessPrograms) -> f64 {
    programs
        .program_stats()
        .iter()
        .filter(|p| p.run_count > 0 && matches!(p.name.as_str(), "enter_openat" | "call_exit_tp" | "exit_openat"))
        .map(|p| p.run_time_ns as f64 / p.run_count as f64)
        .sum()
}

/// The storm with an empty program on the exit tracepoint: (wall s, ns/run).
fn floor_storm(path: &std::path::Path) -> Result<(f64, f64)> {
    let mut ebpf = sonde_ebpf::aya::Ebpf::load(sonde_ebpf::objects::PROBES).context("the probes object loads")?;
    let program: &mut TracePoint = ebpf
        .program_mut("probe_tracepoint")
        .context("probe_tracepoint")?
        .try_into()?;
    program.load()?;
    program.attach("syscalls", "sys_exit_openat")?;
    let wall = storm(path);
    let info = program.info()?;
    let runs = info.run_count().max(1);
    Ok((wall, info.run_time().as_nanos() as f64 / runs as f64))
}

fn main() -> Result<()> {
    let out = std::path::PathBuf::from(common::arg("--out", "target/bench"));
    let _stats = stats::enable().context("cannot enable BPF run-time statistics (kernel 5.8+)")?;
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let path = dir.path().join("opened");
    std::fs::write(&path, b"x")?;
    let policy = Policy {
        path_prefixes: vec!["/etc".to_string()],
        failed: true,
        dedup_ns: 1_000_000_000,
        rate_per_sec: 1000,
        ..Policy::default()
    };
    let exit_only = args_at_exit();
    storm(&path);
    let (mut off, mut floor, mut floor_ns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut at_exit, mut at_exit_ns, mut both, mut both_ns) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..REPETITIONS {
        off.push(storm(&path));
        let (wall, ns) = floor_storm(&path)?;
        floor.push(wall);
        floor_ns.push(ns);
        if exit_only {
            let programs = FileAccessPrograms::load(&policy).context("file_access loads (exit-only)")?;
            at_exit.push(storm(&path));
            at_exit_ns.push(ns_per_open(&programs));
        }
        std::env::set_var(ENTRY_PROGRAMS_ENV, "1");
        let loaded = FileAccessPrograms::load(&policy).context("file_access loads (entry and exit)");
        std::env::remove_var(ENTRY_PROGRAMS_ENV);
        let programs = loaded?;
        both.push(storm(&path));
        both_ns.push(ns_per_open(&programs));
        drop(programs);
        eprintln!(
            "rep {}: {:.3} s without, {:.3} s floor, {} exit-only, {:.3} s entry and exit",
            rep + 1,
            off[rep],
            floor[rep],
            at_exit.last().map_or("-".to_string(), |s| format!("{s:.3} s")),
            both[rep]
        );
    }
    let added = |on: &[f64]| -> Vec<f64> { on.iter().zip(&off).map(|(a, b)| (a / b - 1.0) * 100.0).collect() };
    let mut figures = vec![
        Figure::new("open storm, no programs", "s", &off),
        Figure::against(
            "open storm, empty program on sys_exit_openat (floor)",
            "s",
            &floor,
            &off,
        ),
        Figure::new("added wall time, floor", "%", &added(&floor)),
        Figure::new("empty program (floor)", "ns/run", &floor_ns),
    ];
    if exit_only {
        figures.extend([
            Figure::against("open storm, file_access exit-only (/etc policy)", "s", &at_exit, &off),
            Figure::new("added wall time, exit-only", "%", &added(&at_exit)),
            Figure::new("eBPF per filtered-out open, exit-only", "ns", &at_exit_ns),
        ]);
    }
    figures.extend([
        Figure::against("open storm, file_access entry and exit (/etc policy)", "s", &both, &off),
        Figure::new("added wall time, entry and exit", "%", &added(&both)),
        Figure::new("eBPF per filtered-out open, entry and exit", "ns", &both_ns),
    ]);
    let mut markdown = format!(
        "### file_access: cost on an open storm filtered out by the path policy\n\n{REPETITIONS} interleaved \
         runs of {OPENS} opens ({THREADS} threads) of a file outside the policy (`/etc`): without programs, \
         with an empty program on the exit tracepoint (the floor of any syscall-tracepoint tool), and with \
         the source's two objects (exit-only, kernel 5.15+; entry and exit, older kernels). Targets: < 5 % \
         added wall time, < 200 ns of eBPF per filtered-out open.\n\n\
         | figure | min | median | max |\n|---|---:|---:|---:|\n"
    );
    for f in &figures {
        let _ = writeln!(
            markdown,
            "| {} ({}) | {:.1} | {:.1} | {:.1} |",
            f.name, f.unit, f.min, f.median, f.max
        );
    }
    common::write_report(&out, "file_access", &markdown, &figures, serde_json::json!({}));
    println!("{markdown}");
    Ok(())
}
