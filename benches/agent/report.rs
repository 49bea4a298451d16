//! The agent benchmark's markdown section, headline figures and JSON.

use std::fmt::Write as _;

use crate::common::{spread, Figure};
use crate::modes::Mode;
use crate::Results;

/// Targets from the whole-agent issue, reported beside the figures.
const TARGET_IDLE_PERCENT: f64 = 0.3;
const TARGET_RPS_RATIO: f64 = 0.99;
const TARGET_RSS_MIB: f64 = 40.0;
const TARGET_NS_PER_HIT: f64 = 60.0;

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
        let key = if *mode == Mode::Default {
            "default pipeline"
        } else {
            "all sources"
        };
        figures.push(Figure::new(format!("idle CPU %, {key}"), "% of one core", &total));
        figures.push(Figure::new(format!("VmHWM, {key}"), "MiB", &hwm));
    }

    let off = &r.loaded[0].1;
    let off_rps: Vec<f64> = off.iter().map(|x| x.rps).collect();
    let off_p99: Vec<f64> = off.iter().map(|x| x.p99_ms).collect();
    let off_getpgid: Vec<f64> = off.iter().map(|x| x.getpgid_ns).collect();
    let off_write: Vec<f64> = off.iter().map(|x| x.write_ns).collect();
    let _ = writeln!(
        md,
        "\nLoaded node: nginx serving a 612-byte page to wrk (1 thread, 32 keep-alive connections, {} s) \
         on loopback; then 2 M `getpgid` and 2 M 1-byte `write`s to /dev/null on a thread pinned to one CPU. \
         Ratios are per round against \"off\" in the same round.\n\n\
         | agent | requests/s | vs off (target ≥ {TARGET_RPS_RATIO}) | p99 ms | p99 vs off | getpgid ns | vs off | write ns | vs off |\n\
         |---|---|---|---|---|---|---|---|---|",
        r.wrk_seconds
    );
    for (mode, runs) in &r.loaded {
        let rps: Vec<f64> = runs.iter().map(|x| x.rps).collect();
        let p99: Vec<f64> = runs.iter().map(|x| x.p99_ms).collect();
        let getpgid: Vec<f64> = runs.iter().map(|x| x.getpgid_ns).collect();
        let write: Vec<f64> = runs.iter().map(|x| x.write_ns).collect();
        let rps_ratio = ratios(&rps, &off_rps);
        let (_, rps_ratio_median, _) = spread(&rps_ratio);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            mode.label(),
            mmm(&rps, 0),
            if *mode == Mode::Off {
                "—".into()
            } else {
                format!("{} {}", mmm(&rps_ratio, 3), mark(rps_ratio_median >= TARGET_RPS_RATIO))
            },
            mmm(&p99, 2),
            if *mode == Mode::Off {
                "—".into()
            } else {
                mmm(&ratios(&p99, &off_p99), 2)
            },
            mmm(&getpgid, 0),
            if *mode == Mode::Off {
                "—".into()
            } else {
                mmm(&ratios(&getpgid, &off_getpgid), 3)
            },
            mmm(&write, 0),
            if *mode == Mode::Off {
                "—".into()
            } else {
                mmm(&ratios(&write, &off_write), 3)
            },
        );
        if *mode != Mode::Off {
            let key = if *mode == Mode::Default {
                "default pipeline"
            } else {
                "all sources"
            };
            figures.push(Figure::new(format!("requests/s vs off, {key}"), "ratio", &rps_ratio));
            figures.push(Figure::new(
                format!("p99 latency vs off, {key}"),
                "ratio",
                &ratios(&p99, &off_p99),
            ));
            figures.push(Figure::new(
                format!("getpgid vs off, {key}"),
                "ratio",
                &ratios(&getpgid, &off_getpgid),
            ));
        }
    }

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
                "requests_per_second": runs.iter().map(|x| x.rps).collect::<Vec<_>>(),
                "p99_ms": runs.iter().map(|x| x.p99_ms).collect::<Vec<_>>(),
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
    })
}
