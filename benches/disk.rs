//! `cargo xtask bench disk` (a bench target: it needs the eBPF objects,
//! which xtask itself must not, so that xtask builds before clang exists): what the `disk_latency` programs cost per
//! block event, measured by the kernel (`BPF_ENABLE_STATS`, the counters
//! behind `kernel.bpf_stats_enabled`: run_time_ns / run_cnt), side by side
//! with bpftrace doing the same issue → complete histogram on the same
//! tracepoints, on the same workload, in the same run.
//!
//! The workload is O_DIRECT 4 KiB writes then reads on a loop device made
//! for the run, so every request is one issue and one complete event. The
//! two tools take turns ([`REPETITIONS`] each, alternating which goes
//! first so drift hits both), each freshly loaded so its counters start at
//! zero. Needs root, bpftrace and losetup; kernel 5.8+.

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sonde_ebpf::testing::{direct_io, LoopDevice};
use sonde_ebpf::{objects, stats, Object};
use sonde_sources::disk_latency::bpf::{DiskLatency, Options};

/// Runs of each tool.
pub const REPETITIONS: usize = 5;
/// Requests per run: half writes, half reads, 4 KiB each.
pub const REQUESTS: usize = 20_000;
/// The target from the issue: at most this many ns per event.
pub const TARGET_NS: f64 = 60.0;

/// The reference: the classic bpftrace latency histogram on the same tracepoints.
const BPFTRACE_SCRIPT: &str = "tracepoint:block:block_rq_issue { @start[args->dev, args->sector] = nsecs; } \
     tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/ { \
       @ns = hist(nsecs - @start[args->dev, args->sector]); delete(@start[args->dev, args->sector]); }";

/// One run of one tool.
#[derive(Clone, Debug)]
struct Sample {
    run_time_ns: u64,
    events: u64,
    /// (program, ns per run) for each program.
    programs: Vec<(String, f64)>,
}

impl Sample {
    fn ns_per_event(&self) -> f64 {
        self.run_time_ns as f64 / self.events.max(1) as f64
    }
}

/// Runs the benchmark; writes `bench_disk.md` and `bench_disk.csv` into
/// `out_dir` and returns the markdown table.
pub fn run(out_dir: &Path) -> Result<String> {
    // /proc/self belongs to the effective user.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX) != 0 {
        bail!("`cargo xtask bench disk` needs root (it loads BPF programs and creates a loop device)");
    }
    if Command::new("bpftrace").arg("--version").output().is_err() {
        bail!("bpftrace is not installed (apt-get install -y bpftrace)");
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let dev = LoopDevice::create(256 << 20).context("cannot create a loop device")?;
    let _stats = stats::enable().context("cannot enable BPF run-time statistics (kernel 5.8+)")?;
    // Warm the device's page cache path once, outside the measurements.
    workload(&dev)?;

    let (mut ours, mut theirs, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..REPETITIONS {
        if rep % 2 == 0 {
            ours.push(run_sonde(&dev)?);
            theirs.push(run_bpftrace(&dev)?);
        } else {
            theirs.push(run_bpftrace(&dev)?);
            ours.push(run_sonde(&dev)?);
        }
        floor.push(run_empty(&dev)?);
        eprintln!(
            "rep {}: sonde {:.1} ns/event, bpftrace {:.1} ns/event, empty program {:.1} ns/event",
            rep + 1,
            ours[rep].ns_per_event(),
            theirs[rep].ns_per_event(),
            floor[rep].ns_per_event()
        );
    }

    let table = render(
        &[
            ("sonde disk_latency", &ours),
            ("bpftrace (issue→complete hist)", &theirs),
            ("empty program (floor)", &floor),
        ],
        &dev.name,
    );
    std::fs::write(out_dir.join("bench_disk.md"), &table)?;
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
    std::fs::write(out_dir.join("bench_disk.csv"), csv)?;
    Ok(table)
}

fn workload(dev: &LoopDevice) -> Result<()> {
    direct_io(&dev.path, true, 4096, REQUESTS / 2).context("O_DIRECT writes")?;
    direct_io(&dev.path, false, 4096, REQUESTS / 2).context("O_DIRECT reads")?;
    Ok(())
}

fn run_sonde(dev: &LoopDevice) -> Result<Sample> {
    let programs = DiskLatency::load(Options::default()).context("cannot load disk_latency")?;
    workload(dev)?;
    Ok(sample(
        programs
            .program_stats()
            .into_iter()
            .map(|p| (p.name, p.run_time_ns, p.run_count)),
    ))
}

/// The floor: an empty tracepoint program on both events, which costs
/// only the tracepoint's BPF dispatch and the statistics' own clock reads.
fn run_empty(dev: &LoopDevice) -> Result<Sample> {
    let mut object = Object::load("probes", objects::PROBES, |_| {}).context("cannot load the empty program")?;
    for event in ["block_rq_issue", "block_rq_complete"] {
        object.attach_tracepoint("probe_tracepoint", "block", event)?;
    }
    workload(dev)?;
    Ok(sample(
        object
            .program_stats()
            .into_iter()
            .map(|p| (p.name, p.run_time_ns, p.run_count)),
    ))
}

fn sample(programs: impl Iterator<Item = (String, u64, u64)>) -> Sample {
    let programs: Vec<_> = programs.collect();
    Sample {
        run_time_ns: programs.iter().map(|p| p.1).sum(),
        events: programs.iter().map(|p| p.2).sum(),
        programs: programs
            .iter()
            .filter(|p| p.2 > 0)
            .map(|p| (p.0.clone(), p.1 as f64 / p.2 as f64))
            .collect(),
    }
}

fn run_bpftrace(dev: &LoopDevice) -> Result<Sample> {
    let before: HashSet<u32> = stats::loaded_programs().iter().map(|p| p.id).collect();
    let mut child = Command::new("bpftrace")
        .arg("-e")
        .arg(BPFTRACE_SCRIPT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start bpftrace")?;
    // bpftrace prints "Attaching 2 probes..." before it attaches: wait for
    // that, then for both of its programs to be loaded, then a grace period.
    let mut stdout = BufReader::new(child.stdout.take().context("bpftrace stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_programs = || -> Vec<u32> {
        stats::loaded_programs()
            .into_iter()
            .filter(|p| !before.contains(&p.id))
            .map(|p| p.id)
            .collect()
    };
    let ids = loop {
        let ids = new_programs();
        if ids.len() >= 2 {
            break ids;
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("bpftrace did not load its programs (first line: {line:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    workload(dev)?;
    let programs: Vec<_> = stats::loaded_programs()
        .into_iter()
        .filter(|p| ids.contains(&p.id))
        .collect();
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
    Ok(sample(
        programs.into_iter().map(|p| (p.name, p.run_time_ns, p.run_count)),
    ))
}

fn render(tools: &[(&str, &Vec<Sample>)], device: &str) -> String {
    let mut out = format!(
        "### disk_latency: ns per block event (kernel run_time_ns / run_cnt)\n\n\
         {REPETITIONS} interleaved runs each; workload {REQUESTS} O_DIRECT 4 KiB requests \
         (half writes, half reads) on {device}. Target ≤ {TARGET_NS} ns/event.\n\n\
         | tool | min | median | max | events/run |\n|---|---:|---:|---:|---:|\n"
    );
    for (tool, samples) in tools {
        let (min, median, max) = common::spread(&samples.iter().map(Sample::ns_per_event).collect::<Vec<_>>());
        let events = samples.iter().map(|s| s.events).sum::<u64>() / samples.len().max(1) as u64;
        let _ = writeln!(out, "| {tool} | {min:.1} | {median:.1} | {max:.1} | {events} |");
    }
    out.push_str("\nPer program (median ns per run):\n\n| tool | program | median |\n|---|---|---:|\n");
    for (tool, samples) in tools {
        let mut names: Vec<String> = samples
            .iter()
            .flat_map(|s| s.programs.iter().map(|p| p.0.clone()))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.programs.iter().find(|p| p.0 == name).map(|p| p.1))
                .collect();
            let _ = writeln!(out, "| {tool} | {name} | {:.1} |", common::spread(&values).1);
        }
    }
    out
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| std::path::PathBuf::from("target/bench"), std::path::PathBuf::from);
    std::fs::create_dir_all(&out)?;
    let table = run(&out)?;
    println!("{table}");
    std::fs::write(out.join("disk.md"), &table)?;
    Ok(())
}
