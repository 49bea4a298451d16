//! The harness every bench target shares: arguments, the component
//! registry, running a pipeline to completion on one core, and min /
//! median / max of repeated runs.
#![allow(dead_code)] // each bench uses only part of it

pub mod process;
pub mod rate;
pub mod web;

use std::time::{Duration, Instant};

use sonde_core::component::GlobalContext;
use sonde_core::config::load_str;
use sonde_core::topology::Topology;

pub use sonde::registry;

/// The value after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// Runs the pipeline `text` on a single-threaded runtime (so "per core" is
/// literal) until every component has finished, and returns the wall time.
/// `poll_every` is how the waiting loop idles: `None` yields (all the work
/// is on this thread), `Some` sleeps (work waits on another thread, such as
/// a receiver).
pub fn run_to_completion(text: &str, poll_every: Option<Duration>) -> Duration {
    let loaded = load_str("bench.hcl", text, &registry()).expect("bench config is valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let started = Instant::now();
        let global = GlobalContext {
            node_name: "bench".into(),
        };
        let topology = Topology::start(loaded.config, global).unwrap();
        while !topology.is_finished() {
            match poll_every {
                None => tokio::task::yield_now().await,
                Some(every) => tokio::time::sleep(every).await,
            }
        }
        let elapsed = started.elapsed();
        let stopped = topology
            .shutdown(Duration::from_secs(5), sonde_core::CancellationToken::new())
            .await;
        assert_eq!(stopped, sonde_core::topology::Stopped::Drained);
        elapsed
    })
}

/// (min, median, max) of repeated measurements.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (values[0], median, values[n - 1])
}

/// One headline figure of a benchmark, for BENCHMARKS.json and the
/// regression check (`cargo xtask bench --check`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Figure {
    /// What was measured, unique within the benchmark.
    pub name: String,
    /// Its unit, e.g. "ns/event".
    pub unit: &'static str,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// The median over runs of this figure divided by its baseline's in
    /// the same run: what the regression check compares, since machine
    /// noise mostly cancels out of it. `None` for the baselines themselves.
    pub ratio_to_baseline: Option<f64>,
    /// Whether `cargo xtask bench --check` fails when its ratio to the
    /// baseline grows.
    pub gated: bool,
}

impl Figure {
    /// A figure from repeated `values`, with no baseline.
    pub fn new(name: impl Into<String>, unit: &'static str, values: &[f64]) -> Figure {
        let (min, median, max) = spread(values);
        Figure {
            name: name.into(),
            unit,
            min,
            median,
            max,
            ratio_to_baseline: None,
            gated: false,
        }
    }

    /// A figure from repeated `values` beside `baseline` measured in the same
    /// runs (same length, same order); gated by the regression check.
    pub fn against(name: impl Into<String>, unit: &'static str, values: &[f64], baseline: &[f64]) -> Figure {
        let ratios: Vec<f64> = values.iter().zip(baseline).map(|(v, b)| v / b).collect();
        Figure {
            ratio_to_baseline: Some(spread(&ratios).1),
            gated: true,
            ..Figure::new(name, unit, values)
        }
    }
}

/// Writes `NAME.md` (the report section) and `NAME.json` (`figures` for
/// the summary and the regression check, `details` for anything else)
/// into `out`.
pub fn write_report(out: &std::path::Path, name: &str, markdown: &str, figures: &[Figure], details: serde_json::Value) {
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(out.join(format!("{name}.md")), markdown).unwrap();
    let json = serde_json::json!({ "benchmark": name, "figures": figures, "details": details });
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
