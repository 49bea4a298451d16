//! `source "energy"` against the real kernel (needs root): two child
//! processes with known CPU shares, one spinning and one at a ~25 % duty
//! cycle, checked against the kernel's own accounting in `/proc/PID/stat`,
//! and the attribution checked for proportionality and conservation.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event, MetricValue};
use sonde_ebpf::testing::{bpf_available_or_skip, run_check};
use sonde_sources::energy::{Collector, EnergySourceConfig, COMPONENT, NODE_ENERGY, PROCESS_ENERGY, SOURCE};

/// Set in a child re-executing this binary: which workload to run.
const WORKER: &str = "SONDE_ENERGY_WORKER";
/// The measured interval: long against the 10 ms clock tick of /proc.
const MEASURE: Duration = Duration::from_secs(4);

/// Not a test: the children's body (returns at once without `WORKER`).
/// The tests that measure CPU time run one at a time: each keeps a CPU
/// busy, and the machine has few.
static SERIAL: Mutex<()> = Mutex::new(());

/// The kernel matrix's check, on this kernel: on-CPU time of a busy thread of this process equals getrusage's.
#[test]
fn the_kernel_check_passes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_check(
        "energy::the_kernel_check_passes",
        sonde_sources::energy::conformance::check,
    );
}

#[test]
fn energy_worker() {
    let Ok(kind) = std::env::var(WORKER) else { return };
    let spin = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            std::hint::black_box(0u64);
        }
    };
    loop {
        match kind.as_str() {
            "spin" => spin(Duration::from_millis(100)),
            // 5 ms on, 15 ms off.
            _ => {
                spin(Duration::from_millis(5));
                std::thread::sleep(Duration::from_millis(15));
            }
        }
    }
}

struct Worker(Child);

impl Worker {
    fn start(kind: &str) -> Worker {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "energy_worker", "--nocapture", "--test-threads=1"])
            .env(WORKER, kind)
            // The harness' own lines would interleave with the test's.
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("worker starts");
        Worker(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// utime + stime of the process, ns (clock-tick resolution).
    fn proc_cpu_ns(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        // Fields 14 and 15 of stat(5); `after` starts at field 3.
        let ticks = fields[11] + fields[12];
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        ticks * 1_000_000_000 / hz
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Running totals of every series, to turn rounds into deltas.
#[derive(Default)]
struct Series {
    last: HashMap<String, f64>,
}

/// One round's increments: per-process series by pid, and the node's.
#[derive(Debug, Default)]
struct Deltas {
    by_pid: HashMap<i64, f64>,
    processes: f64,
    node: f64,
}

impl Series {
    fn deltas(&mut self, events: &[Event]) -> Deltas {
        let mut out = Deltas::default();
        for event in events {
            let Event::Metric(metric) = event else { continue };
            let MetricValue::Counter { value } = metric.value else {
                continue;
            };
            let attr = |k: &str| metric.attributes.get(k).map(|v| v.to_string()).unwrap_or_default();
            assert_eq!(attr(SOURCE), "model", "this node has no RAPL: {metric:?}");
            assert_eq!(attr(COMPONENT), "cpu");
            let key = format!(
                "{} {} {} {}",
                metric.name.as_str(),
                attr(keys::PID),
                attr(keys::CGROUP_ID),
                attr(COMPONENT)
            );
            let delta = value - self.last.insert(key, value).unwrap_or(0.0);
            match metric.name.as_str() {
                PROCESS_ENERGY => {
                    let pid = metric.attributes.get(keys::PID).and_then(|v| v.as_int()).unwrap();
                    *out.by_pid.entry(pid).or_default() += delta;
                    out.processes += delta;
                }
                NODE_ENERGY => out.node += delta,
                _ => {}
            }
        }
        out
    }
}

fn within(ours: f64, reference: f64, tolerance: f64) -> bool {
    (ours - reference).abs() <= reference.abs() * tolerance
}

#[test]
fn two_processes_get_energy_by_cpu_time_and_it_adds_up() {
    let test = "two_processes_get_energy_by_cpu_time_and_it_adds_up";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available_or_skip(test) {
        return;
    }
    let config = EnergySourceConfig {
        gpu: false,
        ..EnergySourceConfig::default()
    };
    let mut collector = Collector::load(&config, "test-node".into(), &[]).expect("energy loads");
    let spinner = Worker::start("spin");
    let duty = Worker::start("duty");
    std::thread::sleep(Duration::from_millis(500));

    let mut series = Series::default();
    series.deltas(&collector.collect().unwrap());
    let (spin_before, duty_before) = (spinner.proc_cpu_ns(), duty.proc_cpu_ns());
    std::thread::sleep(MEASURE);
    let deltas = series.deltas(&collector.collect().unwrap());
    let (spin_after, duty_after) = (spinner.proc_cpu_ns(), duty.proc_cpu_ns());

    let bpf_ns = |pid: u32| -> u64 {
        collector
            .ledger()
            .processes()
            .iter()
            .filter(|(k, _)| k.tgid == pid)
            .map(|(_, p)| p.last_cpu_ns)
            .sum()
    };
    let (spin_bpf, duty_bpf) = (bpf_ns(spinner.pid()), bpf_ns(duty.pid()));
    let (spin_proc, duty_proc) = (spin_after - spin_before, duty_after - duty_before);
    let spin_j = deltas.by_pid[&(spinner.pid() as i64)];
    let duty_j = deltas.by_pid[&(duty.pid() as i64)];
    eprintln!(
        "spinner: bpf {spin_bpf} ns, /proc {spin_proc} ns, {spin_j:.3} J; \
         duty: bpf {duty_bpf} ns, /proc {duty_proc} ns, {duty_j:.3} J"
    );
    eprintln!(
        "node {:.3} J, processes {:.3} J, round {:?}",
        deltas.node,
        deltas.processes,
        collector.round()
    );

    // The workloads ran as meant (loosely: the machine is shared).
    assert!(spin_proc > MEASURE.as_nanos() as u64 / 3, "the spinner barely ran");
    assert!(duty_proc > MEASURE.as_nanos() as u64 / 20, "the duty cycle barely ran");
    // Kernel-side accounting agrees with the kernel's own within 2 %.
    assert!(
        within(spin_bpf as f64, spin_proc as f64, 0.02),
        "spinner: bpf {spin_bpf} vs /proc {spin_proc}"
    );
    assert!(
        within(duty_bpf as f64, duty_proc as f64, 0.02),
        "duty: bpf {duty_bpf} vs /proc {duty_proc}"
    );
    // Energy in proportion to CPU time, within 5 %.
    let energy_ratio = spin_j / duty_j;
    let cpu_ratio = spin_proc as f64 / duty_proc as f64;
    assert!(
        within(energy_ratio, cpu_ratio, 0.05),
        "energy ratio {energy_ratio:.3} vs CPU-time ratio {cpu_ratio:.3}"
    );
    // Conservation: the processes' energy is the node's within 0.5 %.
    assert!(deltas.node > 0.0);
    assert!(
        within(deltas.processes, deltas.node, 0.005),
        "processes {} J vs node {} J",
        deltas.processes,
        deltas.node
    );
}

#[test]
fn exited_processes_are_pruned_after_their_last_share() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "exited_processes_are_pruned_after_their_last_share";
    if !bpf_available_or_skip(test) {
        return;
    }
    let config = EnergySourceConfig {
        gpu: false,
        ..EnergySourceConfig::default()
    };
    let mut collector = Collector::load(&config, "test-node".into(), &[]).expect("energy loads");
    let worker = Worker::start("spin");
    let pid = worker.pid();
    std::thread::sleep(Duration::from_millis(300));
    drop(worker);
    let events = collector.collect().unwrap();
    let emitted = events.iter().any(|e| match e {
        Event::Metric(m) => {
            m.name.as_str() == PROCESS_ENERGY
                && m.attributes.get(keys::PID).and_then(|v| v.as_int()) == Some(i64::from(pid))
        }
        _ => false,
    });
    assert!(emitted, "the exited process' last share is emitted");
    assert!(
        !collector.ledger().processes().keys().any(|k| k.tgid == pid),
        "and then it is forgotten"
    );
    let in_map = collector.programs().read().unwrap().iter().any(|t| t.key.tgid == pid);
    assert!(!in_map, "and deleted from the kernel map");
}
