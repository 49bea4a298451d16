//! What the `protocols` source costs a web server at a fixed request
//! rate, `cargo xtask bench protocols` (issues #16, #17: `databases` for the others). nginx (Debian's) serves
//! a small page on loopback to wrk paced by its Lua `delay()` hook (this
//! shared VM cannot resolve maximum throughput): about 1k and 10k
//! requests/s on keep-alive connections, and 1k/s with a new connection
//! per request (connections calibrated once, with the agent off, to reach
//! the rate; the rate achieved is reported). Agent off (nothing loaded) and on (`sonde run`, the
//! `protocols` source at its defaults, spans into a blackhole) take turns,
//! `--rounds` rounds of `--seconds` per run, the order rotating each round.
//!
//! Per request: the eBPF run time of every program the agent loaded
//! (`BPF_ENABLE_STATS`, on only during the agent's measured runs), per
//! side (wrk's client calls and nginx's server calls are both traced);
//! the agent's CPU (its own cgroup v2: every thread, user + system); the
//! CPU of nginx's worker and wrk; wrk's p50/p99 latency; and whether every
//! request became its two spans: the blackhole's received count beside
//! wrk's, the kernel side's lost events and the engine's drops and gaps.
//!
//! Then, each round with the agent on, a Go HTTPS client at 1k requests/s
//! to a Go HTTPS server (both traced through the Go `crypto/tls` probes):
//! eBPF ns per request per side, and of those the Go TLS probes' share.
//!
//! Then HTTP/2 over h2c (`h2`): nghttpd and h2load at 10k requests/s.
//!
//! Needs root, nginx, wrk, Go (`golang-go`), nghttpd and h2load. Writes `protocols.md` and
//! `protocols.json`.

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod gotls;
mod h2;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use agent::{Agent, COUNTERS_INTERVAL};
use common::arg;
use common::web::{self, Load, Nginx, Run, TempDir};

pub use common::rate::{DELAY_MS, WORKLOADS};

/// What the agent did during one run of one workload.
#[derive(Clone, Debug, Default)]
pub struct OnRun {
    /// eBPF run time of all its programs, ns, and their runs.
    pub bpf_ns: f64,
    pub bpf_runs: f64,
    /// The agent's CPU, ns, over `wall_ns`.
    pub cpu_ns: f64,
    pub wall_ns: f64,
    /// What it reported: spans delivered, losses.
    pub report: agent::Report,
    /// By program name: (run time ns, runs).
    pub programs: BTreeMap<String, (f64, f64)>,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Results {
    pub rounds: usize,
    pub seconds: u32,
    /// By workload index: the load that reaches its rate (calibrated).
    pub loads: Vec<Load>,
    /// By workload index: wrk's runs with the agent off and on, one per round.
    pub off: BTreeMap<usize, Vec<Run>>,
    pub on: BTreeMap<usize, Vec<Run>>,
    /// By workload index: the agent's side of each on-run.
    pub agent: BTreeMap<usize, Vec<OnRun>>,
    /// eBPF ns/s of the agent's programs with no request being made (the
    /// node's other processes' system calls), one per round.
    pub background_bpf_ns_per_s: Vec<f64>,
    /// The Go TLS client's runs (agent on): requests, and the agent's side.
    pub go: Vec<(f64, OnRun)>,
    /// /proc/loadavg when the benchmark started and ended.
    pub load_before: String,
    pub load_after: String,
}

fn main() -> Result<()> {
    let out = PathBuf::from(arg("--out", "target/bench"));
    let rounds: usize = arg("--rounds", "5").parse()?;
    let seconds: u32 = arg("--seconds", "5").parse()?;
    if std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        != Some("0")
    {
        bail!("`cargo xtask bench protocols` needs root (the agent loads eBPF programs)");
    }
    // Cargo builds the binary, with the bench profile, for bench targets.
    let sonde = Path::new(env!("CARGO_BIN_EXE_sonde"));
    let dir = TempDir::new("sonde-bench-protocols")?;
    let mut results = Results {
        rounds,
        seconds,
        load_before: loadavg(),
        ..Results::default()
    };
    let nginx = Nginx::start()?;
    let go = gotls::GoTls::start(dir.path())?;
    for workload in WORKLOADS {
        let load = workload.calibrate(&nginx)?;
        eprintln!("{}: {} connections", workload.label, load.connections);
        results.loads.push(load);
    }
    for round in 0..rounds {
        for on in [round % 2 == 1, round % 2 == 0] {
            if on {
                run_on(&mut results, sonde, dir.path(), &nginx, &go, round)?;
            } else {
                for (w, load) in results.loads.clone().into_iter().enumerate() {
                    let run = web::wrk(&nginx, load, seconds)?;
                    let label = WORKLOADS[w].label;
                    eprintln!("round {}: off {label:<30} {}", round + 1, summary(&run));
                    results.off.entry(w).or_default().push(run);
                }
            }
        }
    }
    drop(nginx);
    drop(go);
    let h2 = h2::measure(sonde, dir.path(), rounds, seconds)?;
    results.load_after = loadavg();
    let (mut markdown, mut figures) = report::render(&results);
    let (h2_markdown, h2_figures) = h2::render(&h2);
    markdown.push_str(&h2_markdown);
    figures.extend(h2_figures);
    println!("{markdown}");
    common::write_report(&out, "protocols", &markdown, &figures, report::details(&results));
    Ok(())
}

/// One round with the agent on: its background, then every workload.
fn run_on(
    results: &mut Results,
    sonde: &Path,
    dir: &Path,
    nginx: &Nginx,
    go: &gotls::GoTls,
    round: usize,
) -> Result<()> {
    let agent = Agent::start(sonde, dir, nginx.port)?;
    {
        let stats = sonde_ebpf::stats::enable()?;
        let start = agent.process.read();
        std::thread::sleep(Duration::from_secs(2));
        let end = agent.process.read();
        drop(stats);
        let wall = end.at.unwrap().duration_since(start.at.unwrap()).as_secs_f64();
        results
            .background_bpf_ns_per_s
            .push((end.bpf_ns - start.bpf_ns) as f64 / wall);
    }
    for (w, load) in results.loads.clone().into_iter().enumerate() {
        let label = WORKLOADS[w].label;
        // The counters of the previous run have been emitted by now.
        std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
        let before = agent.report()?;
        let stats = sonde_ebpf::stats::enable()?;
        let (start, programs_start) = (agent.process.read(), agent.process.program_stats());
        let run = web::wrk(nginx, load, results.seconds)?;
        let (end, programs_end) = (agent.process.read(), agent.process.program_stats());
        drop(stats);
        // Let the last spans through and the counters be emitted.
        std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
        let after = agent.report()?;
        let programs = common::process::program_deltas(&programs_start, programs_end);
        let on = OnRun {
            bpf_ns: (end.bpf_ns - start.bpf_ns) as f64,
            bpf_runs: (end.bpf_runs - start.bpf_runs) as f64,
            cpu_ns: (end.cpu_ns - start.cpu_ns) as f64,
            wall_ns: end.at.unwrap().duration_since(start.at.unwrap()).as_nanos() as f64,
            report: before.until(&after),
            programs,
        };
        eprintln!(
            "round {}: on  {label:<30} {}; eBPF {:.0} ns/req, agent {:.2} % CPU, {} spans, {} lost",
            round + 1,
            summary(&run),
            on.bpf_ns / run.requests.max(1.0),
            on.cpu_ns / on.wall_ns * 100.0,
            on.report.spans,
            on.report.lost_events,
        );
        results.on.entry(w).or_default().push(run);
        results.agent.entry(w).or_default().push(on);
    }
    // The Go client and server, through the Go TLS probes.
    std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
    let before = agent.report()?;
    let stats = sonde_ebpf::stats::enable()?;
    let (start, programs_start) = (agent.process.read(), agent.process.program_stats());
    let requests = go.load(results.seconds)?;
    let (end, programs_end) = (agent.process.read(), agent.process.program_stats());
    drop(stats);
    std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
    let after = agent.report()?;
    let on = OnRun {
        bpf_ns: (end.bpf_ns - start.bpf_ns) as f64,
        bpf_runs: (end.bpf_runs - start.bpf_runs) as f64,
        cpu_ns: (end.cpu_ns - start.cpu_ns) as f64,
        wall_ns: end.at.unwrap().duration_since(start.at.unwrap()).as_nanos() as f64,
        report: before.until(&after),
        programs: common::process::program_deltas(&programs_start, programs_end),
    };
    eprintln!(
        "round {}: on  {:<30} {requests} requests; eBPF {:.0} ns/req/side, {} spans, {} lost",
        round + 1,
        "Go crypto/tls, 1k/s",
        on.bpf_ns / requests.max(1.0) / 2.0,
        on.report.spans,
        on.report.lost_events,
    );
    results.go.push((requests, on));
    agent.stop();
    Ok(())
}

fn summary(run: &Run) -> String {
    format!(
        "{:>6.0} req/s, {:>5.1} us CPU/req, p50 {:>6.1} us, p99 {:>7.1} us",
        run.rps,
        run.cpu_per_request * 1e6,
        run.p50 * 1e6,
        run.p99 * 1e6
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
