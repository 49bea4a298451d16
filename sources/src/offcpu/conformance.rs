//! The kernel check of `offcpu` (the kernel matrix and `tests/bpf_offcpu.rs`
//! run it): a thread of this process sleeps in `nanosleep` a known number
//! of times; the time off CPU the source reports for stacks through the
//! kernel's nanosleep, state `sleeping`, must agree with the thread's own
//! timers within 10 % at p = 1 (30 % when sampled).

use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event, Frame};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::{Collector, OffcpuSourceConfig, PERIOD_NS, SAMPLE_TYPE, STATE};

/// What the source reported for one process: time off CPU, ns, of the
/// stacks `matches` accepts, in state `state`.
pub fn reported_ns(events: &[Event], pid: u32, state: &str, matches: impl Fn(&[Frame]) -> bool) -> f64 {
    let mut ns = 0.0;
    for event in events {
        let Event::Profile(profile) = event else { continue };
        if profile.sample_type.as_str() != SAMPLE_TYPE
            || profile.attributes.get(keys::PID).and_then(|v| v.as_int()) != Some(i64::from(pid))
            || profile.attributes.get(STATE).and_then(|v| v.as_str()) != Some(state)
        {
            continue;
        }
        for sample in &profile.samples {
            if matches(&sample.frames) {
                ns += (sample.count * profile.period) as f64;
            }
        }
    }
    ns
}

/// Whether any frame's function name contains `text`.
pub fn names(frames: &[Frame], text: &str) -> bool {
    frames.iter().any(|f| f.function.contains(text))
}

/// Sleeps `sleeps` × `each` on a thread of this process with the source
/// loaded at `probability`; compares with the thread's own timers within
/// `tolerance`. On success, one line saying what was compared.
pub fn sleeps_agree(sleeps: u32, each: Duration, probability: f64, tolerance: f64) -> Result<String, CheckError> {
    let config = OffcpuSourceConfig {
        probability,
        pids: vec![std::process::id()],
        ..OffcpuSourceConfig::default()
    };
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let mut symbols = collector.symbols();
    let slept_ns = std::thread::spawn(move || {
        let mut total = Duration::ZERO;
        for _ in 0..sleeps {
            let start = Instant::now();
            std::thread::sleep(each);
            total += start.elapsed();
        }
        total.as_nanos() as f64
    })
    .join()
    .map_err(|_| CheckError::Implausible("the sleeping thread panicked".to_string()))?;
    let events = collector.collect(&mut symbols)?;
    let ours = reported_ns(&events, std::process::id(), "sleeping", |frames| {
        names(frames, "nanosleep")
    });
    let off = (ours - slept_ns).abs() / slept_ns;
    let stats = collector.programs().stats().ok();
    ensure(off <= tolerance, || {
        format!(
            "off CPU in nanosleep: ours {:.1} ms, the thread's timers {:.1} ms ({:+.1} %, p = {probability}); program counters {stats:?}",
            ours / 1e6,
            slept_ns / 1e6,
            (ours / slept_ns - 1.0) * 100.0
        )
    })?;
    Ok(format!(
        "{sleeps} sleeps of {each:?} at p = {probability} ({}): {:.1} ms off CPU through nanosleep, the thread's timers say {:.1} ms ({:+.1} %), {} µs units",
        collector.flavor().as_str(),
        ours / 1e6,
        slept_ns / 1e6,
        (ours / slept_ns - 1.0) * 100.0,
        PERIOD_NS / 1000
    ))
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    sleeps_agree(50, Duration::from_millis(10), 1.0, 0.10)
}
