//! The report of `cargo xtask bench net`: markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::agents::{Mode, BPFTRACE_SCRIPT};
use super::workload::Connections;
use super::{Results, ROUNDS, SECONDS, TARGET_RATIO};

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

fn ratio_cell(ratios: Option<&Vec<f64>>) -> String {
    match ratios {
        Some(r) => {
            let (lo, mid, hi) = spread(r);
            let mark = if mid >= TARGET_RATIO { "✓" } else { "✗" };
            format!("{mid:.3} ({lo:.3}–{hi:.3}) {mark}")
        }
        None => "baseline".to_string(),
    }
}

/// The markdown tables.
pub fn markdown(results: &Results) -> String {
    let mut out = format!(
        "### net: nginx + wrk on loopback, sources off vs on\n\n\
         {ROUNDS} rounds, modes interleaved (order rotating); wrk -t1 -c32 for {SECONDS} s per run; \
         nginx 1 worker serving 612 bytes. Ratios: median over rounds of the same round's \
         on/off requests/s, and off/on CPU per request (nginx worker + wrk on-CPU time). \
         Target ≥ {TARGET_RATIO}.\n\n\
         | workload | mode | req/s min | median | max | req/s ratio | CPU µs/req median | CPU ratio |\n\
         |---|---|---:|---:|---:|---|---:|---|\n"
    );
    for (w, connections) in Connections::ALL.iter().enumerate() {
        for (m, mode) in Mode::ALL.iter().enumerate() {
            let (min, median, max) = spread(results.rps.get(&(w, m)).map_or(&[][..], |v| v));
            let cpu = spread(results.cpu.get(&(w, m)).map_or(&[][..], |v| v)).1 * 1e6;
            let _ = writeln!(
                out,
                "| {} | {} | {min:.0} | {median:.0} | {max:.0} | {} | {cpu:.1} | {} |",
                connections.label(),
                mode.label(),
                ratio_cell(results.rps_ratio.get(&(w, m))),
                ratio_cell(results.cpu_ratio.get(&(w, m))),
            );
        }
    }
    out.push_str(
        "\nCost per tracepoint hit, connection per request, `BPF_ENABLE_STATS` on: \
         run_time_ns of the mode's programs of that name (one per object attached to the \
         tracepoint) over hits, median over rounds:\n\n\
         | mode | program | ns per hit | hits per request |\n|---|---|---:|---:|\n",
    );
    for ((mode, name), samples) in &results.programs {
        let ns: Vec<f64> = samples.iter().map(|s| s.0).collect();
        let per: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let _ = writeln!(
            out,
            "| {mode} | {name} | {:.0} | {:.2} |",
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

fn list(values: &[f64]) -> String {
    values.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(", ")
}

fn field(map: &BTreeMap<(usize, usize), Vec<f64>>, key: (usize, usize)) -> String {
    map.get(&key).map_or(String::new(), |v| list(v))
}

/// The same, as JSON.
pub fn json(results: &Results) -> String {
    let mut runs = Vec::new();
    for &(w, m) in results.rps.keys() {
        runs.push(format!(
            "    {{\"workload\": \"{}\", \"mode\": \"{}\", \"requests_per_second\": [{}], \
             \"cpu_seconds_per_request\": [{}], \"rps_ratio\": [{}], \"cpu_ratio\": [{}]}}",
            Connections::ALL[w].label(),
            Mode::ALL[m].label(),
            field(&results.rps, (w, m)),
            field(&results.cpu, (w, m)),
            field(&results.rps_ratio, (w, m)),
            field(&results.cpu_ratio, (w, m)),
        ));
    }
    let mut programs = Vec::new();
    for ((mode, name), samples) in &results.programs {
        let ns: Vec<f64> = samples.iter().map(|s| s.0).collect();
        let per: Vec<f64> = samples.iter().map(|s| s.1).collect();
        programs.push(format!(
            "    {{\"mode\": \"{mode}\", \"program\": \"{name}\", \"ns_per_hit\": [{}], \"hits_per_request\": [{}]}}",
            list(&ns),
            list(&per)
        ));
    }
    format!(
        "{{\n  \"benchmark\": \"net\",\n  \"rounds\": {ROUNDS},\n  \"seconds_per_run\": {SECONDS},\n  \
         \"target_ratio\": {TARGET_RATIO},\n  \"runs\": [\n{}\n  ],\n  \"programs\": [\n{}\n  ]\n}}\n",
        runs.join(",\n"),
        programs.join(",\n")
    )
}

// Run by tests/bench_net.rs. Cargo also compiles bench targets with
// `--cfg test` but without libtest, which drops the #[test] functions and
// would leave the import unused.
#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
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
        results.cpu.insert((0, 1), vec![20e-6, 22e-6]);
        results.rps_ratio.insert((0, 1), vec![0.99, 0.982]);
        results.cpu_ratio.insert((0, 1), vec![0.995, 0.999]);
        results
            .programs
            .insert(("sonde".into(), "inet_sock_set_s".into()), vec![(120.0, 4.0)]);
        let md = markdown(&results);
        assert!(md.contains(
            "| keep-alive | sonde tcp | 99 | 104 | 108 | 0.986 (0.982–0.990) ✗ | 21.0 | 0.997 (0.995–0.999) ✓ |"
        ));
        assert!(md.contains("| sonde | inet_sock_set_s | 120 | 4.00 |"));
        assert!(json(&results).contains("\"rps_ratio\": [0.990000, 0.982000]"));
    }
}
