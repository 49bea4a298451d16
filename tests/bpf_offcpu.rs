//! `source "offcpu"` against the real kernel (needs root, gcc):
//! - 200 × nanosleep(10 ms) in a function of known name: off-CPU time
//!   ≈ the program's own sum of its sleeps (±10 % at p = 1, ±30 % at
//!   p = 0.1), and the stack names the sleeping function and the kernel's
//!   clock_nanosleep;
//! - a pipe ping-pong between two processes: each one's wait stack goes
//!   through the kernel's pipe_read and its own waiting function;
//! - the kernel matrix's check (a thread of this process sleeping), with
//!   the tp_btf program and with the raw_tp one.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use sonde_core::event::{Event, Frame};
use sonde_ebpf::testing::{bpf_available_or_skip, run_check, skip_or_fail};
use sonde_sources::offcpu::conformance::{names, reported_ns, sleeps_agree};
use sonde_sources::offcpu::{Collector, OffcpuSourceConfig, SAMPLE_TYPE, SAMPLE_UNIT};
use sonde_sources::runqueue::bpf::attach::NO_TP_BTF_ENV;

/// One test at a time in this binary: the kernel checks count this
/// process' own sleeps in nanosleep (any thread's), and the tests switch
/// the tp_btf / raw_tp choice through the environment.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn offcpu_conformance() {
    let _serial = serial();
    std::env::remove_var(NO_TP_BTF_ENV);
    run_check("offcpu_conformance", sonde_sources::offcpu::conformance::check);
}

#[test]
fn offcpu_conformance_raw_tp() {
    let _serial = serial();
    std::env::set_var(NO_TP_BTF_ENV, "1");
    run_check("offcpu_conformance_raw_tp", || {
        let result = sleeps_agree(50, Duration::from_millis(10), 1.0, 0.10);
        std::env::remove_var(NO_TP_BTF_ENV);
        let evidence = result?;
        assert!(evidence.contains("(raw_tp)"), "raw_tp was forced: {evidence}");
        Ok(evidence)
    });
}

/// tests/workload/waits.c, built with frame pointers.
fn build(test: &str, dir: &Path) -> Option<PathBuf> {
    let binary = dir.join("sonde-waits");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/waits.c");
    let built = Command::new("gcc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&binary)
        .arg(source)
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        skip_or_fail(test, "gcc cannot build tests/workload/waits.c");
        return None;
    }
    Some(binary)
}

/// The workload, waiting for its go.
struct Waits {
    child: Child,
    out: BufReader<ChildStdout>,
    pids: Vec<u32>,
}

impl Waits {
    fn start(binary: &Path, args: &[&str]) -> Waits {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let pids = line
            .strip_prefix("ready ")
            .expect("ready line")
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        Waits { child, out, pids }
    }

    /// Runs the workload; its own figure (ns).
    fn run(&mut self) -> f64 {
        self.child.stdin.as_mut().unwrap().write_all(b"g").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().strip_prefix("done ").expect("done line").parse().unwrap()
    }
}

impl Drop for Waits {
    fn drop(&mut self) {
        let _ = self.child.stdin.as_mut().map(|s| s.write_all(b"g"));
        let _ = self.child.wait();
    }
}

fn load(pids: &[u32], probability: f64) -> Collector {
    let config = OffcpuSourceConfig {
        probability,
        pids: pids.to_vec(),
        ..OffcpuSourceConfig::default()
    };
    Collector::load(&config, "test-node".into(), &[]).expect("offcpu loads")
}

fn folded(frames: &[Frame]) -> String {
    frames
        .iter()
        .rev()
        .map(|f| f.function.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

fn print_stacks(events: &[Event]) {
    for event in events {
        if let Event::Profile(p) = event {
            assert_eq!(
                (p.sample_type.as_str(), p.sample_unit.as_str()),
                (SAMPLE_TYPE, SAMPLE_UNIT)
            );
            for s in &p.samples {
                let state = p.attributes.get(sonde_sources::offcpu::STATE).map(|v| v.to_string());
                eprintln!("{:>10} µs  {:?}  {}", s.count, state, folded(&s.frames));
            }
        }
    }
}

fn sleeps_at(test: &str, probability: f64, tolerance: f64) {
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(binary) = build(test, dir.path()) else { return };
    let mut waits = Waits::start(&binary, &["sleep", "200"]);
    let mut collector = load(&waits.pids, probability);
    let mut symbols = collector.symbols();
    let slept = waits.run();
    let events = collector.collect(&mut symbols).unwrap();
    print_stacks(&events);
    let pid = waits.pids[0];
    let all = reported_ns(&events, pid, "sleeping", |_| true);
    let named = reported_ns(&events, pid, "sleeping", |frames| {
        names(frames, "sleep_here") && names(frames, "clock_nanosleep")
    });
    eprintln!(
        "p = {probability}: {:.1} ms off CPU through sleep_here and clock_nanosleep ({:.1} ms sleeping in all), the program slept {:.1} ms",
        named / 1e6,
        all / 1e6,
        slept / 1e6
    );
    assert!(
        (named - slept).abs() <= tolerance * slept,
        "off CPU through sleep_here + clock_nanosleep: {:.1} ms, the program's own sum {:.1} ms (±{:.0} %)",
        named / 1e6,
        slept / 1e6,
        tolerance * 100.0
    );
}

/// 200 × nanosleep(10 ms), every switch-out sampled: ±10 %.
#[test]
fn nanosleeps_add_up_at_p_1() {
    let _serial = serial();
    sleeps_at("nanosleeps_add_up_at_p_1", 1.0, 0.10);
}

/// The same, one switch-out in ten sampled and scaled by 10: ±30 %.
#[test]
fn nanosleeps_add_up_at_p_0_1() {
    let _serial = serial();
    sleeps_at("nanosleeps_add_up_at_p_0_1", 0.1, 0.30);
}

/// A pipe ping-pong: each side waits in the kernel's pipe_read, called
/// from its own waiting function, for most of the run.
#[test]
fn pipe_ping_pong_waits_in_pipe_read() {
    let _serial = serial();
    let test = "pipe_ping_pong_waits_in_pipe_read";
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(binary) = build(test, dir.path()) else { return };
    let mut waits = Waits::start(&binary, &["pingpong", "20000"]);
    let mut collector = load(&waits.pids, 1.0);
    let mut symbols = collector.symbols();
    let wall = waits.run();
    let events = collector.collect(&mut symbols).unwrap();
    print_stacks(&events);
    for (pid, function) in [(waits.pids[0], "ping_wait"), (waits.pids[1], "pong_wait")] {
        let waiting = reported_ns(&events, pid, "sleeping", |frames| {
            names(frames, function) && names(frames, "pipe_read")
        });
        let other = reported_ns(&events, pid, "sleeping", |frames| {
            names(
                frames,
                if function == "ping_wait" {
                    "pong_wait"
                } else {
                    "ping_wait"
                },
            )
        });
        eprintln!(
            "{function} (pid {pid}): {:.1} ms off CPU in pipe_read, run {:.1} ms",
            waiting / 1e6,
            wall / 1e6
        );
        // Each side waits while the other works: a large part of the run,
        // never more than all of it, and never under the other's function.
        assert!(
            waiting > 0.2 * wall && waiting < 1.1 * wall,
            "{function}: {:.1} ms in pipe_read of a {:.1} ms run",
            waiting / 1e6,
            wall / 1e6
        );
        assert_eq!(other, 0.0, "{function}'s process never waits in the other's function");
    }
}
