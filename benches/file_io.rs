//! `cargo xtask bench file_io`: what the `file_io` source adds to a read
//! from the page cache, its worst case (the shortest file call there is).
//!
//! The workload is a loop of 4 KiB `pread`s at offset 0 of a cached file
//! ([`CALLS`] per run). Runs alternate: no programs (baseline), then the
//! source loaded (its programs and its path thread), [`REPETITIONS`] times
//! each. Reported: the workload's own ns per call in both cases and the
//! difference, and the kernel's ns per program run (`BPF_ENABLE_STATS`:
//! run_time_ns / run_cnt) for the entry and exit programs. Needs root,
//! kernel 5.8+.

mod common;

use std::fmt::Write as _;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use anyhow::{Context, Result};
use common::Figure;
use sonde_ebpf::stats;
use sonde_sources::file_io::bpf::{FileIoPrograms, Options};

/// Runs of each kind.
const REPETITIONS: usize = 5;
/// Calls per run.
const CALLS: usize = 500_000;

/// The workload: `CALLS` 4 KiB preads from the page cache; ns per call.
fn workload(file: &std::fs::File) -> f64 {
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    for _ in 0..CALLS {
        file.read_at(&mut buf, 0).expect("pread");
    }
    started.elapsed().as_nanos() as f64 / CALLS as f64
}

fn main() -> Result<()> {
    let out = std::path::PathBuf::from(common::arg("--out", "target/bench"));
    let _stats = stats::enable().context("cannot enable BPF run-time statistics (kernel 5.8+)")?;
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let path = dir.path().join("cached");
    std::fs::write(&path, vec![1u8; 1 << 20])?;
    let file = std::fs::File::open(&path)?;
    workload(&file);

    let (mut off, mut on, mut enter_ns, mut exit_ns) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..REPETITIONS {
        off.push(workload(&file));
        let programs = FileIoPrograms::load(Options::default()).context("file_io loads")?;
        on.push(workload(&file));
        for program in programs.program_stats() {
            if program.run_count == 0 {
                continue;
            }
            let ns = program.run_time_ns as f64 / program.run_count as f64;
            match program.name.as_str() {
                "enter_pread64" => enter_ns.push(ns),
                "call_exit_tp" => exit_ns.push(ns),
                _ => {}
            }
        }
        eprintln!(
            "rep {}: {:.0} ns/call without, {:.0} ns/call with the source",
            rep + 1,
            off[rep],
            on[rep]
        );
    }
    let added: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a - b).collect();
    let figures = vec![
        Figure::new("pread 4 KiB, no programs", "ns/call", &off),
        Figure::against("pread 4 KiB, file_io on", "ns/call", &on, &off),
        Figure::new("added per call", "ns/call", &added),
        Figure::new("entry program (pread64)", "ns/run", &enter_ns),
        Figure::new("exit program", "ns/run", &exit_ns),
    ];
    let mut markdown = format!(
        "### file_io: cost on a page-cache read loop\n\n{REPETITIONS} interleaved runs of {CALLS} 4 KiB \
         preads of a cached file, without and with the source loaded.\n\n\
         | figure | min | median | max |\n|---|---:|---:|---:|\n"
    );
    for f in &figures {
        let _ = writeln!(
            markdown,
            "| {} ({}) | {:.0} | {:.0} | {:.0} |",
            f.name, f.unit, f.min, f.median, f.max
        );
    }
    common::write_report(&out, "file_io", &markdown, &figures, serde_json::json!({}));
    println!("{markdown}");
    Ok(())
}
