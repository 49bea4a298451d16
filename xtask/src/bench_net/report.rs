//! The report of `cargo xtask bench net`: markdown and JSON.

use std::fmt::Write as _;

use super::agents::{Mode, BPFTRACE_SCRIPT};
use super::workload::Connections;
use super::{Results, REPETITIONS, SECONDS, TARGET_RATIO};

/// (min, median, max).
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median, v[n - 1])
}

/// The markdown tables.
pub fn markdown(results: &Results) -> String {
    let mut out = format!(
        "### net: nginx + wrk on loopback, sources off vs on\n\n\
         {REPETITIONS} rounds, modes interleaved; wrk -t1 -c32 for {SECONDS} s per run; nginx 1 worker \
         serving 612 bytes. Ratio: median over rounds of (mode / off) in the same round. \
         Target ≥ {TARGET_RATIO}.\n\n\
         | workload | mode | req/s min | median | max | ratio median (min–max) |\n\
         |---|---|---:|---:|---:|---|\n"
    );
    for (w, connections) in Connections::ALL.iter().enumerate() {
        for (m, mode) in Mode::ALL.iter().enumerate() {
            let (min, median, max) = spread(results.rps.get(&(w, m)).map_or(&[][..], |v| v));
            let ratio = match results.ratios.get(&(w, m)) {
                Some(r) => {
                    let (lo, mid, hi) = spread(r);
                    let mark = if mid >= TARGET_RATIO { "✓" } else { "✗" };
                    format!("{mid:.3} ({lo:.3}–{hi:.3}) {mark}")
                }
                None => "baseline".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {min:.0} | {median:.0} | {max:.0} | {ratio} |",
                connections.label(),
                mode.label()
            );
        }
    }
    out.push_str(
        "\nCost per program run, connection per request, `kernel.bpf_stats_enabled=1` \
         (run_time_ns / run_cnt), median over rounds:\n\n\
         | mode | program | ns per run | runs per request |\n|---|---|---:|---:|\n",
    );
    for ((m, name), samples) in &results.programs {
        let ns: Vec<f64> = samples.iter().map(|s| s.0).collect();
        let per: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let _ = writeln!(
            out,
            "| {} | {name} | {:.0} | {:.2} |",
            Mode::ALL[*m].label(),
            spread(&ns).1,
            spread(&per).1
        );
    }
    let _ = writeln!(
        out,
        "\nbpftrace script (the `tcp` source's tracepoints and comparable map work):\n\n```\n{}\n```",
        BPFTRACE_SCRIPT.trim()
    );
    out
}

/// The same, as JSON.
pub fn json(results: &Results) -> String {
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ");
    let mut runs = Vec::new();
    for ((w, m), rps) in &results.rps {
        let ratios = results.ratios.get(&(*w, *m)).map_or(String::new(), |r| list(r));
        runs.push(format!(
            "    {{\"workload\": \"{}\", \"mode\": \"{}\", \"requests_per_second\": [{}], \"ratio\": [{}]}}",
            Connections::ALL[*w].label(),
            Mode::ALL[*m].label(),
            list(rps),
            ratios
        ));
    }
    let mut programs = Vec::new();
    for ((m, name), samples) in &results.programs {
        let ns: Vec<f64> = samples.iter().map(|s| s.0).collect();
        let per: Vec<f64> = samples.iter().map(|s| s.1).collect();
        programs.push(format!(
            "    {{\"mode\": \"{}\", \"program\": \"{name}\", \"ns_per_run\": [{}], \"runs_per_request\": [{}]}}",
            Mode::ALL[*m].label(),
            list(&ns),
            list(&per)
        ));
    }
    format!(
        "{{\n  \"benchmark\": \"net\",\n  \"rounds\": {REPETITIONS},\n  \"seconds_per_run\": {SECONDS},\n  \
         \"target_ratio\": {TARGET_RATIO},\n  \"runs\": [\n{}\n  ],\n  \"programs\": [\n{}\n  ]\n}}\n",
        runs.join(",\n"),
        programs.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_median_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), (1.0, 2.5, 4.0));
    }

    #[test]
    fn reports_render() {
        let mut results = Results::default();
        results.rps.insert((0, 0), vec![100.0, 110.0]);
        results.rps.insert((0, 1), vec![99.0, 108.0]);
        results.ratios.insert((0, 1), vec![0.99, 0.982]);
        results
            .programs
            .insert((1, "inet_sock_set_s".into()), vec![(120.0, 4.0)]);
        let md = markdown(&results);
        assert!(md.contains("| keep-alive | sonde tcp + net_flows | 99 | 104 | 108 | 0.986 (0.982–0.990) ✗ |"));
        assert!(md.contains("| sonde tcp + net_flows | inet_sock_set_s | 120 | 4.00 |"));
        assert!(json(&results).contains("\"ratio\": [0.990, 0.982]"));
    }
}
