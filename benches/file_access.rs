//! `cargo xtask bench file_access`: what the `file_access` source adds to
//! an open storm that its path policy filters out (the common case: a
//! policy on `/etc/`, a workload opening its own files).
//!
//! The workload: 2 threads each open and close a file under /var/tmp
//! [`OPENS`] / 2 times. Runs alternate: no programs (baseline), then the
//! source's programs loaded with `path_prefix = ["/etc/"]`, [`REPETITIONS`]
//! times each. Reported: the workload's wall time both ways and the
//! difference in percent, and the kernel's ns per program run
//! (`BPF_ENABLE_STATS`) for the openat entry and the exit. Needs root,
//! kernel 5.8+.

mod common;

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use common::Figure;
use sonde_ebpf::stats;
use sonde_sources::file_access::bpf::{FileAccessPrograms, Policy};

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
    storm(&path);
    let (mut off, mut on, mut enter_ns, mut exit_ns) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..REPETITIONS {
        off.push(storm(&path));
        let programs = FileAccessPrograms::load(&policy).context("file_access loads")?;
        on.push(storm(&path));
        for program in programs.program_stats() {
            if program.run_count == 0 {
                continue;
            }
            let ns = program.run_time_ns as f64 / program.run_count as f64;
            match program.name.as_str() {
                "enter_openat" => enter_ns.push(ns),
                "call_exit_tp" => exit_ns.push(ns),
                _ => {}
            }
        }
        eprintln!(
            "rep {}: {:.3} s without, {:.3} s with the source",
            rep + 1,
            off[rep],
            on[rep]
        );
    }
    let added: Vec<f64> = on.iter().zip(&off).map(|(a, b)| (a / b - 1.0) * 100.0).collect();
    let per_open: Vec<f64> = enter_ns.iter().zip(&exit_ns).map(|(a, b)| a + b).collect();
    let figures = vec![
        Figure::new("open storm, no programs", "s", &off),
        Figure::against("open storm, file_access on (/etc policy)", "s", &on, &off),
        Figure::new("added wall time", "%", &added),
        Figure::new("entry program (openat)", "ns/run", &enter_ns),
        Figure::new("exit program (filtered by path)", "ns/run", &exit_ns),
        Figure::new("eBPF per filtered-out open", "ns", &per_open),
    ];
    let mut markdown = format!(
        "### file_access: cost on an open storm filtered out by the path policy\n\n{REPETITIONS} interleaved \
         runs of {OPENS} opens ({THREADS} threads) of a file outside the policy (`/etc`), without and with \
         the source. Targets: < 5 % added wall time, < 200 ns of eBPF per filtered-out open.\n\n\
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
