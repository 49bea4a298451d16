//! `cargo xtask bench process`: what the `process` source costs during
//! exec storms of [`RATES`] execs per second (fork+exec of `/bin/true`,
//! paced, from two threads), with the agent off and on, interleaved
//! ([`REPETITIONS`] runs each): the kernel's run time per program run
//! (`BPF_ENABLE_STATS`), the agent's CPU (its own cgroup: all threads,
//! ring buffer drain, ancestry, events into a blackhole), events lost
//! (`sonde_ebpf_lost_events_total`), events delivered, and the workload's
//! own spawn+wait latency. Needs root.

#[path = "../common/mod.rs"]
mod common;
mod storm;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use common::Figure;
use sonde_ebpf::stats;

use storm::{Agent, Storm};

/// Target exec rates, per second.
pub const RATES: &[u64] = &[1000, 4000];
/// Seconds of each storm.
pub const SECONDS: u64 = 5;
/// Runs of each mode at each rate.
pub const REPETITIONS: usize = 3;

/// One run with the agent.
#[derive(Clone, Debug, Default)]
struct OnRun {
    storm: Storm,
    agent_cpu_pct: f64,
    bpf_ns_per_run: f64,
    bpf_runs: f64,
    lost: f64,
    delivered: f64,
}

fn main() -> Result<()> {
    let out = std::path::PathBuf::from(common::arg("--out", "target/bench"));
    let sonde = Path::new(env!("CARGO_BIN_EXE_sonde"));
    let _stats = stats::enable().context("cannot enable BPF run-time statistics (kernel 5.8+, root)")?;
    let dir = common::web::TempDir::new("sonde-bench-process")?;
    let mut md = format!(
        "### process: exec storms\n\n{REPETITIONS} interleaved runs per mode; each storm {SECONDS} s of \
         fork+exec of `/bin/true` from two threads, paced. Agent: `sonde run` with `source \"process\"` \
         at its defaults into a blackhole, in a cgroup of its own. ns/run: kernel run time per program \
         run (exec, exit and fork programs together; forks include threads).\n\n\
         | target exec/s | mode | achieved exec/s | spawn+wait µs | agent CPU % | eBPF ns/run | lost events | events delivered (node-wide) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut figures = Vec::new();
    let mut details = serde_json::Map::new();
    for &rate in RATES {
        let (mut offs, mut ons) = (Vec::new(), Vec::new());
        for rep in 0..REPETITIONS {
            let off = || storm::run(rate, SECONDS);
            let on = || -> Result<OnRun> {
                let agent = Agent::start(sonde, dir.path())?;
                let (before, report0) = (agent.process.read(), agent.report()?);
                let programs0 = agent.process.program_stats();
                let storm = storm::run(rate, SECONDS)?;
                // Let the agent drain and emit its counters.
                std::thread::sleep(std::time::Duration::from_millis(1500));
                let (after, report1) = (agent.process.read(), agent.report()?);
                let deltas = common::process::program_deltas(&programs0, agent.process.program_stats());
                // Only this source's programs: others loaded on the machine
                // while the agent started (other tests) are not its cost.
                let (ns, runs) = deltas
                    .iter()
                    .filter(|(name, _)| name.starts_with("process_"))
                    .fold((0.0, 0.0), |(t, n), (_, (dt, dn))| (t + dt, n + dn));
                for (name, (dt, dn)) in deltas.iter().filter(|(name, _)| name.starts_with("process_")) {
                    eprintln!("  {name}: {dn:.0} runs, {:.0} ns/run", dt / dn.max(1.0));
                }
                agent.stop();
                Ok(OnRun {
                    storm,
                    agent_cpu_pct: before.percent_until(&after).0,
                    bpf_ns_per_run: ns / runs.max(1.0),
                    bpf_runs: runs,
                    lost: report1.lost - report0.lost,
                    delivered: report1.delivered - report0.delivered,
                })
            };
            if rep % 2 == 0 {
                offs.push(off()?);
                ons.push(on()?);
            } else {
                ons.push(on()?);
                offs.push(off()?);
            }
            eprintln!(
                "{rate}/s rep {}: off {:.0} exec/s {:.0} µs; on {:.0} exec/s {:.0} µs, agent {:.1} % CPU, {:.0} ns/run, {} lost",
                rep + 1,
                offs[rep].achieved,
                offs[rep].spawn_us,
                ons[rep].storm.achieved,
                ons[rep].storm.spawn_us,
                ons[rep].agent_cpu_pct,
                ons[rep].bpf_ns_per_run,
                ons[rep].lost
            );
        }
        let med = |v: Vec<f64>| common::spread(&v).1;
        let _ = writeln!(
            md,
            "| {rate} | off | {:.0} | {:.0} | – | – | – | – |",
            med(offs.iter().map(|s| s.achieved).collect()),
            med(offs.iter().map(|s| s.spawn_us).collect())
        );
        let _ = writeln!(
            md,
            "| {rate} | on | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} |",
            med(ons.iter().map(|r| r.storm.achieved).collect()),
            med(ons.iter().map(|r| r.storm.spawn_us).collect()),
            med(ons.iter().map(|r| r.agent_cpu_pct).collect()),
            med(ons.iter().map(|r| r.bpf_ns_per_run).collect()),
            ons.iter().map(|r| r.lost).fold(0.0, f64::max),
            med(ons.iter().map(|r| r.delivered).collect()),
        );
        let spawn_on: Vec<f64> = ons.iter().map(|r| r.storm.spawn_us).collect();
        let spawn_off: Vec<f64> = offs.iter().map(|s| s.spawn_us).collect();
        figures.push(Figure::against(
            format!("spawn+wait at {rate}/s, agent on"),
            "µs",
            &spawn_on,
            &spawn_off,
        ));
        figures.push(Figure::new(
            format!("eBPF ns per program run at {rate}/s"),
            "ns/run",
            &ons.iter().map(|r| r.bpf_ns_per_run).collect::<Vec<_>>(),
        ));
        figures.push(Figure::new(
            format!("agent CPU at {rate}/s"),
            "% of a core",
            &ons.iter().map(|r| r.agent_cpu_pct).collect::<Vec<_>>(),
        ));
        figures.push(Figure::new(
            format!("lost events at {rate}/s"),
            "events",
            &ons.iter().map(|r| r.lost).collect::<Vec<_>>(),
        ));
        details.insert(
            rate.to_string(),
            serde_json::json!({
                "off": offs.iter().map(|s| serde_json::json!({"achieved": s.achieved, "spawn_us": s.spawn_us})).collect::<Vec<_>>(),
                "on": ons.iter().map(|r| serde_json::json!({
                    "achieved": r.storm.achieved, "spawn_us": r.storm.spawn_us, "agent_cpu_pct": r.agent_cpu_pct,
                    "bpf_ns_per_run": r.bpf_ns_per_run, "bpf_runs": r.bpf_runs, "lost": r.lost, "delivered": r.delivered,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    println!("{md}");
    common::write_report(&out, "process", &md, &figures, serde_json::Value::Object(details));
    Ok(())
}
