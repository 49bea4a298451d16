//! The kernel check of `profile` (the kernel matrix and
//! `tests/bpf_profile.rs` run it): a thread of this process spins in a function of known name
//! for about a second of CPU; the source must attribute samples to that
//! function in proportion to the thread's CPU time as the kernel counts it
//! (`/proc/thread-self/schedstat`), and announce a process started
//! meanwhile on its ring buffer (the reason for its 5.8 minimum). Then a
//! shell spinning in a loop (`sh`, Debian's dash: no frame pointers) is
//! walked in BPF with its and libc's `.eh_frame` tables (the walker's tail
//! calls and searches must pass this kernel's verifier), and at least half
//! of its stacks must reach `_start`. (Not this binary's own table: a
//! debug build's takes minutes to compile in an emulated guest.)

use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event};
use sonde_ebpf::conformance::{ensure, CheckError};
use sonde_ebpf::workload::{sonde_conformance_busy, BUSY_FN};

use super::{Collector, ProfileSourceConfig};

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    // The sample count is checked with the kernel's walk: in an emulated
    // guest, a walk in BPF through this debug binary's large table can take
    // long enough for perf to throttle the event. The walk is checked below.
    let config = ProfileSourceConfig {
        pids: vec![std::process::id()],
        native_unwinding: false,
        ..ProfileSourceConfig::default()
    };
    let frequency = config.frequency_hz;
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let mut symbols = collector.symbols();
    collector.collect(&mut symbols)?;
    let mut announced = collector
        .take_new_pids()
        .ok_or_else(|| CheckError::Implausible("no ring buffer of new processes".to_string()))?;

    std::process::Command::new("true")
        .status()
        .map_err(CheckError::workload("run `true`"))?;
    let busy_ns = std::thread::spawn(|| sonde_conformance_busy())
        .join()
        .map_err(|_| CheckError::Implausible("the busy thread panicked".to_string()))?;
    // The announcement of `true` is on the ring buffer by now; its pid is
    // unknown, so any new pid but ours will do.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut new_pids = Vec::new();
    while new_pids.is_empty() && Instant::now() < deadline {
        new_pids = announced.read();
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure(!new_pids.is_empty(), || {
        "no new process announced on the ring buffer after running `true`".to_string()
    })?;

    let events = collector.collect(&mut symbols)?;
    let (mut total, mut busy) = (0u64, 0u64);
    for event in &events {
        let Event::Profile(profile) = event else { continue };
        if profile.attributes.get(keys::PID).and_then(|v| v.as_int()) != Some(std::process::id().into()) {
            continue;
        }
        for sample in &profile.samples {
            total += sample.count;
            // The sampled instruction is the first frame: no unwinding
            // (a debug build of sonde has no frame pointers).
            if sample.frames.first().is_some_and(|f| f.function.as_str() == BUSY_FN) {
                busy += sample.count;
            }
        }
    }
    let expected = busy_ns as f64 * frequency as f64 / 1e9;
    let stats = collector.profiler().stats().ok();

    ensure((0.5 * expected..=1.5 * expected).contains(&(busy as f64)), || {
        format!("{busy} samples in {BUSY_FN} (of {total} of this process), expected {expected:.0} ± 50 % from {busy_ns} ns on CPU; program counters {stats:?}")
    })?;
    drop(collector);
    let outcomes = if cfg!(target_arch = "x86_64") {
        walk_check()?
    } else {
        Vec::new()
    };
    Ok(format!(
        "{busy} samples in {BUSY_FN} (of {total}), expected {expected:.0} from its CPU time; {} new process(es) announced; {} stack(s) spilled; a shell's user stacks walked in BPF: {outcomes:?}",
        new_pids.len(),
        stats.map_or(0, |s| s.get(super::bpf::PROFILE_STAT_SPILLED))
    ))
}

/// A shell spinning for about a second, its user stacks walked in BPF:
/// how they ended, by outcome.
fn walk_check() -> Result<Vec<(&'static str, u64)>, CheckError> {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .map_err(CheckError::workload("run `sh`"))?;
    let result = walk_shell(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let outcomes = result?;
    let walked: u64 = outcomes.iter().map(|(_, v)| v).sum();
    let complete = outcomes.iter().find(|(k, _)| *k == "complete").map_or(0, |(_, v)| *v);
    ensure(complete * 2 >= walked && walked >= 10, || {
        format!("{complete} of {walked} of a shell's user stacks walked to _start: {outcomes:?}")
    })?;
    Ok(outcomes)
}

fn walk_shell(pid: u32) -> Result<Vec<(&'static str, u64)>, CheckError> {
    let config = ProfileSourceConfig {
        pids: vec![pid],
        ..ProfileSourceConfig::default()
    };
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let mut symbols = collector.symbols();
    // Read, and sampled often enough for its tables (as the program announces it).
    collector.note_new_pids(&[pid, pid | crate::profile::bpf::PROFILE_ANNOUNCE_UNWIND], &mut symbols);
    let unwinder = collector
        .unwinder()
        .ok_or_else(|| CheckError::Implausible("native unwinding is off".to_string()))?;
    unwinder.flush();
    // What was sampled while the tables loaded was walked by frame pointers.
    collector.collect(&mut symbols)?;
    let before = collector.completeness().totals().clone();
    std::thread::sleep(Duration::from_secs(1));
    collector.collect(&mut symbols)?;
    Ok(collector
        .completeness()
        .totals()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect())
}
