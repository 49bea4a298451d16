//! The kernel check of `runqueue` (the kernel matrix and
//! `tests/bpf_runqueue.rs` run it): four busy processes share one CPU for
//! a while, then are stopped (SIGSTOP: nothing of theirs moves while we
//! read). For each, the run-queue wait the source summed must agree with
//! the kernel's own schedstat (`/proc/PID/schedstat`, field 2,
//! `run_delay`) within 5 %, and its voluntary and involuntary context
//! switches with `/proc/PID/status` within 2 %.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event, MetricValue};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::{Collector, RunqueueSourceConfig, PROCESS_CONTEXT_SWITCHES, PROCESS_RUNQUEUE_LATENCY, SWITCH_TYPE};

/// Busy processes sharing one CPU.
pub const SPINNERS: usize = 4;

/// What the kernel and the source say of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    /// Run-queue wait, ns.
    pub wait_ns: f64,
    /// Voluntary context switches.
    pub voluntary: f64,
    /// Involuntary context switches.
    pub involuntary: f64,
}

/// The kernel's counts of process (thread) `pid`: schedstat's run_delay
/// and status' context switches.
pub fn kernel_counts(pid: u32) -> std::io::Result<Counts> {
    let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    let wait_ns = schedstat
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| std::io::Error::other("no run_delay in schedstat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| std::io::Error::other(format!("no {name} in status")))
    };
    Ok(Counts {
        wait_ns,
        voluntary: field("voluntary_ctxt_switches:")?,
        involuntary: field("nonvoluntary_ctxt_switches:")?,
    })
}

/// What the source reported for process `pid` (its per-process series).
pub fn reported(events: &[Event], pid: u32) -> Counts {
    let mut counts = Counts::default();
    for event in events {
        let Event::Metric(m) = event else { continue };
        if m.attributes.get(keys::PID).and_then(|v| v.as_int()) != Some(i64::from(pid)) {
            continue;
        }
        match (&m.value, m.name.as_str()) {
            (MetricValue::Histogram(h), PROCESS_RUNQUEUE_LATENCY) => counts.wait_ns += h.sum * 1e9,
            (MetricValue::Counter { value }, PROCESS_CONTEXT_SWITCHES) => {
                match m.attributes.get(SWITCH_TYPE).and_then(|v| v.as_str()) {
                    Some("voluntary") => counts.voluntary += value,
                    Some("involuntary") => counts.involuntary += value,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    counts
}

/// Busy processes, killed and reaped on drop.
struct Spinners(Vec<Child>);

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `n` shell busy loops on the CPU this thread runs on (children
/// inherit the affinity set here; this thread's own is restored).
fn spin_on_one_cpu(n: usize) -> std::io::Result<Spinners> {
    // SAFETY: cpu_set_t is plain data; the calls get its size and a valid
    // pointer to it, which outlives them.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let cpu = libc::sched_getcpu().max(0) as usize;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let spawned = (0..n)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
            })
            .collect::<std::io::Result<Vec<_>>>();
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old);
        spawned.map(Spinners)
    }
}

/// Stops `pids` and waits until each is stopped (`T` in /proc/PID/stat).
fn stop_all(pids: &[u32]) -> std::io::Result<()> {
    for pid in pids {
        // SAFETY: kill takes a pid and a signal number.
        if unsafe { libc::kill(*pid as libc::pid_t, libc::SIGSTOP) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
            if state == Some("T") {
                break;
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!("process {pid} did not stop")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// Runs [`SPINNERS`] busy processes on one CPU for `busy`, then compares,
/// for each, the source's counts with the kernel's. On success, one line
/// saying what was compared.
pub fn spinners_agree(busy: Duration) -> Result<String, CheckError> {
    let config = RunqueueSourceConfig {
        per_process: true,
        ..RunqueueSourceConfig::default()
    };
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let spinners = spin_on_one_cpu(SPINNERS).map_err(CheckError::workload("start busy processes on one CPU"))?;
    let pids: Vec<u32> = spinners.0.iter().map(Child::id).collect();
    std::thread::sleep(busy);
    stop_all(&pids).map_err(CheckError::workload("stop the busy processes"))?;
    let events = collector.collect()?;
    let mut lines = Vec::new();
    let (mut wait_ours, mut wait_kernel) = (0.0, 0.0);
    for pid in &pids {
        let kernel = kernel_counts(*pid).map_err(CheckError::workload("read /proc/PID/schedstat and status"))?;
        let ours = reported(&events, *pid);
        ensure(kernel.wait_ns > 0.0, || {
            format!("process {pid}: the kernel's schedstat says it never waited (CONFIG_SCHEDSTATS/SCHED_INFO off?)")
        })?;
        let off = |a: f64, b: f64| (a - b).abs() / b.max(1.0);
        ensure(off(ours.wait_ns, kernel.wait_ns) <= 0.05, || {
            format!(
                "process {pid}: run-queue wait ours {:.1} ms, schedstat run_delay {:.1} ms",
                ours.wait_ns / 1e6,
                kernel.wait_ns / 1e6
            )
        })?;
        ensure(
            off(ours.voluntary, kernel.voluntary) <= 0.02 && off(ours.involuntary, kernel.involuntary) <= 0.02,
            || {
                format!(
                    "process {pid}: context switches ours {}/{} (voluntary/involuntary), /proc status {}/{}",
                    ours.voluntary, ours.involuntary, kernel.voluntary, kernel.involuntary
                )
            },
        )?;
        wait_ours += ours.wait_ns;
        wait_kernel += kernel.wait_ns;
        lines.push(format!(
            "{:.0}/{:.0} switches",
            ours.involuntary + ours.voluntary,
            kernel.involuntary + kernel.voluntary
        ));
    }
    Ok(format!(
        "{SPINNERS} busy processes on one CPU ({}{}): run-queue wait {:.1} ms, schedstat {:.1} ms ({:+.2} %); {}",
        collector.flavor().as_str(),
        if collector.programs().uses_task_storage() {
            ", task storage"
        } else {
            ""
        },
        wait_ours / 1e6,
        wait_kernel / 1e6,
        (wait_ours / wait_kernel - 1.0) * 100.0,
        lines.join(", ")
    ))
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    spinners_agree(Duration::from_secs(1))
}
