//! `cargo xtask bench net`: what the `tcp` and `net_flows` sources cost a
//! busy web server. nginx (Debian's) serves a small file to wrk on
//! loopback, with keep-alive connections and with a new connection per
//! request, (1) with nothing loaded, (2) with `sonde run` running the
//! `tcp` source, (3) running `tcp` and `net_flows`, (4) with bpftrace doing
//! the `tcp` source's tracepoint work. The
//! modes take turns ([`ROUNDS`] rounds, the order rotating each round so
//! drift hits all alike). Per mode the report gives requests/s and CPU
//! time per request (nginx's worker plus wrk, which is what the programs
//! slow down, and which a busy shared machine disturbs much less than
//! throughput), each as min/median/max and as the median of each round's
//! off/on ratio (target ≥ 0.99); then the kernel-measured ns per program
//! run (`BPF_ENABLE_STATS`, on only for separate runs since it
//! slows every program), beside an empty program on the same tracepoint.
//!
//! A bench target, not xtask code: it loads eBPF objects, which xtask must
//! not link so that it builds before clang exists. Needs root, nginx, wrk and
//! bpftrace (`cargo xtask bench net` installs them), kernel 5.9+.
//! Writes `net.md` and `net.json` to the output directory.

#[path = "../common/mod.rs"]
mod common;

mod agents;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use agents::{Agent, Mode, ProgramSample};
use workload::{Connections, Nginx};

/// Rounds of every mode.
pub const ROUNDS: usize = 6;
/// Seconds of each wrk run.
pub const SECONDS: u32 = 3;
/// The target from the issue: requests/s with the sources on over off.
pub const TARGET_RATIO: f64 = 0.99;

/// Everything measured, by (workload, mode) index into
/// [`Connections::ALL`] and [`Mode::ALL`].
#[derive(Debug, Default)]
pub struct Results {
    /// Requests/s, one per round.
    pub rps: BTreeMap<(usize, usize), Vec<f64>>,
    /// CPU seconds per request, one per round.
    pub cpu: BTreeMap<(usize, usize), Vec<f64>>,
    /// Per round: rps(mode) / rps(off).
    pub rps_ratio: BTreeMap<(usize, usize), Vec<f64>>,
    /// Per round: cpu(off) / cpu(mode), so that 1 means free and 0.99 means 1 % more CPU.
    pub cpu_ratio: BTreeMap<(usize, usize), Vec<f64>>,
    /// By (mode label, program name): (ns per hit, hits per request) per
    /// round; the programs of one name (one tracepoint) summed.
    pub programs: BTreeMap<(String, String), Vec<(f64, f64)>>,
}

/// Runs the benchmark; returns the markdown report.
pub fn run(out_dir: &Path) -> Result<String> {
    // /proc/self belongs to the effective user.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX) != 0 {
        bail!("`cargo xtask bench net` needs root (it loads BPF programs)");
    }
    // Cargo builds the binary, with the bench profile, for bench targets.
    let sonde = Path::new(env!("CARGO_BIN_EXE_sonde"));
    let nginx = Nginx::start()?;
    let port = nginx.port;
    let poke = move || {
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    };
    // Warm up nginx, the page cache and the CPU frequency.
    workload::wrk(&nginx, Connections::KeepAlive, 2)?;

    let mut results = Results::default();
    for round in 0..ROUNDS {
        let mut order: Vec<usize> = (0..Mode::ALL.len()).collect();
        order.rotate_left(round % Mode::ALL.len());
        let mut this_round = BTreeMap::new();
        for m in order {
            let mode = Mode::ALL[m];
            let agent = Agent::start(mode, sonde, poke)?;
            for (w, connections) in Connections::ALL.into_iter().enumerate() {
                let run = workload::wrk(&nginx, connections, SECONDS)?;
                results.rps.entry((w, m)).or_default().push(run.rps);
                results.cpu.entry((w, m)).or_default().push(run.cpu_per_request);
                this_round.insert((w, m), run);
            }
            if let Some(agent) = agent {
                let samples = measure(&nginx, || agent.program_stats())?;
                record(&mut results, mode.label(), samples);
                agent.stop();
            }
            eprintln!(
                "round {}: {:<22} keep-alive {:>7.0} req/s {:>5.1} us/req; per request {:>6.0} req/s {:>5.1} us/req",
                round + 1,
                mode.label(),
                this_round[&(0, m)].rps,
                this_round[&(0, m)].cpu_per_request * 1e6,
                this_round[&(1, m)].rps,
                this_round[&(1, m)].cpu_per_request * 1e6,
            );
        }
        for w in 0..Connections::ALL.len() {
            let off = this_round[&(w, 0)];
            for m in 1..Mode::ALL.len() {
                let on = this_round[&(w, m)];
                results
                    .rps_ratio
                    .entry((w, m))
                    .or_default()
                    .push(on.rps / off.rps.max(1.0));
                results
                    .cpu_ratio
                    .entry((w, m))
                    .or_default()
                    .push(off.cpu_per_request / on.cpu_per_request.max(1e-12));
            }
        }
        // The floor: an empty program on the busiest tracepoint.
        let samples = empty_floor(&nginx)?;
        record(&mut results, "empty program (floor)", samples);
    }
    drop(nginx);

    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let markdown = report::markdown(&results);
    std::fs::write(out_dir.join("net.md"), &markdown)?;
    std::fs::write(out_dir.join("net.json"), report::json(&results))?;
    Ok(markdown)
}

/// A connection-per-request run with run-time statistics on: each
/// program's (run time, runs) during it, and the requests served.
fn measure(nginx: &Nginx, stats: impl Fn() -> Vec<(u32, ProgramSample)>) -> Result<(Vec<ProgramSample>, f64)> {
    let on = sonde_ebpf::stats::enable()?;
    let before = stats();
    let seconds = 2;
    let run = workload::wrk(nginx, Connections::PerRequest, seconds)?;
    let after = stats();
    drop(on);
    let samples = after
        .into_iter()
        .map(|(id, (name, ns, runs))| {
            let (ns0, runs0) = before
                .iter()
                .find(|(i, _)| *i == id)
                .map_or((0, 0), |(_, (_, ns, runs))| (*ns, *runs));
            (name, ns.saturating_sub(ns0), runs.saturating_sub(runs0))
        })
        .collect();
    Ok((samples, run.rps * f64::from(seconds)))
}

/// Adds one measurement: programs of one name (attached to one
/// tracepoint, from different objects) are summed per hit.
fn record(results: &mut Results, mode: &str, (samples, requests): (Vec<ProgramSample>, f64)) {
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (name, ns, runs) in samples {
        let entry = by_name.entry(name).or_default();
        entry.0 += ns;
        entry.1 = entry.1.max(runs);
    }
    for (name, (ns, hits)) in by_name {
        if hits > 0 {
            results
                .programs
                .entry((mode.to_string(), name))
                .or_default()
                .push((ns as f64 / hits as f64, hits as f64 / requests.max(1.0)));
        }
    }
}

/// An empty program on `sock:inet_sock_set_state`: what any program there
/// costs on this machine (dispatch, and the statistics' own clock reads).
fn empty_floor(nginx: &Nginx) -> Result<(Vec<ProgramSample>, f64)> {
    let mut object = sonde_ebpf::Object::load("probes", sonde_ebpf::objects::PROBES, |_| {})?;
    object.attach_tracepoint("probe_tracepoint", "sock", "inet_sock_set_state")?;
    let stats = || {
        object
            .program_stats()
            .into_iter()
            .map(|p| (0, (p.name, p.run_time_ns, p.run_count)))
            .collect()
    };
    measure(nginx, stats)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| std::path::PathBuf::from("target/bench"), std::path::PathBuf::from);
    println!("{}", run(&out)?);
    Ok(())
}
