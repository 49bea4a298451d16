//! The kernel check of `profile` (the kernel matrix and
//! `tests/bpf_profile.rs` run it): a thread of this process spins in a function of known name
//! for about a second of CPU; the source must attribute samples to that
//! function in proportion to the thread's CPU time as the kernel counts it
//! (`/proc/thread-self/schedstat`), and announce a process started
//! meanwhile on its ring buffer (the reason for its 5.8 minimum). Its
//! user stacks are walked in BPF with this binary's `.eh_frame` table (the
//! walker's tail calls and searches must pass this kernel's verifier), and
//! at least half of them must reach the thread's start (`clone3`).

use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event};
use sonde_ebpf::conformance::{ensure, CheckError};
use sonde_ebpf::workload::{sonde_conformance_busy, BUSY_FN};

use super::{Collector, ProfileSourceConfig};

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let config = ProfileSourceConfig {
        pids: vec![std::process::id()],
        ..ProfileSourceConfig::default()
    };
    let frequency = config.frequency_hz;
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let mut symbols = collector.symbols();
    collector.collect(&mut symbols)?;
    let mut announced = collector
        .take_new_pids()
        .ok_or_else(|| CheckError::Implausible("no ring buffer of new processes".to_string()))?;

    // This process' tables in first, so the busy thread is walked in BPF.
    collector.note_new_pids(&[std::process::id()], &mut symbols);
    if let Some(unwinder) = collector.unwinder() {
        unwinder.flush();
    }
    let before = collector.completeness().totals().clone();

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
    let outcomes: Vec<(&str, u64)> = collector
        .completeness()
        .totals()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let walked: u64 = outcomes.iter().map(|(_, v)| v).sum();
    let complete = outcomes.iter().find(|(k, _)| *k == "complete").map_or(0, |(_, v)| *v);
    if collector.unwinder().is_some() {
        ensure(complete * 2 >= walked && walked > 0, || {
            format!("{complete} of {walked} user stacks walked to their start: {outcomes:?}")
        })?;
    }
    ensure((0.5 * expected..=1.5 * expected).contains(&(busy as f64)), || {
        format!("{busy} samples in {BUSY_FN} (of {total} of this process), expected {expected:.0} ± 50 % from {busy_ns} ns on CPU; program counters {stats:?}")
    })?;
    Ok(format!(
        "{busy} samples in {BUSY_FN} (of {total}), expected {expected:.0} from its CPU time; {} new process(es) announced; {} stack(s) spilled; user stacks {outcomes:?}",
        new_pids.len(),
        stats.map_or(0, |s| s.get(super::bpf::PROFILE_STAT_SPILLED))
    ))
}
