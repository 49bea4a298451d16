//! The agent benchmark's markdown section, headline figures and JSON.

use std::fmt::Write as _;

use crate::common::{spread, Figure};
use crate::modes::Mode;
use crate::Results;

/// Targets from the whole-agent issue, reported beside the figures.
const TARGET_IDLE_PERCENT: f64 = 0.3;
const TARGET_RSS_MIB: f64 = 40.0;
const TARGET_NS_PER_HIT: f64 = 60.0;
/// VmHWM after a connection storm, every source on.
const TARGET_BURST_HWM_MIB: f64 = 48.0;

fn mmm(values: &[f64], digits: usize) -> String {
    let (min, median, max) = spread(values);
    format!("{median:.digits$} ({min:.digits$}–{max:.digits$})")
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

/// Per-round ratios of `on` to `off` (same round index).
fn ratios(on: &[f64], off: &[f64]) -> Vec<f64> {
    on.iter().zip(off).map(|(a, b)| a / b).collect()
}

/// A mode's short name in figure names.
fn key(mode: Mode) -> &'static str {
    match mode {
        Mode::Off => "off",
        Mode::Default => "default pipeline",
        Mode::All => "all sources",
    }
}

/// The overhead ledger: per workload and mode, what a request costs.
fn ledger(r: &Results, md: &mut String, figures: &mut Vec<Figure>) {
    let _ = writeln!(
        md,
        "\n### Overhead ledger: cost per request at fixed rates\n\n\
         nginx serves a 612-byte page on loopback to wrk paced by its Lua `delay()` ({delay} ms after each \
         response per connection; connections calibrated once with the agent off to reach each rate). Modes \
         take turns each round, {seconds} s per workload. Per request: the workload's CPU (nginx's worker + \
         wrk, on-CPU time), the agent's own CPU (its cgroup), and its eBPF programs' run time \
         (`BPF_ENABLE_STATS`, on during the agent's runs only). eBPF runs in the workload's threads, so it \
         is inside the workload's CPU too: the agent's whole cost per request is its own CPU plus what the \
         workload's grew by (\"added\", from each round's own \"off\"). Median (min–max) over {rounds} \
         rounds; requests/s only as context.\n\n\
         | workload | agent | requests/s | workload CPU µs/request | × off | agent CPU µs/request | eBPF µs/request | added µs/request |\n\
         |---|---|---|---|---|---|---|---|",
        delay = crate::common::rate::DELAY_MS,
        seconds = r.wrk_seconds,
        rounds = r.rounds,
    );
    let off = &r.loaded[0].1;
    for (w, workload) in crate::common::rate::WORKLOADS.iter().enumerate() {
        let off_cpu: Vec<f64> = off.iter().map(|x| x.ledger[w].workload_us).collect();
        for (mode, runs) in &r.loaded {
            let samples: Vec<_> = runs.iter().map(|x| x.ledger[w]).collect();
            let rps: Vec<f64> = samples.iter().map(|s| s.rps).collect();
            let cpu: Vec<f64> = samples.iter().map(|s| s.workload_us).collect();
            let agent: Vec<f64> = samples.iter().map(|s| s.agent_us).collect();
            let bpf: Vec<f64> = samples.iter().map(|s| s.bpf_us).collect();
            let added: Vec<f64> = samples
                .iter()
                .zip(&off_cpu)
                .map(|(s, off)| s.agent_us + s.workload_us - off)
                .collect();
            let on = *mode != Mode::Off;
            let dash = || "—".to_string();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                workload.label,
                mode.label(),
                mmm(&rps, 0),
                mmm(&cpu, 1),
                if on { mmm(&ratios(&cpu, &off_cpu), 3) } else { dash() },
                if on { mmm(&agent, 2) } else { dash() },
                if on { mmm(&bpf, 2) } else { dash() },
                if on { mmm(&added, 2) } else { dash() },
            );
            if on {
                let name = |what: &str| format!("{what}, {}, {}", workload.label, key(*mode));
                figures.push(Figure::new(
                    name("workload CPU per request vs off"),
                    "ratio",
                    &ratios(&cpu, &off_cpu),
                ));
                figures.push(Figure::new(name("agent CPU per request"), "µs/request", &agent));
                figures.push(Figure::new(name("eBPF per request"), "µs/request", &bpf));
                figures.push(Figure::new(name("added per request"), "µs/request", &added));
            }
        }
    }
}

/// The markdown section and the headline figures.
pub fn render(r: &Results) -> (String, Vec<Figure>) {
    let mut md = String::new();
    let mut figures = Vec::new();
    let _ = writeln!(
        md,
        "### Whole agent ({} interleaved rounds; median (min–max))\n\n\
         Idle node, {} s per round after the warm-up. CPU = the agent's user + system time (its own \
         cgroup, all threads); eBPF = its programs' kernel-measured run time.\n\n\
         | agent | CPU % of one core | eBPF % | total % (target ≤ {TARGET_IDLE_PERCENT}) | VmHWM MiB (target ≤ {TARGET_RSS_MIB}) | VmRSS MiB |\n\
         |---|---|---|---|---|---|",
        r.rounds, r.idle_seconds
    );
    for (mode, runs) in &r.idle {
        let cpu: Vec<f64> = runs.iter().map(|x| x.cpu_percent).collect();
        let bpf: Vec<f64> = runs.iter().map(|x| x.bpf_percent).collect();
        let total: Vec<f64> = runs.iter().map(|x| x.cpu_percent + x.bpf_percent).collect();
        let hwm: Vec<f64> = runs.iter().map(|x| x.hwm_mib).collect();
        let rss: Vec<f64> = runs.iter().map(|x| x.rss_mib).collect();
        let (_, total_median, _) = spread(&total);
        let (_, hwm_median, _) = spread(&hwm);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} {} | {} {} | {} |",
            mode.label(),
            mmm(&cpu, 3),
            mmm(&bpf, 3),
            mmm(&total, 3),
            mark(total_median <= TARGET_IDLE_PERCENT),
            mmm(&hwm, 1),
            mark(hwm_median <= TARGET_RSS_MIB),
            mmm(&rss, 1),
        );
        figures.push(Figure::new(
            format!("idle CPU %, {}", key(*mode)),
            "% of one core",
            &total,
        ));
        figures.push(Figure::new(format!("VmHWM, {}", key(*mode)), "MiB", &hwm));
    }

    ledger(r, &mut md, &mut figures);

    let off = &r.loaded[0].1;
    let off_getpgid: Vec<f64> = off.iter().map(|x| x.getpgid_ns).collect();
    let off_write: Vec<f64> = off.iter().map(|x| x.write_ns).collect();
    let _ = writeln!(
        md,
        "\nSystem calls with the agent's tracepoints in their path: 2 M `getpgid` and 2 M 1-byte `write`s to \
         /dev/null on a thread pinned to one CPU, after each mode's ledger runs. Ratios are per round against \
         \"off\" in the same round.\n\n\
         | agent | getpgid ns | vs off | write ns | vs off |\n\
         |---|---|---|---|---|"
    );
    for (mode, runs) in &r.loaded {
        let getpgid: Vec<f64> = runs.iter().map(|x| x.getpgid_ns).collect();
        let write: Vec<f64> = runs.iter().map(|x| x.write_ns).collect();
        let vs_off = |on: &[f64], off: &[f64]| {
            if *mode == Mode::Off {
                "—".to_string()
            } else {
                mmm(&ratios(on, off), 3)
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            mode.label(),
            mmm(&getpgid, 0),
            vs_off(&getpgid, &off_getpgid),
            mmm(&write, 0),
            vs_off(&write, &off_write),
        );
        if *mode != Mode::Off {
            figures.push(Figure::new(
                format!("getpgid vs off, {}", key(*mode)),
                "ratio",
                &ratios(&getpgid, &off_getpgid),
            ));
        }
    }

    burst(r, &mut md, &mut figures);

    let _ = writeln!(
        md,
        "\nPer eBPF program, all sources on, during a 2 s connection-per-request wrk run with \
         `BPF_ENABLE_STATS` (programs of one name summed per run):\n\n\
         | program | ns per run (target ≤ {TARGET_NS_PER_HIT}) |\n|---|---|"
    );
    for (name, ns) in &r.programs {
        let (_, median, _) = spread(ns);
        let _ = writeln!(md, "| {name} | {} {} |", mmm(ns, 0), mark(median <= TARGET_NS_PER_HIT));
        figures.push(Figure::new(format!("eBPF program {name}"), "ns/run", ns));
    }
    let _ = writeln!(
        md,
        "\nPeers at the same jobs, in the same `cargo xtask bench` run: profiling beside `perf record` and \
         bpftrace (profile), disk and TCP tracepoints beside bpftrace (disk, net)."
    );
    (md, figures)
}

/// The connection storm's table: memory before, at the peak and after.
fn burst(r: &Results, md: &mut String, figures: &mut Vec<Figure>) {
    if r.bursts.is_empty() {
        return;
    }
    let connections: Vec<f64> = r.bursts.iter().map(|b| b.connections).collect();
    let rate: Vec<f64> = connections.iter().map(|c| c / f64::from(r.burst_seconds)).collect();
    let before: Vec<f64> = r.bursts.iter().map(|b| b.hwm_before_mib).collect();
    let after: Vec<f64> = r.bursts.iter().map(|b| b.hwm_after_mib).collect();
    let settled: Vec<f64> = r.bursts.iter().map(|b| b.rss_settled_mib).collect();
    let (_, after_median, _) = spread(&after);
    let _ = writeln!(
        md,
        "\nMemory under a connection storm: the agent with all sources on, after the warm-up, while wrk \
         opens a new connection per request to nginx as fast as it goes for {} s (one storm per round; \
         file-backed pages count too: the profile source maps the binaries of the node's processes).\n\n\
         | connections | connections/s | VmHWM before, MiB | VmHWM after, MiB (target ≤ {TARGET_BURST_HWM_MIB}) | VmRSS 5 s later, MiB |\n\
         |---|---|---|---|---|\n\
         | {} | {} | {} | {} {} | {} |",
        r.burst_seconds,
        mmm(&connections, 0),
        mmm(&rate, 0),
        mmm(&before, 1),
        mmm(&after, 1),
        mark(after_median <= TARGET_BURST_HWM_MIB),
        mmm(&settled, 1),
    );
    figures.push(Figure::new(
        "VmHWM after a connection storm, all sources",
        "MiB",
        &after,
    ));
}

/// Every measurement, for the JSON report.
pub fn details(r: &Results) -> serde_json::Value {
    let idle: Vec<serde_json::Value> = r
        .idle
        .iter()
        .map(|(mode, runs)| {
            serde_json::json!({
                "mode": mode.label(),
                "cpu_percent": runs.iter().map(|x| x.cpu_percent).collect::<Vec<_>>(),
                "bpf_percent": runs.iter().map(|x| x.bpf_percent).collect::<Vec<_>>(),
                "vm_hwm_mib": runs.iter().map(|x| x.hwm_mib).collect::<Vec<_>>(),
                "vm_rss_mib": runs.iter().map(|x| x.rss_mib).collect::<Vec<_>>(),
            })
        })
        .collect();
    let loaded: Vec<serde_json::Value> = r
        .loaded
        .iter()
        .map(|(mode, runs)| {
            serde_json::json!({
                "mode": mode.label(),
                "ledger": runs.iter().map(|x| x.ledger.iter().map(|s| serde_json::json!({
                    "requests_per_second": s.rps,
                    "workload_cpu_us_per_request": s.workload_us,
                    "agent_cpu_us_per_request": s.agent_us,
                    "bpf_us_per_request": s.bpf_us,
                })).collect::<Vec<_>>()).collect::<Vec<_>>(),
                "getpgid_ns": runs.iter().map(|x| x.getpgid_ns).collect::<Vec<_>>(),
                "write_ns": runs.iter().map(|x| x.write_ns).collect::<Vec<_>>(),
            })
        })
        .collect();
    let programs: serde_json::Map<String, serde_json::Value> = r
        .programs
        .iter()
        .map(|(name, ns)| (name.clone(), serde_json::json!(ns)))
        .collect();
    serde_json::json!({
        "rounds": r.rounds,
        "idle_seconds": r.idle_seconds,
        "wrk_seconds": r.wrk_seconds,
        "idle": idle,
        "loaded": loaded,
        "programs_ns_per_run": programs,
        "burst_seconds": r.burst_seconds,
        "bursts": r.bursts.iter().map(|b| serde_json::json!({
            "connections": b.connections,
            "vm_hwm_before_mib": b.hwm_before_mib,
            "vm_hwm_after_mib": b.hwm_after_mib,
            "vm_rss_settled_mib": b.rss_settled_mib,
        })).collect::<Vec<_>>(),
    })
}
