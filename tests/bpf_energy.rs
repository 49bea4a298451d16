//! `source "energy"` against the real kernel (needs root): two child
//! processes with known CPU shares, one spinning and one at a ~25 % duty
//! cycle, checked against the scheduler's own accounting
//! (`/proc/PID/task/*/schedstat`), the node's energy against the documented
//! power model worked from `/proc/stat`, and each process' energy against
//! its share of the node's.
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

/// Not a test: the children's body, run with `--ignored --exact` (so it
/// is listed as ignored, not passed; it returns at once without `WORKER`).
#[test]
#[ignore = "the body of the worker processes, not a test"]
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
            .args([
                "--exact",
                "energy_worker",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
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

    /// On-CPU time of every thread of the process, ns: the first field
    /// of `/proc/PID/task/TID/schedstat` (the scheduler's own clock, not
    /// clock ticks).
    fn schedstat_ns(&self) -> u64 {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Running totals of every series, to turn rounds into deltas.
struct Series {
    /// The `source` every point must carry.
    source: &'static str,
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
    fn new(source: &'static str) -> Self {
        Series {
            source,
            last: HashMap::new(),
        }
    }

    fn deltas(&mut self, events: &[Event]) -> Deltas {
        let mut out = Deltas::default();
        for event in events {
            let Event::Metric(metric) = event else { continue };
            let MetricValue::Counter { value } = metric.value else {
                continue;
            };
            let attr = |k: &str| metric.attributes.get(k).map(|v| v.to_string()).unwrap_or_default();
            assert_eq!(attr(SOURCE), self.source, "{metric:?}");
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

/// The aggregate `cpu` line of `/proc/stat`, parsed here (not by the
/// source): (busy ticks, all ticks), busy being every state but idle and
/// iowait (guest time is already inside user), and the online CPUs.
fn proc_stat() -> (u64, u64, usize) {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap())
        .collect();
    let (idle, all) = (cpu[3] + cpu[4], cpu.iter().sum::<u64>());
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (all - idle, all, cpus)
}

/// Does this host have a RAPL zone the agent can read?
fn host_has_rapl() -> bool {
    std::fs::read_dir("/sys/class/powercap").is_ok_and(|dir| {
        dir.filter_map(Result::ok).any(|zone| {
            zone.file_name().to_string_lossy().starts_with("intel-rapl:")
                && std::fs::read_to_string(zone.path().join("energy_uj")).is_ok()
        })
    })
}

/// The power model of the README and `energy::model`, worked here: CCF's
/// linear watts per CPU between idle and full load, with its defaults.
fn documented_model_joules(cpus: usize, utilisation: f64, seconds: f64) -> f64 {
    const IDLE_W: f64 = 0.74;
    const MAX_W: f64 = 3.5;
    cpus as f64 * (IDLE_W + utilisation * (MAX_W - IDLE_W)) * seconds
}

/// The model path, forced with an empty `sysfs_root` (so the test means the
/// same on a host with RAPL): the node's joules equal the documented model
/// worked from `/proc/stat` read around the interval, within 3 %; each
/// worker's joules equal the node's times its share of the node's on-CPU
/// time, its own from `/proc/PID/task/*/schedstat` (ns), the node's busy
/// time from `/proc/stat`, within 5 %; and the source's on-CPU times equal
/// schedstat's within 2 %.
#[test]
fn two_processes_get_energy_by_cpu_time_and_it_adds_up() {
    let test = "two_processes_get_energy_by_cpu_time_and_it_adds_up";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available_or_skip(test) {
        return;
    }
    let no_rapl = tempfile::tempdir().unwrap();
    let config = EnergySourceConfig {
        gpu: false,
        sysfs_root: no_rapl.path().to_path_buf(),
        ..EnergySourceConfig::default()
    };
    let mut collector = Collector::load(&config, "test-node".into(), &[]).expect("energy loads");
    assert_eq!(
        collector
            .components()
            .iter()
            .map(|(c, s)| (c.to_string(), s.as_str()))
            .collect::<Vec<_>>(),
        [("cpu".to_string(), "model")],
        "no powercap under sysfs_root: the model"
    );
    let spinner = Worker::start("spin");
    let duty = Worker::start("duty");
    std::thread::sleep(Duration::from_millis(500));

    let mut series = Series::new("model");
    let (stat_before, started) = (proc_stat(), Instant::now());
    series.deltas(&collector.collect().unwrap());
    let (spin_before, duty_before) = (spinner.schedstat_ns(), duty.schedstat_ns());
    std::thread::sleep(MEASURE);
    let deltas = series.deltas(&collector.collect().unwrap());
    let (spin_after, duty_after) = (spinner.schedstat_ns(), duty.schedstat_ns());
    let (stat_after, seconds) = (proc_stat(), started.elapsed().as_secs_f64());

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
    let (spin_ns, duty_ns) = (spin_after - spin_before, duty_after - duty_before);
    let spin_j = deltas.by_pid[&(spinner.pid() as i64)];
    let duty_j = deltas.by_pid[&(duty.pid() as i64)];
    let (busy, all, cpus) = (stat_after.0 - stat_before.0, stat_after.1 - stat_before.1, stat_after.2);
    let utilisation = busy as f64 / all as f64;
    let model = documented_model_joules(cpus, utilisation, seconds);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let node_busy_ns = busy as f64 * 1e9 / hz;
    eprintln!(
        "spinner: bpf {spin_bpf} ns, schedstat {spin_ns} ns, {spin_j:.3} J; \
         duty: bpf {duty_bpf} ns, schedstat {duty_ns} ns, {duty_j:.3} J"
    );
    eprintln!(
        "node {:.3} J, model {model:.3} J ({cpus} CPUs, {:.1} % busy, {seconds:.3} s), \
         busy {:.0} ms, round {:?}",
        deltas.node,
        utilisation * 100.0,
        node_busy_ns / 1e6,
        collector.round()
    );

    // The workloads ran (loosely: the machine is shared; on a busy one
    // the spinner got 30 % of a CPU).
    assert!(spin_ns > MEASURE.as_nanos() as u64 / 10, "the spinner barely ran");
    assert!(duty_ns > MEASURE.as_nanos() as u64 / 40, "the duty cycle barely ran");
    // Kernel-side accounting agrees with the scheduler's own within 2 %.
    assert!(
        within(spin_bpf as f64, spin_ns as f64, 0.02),
        "spinner: bpf {spin_bpf} vs schedstat {spin_ns}"
    );
    assert!(
        within(duty_bpf as f64, duty_ns as f64, 0.02),
        "duty: bpf {duty_bpf} vs schedstat {duty_ns}"
    );
    // The node's energy is the documented model's.
    assert!(
        within(deltas.node, model, 0.03),
        "node {:.3} J vs the model's {model:.3} J: more than 3 % apart",
        deltas.node
    );
    // Each process gets the node's energy times its share of on-CPU time.
    for (what, joules, ns) in [("spinner", spin_j, spin_ns), ("duty", duty_j, duty_ns)] {
        let expected = deltas.node * ns as f64 / node_busy_ns;
        assert!(
            within(joules, expected, 0.05),
            "{what}: {joules:.3} J vs node × share {expected:.3} J: more than 5 % apart"
        );
    }
    // Conservation: the processes' energy is the node's within 0.5 %.
    assert!(
        within(deltas.processes, deltas.node, 0.005),
        "processes {} J vs node {} J",
        deltas.processes,
        deltas.node
    );

    // With the host's own /sys, the source says where its figures come
    // from: RAPL where the host has a readable zone, the model otherwise.
    let config = EnergySourceConfig {
        gpu: false,
        ..EnergySourceConfig::default()
    };
    let collector = Collector::load(&config, "test-node".into(), &[]).expect("energy loads");
    let want = if host_has_rapl() { "rapl" } else { "model" };
    assert!(
        collector.components().iter().all(|(_, source)| source.as_str() == want),
        "this host {} RAPL: {:?}",
        if want == "rapl" { "has" } else { "has no" },
        collector.components()
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
