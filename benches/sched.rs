//! `cargo xtask bench sched`: what the scheduler sources cost under a
//! context-switch-heavy workload (two threads of this process passing a
//! byte over two pipes as fast as they can), side by side in the same run:
//! - the agent running `runqueue`, and `offcpu` at p = 0, 0.01, 0.1, 1
//!   (each with a blackhole sink, interval 1 s so collection is included);
//! - bpftrace's runqlat (`tools/runqlat.bt`: wakeup and switch tracepoints,
//!   a hash of timestamps, one histogram), the reference;
//! - an empty program on `sched:sched_switch` (the floor: dispatch and the
//!   statistics' own clock reads), and no tool at all (the workload's
//!   round trips per second).
//!
//! For each: the kernel's run time of the tool's programs (BPF_ENABLE_STATS)
//! per `sched_switch` run — every program of the tool counted (wakeups,
//! exits), divided by the switches, so it is the cost a context switch
//! brings —, the agent's user + system CPU from its own cgroup v2, and the
//! workload's round trips per second. Tools take turns (`--reps` rounds,
//! order rotating); each warms up `--warmup` s, then is measured for
//! `--seconds` s. Targets (issue "System sources"): runqueue ≤ 250 ns per
//! switch, offcpu at p = 0.01 ≤ 300 ns per (mostly unsampled) switch.
//! Needs root, bpftrace; writes `sched.md` and `sched.json` to `--out`.

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{program_deltas, Measured};
use common::Figure;
use serde_json::json;
use sonde_ebpf::{objects, stats, Object};

/// bpftrace's runqlat.bt (0.17 syntax), maps cleared at exit.
const BPFTRACE_RUNQLAT: &str =
    "tracepoint:sched:sched_wakeup,tracepoint:sched:sched_wakeup_new { @qtime[args->pid] = nsecs; } \
     tracepoint:sched:sched_switch { if (args->prev_state == 0) { @qtime[args->prev_pid] = nsecs; } \
     $ns = @qtime[args->next_pid]; if ($ns) { @usecs = hist((nsecs - $ns) / 1000); } delete(@qtime[args->next_pid]); } \
     END { clear(@qtime); clear(@usecs); }";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Runqueue,
    Offcpu(f64),
    Bpftrace,
    Empty,
    Nothing,
}

impl Tool {
    fn name(self) -> String {
        match self {
            Tool::Runqueue => "sonde runqueue".to_string(),
            Tool::Offcpu(p) => format!("sonde offcpu p = {p}"),
            Tool::Bpftrace => "bpftrace runqlat.bt".to_string(),
            Tool::Empty => "empty program on sched_switch (floor)".to_string(),
            Tool::Nothing => "no tool".to_string(),
        }
    }
}

/// One measured run of one tool.
#[derive(Clone, Debug, Default)]
struct Sample {
    wall_ns: u64,
    cpu_ns: u64,
    bpf_ns: f64,
    switch_runs: f64,
    round_trips: u64,
}

impl Sample {
    fn ns_per_switch(&self) -> f64 {
        self.bpf_ns / self.switch_runs.max(1.0)
    }
    fn cpu_percent(&self) -> f64 {
        self.cpu_ns as f64 / self.wall_ns.max(1) as f64 * 100.0
    }
    fn round_trips_per_s(&self) -> f64 {
        self.round_trips as f64 / (self.wall_ns.max(1) as f64 / 1e9)
    }
}

struct Args {
    out: PathBuf,
    seconds: u64,
    warmup: u64,
    reps: usize,
}

fn args() -> Args {
    let arg = |name: &str, default: &str| common::arg(name, default);
    Args {
        out: PathBuf::from(arg("--out", "target/bench")),
        seconds: arg("--seconds", "4").parse().expect("--seconds N"),
        warmup: arg("--warmup", "3").parse().expect("--warmup N"),
        reps: arg("--reps", "3").parse().expect("--reps N"),
    }
}

/// Two threads passing a byte over two pipes until `stop`; counts round trips.
struct PingPong {
    stop: Arc<AtomicBool>,
    trips: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl PingPong {
    fn start() -> PingPong {
        let (mut ping_rx, mut ping_tx) = std::io::pipe().unwrap();
        let (mut pong_rx, mut pong_tx) = std::io::pipe().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let trips = Arc::new(AtomicU64::new(0));
        let echo = std::thread::spawn(move || {
            let mut byte = [0u8];
            while ping_rx.read_exact(&mut byte).is_ok() && byte[0] != 0 {
                if pong_tx.write_all(&byte).is_err() {
                    break;
                }
            }
        });
        let (s, t) = (Arc::clone(&stop), Arc::clone(&trips));
        let driver = std::thread::spawn(move || {
            let mut byte = [7u8];
            while !s.load(Ordering::Relaxed) {
                ping_tx.write_all(&byte).unwrap();
                pong_rx.read_exact(&mut byte).unwrap();
                t.fetch_add(1, Ordering::Relaxed);
            }
            let _ = ping_tx.write_all(&[0]);
        });
        PingPong {
            stop,
            trips,
            threads: vec![echo, driver],
        }
    }

    fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn sonde_config(tool: Tool, dir: &Path) -> PathBuf {
    let source = match tool {
        Tool::Runqueue => "source \"runqueue\" \"s\" {\n  interval = \"1s\"\n}\n".to_string(),
        Tool::Offcpu(p) => format!("source \"offcpu\" \"s\" {{\n  interval = \"1s\"\n  probability = {p}\n}}\n"),
        _ => unreachable!(),
    };
    let path = dir.join("sched.hcl");
    std::fs::write(
        &path,
        format!("agent {{\n  api = null\n}}\n{source}sink \"blackhole\" \"b\" {{\n  inputs = [\"s\"]\n}}\n"),
    )
    .unwrap();
    path
}

fn spawn(tool: Tool, dir: &Path) -> Measured {
    let mut command = match tool {
        Tool::Runqueue | Tool::Offcpu(_) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_sonde"));
            c.args(["--log-level", "info", "run", "--config"])
                .arg(sonde_config(tool, dir));
            c
        }
        Tool::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.args(["-e", BPFTRACE_RUNQLAT]);
            c
        }
        _ => unreachable!(),
    };
    let mut running = Measured::spawn(command.stdout(Stdio::null()).stderr(Stdio::piped())).unwrap();
    let stderr = running.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("pipeline running") {
                let _ = tx.send(());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        running.note_programs();
        let ready = match tool {
            Tool::Bpftrace => running.program_stats().iter().any(|p| is_switch(&p.name)),
            _ => rx.try_recv().is_ok(),
        };
        if ready {
            std::thread::sleep(Duration::from_millis(300));
            running.note_programs();
            return running;
        }
        assert!(Instant::now() < deadline, "{} did not start", tool.name());
        assert!(running.child.try_wait().unwrap().is_none(), "{} exited", tool.name());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Programs whose runs are the switches (names are cut at 15 bytes).
fn is_switch(name: &str) -> bool {
    name.contains("switch")
}

fn run(tool: Tool, args: &Args, dir: &Path) -> Sample {
    let (measured, floor) = match tool {
        Tool::Empty => {
            let mut object = Object::load("probes", objects::PROBES, |_| {}).unwrap();
            object
                .attach_tracepoint("probe_tracepoint", "sched", "sched_switch")
                .unwrap();
            (None, Some(object))
        }
        Tool::Nothing => (None, None),
        _ => (Some(spawn(tool, dir)), None),
    };
    let workload = PingPong::start();
    std::thread::sleep(Duration::from_secs(args.warmup));
    let floor_stats = |o: &Option<Object>| {
        o.as_ref()
            .map(|o| {
                o.program_stats()
                    .iter()
                    .fold((0u64, 0u64), |a, p| (a.0 + p.run_time_ns, a.1 + p.run_count))
            })
            .unwrap_or_default()
    };
    let (start, start_programs, start_floor, trips0) = (
        measured.as_ref().map(Measured::read),
        measured.as_ref().map(Measured::program_stats).unwrap_or_default(),
        floor_stats(&floor),
        workload.trips(),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (end, end_programs, end_floor, trips1) = (
        measured.as_ref().map(Measured::read),
        measured.as_ref().map(Measured::program_stats).unwrap_or_default(),
        floor_stats(&floor),
        workload.trips(),
    );
    let wall_ns = t0.elapsed().as_nanos() as u64;
    workload.stop();
    let mut sample = Sample {
        wall_ns,
        round_trips: trips1 - trips0,
        ..Sample::default()
    };
    if let (Some(start), Some(end)) = (start, end) {
        sample.cpu_ns = end.cpu_ns.saturating_sub(start.cpu_ns);
        for (name, (ns, runs)) in program_deltas(&start_programs, end_programs) {
            sample.bpf_ns += ns;
            if is_switch(&name) {
                sample.switch_runs += runs;
            }
        }
    }
    if floor.is_some() {
        sample.bpf_ns = (end_floor.0 - start_floor.0) as f64;
        sample.switch_runs = (end_floor.1 - start_floor.1) as f64;
    }
    if let Some(m) = measured {
        m.stop(if tool == Tool::Bpftrace { "-INT" } else { "-TERM" });
    }
    sample
}

fn main() {
    let args = args();
    if Command::new("bpftrace").arg("--version").output().is_err() {
        panic!("bpftrace is not installed (cargo xtask bench sched installs it)");
    }
    let _stats = stats::enable().expect("BPF_ENABLE_STATS (root, kernel 5.8+)");
    let dir = tempfile::tempdir().unwrap();
    let tools = [
        Tool::Runqueue,
        Tool::Offcpu(0.0),
        Tool::Offcpu(0.01),
        Tool::Offcpu(0.1),
        Tool::Offcpu(1.0),
        Tool::Bpftrace,
        Tool::Empty,
        Tool::Nothing,
    ];
    let mut results: Vec<(Tool, Vec<Sample>)> = tools.iter().map(|t| (*t, Vec::new())).collect();
    for rep in 0..args.reps {
        for i in 0..tools.len() {
            let tool = tools[(i + rep) % tools.len()];
            let s = run(tool, &args, dir.path());
            eprintln!(
                "rep {}: {:<40} {:>7.1} ns/switch, agent {:.2} % CPU, {:.0} round trips/s",
                rep + 1,
                tool.name(),
                s.ns_per_switch(),
                s.cpu_percent(),
                s.round_trips_per_s()
            );
            results.iter_mut().find(|(t, _)| *t == tool).unwrap().1.push(s);
        }
    }
    let (markdown, figures) = render(&results, &args);
    println!("{markdown}");
    let details = json!({
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "tools": results.iter().map(|(tool, samples)| json!({
            "tool": tool.name(),
            "runs": samples.iter().map(|s| json!({
                "ns_per_switch": s.ns_per_switch(),
                "agent_cpu_percent": s.cpu_percent(),
                "round_trips_per_s": s.round_trips_per_s(),
                "bpf_ns": s.bpf_ns,
                "switch_runs": s.switch_runs,
                "cpu_ns": s.cpu_ns,
                "wall_ns": s.wall_ns,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    common::write_report(&args.out, "sched", &markdown, &figures, details);
}

fn render(results: &[(Tool, Vec<Sample>)], args: &Args) -> (String, Vec<Figure>) {
    let of = |tool: Tool, f: fn(&Sample) -> f64| -> Vec<f64> {
        results
            .iter()
            .find(|(t, _)| *t == tool)
            .map(|(_, s)| s.iter().map(f).collect())
            .unwrap_or_default()
    };
    let mut out = format!(
        "### sched: cost per context switch under a pipe ping-pong\n\n\
         {} interleaved runs of {} s each (after {} s warm-up); ns/switch = kernel run time of all the \
         tool's programs / runs of its sched_switch program; agent CPU = its cgroup's user + system time. \
         Targets: runqueue ≤ 250 ns/switch, offcpu p = 0.01 ≤ 300 ns/switch.\n\n\
         | tool | ns/switch min | median | max | agent CPU % (median) | round trips/s (median) |\n\
         |---|---:|---:|---:|---:|---:|\n",
        args.reps, args.seconds, args.warmup
    );
    let baseline = of(Tool::Bpftrace, Sample::ns_per_switch);
    let mut figures = Vec::new();
    for (tool, samples) in results {
        let ns = samples.iter().map(Sample::ns_per_switch).collect::<Vec<_>>();
        let (min, median, max) = common::spread(&ns);
        let cpu = common::spread(&samples.iter().map(Sample::cpu_percent).collect::<Vec<_>>()).1;
        let trips = common::spread(&samples.iter().map(Sample::round_trips_per_s).collect::<Vec<_>>()).1;
        if *tool == Tool::Nothing {
            let _ = writeln!(out, "| {} | – | – | – | – | {trips:.0} |", tool.name());
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {min:.1} | {median:.1} | {max:.1} | {cpu:.2} | {trips:.0} |",
            tool.name()
        );
        match tool {
            Tool::Runqueue | Tool::Offcpu(_) => {
                let mut figure = Figure::against(format!("{} ns/switch", tool.name()), "ns/switch", &ns, &baseline);
                figure.gated = false;
                figures.push(figure);
                figures.push(Figure::new(
                    format!("{} agent CPU", tool.name()),
                    "% of one core",
                    &samples.iter().map(Sample::cpu_percent).collect::<Vec<_>>(),
                ));
            }
            Tool::Bpftrace => figures.push(Figure::new("bpftrace runqlat.bt ns/switch", "ns/switch", &ns)),
            _ => {}
        }
    }
    (out, figures)
}
