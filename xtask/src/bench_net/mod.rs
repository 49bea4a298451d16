//! `cargo xtask bench net`: what the `tcp` and `net_flows` sources cost a
//! busy web server. nginx (Debian's) serves a small file to wrk on
//! loopback, with keep-alive connections and with a new connection per
//! request, (1) with nothing loaded, (2) with `sonde run` running both
//! sources, (3) with bpftrace doing the equivalent tracepoint work. The
//! modes take turns ([`REPETITIONS`] rounds, the order rotating each round
//! so drift hits all alike); the report gives requests/s min/median/max per
//! mode, the median of each round's on/off ratio (target ≥ 0.99), and the
//! kernel-measured ns per tracepoint hit (`kernel.bpf_stats_enabled`,
//! turned on only for separate runs, since it slows every program).
//!
//! Needs root, nginx, wrk and bpftrace (installed if missing), kernel 5.9+.
//! Writes `net.md` and `net.json` to the output directory.

mod agents;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use agents::{Agent, BpfStats, Mode};
use workload::{Connections, Nginx};

/// Rounds of every mode.
pub const REPETITIONS: usize = 5;
/// Seconds of each wrk run.
pub const SECONDS: u32 = 4;
/// The target from the issue: requests/s with the sources on over off.
pub const TARGET_RATIO: f64 = 0.99;

/// Everything measured.
#[derive(Debug, Default)]
pub struct Results {
    /// Requests/s by (workload, mode), one per round.
    pub rps: BTreeMap<(usize, usize), Vec<f64>>,
    /// Per round and workload: on/off ratio by mode.
    pub ratios: BTreeMap<(usize, usize), Vec<f64>>,
    /// Per mode, per program name: (ns per run, runs per request) per round.
    pub programs: BTreeMap<(usize, String), Vec<(f64, f64)>>,
}

/// Runs the benchmark; returns the markdown report.
pub fn run(out_dir: &Path) -> Result<String> {
    if !crate::setup::is_root() {
        bail!("`cargo xtask bench net` needs root (it loads BPF programs)");
    }
    crate::setup::ensure_packages(&["nginx", "wrk", "bpftrace"])?;
    crate::cargo(&["build", "--release", "--package", "sonde"])?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let sonde = Path::new(&target).join("release/sonde");
    let nginx = Nginx::start()?;
    let port = nginx.port;
    let poke = move || {
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    };
    // Warm up nginx, the page cache and the CPU frequency.
    workload::wrk(port, Connections::KeepAlive, 2)?;

    let mut results = Results::default();
    for round in 0..REPETITIONS {
        let mut baseline = [0.0; 2];
        let mut order = Mode::ALL.to_vec();
        order.rotate_left(round % Mode::ALL.len());
        let mut this_round: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        for mode in order {
            let m = Mode::ALL.iter().position(|x| *x == mode).unwrap();
            let agent = Agent::start(mode, &sonde, poke)?;
            for (w, connections) in Connections::ALL.into_iter().enumerate() {
                let rps = workload::wrk(port, connections, SECONDS)?;
                results.rps.entry((w, m)).or_default().push(rps);
                this_round.insert((w, m), rps);
                if mode == Mode::Off {
                    baseline[w] = rps;
                }
            }
            if let Some(agent) = agent {
                measure_programs(&agent, port, m, &mut results)?;
                agent.stop();
            }
            eprintln!(
                "round {}: {:<22} keep-alive {:>9.0} req/s, per request {:>8.0} req/s",
                round + 1,
                mode.label(),
                this_round[&(0, m)],
                this_round[&(1, m)]
            );
        }
        for w in 0..Connections::ALL.len() {
            for m in 1..Mode::ALL.len() {
                let ratio = this_round[&(w, m)] / baseline[w].max(1.0);
                results.ratios.entry((w, m)).or_default().push(ratio);
            }
        }
    }
    drop(nginx);

    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let markdown = report::markdown(&results);
    std::fs::write(out_dir.join("net.md"), &markdown)?;
    std::fs::write(out_dir.join("net.json"), report::json(&results))?;
    Ok(markdown)
}

/// A connection-per-request run with run-time statistics on: ns per run of
/// each program, and runs per request.
fn measure_programs(agent: &Agent, port: u16, mode: usize, results: &mut Results) -> Result<()> {
    let stats = BpfStats::on()?;
    let before = agent.program_stats();
    let seconds = SECONDS / 2;
    let rps = workload::wrk(port, Connections::PerRequest, seconds)?;
    let after = agent.program_stats();
    drop(stats);
    let requests = rps * f64::from(seconds);
    for (id, (name, ns, runs)) in after {
        let (_, (_, ns0, runs0)) = before.iter().find(|(i, _)| *i == id).cloned().unwrap_or_default();
        let runs = runs.saturating_sub(runs0);
        if runs == 0 {
            continue;
        }
        let ns_per_run = ns.saturating_sub(ns0) as f64 / runs as f64;
        results
            .programs
            .entry((mode, name))
            .or_default()
            .push((ns_per_run, runs as f64 / requests.max(1.0)));
    }
    Ok(())
}
