//! Prometheus sink costs: ingestion per event (through the pipeline, beside
//! a blackhole baseline, and into the series store alone), a remote-write
//! request's build and encoding per event, and a scrape's rendering of
//! 100k series (time and bytes, text and OpenMetrics).
//!
//! `cargo xtask bench prometheus` runs it. Every case is repeated `--runs`
//! times, interleaved, so that noise on a shared machine hits all alike.
//! Prints markdown tables and writes them, with JSON, to `--out`.

mod common;

use common::arg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_core::event::{Attributes, Event, EventBatch, Histogram, Metric, Temporality, Timestamp};
use sonde_sinks::prometheus::{build_request, encode_request, render, Format, SeriesStore, StoreConfig};

const PIPELINES: [(&str, &str); 2] = [
    (
        "baseline: demo → blackhole",
        r#"
        source "demo" "gen" {
          rate   = 0
          count  = COUNT
          series = 1000
        }
        sink "blackhole" "void" { inputs = ["gen"] }
        "#,
    ),
    (
        "demo → prometheus (exporter)",
        r#"
        source "demo" "gen" {
          rate   = 0
          count  = COUNT
          series = 1000
        }
        sink "prometheus" "prom" {
          inputs = ["gen"]
          listen = "127.0.0.1:0"
        }
        "#,
    ),
];

fn store_config(keep_label_pairs: bool) -> StoreConfig {
    StoreConfig {
        max_series: 1_000_000,
        expire_after: Duration::from_secs(300),
        label_allowlist: None,
        label_denylist: Vec::new(),
        keep_label_pairs,
    }
}

/// Pod-like labels: what an enriched eBPF metric carries.
fn pod_attributes(i: usize) -> Attributes {
    Attributes::new()
        .with("k8s.namespace.name", format!("namespace-{}", i % 50))
        .with("k8s.pod.name", format!("web-{i:06}-7c9d8b6f5-x2x9q"))
        .with("k8s.container.name", "app")
        .with("k8s.node.name", "node-a.example.internal")
}

/// Batches of 1000 delta counters cycling over `series` series.
fn counter_batches(events: usize, series: usize) -> Vec<EventBatch> {
    let attributes: Vec<Attributes> = (0..series).map(pod_attributes).collect();
    (0..events)
        .collect::<Vec<_>>()
        .chunks(1000)
        .enumerate()
        .map(|(b, chunk)| {
            let at = Timestamp::from_nanos((b as u64 + 1) * 1_000_000);
            chunk
                .iter()
                .map(|i| {
                    Event::from(
                        Metric::counter("sonde_tcp_sent_bytes_total", 1500.0)
                            .with_temporality(Temporality::Delta)
                            .with_attributes(attributes[i % series].clone())
                            .with_timestamp(at),
                    )
                })
                .collect()
        })
        .collect()
}

/// Store ingestion alone: every batch into a fresh store, per event.
fn ingest(batches: &[EventBatch]) -> Duration {
    let mut store = SeriesStore::new(store_config(false), Vec::new());
    let started = Instant::now();
    for batch in batches {
        let now = store.now_ms();
        for event in batch {
            if let Event::Metric(m) = event {
                let _ = store.ingest(m, now);
            }
        }
    }
    started.elapsed()
}

/// Remote write: requests built from the store and encoded (no network).
fn remote_write(batches: &[EventBatch]) -> (Duration, usize) {
    let mut store = SeriesStore::new(store_config(true), Vec::new());
    let started = Instant::now();
    let mut bytes = 0;
    for batch in batches {
        bytes += encode_request(&build_request(&mut store, batch)).len();
    }
    (started.elapsed(), bytes)
}

/// A store of `series` counters with pod labels, or of histograms.
fn big_store(series: usize, histograms: bool) -> SeriesStore {
    let mut store = SeriesStore::new(store_config(false), Vec::new());
    let bounds: Arc<[f64]> = Arc::from([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
    for i in 0..series {
        let metric = if histograms {
            let mut h = Histogram::new(bounds.clone());
            h.observe((i % 1000) as f64 / 1000.0);
            Metric::histogram("sonde_disk_latency_seconds", h, Temporality::Delta)
        } else {
            Metric::counter("sonde_tcp_sent_bytes_total", i as f64)
        };
        store.ingest(&metric.with_attributes(pod_attributes(i)), 0).unwrap();
    }
    store
}

/// Runs one pipeline to completion on one core.
fn run_pipeline(template: &str, events: u64) -> Duration {
    common::run_to_completion(&template.replace("COUNT", &events.to_string()), None)
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    common::spread(v)
}

fn main() {
    let events: u64 = arg("--events", "1000000").parse().unwrap();
    let runs: usize = arg("--runs", "5").parse().unwrap();
    let out = std::path::PathBuf::from(arg("--out", "target/bench"));
    let batches = counter_batches(events as usize, 10_000);
    let stores = [
        ("100k counters, 4 labels", big_store(100_000, false)),
        ("10k histograms × 10 buckets, 4 labels", big_store(10_000, true)),
    ];
    // Warm-up: page in code and allocator arenas.
    run_pipeline(PIPELINES[1].1, events / 10);

    let mut pipeline: Vec<Vec<f64>> = vec![Vec::new(); PIPELINES.len()];
    let (mut ingested, mut written) = (Vec::new(), Vec::new());
    let mut rendered: Vec<Vec<f64>> = vec![Vec::new(); stores.len() * 2];
    let mut sizes = vec![0usize; stores.len() * 2];
    let mut rw_bytes = 0;
    for run in 0..runs {
        for (i, (_, graph)) in PIPELINES.iter().enumerate() {
            pipeline[i].push(run_pipeline(graph, events).as_secs_f64());
        }
        ingested.push(ingest(&batches).as_secs_f64());
        let (time, bytes) = remote_write(&batches);
        written.push(time.as_secs_f64());
        rw_bytes = bytes;
        for (s, (_, store)) in stores.iter().enumerate() {
            for (f, format) in [Format::Text, Format::OpenMetrics].into_iter().enumerate() {
                let started = Instant::now();
                let mut text = String::new();
                render(store, format, &mut text);
                rendered[s * 2 + f].push(started.elapsed().as_secs_f64());
                sizes[s * 2 + f] = text.len();
            }
        }
        eprintln!("run {}/{runs} done", run + 1);
    }

    let ns = |t: f64| t * 1e9 / events as f64;
    let baseline = stats(&pipeline[0]).1;
    let mut table = format!(
        "### Prometheus sink ({events} metric events per run, {runs} interleaved runs, one core)\n\n\
         | ingestion | ns/event min / median / max | events/s (median) | vs baseline |\n|---|---|---|---|\n"
    );
    let mut json = Vec::new();
    let ns_runs = |v: &[f64]| v.iter().map(|t| ns(*t)).collect::<Vec<_>>();
    let mut figures = vec![common::Figure::new(PIPELINES[0].0, "ns/event", &ns_runs(&pipeline[0]))];
    for (i, (name, _)) in PIPELINES.iter().enumerate().skip(1) {
        figures.push(common::Figure::against(
            *name,
            "ns/event",
            &ns_runs(&pipeline[i]),
            &ns_runs(&pipeline[0]),
        ));
    }
    let mut row = |name: &str, times: &[f64], ratio: Option<f64>| {
        let (min, median, max) = stats(times);
        table.push_str(&format!(
            "| {name} | {:.0} / {:.0} / {:.0} | {:.2} M | {} |\n",
            ns(min),
            ns(median),
            ns(max),
            events as f64 / median / 1e6,
            ratio.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into())
        ));
        json.push(serde_json::json!({
            "case": name, "events": events, "runs": runs, "seconds": times,
            "ns_per_event": { "min": ns(min), "median": ns(median), "max": ns(max) },
        }));
    };
    for (i, (name, _)) in PIPELINES.iter().enumerate() {
        row(name, &pipeline[i], Some(stats(&pipeline[i]).1 / baseline));
    }
    row("series store alone (10k series, 4 labels)", &ingested, None);
    row(
        "remote-write request build + protobuf + snappy (no network)",
        &written,
        None,
    );
    table.push_str(&format!(
        "\nRemote-write bodies: {:.1} bytes/event compressed.\n\n\
         | scrape of | format | render ms min / median / max | bytes |\n|---|---|---|---|\n",
        rw_bytes as f64 / events as f64
    ));
    for (s, (name, _)) in stores.iter().enumerate() {
        for (f, format) in ["text 0.0.4", "OpenMetrics 1.0"].into_iter().enumerate() {
            let (min, median, max) = stats(&rendered[s * 2 + f]);
            table.push_str(&format!(
                "| {name} | {format} | {:.1} / {:.1} / {:.1} | {} |\n",
                min * 1e3,
                median * 1e3,
                max * 1e3,
                sizes[s * 2 + f]
            ));
            json.push(serde_json::json!({
                "case": format!("render {name}, {format}"), "runs": runs,
                "seconds": rendered[s * 2 + f], "bytes": sizes[s * 2 + f],
            }));
        }
    }
    println!("{table}");
    common::write_report(&out, "prometheus", &table, &figures, serde_json::Value::Array(json));
}
