//! The scrape endpoint over real sockets: formats, and two sinks sharing
//! a port across a reload while a foreign listener is refused.

use std::time::Duration;

use sonde_core::component::GlobalContext;
use sonde_core::event::{EventBatch, Metric};
use sonde_core::{ComponentInfo, ComponentKind, Sink, SinkConfig, SinkContext};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::super::PrometheusSinkConfig;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16) -> PrometheusSinkConfig {
    serde_json::from_value(serde_json::json!({ "listen": format!("127.0.0.1:{port}") })).unwrap()
}

fn build(config: &PrometheusSinkConfig) -> Result<(Sink, CancellationToken), sonde_core::BoxError> {
    let shutdown = CancellationToken::new();
    let cx = SinkContext {
        info: ComponentInfo {
            kind: ComponentKind::Sink,
            id: "prom".into(),
            type_name: "prometheus",
        },
        global: GlobalContext { node_name: "n".into() },
        shutdown: shutdown.clone(),
    };
    config.build(&cx).map(|sink| (sink, shutdown))
}

async fn send(sink: &mut Sink, metric: Metric) {
    sink.ready()
        .await
        .unwrap()
        .call(EventBatch::from(sonde_core::Event::from(metric)))
        .await
        .unwrap();
}

async fn scrape(port: u16, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn serves_text_or_openmetrics_by_accept_header() {
    let port = free_port();
    let (mut sink, shutdown) = build(&config(port)).unwrap();
    send(&mut sink, Metric::gauge("up", 1.0).with_description("Whether it runs.")).await;
    let (content_type, body) = scrape(port, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(body, "# HELP up Whether it runs.\n# TYPE up gauge\nup 1.0\n");
    let (content_type, body) = scrape(port, Some("application/openmetrics-text; version=1.0.0")).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(body, "# HELP up Whether it runs.\n# TYPE up gauge\nup 1.0\n# EOF\n");
    let missing = reqwest::get(format!("http://127.0.0.1:{port}/")).await.unwrap();
    assert_eq!(missing.status(), 404);
    shutdown.cancel();
}

#[tokio::test]
async fn a_rebuilt_sink_shares_the_port_and_a_foreign_listener_is_refused() {
    let port = free_port();
    let (mut old, old_shutdown) = build(&config(port)).unwrap();
    send(&mut old, Metric::gauge("generation", 1.0)).await;
    // A reload builds the new sink while the old one still serves.
    let (mut new, new_shutdown) = build(&config(port)).expect("second bind on the same port");
    send(&mut new, Metric::gauge("generation", 2.0)).await;
    // Both serve from one socket meanwhile: every scrape is answered.
    for _ in 0..20 {
        let (_, body) = scrape(port, None).await;
        assert!(
            body.contains("generation 1.0") || body.contains("generation 2.0"),
            "{body}"
        );
    }
    old_shutdown.cancel();
    // Once the old server has stopped, every scrape reaches the new one,
    // and none is refused or reset on the way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut streak = 0;
    while streak < 10 {
        let (_, body) = scrape(port, None).await;
        streak = if body.contains("generation 2.0") { streak + 1 } else { 0 };
        assert!(
            tokio::time::Instant::now() < deadline,
            "old endpoint still answers: {body}"
        );
    }
    new_shutdown.cancel();

    let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = foreign.local_addr().unwrap().port();
    let Err(error) = build(&config(taken)) else {
        panic!("bound next to a foreign listener")
    };
    assert!(error.to_string().contains("another process is listening"), "{error}");
}

#[tokio::test]
async fn a_rebuilt_sink_keeps_its_counters() {
    let port = free_port();
    let (mut old, old_shutdown) = build(&config(port)).unwrap();
    let delta = |v| Metric::counter("requests", v).with_temporality(sonde_core::event::Temporality::Delta);
    send(&mut old, delta(5.0)).await;
    // A reload that changes an option the labels do not depend on.
    let mut changed = config(port);
    changed.max_series += 1;
    let (mut new, new_shutdown) = build(&changed).unwrap();
    drop(old);
    old_shutdown.cancel();
    send(&mut new, delta(3.0)).await;
    // The total goes on from 5: Prometheus sees no counter reset.
    let (_, body) = scrape(port, None).await;
    assert!(body.contains("requests_total 8"), "{body}");
    new_shutdown.cancel();
}
