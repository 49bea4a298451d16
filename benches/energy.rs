//! `cargo xtask bench energy` (a bench target: it needs the eBPF objects,
//! which xtask itself must not): what the `energy` program costs per
//! context switch, measured by the kernel (`BPF_ENABLE_STATS`, the counters
//! behind `kernel.bpf_stats_enabled`: run_time_ns / run_cnt), side by side
//! with an empty program on the same tracepoint (the floor: dispatch and
//! the statistics' own clock reads) and with bpftrace summing on-CPU time
//! per pid and cgroup the classic way, in the same run.
//!
//! The workload is a pipe ping-pong between two threads ([`ROUND_TRIPS`]
//! round trips): each one blocks, so every trip is a few context switches.
//! `sched_switch` fires for every process on the machine, so the counts
//! include other work; the cost per switch is what is compared. The tools
//! take turns ([`REPETITIONS`] runs each, alternating which goes first so
//! drift hits both), each freshly loaded so its counters start at zero.
//! Needs root and bpftrace; kernel 5.8+.

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sonde_ebpf::{objects, stats, Object};
use sonde_sources::energy::bpf::Energy;

/// Runs of each tool.
pub const REPETITIONS: usize = 5;
/// Pipe round trips per run.
pub const ROUND_TRIPS: usize = 50_000;

/// The reference: on-CPU time per pid and cgroup by the wall clock between
/// switches, as a bpftrace one-liner would; END clears the maps so exit
/// prints nothing.
const BPFTRACE_SCRIPT: &str = "tracepoint:sched:sched_switch { $s = @start[cpu]; \
     if ($s != 0) { @ns[pid, cgroup] = sum(nsecs - $s); } @start[cpu] = nsecs; } \
     END { clear(@ns); clear(@start); }";

/// One run of one tool.
#[derive(Clone, Debug)]
struct Sample {
    run_time_ns: u64,
    events: u64,
}

impl Sample {
    fn ns_per_event(&self) -> f64 {
        self.run_time_ns as f64 / self.events.max(1) as f64
    }
}

/// Runs the benchmark; writes `bench_energy.md` and `bench_energy.csv` into
/// `out_dir` and returns the markdown table.
pub fn run(out_dir: &Path) -> Result<String> {
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX) != 0 {
        bail!("`cargo xtask bench energy` needs root (it loads BPF programs)");
    }
    if Command::new("bpftrace").arg("--version").output().is_err() {
        bail!("bpftrace is not installed (apt-get install -y bpftrace)");
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let _stats = stats::enable().context("cannot enable BPF run-time statistics (kernel 5.8+)")?;
    workload()?;

    let (mut ours, mut theirs, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..REPETITIONS {
        if rep % 2 == 0 {
            ours.push(run_sonde()?);
            theirs.push(run_bpftrace()?);
        } else {
            theirs.push(run_bpftrace()?);
            ours.push(run_sonde()?);
        }
        floor.push(run_empty()?);
        eprintln!(
            "rep {}: sonde {:.1} ns/switch, bpftrace {:.1} ns/switch, empty program {:.1} ns/switch",
            rep + 1,
            ours[rep].ns_per_event(),
            theirs[rep].ns_per_event(),
            floor[rep].ns_per_event()
        );
    }

    let table = render(&[
        ("sonde energy", &ours),
        ("bpftrace (@[pid, cgroup] = sum(Δnsecs))", &theirs),
        ("empty program (floor)", &floor),
    ]);
    std::fs::write(out_dir.join("bench_energy.md"), &table)?;
    let mut csv = String::from("tool,rep,run_time_ns,events,ns_per_event\n");
    for (tool, samples) in [("sonde", &ours), ("bpftrace", &theirs), ("empty", &floor)] {
        for (rep, s) in samples.iter().enumerate() {
            writeln!(
                csv,
                "{tool},{},{},{},{:.2}",
                rep + 1,
                s.run_time_ns,
                s.events,
                s.ns_per_event()
            )?;
        }
    }
    std::fs::write(out_dir.join("bench_energy.csv"), csv)?;
    Ok(table)
}

/// Two threads pass a byte back and forth through two pipes.
fn workload() -> Result<()> {
    let (mut ping_rx, mut ping_tx) = std::io::pipe()?;
    let (mut pong_rx, mut pong_tx) = std::io::pipe()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut byte = [0u8];
        for _ in 0..ROUND_TRIPS {
            ping_rx.read_exact(&mut byte)?;
            pong_tx.write_all(&byte)?;
        }
        Ok(())
    });
    let mut byte = [7u8];
    for _ in 0..ROUND_TRIPS {
        ping_tx.write_all(&byte)?;
        pong_rx.read_exact(&mut byte)?;
    }
    echo.join().expect("echo thread")?;
    Ok(())
}

fn run_sonde() -> Result<Sample> {
    let programs = Energy::load().context("cannot load energy")?;
    workload()?;
    Ok(sample(
        programs
            .program_stats()
            .into_iter()
            .map(|p| (p.run_time_ns, p.run_count)),
    ))
}

/// The floor: an empty tracepoint program on the same event.
fn run_empty() -> Result<Sample> {
    let mut object = Object::load("probes", objects::PROBES, |_| {}).context("cannot load the empty program")?;
    object.attach_tracepoint("probe_tracepoint", "sched", "sched_switch")?;
    workload()?;
    Ok(sample(
        object.program_stats().into_iter().map(|p| (p.run_time_ns, p.run_count)),
    ))
}

fn sample(programs: impl Iterator<Item = (u64, u64)>) -> Sample {
    let (run_time_ns, events) = programs.fold((0, 0), |(t, n), (pt, pn)| (t + pt, n + pn));
    Sample { run_time_ns, events }
}

fn run_bpftrace() -> Result<Sample> {
    let before: HashSet<u32> = stats::loaded_programs().iter().map(|p| p.id).collect();
    let mut child = Command::new("bpftrace")
        .arg("-e")
        .arg(BPFTRACE_SCRIPT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start bpftrace")?;
    // "Attaching 2 probes..." comes before the attach: wait for it, then for
    // its sched_switch program to be loaded, then a grace period.
    let mut stdout = BufReader::new(child.stdout.take().context("bpftrace stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ids = loop {
        let ids: Vec<u32> = stats::loaded_programs()
            .into_iter()
            .filter(|p| !before.contains(&p.id) && p.name.contains("sched_switch"))
            .map(|p| p.id)
            .collect();
        if !ids.is_empty() {
            break ids;
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("bpftrace did not load its program (first line: {line:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    let (base_time, base_runs) = counts(&ids);
    workload()?;
    let (time, runs) = counts(&ids);
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
    // Only the workload's window: bpftrace ran during its own start too.
    Ok(Sample {
        run_time_ns: time - base_time,
        events: runs - base_runs,
    })
}

/// (run_time_ns, run_count) of the programs `ids`, summed.
fn counts(ids: &[u32]) -> (u64, u64) {
    stats::loaded_programs()
        .into_iter()
        .filter(|p| ids.contains(&p.id))
        .fold((0, 0), |(t, n), p| (t + p.run_time_ns, n + p.run_count))
}

fn render(tools: &[(&str, &Vec<Sample>)]) -> String {
    let mut out = format!(
        "### energy: ns per context switch (kernel run_time_ns / run_cnt)\n\n\
         {REPETITIONS} interleaved runs each; workload {ROUND_TRIPS} pipe round trips between \
         two threads (plus whatever else the machine switched meanwhile).\n\n\
         | tool | min | median | max | switches/run |\n|---|---:|---:|---:|---:|\n"
    );
    for (tool, samples) in tools {
        let (min, median, max) = common::spread(&samples.iter().map(Sample::ns_per_event).collect::<Vec<_>>());
        let events = samples.iter().map(|s| s.events).sum::<u64>() / samples.len().max(1) as u64;
        let _ = writeln!(out, "| {tool} | {min:.1} | {median:.1} | {max:.1} | {events} |");
    }
    out
}

fn main() -> Result<()> {
    let out = std::path::PathBuf::from(common::arg("--out", "target/bench"));
    std::fs::create_dir_all(&out)?;
    let table = run(&out)?;
    println!("{table}");
    std::fs::write(out.join("energy.md"), &table)?;
    Ok(())
}
