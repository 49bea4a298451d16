//! What the profile tests share (bpf_profile, bpf_profile_runtimes,
//! bpf_unwind): taking turns, loading the collector, driving a workload
//! while new processes are noted, and picking one process's profile.

use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event, Profile};
use sonde_ebpf::testing::bpf_available_or_skip;
use sonde_sources::profile::bpf::NewPids;
use sonde_sources::profile::{Collector, ProfileSourceConfig, Symbols};

/// One test at a time: each measures what its workload did with the CPU,
/// which another test's workload would disturb.
pub fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The collector loaded with `config`, drained once (what it counted
/// before the test is dropped); `None` when BPF is not available (the
/// test is skipped, or fails under `SONDE_REQUIRE_BPF=1`).
pub fn collector(test: &str, config: &ProfileSourceConfig) -> Option<(Collector, Symbols)> {
    if !bpf_available_or_skip(test) {
        return None;
    }
    let mut collector = Collector::load(config, "test-node".into(), &[]).expect("profile loads");
    let mut symbols = collector.symbols();
    collector.collect(&mut symbols).expect("first drain");
    Some((collector, symbols))
}

/// Lets `child` run for `duration`, noting new processes meanwhile, then
/// drains: the profiles of that stretch.
pub fn sample_for(
    collector: &mut Collector,
    symbols: &mut Symbols,
    announced: &mut NewPids,
    child: &mut Child,
    duration: Duration,
) -> Vec<Event> {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        collector.note_new_pids(&announced.read(), symbols);
        assert!(child.try_wait().unwrap().is_none(), "the workload exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    collector.note_new_pids(&announced.read(), symbols);
    collector.collect(symbols).unwrap()
}

/// Waits until the unwind-table loader has done what was announced so far
/// (a process's tables load after its 8th sample: on a busy machine later
/// than any fixed warm-up), then drops what was sampled meanwhile, so the
/// next interval measures the steady state.
pub fn settle(collector: &mut Collector, symbols: &mut Symbols, announced: &mut NewPids) {
    collector.note_new_pids(&announced.read(), symbols);
    if let Some(unwinder) = collector.unwinder() {
        unwinder.flush();
    }
    collector.collect(symbols).expect("drain after the loader settled");
}

/// The samples of process `pid` in `events`, merged.
pub fn profile_of(events: &[Event], pid: u32) -> Profile {
    let mut merged: Option<Profile> = None;
    for event in events {
        let Event::Profile(p) = event else { continue };
        if p.attributes.get(keys::PID).and_then(|v| v.as_int()) != Some(pid.into()) {
            continue;
        }
        match &mut merged {
            Some(m) => m.samples.extend(p.samples.iter().cloned()),
            None => merged = Some((**p).clone()),
        }
    }
    merged.unwrap_or_else(|| panic!("no profile for pid {pid}"))
}
