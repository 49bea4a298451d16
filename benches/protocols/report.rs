//! The `protocols` benchmark's report: markdown tables and the headline
//! figures, from [`Results`].

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use super::common::{spread, Figure};
use super::{OnRun, Results, Run, WORKLOADS};

/// Targets from issue #16.
const TARGET_BPF_NS_PER_SIDE: f64 = 1000.0;
const TARGET_AGENT_CPU_PERCENT: f64 = 3.0;

/// Requests each span count is checked against: both sides of every
/// request wrk completed, plus the request of the bench's own reading of
/// the agent's figures before the run (`/metrics` of its API, traced on the
/// bench's side only: the agent excludes itself), counted once it completes.
fn spans_expected(requests: f64) -> f64 {
    2.0 * requests + 1.0
}

/// "median (min–max)" with `decimals`.
fn mmm(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let (min, median, max) = spread(values);
    format!("{median:.decimals$} ({min:.decimals$}–{max:.decimals$})")
}

/// Per on-run figures of workload `w`: `f(wrk run, agent run)`.
fn per_on(results: &Results, w: usize, f: impl Fn(&Run, &OnRun) -> f64) -> Vec<f64> {
    results.on[&w]
        .iter()
        .zip(&results.agent[&w])
        .map(|(r, a)| f(r, a))
        .collect()
}

/// Per round: `f(on) - f(off)`.
fn added(results: &Results, w: usize, f: impl Fn(&Run) -> f64) -> Vec<f64> {
    results.on[&w]
        .iter()
        .zip(&results.off[&w])
        .map(|(on, off)| f(on) - f(off))
        .collect()
}

fn of(runs: &[Run], f: impl Fn(&Run) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// The markdown section and the headline figures.
pub fn render(results: &Results) -> (String, Vec<Figure>) {
    let mut md = String::new();
    let mut figures = Vec::new();
    let _ = writeln!(
        md,
        "nginx serves a {}-byte page on loopback to wrk paced by its Lua `delay()` ({} ms after each \
         response, per connection; connections: {}, calibrated once with the agent off to reach the \
         rate on this machine). Agent off: nothing \
         loaded; on: `sonde run` with `source \"protocols\"` at its defaults (but `interval = \"1s\"`, \
         so that its counters are read after each run), spans through a `filter` into a `blackhole`. \
         {} rounds of {} s per run, off and on alternating first. `BPF_ENABLE_STATS` is on during the \
         agent's runs only (its clock reads are in the on figures). The machine was shared with other \
         engineers' builds: load average {} at the start, {} at the end.\n",
        612,
        super::DELAY_MS,
        WORKLOADS
            .iter()
            .zip(&results.loads)
            .map(|(w, l)| format!("{} for {}", l.connections, w.label))
            .collect::<Vec<_>>()
            .join(", "),
        results.rounds,
        results.seconds,
        results.load_before,
        results.load_after
    );
    md.push_str(
        "| workload | agent | requests/s | nginx + wrk CPU µs/request | p50 µs | p99 µs |\n|---|---|---|---|---|---|\n",
    );
    for (w, label) in WORKLOADS.iter().map(|w| w.label).enumerate() {
        for (mode, runs) in [("off", &results.off[&w]), ("on", &results.on[&w])] {
            let _ = writeln!(
                md,
                "| {label} | {mode} | {} | {} | {} | {} |",
                mmm(&of(runs, |r| r.rps), 0),
                mmm(&of(runs, |r| r.cpu_per_request * 1e6), 1),
                mmm(&of(runs, |r| r.p50 * 1e6), 0),
                mmm(&of(runs, |r| r.p99 * 1e6), 0),
            );
            figures.push(Figure::new(
                format!("requests/s, {label}, {mode}"),
                "req/s",
                &of(runs, |r| r.rps),
            ));
        }
        let cpu = |r: &Run| r.cpu_per_request * 1e6;
        figures.push(Figure::new(
            format!("nginx + wrk CPU per request, {label}, off"),
            "µs",
            &of(&results.off[&w], cpu),
        ));
        figures.push(Figure::against(
            format!("nginx + wrk CPU per request, {label}, on"),
            "µs",
            &of(&results.on[&w], cpu),
            &of(&results.off[&w], cpu),
        ));
    }

    let _ = writeln!(
        md,
        "\nThe agent's cost (median (min–max) over rounds; eBPF per side = all its programs' run time \
         ÷ requests ÷ 2, since wrk's and nginx's calls are both traced; targets: ≤ {TARGET_BPF_NS_PER_SIDE:.0} ns \
         of eBPF per request per side, ≤ {TARGET_AGENT_CPU_PERCENT} % of one core at 10k requests/s):\n"
    );
    md.push_str(
        "| workload | eBPF ns/request/side | less the idle background | eBPF ns/program run | program runs/request | agent CPU % of a core | \
         agent CPU µs/request | added p50 µs | added p99 µs | nginx + wrk CPU on ÷ off |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (w, label) in WORKLOADS.iter().map(|w| w.label).enumerate() {
        let per_side = per_on(results, w, |r, a| a.bpf_ns / r.requests.max(1.0) / 2.0);
        // Less what the programs ran for other processes in that round's idle seconds.
        let requests_only: Vec<f64> = results.on[&w]
            .iter()
            .zip(&results.agent[&w])
            .zip(&results.background_bpf_ns_per_s)
            .map(|((r, a), background)| (a.bpf_ns - background * a.wall_ns / 1e9) / r.requests.max(1.0) / 2.0)
            .collect();
        let per_run = per_on(results, w, |_, a| a.bpf_ns / a.bpf_runs.max(1.0));
        let runs = per_on(results, w, |r, a| a.bpf_runs / r.requests.max(1.0));
        let cpu = per_on(results, w, |_, a| a.cpu_ns / a.wall_ns * 100.0);
        let cpu_per_request = per_on(results, w, |r, a| a.cpu_ns / r.requests.max(1.0) / 1e3);
        let p50 = added(results, w, |r| r.p50 * 1e6);
        let p99 = added(results, w, |r| r.p99 * 1e6);
        let ratio: Vec<f64> = results.on[&w]
            .iter()
            .zip(&results.off[&w])
            .map(|(on, off)| on.cpu_per_request / off.cpu_per_request)
            .collect();
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            mmm(&per_side, 0),
            mmm(&requests_only, 0),
            mmm(&per_run, 0),
            mmm(&runs, 2),
            mmm(&cpu, 2),
            mmm(&cpu_per_request, 2),
            mmm(&p50, 0),
            mmm(&p99, 0),
            mmm(&ratio, 3),
        );
        figures.push(Figure::new(
            format!("eBPF per request per side, {label}"),
            "ns",
            &per_side,
        ));
        figures.push(Figure::new(
            format!("eBPF per request per side less the idle background, {label}"),
            "ns",
            &requests_only,
        ));
        figures.push(Figure::new(format!("eBPF per program run, {label}"), "ns", &per_run));
        figures.push(Figure::new(format!("program runs per request, {label}"), "runs", &runs));
        figures.push(Figure::new(format!("agent CPU, {label}"), "% of a core", &cpu));
        figures.push(Figure::new(
            format!("agent CPU per request, {label}"),
            "µs",
            &cpu_per_request,
        ));
        figures.push(Figure::new(format!("added p50 latency, {label}"), "µs", &p50));
        figures.push(Figure::new(format!("added p99 latency, {label}"), "µs", &p99));
    }
    let background = &results.background_bpf_ns_per_s;
    let _ = writeln!(
        md,
        "\nWith no request being made, the agent's programs ran {} µs/s (median (min–max), other \
         processes' system calls, the other builds' included): part of the eBPF per request above is \
         theirs, ≈ {} ns per request per side at 1k/s (the column \"less the idle background\" takes \
         each round's idle rate out; the other builds' load varies, so it is an estimate).",
        mmm(&background.iter().map(|v| v / 1e3).collect::<Vec<_>>(), 0),
        (spread(background).1 / 1e3 / 2.0).round()
    );

    md.push_str(
        "\nEvery request as two spans (server and client; the counts summed over rounds): spans expected \
         are 2 × wrk's completed requests + 1 per run (the bench's own reading of the agent's figures); \
         a connection wrk leaves mid-request at the end of a run can add or take one.\n\n\
         | workload | requests | spans expected | spans received | missing | lost in the kernel | \
         dropped by the engine | gaps |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (w, label) in WORKLOADS.iter().map(|w| w.label).enumerate() {
        let requests: f64 = results.on[&w].iter().map(|r| r.requests).sum();
        let expected: f64 = results.on[&w].iter().map(|r| spans_expected(r.requests)).sum();
        let agent = &results.agent[&w];
        let received: f64 = agent.iter().map(|a| a.report.spans).sum();
        let lost: f64 = agent.iter().map(|a| a.report.lost_events + a.report.map_full).sum();
        let missing = per_on(results, w, |r, a| spans_expected(r.requests) - a.report.spans);
        let _ = writeln!(
            md,
            "| {label} | {requests:.0} | {expected:.0} | {received:.0} | {:.0} | {lost:.0} | {} | {} |",
            expected - received,
            reasons(agent.iter().map(|a| &a.report.dropped)),
            reasons(agent.iter().map(|a| &a.report.gaps)),
        );
        figures.push(Figure::new(format!("spans missing, {label}"), "spans", &missing));
        figures.push(Figure::new(
            format!("events lost in the kernel, {label}"),
            "events",
            &agent
                .iter()
                .map(|a| a.report.lost_events + a.report.map_full)
                .collect::<Vec<_>>(),
        ));
    }

    render_go(results, &mut md, &mut figures);

    md.push_str(
        "\nPer program (median over rounds):\n\n| workload | program | ns/run | runs/request |\n|---|---|---|---|\n",
    );
    for (w, label) in WORKLOADS.iter().map(|w| w.label).enumerate() {
        let mut by_program: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for (run, agent) in results.on[&w].iter().zip(&results.agent[&w]) {
            for (name, (ns, runs)) in &agent.programs {
                if *runs > 0.0 {
                    let entry = by_program.entry(name).or_default();
                    entry.0.push(ns / runs);
                    entry.1.push(runs / run.requests.max(1.0));
                }
            }
        }
        for (name, (ns, runs)) in by_program {
            let _ = writeln!(
                md,
                "| {label} | `{name}` | {:.0} | {:.2} |",
                spread(&ns).1,
                spread(&runs).1
            );
        }
    }
    (md, figures)
}

/// Go's `crypto/tls`: a Go client at a fixed rate to a Go server, agent on.
fn render_go(results: &Results, md: &mut String, figures: &mut Vec<Figure>) {
    if results.go.is_empty() {
        return;
    }
    let go = &results.go;
    let per_side: Vec<f64> = go.iter().map(|(n, a)| a.bpf_ns / n.max(1.0) / 2.0).collect();
    let probes_per_side: Vec<f64> = go
        .iter()
        .map(|(n, a)| {
            let ns: f64 = a
                .programs
                .iter()
                .filter(|(name, _)| name.starts_with("go_tls"))
                .map(|(_, (ns, _))| ns)
                .sum();
            ns / n.max(1.0) / 2.0
        })
        .collect();
    let cpu: Vec<f64> = go.iter().map(|(_, a)| a.cpu_ns / a.wall_ns * 100.0).collect();
    let requests: f64 = go.iter().map(|(n, _)| n).sum();
    let received: f64 = go.iter().map(|(_, a)| a.report.spans).sum();
    let expected: f64 = go.iter().map(|(n, _)| spans_expected(*n)).sum();
    let lost: f64 = go.iter().map(|(_, a)| a.report.lost_events + a.report.map_full).sum();
    let _ = writeln!(
        md,
        "\nGo's `crypto/tls` (tests/workload/gotls: a Go HTTPS client at {} requests/s on {} keep-alive \
         connections to a Go HTTPS server, both traced through the Go TLS uprobes; agent on, {} s per \
         round; median (min–max)):\n\n\
         | eBPF ns/request/side | of which the Go TLS probes | agent CPU % of a core | requests | spans \
         expected | spans received | lost in the kernel |\n|---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {requests:.0} | {expected:.0} | {received:.0} | {lost:.0} |",
        super::gotls::RPS,
        super::gotls::CONNECTIONS,
        results.seconds,
        mmm(&per_side, 0),
        mmm(&probes_per_side, 0),
        mmm(&cpu, 2),
    );
    figures.push(Figure::new(
        "eBPF per request per side, Go crypto/tls 1k/s",
        "ns",
        &per_side,
    ));
    figures.push(Figure::new(
        "Go TLS probes per request per side, Go crypto/tls 1k/s",
        "ns",
        &probes_per_side,
    ));
    figures.push(Figure::new("agent CPU, Go crypto/tls 1k/s", "% of a core", &cpu));
}

/// The non-zero reasons of counters summed over runs: "a 3, b 1", or "0".
fn reasons<'a>(runs: impl Iterator<Item = &'a BTreeMap<String, f64>>) -> String {
    let mut total: BTreeMap<&str, f64> = BTreeMap::new();
    for run in runs {
        for (reason, value) in run {
            *total.entry(reason).or_default() += value;
        }
    }
    let parts: Vec<String> = total
        .into_iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(reason, v)| format!("{reason} {v:.0}"))
        .collect();
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(", ")
    }
}

/// The raw measurements, for BENCHMARKS.json.
pub fn details(results: &Results) -> Value {
    let runs = |runs: &[Run]| -> Value {
        runs.iter()
            .map(|r| json!({ "requests": r.requests, "rps": r.rps, "p50_s": r.p50, "p99_s": r.p99, "cpu_per_request_s": r.cpu_per_request }))
            .collect()
    };
    let workloads: Vec<Value> = WORKLOADS
        .iter()
        .enumerate()
        .map(|(w, workload)| {
            let load = results.loads[w];
            json!({
                "workload": workload.label,
                "target_rps": workload.target_rps,
                "connections": load.connections,
                "connection_per_request": load.close,
                "delay_ms": load.delay_ms,
                "off": runs(&results.off[&w]),
                "on": runs(&results.on[&w]),
                "agent": results.agent[&w].iter().map(|a| json!({
                    "bpf_ns": a.bpf_ns,
                    "bpf_runs": a.bpf_runs,
                    "cpu_ns": a.cpu_ns,
                    "wall_ns": a.wall_ns,
                    "spans": a.report.spans,
                    "lost_events": a.report.lost_events,
                    "map_full": a.report.map_full,
                    "dropped": a.report.dropped,
                    "gaps": a.report.gaps,
                    "programs": a.programs,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "rounds": results.rounds,
        "seconds": results.seconds,
        "load_before": results.load_before,
        "load_after": results.load_after,
        "background_bpf_ns_per_s": results.background_bpf_ns_per_s,
        "workloads": workloads,
    })
}
