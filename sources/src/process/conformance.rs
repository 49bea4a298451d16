//! The kernel check of `process` (the kernel matrix and
//! `tests/bpf_process.rs` run it): this process forks and execs `/bin/true`
//! [`RUNS`] times with a marker argument. The source must report exactly
//! that many execs with that argv and as many exits, paired by exec id,
//! each with exit code 0 and this process as parent; and the forks its
//! program saw (threads and kernel threads included) must agree with the
//! kernel's own count, `/proc/stat` `processes`, over the same window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sonde_core::event::{Event, Log, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::bpf::PROC_STAT_CLONES;
use super::events::{ARGS, EXEC, EXEC_ID, EXIT, EXIT_CODE, PARENT_PID};
use super::{Collector, ProcessSourceConfig};

/// Execs of the workload.
pub const RUNS: usize = 200;
/// The program exec'd.
pub const TRUE: &str = "/bin/true";

/// `processes` of `/proc/stat`: forks (processes and threads) since boot.
pub fn proc_stat_processes() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/stat")?;
    text.lines()
        .find_map(|l| l.strip_prefix("processes "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no `processes` line in /proc/stat"))
}

/// A text field of a log.
pub fn field<'a>(log: &'a Log, key: &str) -> Option<&'a str> {
    log.fields.get(key).and_then(Value::as_str)
}

/// The logs named `name` among `events`.
pub fn logs<'a>(events: &'a [Event], name: &'a str) -> impl Iterator<Item = &'a Log> + 'a {
    events.iter().filter_map(move |e| match e {
        Event::Log(log) if log.name.as_str() == name => Some(&**log),
        _ => None,
    })
}

/// Drains `collector` until `done` says the events so far suffice, or
/// `timeout`; returns every event seen.
pub fn collect_until(
    collector: &mut Collector,
    records: &mut super::bpf::Records,
    timeout: Duration,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut events = Vec::new();
    loop {
        events.extend(collector.drain(records).0);
        if done(&events) || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let (mut collector, mut records) = Collector::load(&ProcessSourceConfig::default(), "conformance".into(), &[])?;
    let marker = format!("sonde-conformance-{}", std::process::id());
    let stat = || CheckError::workload("read /proc/stat");
    let clones_before = collector.programs().stats()?.get(PROC_STAT_CLONES);
    let kernel_before = proc_stat_processes().map_err(stat())?;
    for i in 0..RUNS {
        let status = std::process::Command::new(TRUE)
            .arg(&marker)
            .arg(i.to_string())
            .status()
            .map_err(CheckError::workload("run /bin/true"))?;
        ensure(status.success(), || format!("{TRUE} failed: {status}"))?;
    }
    let kernel = proc_stat_processes().map_err(stat())? - kernel_before;
    let clones = collector.programs().stats()?.get(PROC_STAT_CLONES) - clones_before;
    let ours = |log: &&Log| field(log, ARGS).is_some_and(|a| a.contains(&marker));
    let events = collect_until(&mut collector, &mut records, Duration::from_secs(10), |events| {
        let execs: Vec<&str> = logs(events, EXEC)
            .filter(ours)
            .filter_map(|l| field(l, EXEC_ID))
            .collect();
        let exits = logs(events, EXIT)
            .filter(|l| field(l, EXEC_ID).is_some_and(|id| execs.contains(&id)))
            .count();
        execs.len() >= RUNS && exits >= RUNS
    });
    let execs: HashMap<&str, &Log> = logs(&events, EXEC)
        .filter(ours)
        .filter_map(|l| Some((field(l, EXEC_ID)?, l)))
        .collect();
    ensure(execs.len() == RUNS, || {
        format!("{} execs of {TRUE} with the marker, {RUNS} run", execs.len())
    })?;
    let me = i64::from(std::process::id());
    ensure(
        execs
            .values()
            .all(|l| l.fields.get(PARENT_PID).and_then(Value::as_int) == Some(me)),
        || "an exec names another parent than this process".to_string(),
    )?;
    let exits: Vec<&Log> = logs(&events, EXIT)
        .filter(|l| field(l, EXEC_ID).is_some_and(|id| execs.contains_key(id)))
        .collect();
    ensure(exits.len() == RUNS, || {
        format!("{} exits paired with the {RUNS} execs", exits.len())
    })?;
    ensure(
        exits
            .iter()
            .all(|l| l.fields.get(EXIT_CODE).and_then(Value::as_int) == Some(0)),
        || "an exit of /bin/true without exit code 0".to_string(),
    )?;
    // The two counts are read one after the other while the node forks:
    // a few forks may fall between the reads.
    let off = clones.abs_diff(kernel);
    ensure(kernel >= RUNS as u64 && off <= 2 + kernel / 100, || {
        format!("forks seen by the program {clones}, /proc/stat processes delta {kernel}")
    })?;
    Ok(format!(
        "{RUNS} execs and {RUNS} exits paired by exec id; forks: {clones} seen, /proc/stat says {kernel}"
    ))
}
