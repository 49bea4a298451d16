//! The harness every bench target shares: arguments, the component
//! registry, running a pipeline to completion on one core, and min /
//! median / max of repeated runs.
#![allow(dead_code)] // each bench uses only part of it

use std::time::{Duration, Instant};

use sonde_core::component::GlobalContext;
use sonde_core::config::load_str;
use sonde_core::topology::Topology;

/// Every component type the binary has.
pub fn registry() -> sonde_core::Registry {
    let mut registry = sonde_core::Registry::new();
    sonde_sources::register(&mut registry);
    sonde_transforms::register(&mut registry);
    sonde_sinks::register(&mut registry);
    registry
}

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
        assert_eq!(topology.shutdown(Duration::from_secs(5)).await, 0);
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
