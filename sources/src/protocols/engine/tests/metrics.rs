//! RED histograms, the service graph and the engine's counters.

use sonde_core::event::{Metric, MetricValue};

use super::super::super::model::{Direction::*, Role};
use super::super::red::{BOUNDS, CLIENT_DURATION, GRAPH_FAILED, GRAPH_REQUESTS, SERVER_DURATION};
use super::*;

fn histogram(metric: &Metric) -> &sonde_core::event::Histogram {
    match &metric.value {
        MetricValue::Histogram(h) => h,
        other => panic!("{} is {other:?}", metric.name),
    }
}

fn text(metric: &Metric, key: &str) -> Option<String> {
    metric.attributes.get(key).map(|v| v.to_string())
}

#[test]
fn red_histograms_count_every_span_by_method_route_and_status() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    for i in 0..30 {
        let (path, status) = if i % 3 == 0 { ("/err", 500) } else { ("/users/1", 200) };
        h.send(c, Ingress, &get(path));
        // Durations grow: 1 ms, 2 ms … by extra ticks before the response.
        h.clock += (i as u64) * 10 * TICK;
        h.send(c, Egress, &ok(status, ""));
    }
    let metrics = h.engine.metrics(Timestamp::from_nanos(h.clock));
    let red: Vec<_> = metrics.iter().filter(|m| m.name.as_str() == SERVER_DURATION).collect();
    assert_eq!(red.len(), 2);
    let total: u64 = red.iter().map(|m| histogram(m).count).sum();
    assert_eq!(total, h.spans().len() as u64);
    let errors = red
        .iter()
        .find(|m| text(m, "http.response.status_code").as_deref() == Some("500"))
        .unwrap();
    assert_eq!(histogram(errors).count, 10);
    assert_eq!(text(errors, "http.route").as_deref(), Some("/err"));
    assert_eq!(text(errors, "error.type").as_deref(), Some("500"));
    assert_eq!(text(errors, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(text(errors, "process.pid").as_deref(), Some("1"));
    assert_eq!(errors.unit.as_deref(), Some("s"));
    assert_eq!(&*histogram(errors).bounds, BOUNDS.as_slice());
    // Each span's duration lands in its bucket: recompute from the spans.
    let mut want = vec![0u64; BOUNDS.len() + 1];
    let mut sum = 0.0;
    for span in h.spans() {
        let seconds = (span.end.as_nanos() - span.start.as_nanos()) as f64 / 1e9;
        want[BOUNDS.partition_point(|b| *b < seconds)] += 1;
        sum += seconds;
    }
    let mut got = vec![0u64; BOUNDS.len() + 1];
    for m in &red {
        for (g, c) in got.iter_mut().zip(&histogram(m).counts) {
            *g += c;
        }
    }
    assert_eq!(got, want);
    let got_sum: f64 = red.iter().map(|m| histogram(m).sum).sum();
    assert!((got_sum - sum).abs() < 1e-9);
}

#[test]
fn the_service_graph_counts_requests_and_errors_per_pair_and_side() {
    let server = id(1, 3);
    let client = id(2, 4);
    let mut h = Harness::with(server, Role::Server);
    h.engine.open(info(client, Role::Client));
    for status in [200, 404, 503, 200] {
        h.send(client, Egress, &get("/x"));
        h.send(server, Ingress, &get("/x"));
        h.send(server, Egress, &ok(status, ""));
        h.send(client, Ingress, &ok(status, ""));
    }
    let metrics = h.engine.metrics(Timestamp::from_nanos(h.clock));
    let value = |name: &str, side: &str| {
        let m = metrics
            .iter()
            .find(|m| m.name.as_str() == name && text(m, "sonde.flow.direction").as_deref() == Some(side))
            .unwrap();
        match m.value {
            MetricValue::Counter { value } => (value, m.clone()),
            _ => panic!(),
        }
    };
    let (requests, server_edge) = value(GRAPH_REQUESTS, "server");
    assert_eq!(requests, 4.0);
    assert_eq!(value(GRAPH_FAILED, "server").0, 1.0, "servers fail on 5xx");
    assert_eq!(value(GRAPH_FAILED, "client").0, 2.0, "clients on 4xx and 5xx");
    assert_eq!(text(&server_edge, "network.peer.address").as_deref(), Some("10.0.0.2"));
    assert_eq!(text(&server_edge, "server.port").as_deref(), Some("8080"));
    assert_eq!(text(&server_edge, "cgroup.id").as_deref(), Some("4242"));
    let (_, client_edge) = value(GRAPH_REQUESTS, "client");
    assert_eq!(text(&client_edge, "network.peer.address").as_deref(), Some("10.0.0.1"));
    let client_red = metrics.iter().find(|m| m.name.as_str() == CLIENT_DURATION).unwrap();
    assert_eq!(text(client_red, "server.address").as_deref(), Some("10.0.0.1"));
}

#[test]
fn losses_are_exported_as_counters() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    h.send(c, Ingress, &ok(200, "orphan"));
    h.send(c, Egress, &get("/dup"));
    h.chunk_at(c, Egress, 0, &get("/dup"), get("/dup").len() as u32);
    let metrics = h.engine.metrics(Timestamp::from_nanos(h.clock));
    let counter = |reason: &str| {
        metrics
            .iter()
            .find(|m| {
                m.name.as_str() == super::super::counters::DROPPED
                    && text(m, super::super::counters::REASON).as_deref() == Some(reason)
            })
            .map(|m| match m.value {
                MetricValue::Counter { value } => value,
                _ => panic!(),
            })
    };
    assert_eq!(counter("orphan_response"), Some(1.0));
    assert_eq!(counter("duplicate"), Some(1.0));
    assert_eq!(counter("memory_cap"), Some(0.0));
    assert!(metrics.iter().any(|m| m.name.as_str() == super::super::counters::GAPS));
}

#[test]
fn the_prometheus_sink_exposes_red_metrics_with_otel_names() {
    use std::time::Duration;

    use sonde_sinks::prometheus::{render, Format, SeriesStore, StoreConfig};

    let server = id(1, 3);
    let client = id(2, 4);
    let mut h = Harness::with(server, Role::Server);
    h.engine.open(info(client, Role::Client));
    for path in ["/api/users/1", "/api/users/2", "/api/users/3"] {
        h.send(client, Egress, &get(path));
        h.send(server, Ingress, &get(path));
        h.send(server, Egress, &ok(200, ""));
        h.send(client, Ingress, &ok(200, ""));
    }
    let config = StoreConfig {
        max_series: 1000,
        expire_after: Duration::from_secs(300),
        label_allowlist: None,
        label_denylist: Vec::new(),
        keep_label_pairs: false,
    };
    let mut store = SeriesStore::new(config, Vec::new());
    let now = store.now_ms();
    for metric in h.engine.metrics(Timestamp::from_nanos(h.clock)) {
        store.ingest(&metric, now).expect("every metric is accepted");
    }
    let mut text = String::new();
    render(&store, Format::Text, &mut text);
    let server_count = text
        .lines()
        .find(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .unwrap_or_else(|| panic!("no server histogram in\n{text}"));
    assert!(
        server_count.contains(r#"http_route="/api/users/{id}""#),
        "{server_count}"
    );
    assert!(server_count.ends_with(" 3"), "{server_count}");
    for family in [
        "# TYPE http_server_request_duration_seconds histogram",
        "http_server_request_duration_seconds_bucket{",
        "http_server_request_duration_seconds_sum{",
        "http_client_request_duration_seconds_count{",
        "sonde_service_graph_requests_total{",
        "sonde_service_graph_request_duration_seconds_bucket{",
        "sonde_protocols_gaps_total{",
        "\nsonde_protocols_memory_bytes ",
    ] {
        assert!(text.contains(family), "{family} missing in\n{text}");
    }
}
