//! Pipeline core throughput: demo → tag → filter → blackhole on one core,
//! beside a demo → blackhole baseline and a fan-out of 2, in the same run.
//!
//! `cargo xtask bench pipeline` runs it. Each graph runs `--events` metric
//! events on a single-threaded tokio runtime (so "per core" is literal),
//! repeated `--runs` times with the graphs interleaved, so that noise on a
//! shared machine hits all of them alike. Prints a markdown table and writes
//! it, with JSON, to `--out`.

mod common;

use common::arg;

use std::time::Duration;

const GRAPHS: [(&str, &str); 3] = [
    (
        "baseline: demo → blackhole",
        r#"
        source "demo" "gen" {
          rate       = 0
          count      = COUNT
          batch_size = 1000
          series     = 4
        }
        sink "blackhole" "void" { inputs = ["gen"] }
        "#,
    ),
    (
        "demo → tag → filter → blackhole",
        r#"
        source "demo" "gen" {
          rate       = 0
          count      = COUNT
          batch_size = 1000
          series     = 4
        }
        transform "tag" "tag" {
          inputs = ["gen"]
          add    = { env = "bench" }
        }
        transform "filter" "filter" {
          inputs     = ["tag"]
          kinds      = ["metric"]
          attributes = { env = "bench" }
        }
        sink "blackhole" "void" { inputs = ["filter"] }
        "#,
    ),
    (
        "demo → tag → filter → 2 × blackhole (fan-out)",
        r#"
        source "demo" "gen" {
          rate       = 0
          count      = COUNT
          batch_size = 1000
          series     = 4
        }
        transform "tag" "tag" {
          inputs = ["gen"]
          add    = { env = "bench" }
        }
        transform "filter" "filter" {
          inputs     = ["tag"]
          kinds      = ["metric"]
          attributes = { env = "bench" }
        }
        sink "blackhole" "void1" { inputs = ["filter"] }
        sink "blackhole" "void2" { inputs = ["filter"] }
        "#,
    ),
];

/// Runs one graph to completion on one core.
fn run_once(template: &str, events: u64) -> Duration {
    common::run_to_completion(&template.replace("COUNT", &events.to_string()), None)
}

fn main() {
    let events: u64 = arg("--events", "2000000").parse().unwrap();
    let runs: usize = arg("--runs", "5").parse().unwrap();
    let out = std::path::PathBuf::from(arg("--out", "target/bench"));
    // Warm-up: page in code and allocator arenas.
    run_once(GRAPHS[1].1, events / 10);

    let mut times: Vec<Vec<f64>> = vec![Vec::new(); GRAPHS.len()];
    for run in 0..runs {
        for (i, (_, graph)) in GRAPHS.iter().enumerate() {
            times[i].push(run_once(graph, events).as_secs_f64());
        }
        eprintln!("run {}/{runs} done", run + 1);
    }

    let stats = |v: &Vec<f64>| common::spread(v);
    let baseline_median = stats(&times[0]).1;
    let mut table = format!(
        "### Pipeline throughput ({events} metric events per run, {runs} interleaved runs, one core)\n\n\
         | graph | events/s (median) | ns/event min / median / max | time vs baseline |\n|---|---|---|---|\n"
    );
    let mut json = Vec::new();
    let mut figures = Vec::new();
    let ns = |t: f64| t * 1e9 / events as f64;
    let ns_runs = |v: &Vec<f64>| v.iter().map(|t| ns(*t)).collect::<Vec<_>>();
    for (i, (name, _)) in GRAPHS.iter().enumerate() {
        let (min, median, max) = stats(&times[i]);
        figures.push(if i == 0 {
            common::Figure::new(*name, "ns/event", &ns_runs(&times[i]))
        } else {
            common::Figure::against(*name, "ns/event", &ns_runs(&times[i]), &ns_runs(&times[0]))
        });
        table.push_str(&format!(
            "| {name} | {:.2} M | {:.0} / {:.0} / {:.0} | {:.2}× |\n",
            events as f64 / median / 1e6,
            ns(min),
            ns(median),
            ns(max),
            median / baseline_median
        ));
        json.push(serde_json::json!({
            "graph": name,
            "events": events,
            "runs": runs,
            "seconds": times[i],
            "events_per_second_median": events as f64 / median,
            "ns_per_event": { "min": ns(min), "median": ns(median), "max": ns(max) },
            "ratio_to_baseline": median / baseline_median,
        }));
    }
    println!("{table}");
    common::write_report(&out, "pipeline", &table, &figures, serde_json::Value::Array(json));
}
