//! Unit tests: the store's arithmetic and guard, the exact exposition
//! (checked by Prometheus' own `promtool`), naming, format negotiation,
//! the endpoint's socket sharing, and remote-write requests and statuses.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sonde_core::event::{Attributes, Histogram, Metric, Temporality, Timestamp};

use super::store::SeriesValue;
use super::*;

fn config(max_series: usize) -> StoreConfig {
    StoreConfig {
        max_series,
        expire_after: Duration::from_secs(300),
        label_allowlist: None,
        label_denylist: Vec::new(),
        keep_label_pairs: false,
    }
}

fn store(max_series: usize) -> SeriesStore {
    SeriesStore::new(config(max_series), Vec::new())
}

fn with(metric: Metric, pairs: &[(&'static str, &'static str)]) -> Metric {
    metric.with_attributes(pairs.iter().map(|(k, v)| (*k, *v)).collect::<Attributes>())
}

fn value(store: &SeriesStore, family: &str, labels: &str) -> Option<SeriesValue> {
    store
        .families()
        .find(|f| &*f.name == family)
        .and_then(|f| f.series.get(labels))
        .map(|s| s.value.clone())
}

fn text(store: &SeriesStore, format: Format) -> String {
    let mut out = String::new();
    render(store, format, &mut out);
    out
}

#[test]
fn deltas_add_up_and_cumulative_points_replace() {
    let mut s = store(100);
    let delta = |v| Metric::counter("sonde_tx_bytes_total", v).with_temporality(Temporality::Delta);
    for v in [1.0, 2.0, 3.5] {
        s.ingest(&with(delta(v), &[("dev", "eth0")]), 0).unwrap();
    }
    s.ingest(&with(delta(10.0), &[("dev", "lo")]), 0).unwrap();
    assert_eq!(
        value(&s, "sonde_tx_bytes", "dev=\"eth0\""),
        Some(SeriesValue::Scalar(6.5))
    );
    assert_eq!(
        value(&s, "sonde_tx_bytes", "dev=\"lo\""),
        Some(SeriesValue::Scalar(10.0))
    );

    s.ingest(&Metric::counter("c", 5.0), 0).unwrap();
    s.ingest(&Metric::counter("c", 7.0), 0).unwrap();
    assert_eq!(value(&s, "c", ""), Some(SeriesValue::Scalar(7.0)));

    let bounds: Arc<[f64]> = Arc::from([0.1, 1.0]);
    let mut h = Histogram::new(bounds.clone());
    h.observe(0.05);
    h.observe(3.0);
    for _ in 0..2 {
        s.ingest(&Metric::histogram("lat_seconds", h.clone(), Temporality::Delta), 0)
            .unwrap();
    }
    let Some(SeriesValue::Histogram(total)) = value(&s, "lat_seconds", "") else {
        panic!("no histogram")
    };
    assert_eq!(total.counts, vec![2, 0, 2]);
    assert_eq!(total.sum, 6.1);
    // 2 scalar series + 1 counter + a histogram of 2 bounds (5 Prometheus series).
    assert_eq!(s.len(), 8);
}

#[test]
fn idle_series_expire() {
    let mut s = SeriesStore::new(
        StoreConfig {
            expire_after: Duration::from_secs(60),
            ..config(100)
        },
        Vec::new(),
    );
    s.ingest(&with(Metric::gauge("g", 1.0), &[("pod", "old")]), 0).unwrap();
    s.ingest(&with(Metric::gauge("g", 1.0), &[("pod", "new")]), 30_000)
        .unwrap();
    s.sweep(59_999);
    assert_eq!(s.len(), 2);
    s.sweep(60_000);
    assert_eq!(s.len(), 1);
    assert!(value(&s, "g", "pod=\"new\"").is_some());
    s.sweep(90_000);
    assert!(s.is_empty());
    assert_eq!(s.families().count(), 0, "an empty family is removed too");
}

#[test]
fn cardinality_guard_holds_exactly_max_series_and_counts_the_rest() {
    let mut s = store(10);
    for i in 0..25 {
        let metric = Metric::gauge("g", i as f64).with_attributes(Attributes::new().with("pod", i.to_string()));
        let _ = s.ingest(&metric, 0);
    }
    assert_eq!(s.len(), 10);
    assert_eq!(s.refused(Refused::MaxSeries), 15);
    // Series already held keep updating at the limit.
    let update = Metric::gauge("g", 99.0).with_attributes(Attributes::new().with("pod", "3".to_string()));
    s.ingest(&update, 0).unwrap();
    assert_eq!(value(&s, "g", "pod=\"3\""), Some(SeriesValue::Scalar(99.0)));
    assert_eq!(s.refused(Refused::MaxSeries), 15);
    // A histogram that would not fit whole is refused whole.
    let h = Histogram::new(Arc::from([1.0]));
    let mut s = store(5);
    s.ingest(&Metric::gauge("a", 1.0), 0).unwrap();
    s.ingest(&Metric::gauge("b", 1.0), 0).unwrap();
    assert!(s
        .ingest(&Metric::histogram("h", h, Temporality::Cumulative), 0)
        .is_err());
    assert_eq!(s.len(), 2);
}

#[test]
fn allowlist_and_denylist_shape_labels() {
    let metric = with(
        Metric::gauge("g", 1.0),
        &[
            ("k8s.pod.name", "p"),
            ("process.pid", "42"),
            ("device", "vda"),
            ("empty", ""),
        ],
    );
    let mut s = SeriesStore::new(
        StoreConfig {
            label_denylist: vec!["process_pid".into()],
            ..config(100)
        },
        Vec::new(),
    );
    s.ingest(&metric, 0).unwrap();
    assert!(value(&s, "g", "device=\"vda\",k8s_pod_name=\"p\"").is_some());
    let mut s = SeriesStore::new(
        StoreConfig {
            label_allowlist: Some(vec!["k8s_pod_name".into()]),
            ..config(100)
        },
        Vec::new(),
    );
    s.ingest(&metric, 0).unwrap();
    assert!(value(&s, "g", "k8s_pod_name=\"p\"").is_some());
}

#[test]
fn conflicts_are_refused_and_counted() {
    let mut s = store(100);
    s.ingest(&Metric::gauge("x", 1.0), 0).unwrap();
    assert_eq!(
        s.ingest(&Metric::counter("x", 1.0), 0).unwrap_err(),
        Refused::TypeConflict
    );
    s.ingest(&Metric::gauge("a.b", 1.0), 0).unwrap();
    assert_eq!(
        s.ingest(&Metric::gauge("a_b", 1.0), 0).unwrap_err(),
        Refused::NameConflict
    );
    let bad = Histogram {
        bounds: Arc::from([1.0]),
        counts: vec![1],
        sum: 1.0,
        count: 1,
    };
    let bad = Metric::histogram("h", bad, Temporality::Cumulative);
    assert_eq!(s.ingest(&bad, 0).unwrap_err(), Refused::Invalid);
    assert_eq!(
        [Refused::TypeConflict, Refused::NameConflict, Refused::Invalid].map(|r| s.refused(r)),
        [1, 1, 1]
    );
}

/// A store holding a counter, a gauge and a histogram whose labels are
/// as awkward as label values get: quotes, backslashes, newlines, unicode.
fn awkward_store() -> SeriesStore {
    let mut s = store(1000);
    let awkward = Attributes::new()
        .with("k8s.pod.name", "web-\"quoted\"-0")
        .with("path", "C:\\temp\\new\nline")
        .with("city", "Zürich ☃ 東京")
        .with("process.pid", 4242i64);
    s.ingest(
        &Metric::counter("sonde_requests_total", 3.0)
            .with_description("Requests \"seen\", with a back\\slash\nand a newline.")
            .with_attributes(awkward.clone()),
        0,
    )
    .unwrap();
    s.ingest(
        &Metric::gauge("sonde.queue.depth", -2.5)
            .with_description("Items waiting.")
            .with_attributes(Attributes::new().with("queue", "a")),
        0,
    )
    .unwrap();
    let mut h = Histogram::new(Arc::from([0.001, 0.5, 2.0]));
    for v in [0.0005, 0.2, 0.3, 1.0, 5.0] {
        h.observe(v);
    }
    let hist = Metric::histogram("sonde_disk_latency", h, Temporality::Delta)
        .with_unit("s")
        .with_description("Disk latency.")
        .with_attributes(awkward.with("le", "user-le"));
    s.ingest(&hist, 0).unwrap();
    s
}

const AWKWARD_LABELS: &str =
    r#"city="Zürich ☃ 東京",k8s_pod_name="web-\"quoted\"-0",path="C:\\temp\\new\nline",process_pid="4242""#;
const HISTOGRAM_LABELS: &str = r#"city="Zürich ☃ 東京",exported_le="user-le",k8s_pod_name="web-\"quoted\"-0",path="C:\\temp\\new\nline",process_pid="4242""#;

#[test]
fn text_exposition_is_exact() {
    let expected = format!(
        r#"# HELP sonde_disk_latency_seconds Disk latency.
# TYPE sonde_disk_latency_seconds histogram
sonde_disk_latency_seconds_bucket{{{h},le="0.001"}} 1
sonde_disk_latency_seconds_bucket{{{h},le="0.5"}} 3
sonde_disk_latency_seconds_bucket{{{h},le="2.0"}} 4
sonde_disk_latency_seconds_bucket{{{h},le="+Inf"}} 5
sonde_disk_latency_seconds_sum{{{h}}} 6.5005
sonde_disk_latency_seconds_count{{{h}}} 5
# HELP sonde_queue_depth Items waiting.
# TYPE sonde_queue_depth gauge
sonde_queue_depth{{queue="a"}} -2.5
# HELP sonde_requests_total Requests "seen", with a back\\slash\nand a newline.
# TYPE sonde_requests_total counter
sonde_requests_total{{{l}}} 3.0
"#,
        h = HISTOGRAM_LABELS,
        l = AWKWARD_LABELS
    );
    assert_eq!(text(&awkward_store(), Format::Text), expected);
}

#[test]
fn openmetrics_exposition_names_counter_families_without_total() {
    let om = text(&awkward_store(), Format::OpenMetrics);
    assert!(om.contains("# TYPE sonde_requests counter\n"), "{om}");
    assert!(om.contains("# HELP sonde_requests Requests \\\"seen\\\""), "{om}");
    assert!(
        om.contains(&format!("\nsonde_requests_total{{{AWKWARD_LABELS}}} 3.0\n")),
        "{om}"
    );
    assert!(om.contains("# UNIT sonde_disk_latency_seconds seconds\n"), "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
}

/// Runs Prometheus' own linter and parser on an exposition.
fn promtool_check(exposition: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's `prometheus` package (`cargo xtask test` does)");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn a_family_without_a_description_gets_a_help_line_promtool_accepts() {
    let mut store = store(10);
    let metric = Metric::counter("sonde.tcp.connections.opened", 3.0).with_unit("{connection}");
    store.ingest(&metric, 0).unwrap();
    let text = text(&store, Format::Text);
    assert!(
        text.starts_with("# HELP sonde_tcp_connections_opened_total Metric sonde_tcp_connections_opened (its source gave no description).\n"),
        "{text}"
    );
    let (ok, said) = promtool_check(&text);
    assert!(ok && said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn promtool_accepts_the_exposition_of_awkward_labels() {
    let (ok, said) = promtool_check(&text(&awkward_store(), Format::Text));
    assert!(ok && said.trim().is_empty(), "promtool: {said}");
    // The check can fail: an unescaped quote is a parse error for promtool.
    let (ok, said) = promtool_check("# HELP x X.\n# TYPE x gauge\nx{a=\"b\"c\"} 1\n");
    assert!(!ok, "promtool accepted a broken exposition: {said}");
}

#[test]
fn accept_header_picks_the_format() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    assert_eq!(
        Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
        Format::Text
    );
}

#[test]
fn remote_write_request_is_sorted_deduplicated_and_in_order() {
    let mut s = SeriesStore::new(
        StoreConfig {
            keep_label_pairs: true,
            ..config(100)
        },
        Vec::new(),
    );
    let at = |ms: u64, v: f64| {
        with(Metric::counter("sonde_packets", v), &[("Zone", "z"), ("app", "a")])
            .with_temporality(Temporality::Delta)
            .with_timestamp(Timestamp::from_nanos(ms * 1_000_000))
    };
    let batch = vec![at(1000, 1.0).into(), at(1000, 2.0).into(), at(2000, 4.0).into()].into();
    let request = build_request(&mut s, &batch);
    assert_eq!(request.timeseries.len(), 1);
    let series = &request.timeseries[0];
    let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
    // Sorted byte-wise: uppercase before `__name__`, lowercase after.
    assert_eq!(names, ["Zone", "__name__", "app"]);
    assert_eq!(series.labels[1].value, "sonde_packets_total");
    let samples: Vec<(i64, f64)> = series.samples.iter().map(|s| (s.timestamp, s.value)).collect();
    assert_eq!(samples, [(1000, 3.0), (2000, 7.0)]);
    assert_eq!(request.metadata[0].metric_family_name, "sonde_packets_total");

    // An older sample is left out (and counted), but its delta still counts.
    let request = build_request(&mut s, &vec![at(1500, 1.0).into(), at(3000, 1.0).into()].into());
    let samples: Vec<(i64, f64)> = request.timeseries[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(samples, [(3000, 9.0)]);
    assert_eq!(s.refused(Refused::OutOfOrder), 1);
}

mod endpoint;
mod remote;

#[test]
fn remote_write_histograms_are_bucket_sum_and_count_series() {
    let mut s = SeriesStore::new(
        StoreConfig {
            keep_label_pairs: true,
            ..config(100)
        },
        Vec::new(),
    );
    let mut h = Histogram::new(Arc::from([0.5]));
    h.observe(0.1);
    h.observe(2.0);
    let point =
        Metric::histogram("lat_seconds", h, Temporality::Delta).with_timestamp(Timestamp::from_nanos(5_000_000));
    let request = build_request(&mut s, &vec![point.into()].into());
    let series: Vec<(String, f64)> = request
        .timeseries
        .iter()
        .map(|t| {
            let labels: Vec<String> = t.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
            (labels.join(","), t.samples[0].value)
        })
        .collect();
    assert_eq!(
        series,
        [
            ("__name__=lat_seconds_bucket,le=0.5".to_string(), 1.0),
            ("__name__=lat_seconds_bucket,le=+Inf".to_string(), 2.0),
            ("__name__=lat_seconds_sum".to_string(), 2.1),
            ("__name__=lat_seconds_count".to_string(), 2.0),
        ]
    );
    assert_eq!(request.metadata[0].r#type, MetricType::Histogram as i32);
}
