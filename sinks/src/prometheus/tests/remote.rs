//! The remote-write client against a scripted HTTP server: what is sent,
//! how each status is classified, and that a retried batch is not added
//! to the series twice.
//!
//! The scripted server decodes with the sink's own `WriteRequest` (proto.rs),
//! so these tests check the client's behaviour, not its encoding. The
//! encoding is checked independently by the real Prometheus binary:
//! `tests/prometheus.rs`, `remote_write_loses_nothing_across_a_prometheus_restart`
//! sends samples 0..1199 through `/api/v1/write` of a Prometheus started
//! with `--web.enable-remote-write-receiver` and reads every one back
//! through its query API, exactly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use prost::Message;
use sonde_core::component::GlobalContext;
use sonde_core::event::{EventBatch, Metric, Temporality};
use sonde_core::{ComponentInfo, ComponentKind, Sink, SinkConfig, SinkContext, SinkError};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::super::{PrometheusSinkConfig, WriteRequest};

/// A status to answer with, and its `Retry-After`.
type Answer = (u16, Option<&'static str>);

#[derive(Clone, Default)]
struct Receiver {
    /// Statuses to answer, in order, with an optional Retry-After.
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// Headers and decoded body of every request.
    seen: Arc<Mutex<Vec<(HeaderMap, WriteRequest)>>>,
}

async fn write(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block format");
    let request = WriteRequest::decode(raw.as_slice()).expect("a WriteRequest");
    r.seen.lock().unwrap().push((headers, request));
    let (status, retry_after) = r.script.lock().unwrap().pop_front().unwrap_or((204, None));
    let mut response = (StatusCode::from_u16(status).unwrap(), "scripted answer").into_response();
    if let Some(after) = retry_after {
        response.headers_mut().insert("retry-after", after.parse().unwrap());
    }
    response
}

async fn receiver(script: &[Answer]) -> (Receiver, u16) {
    let r = Receiver::default();
    r.script.lock().unwrap().extend(script.iter().copied());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route("/api/v1/write", post(write)).with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, port)
}

fn build(options: serde_json::Value) -> Sink {
    let config: PrometheusSinkConfig = serde_json::from_value(options).unwrap();
    let cx = SinkContext {
        info: ComponentInfo {
            kind: ComponentKind::Sink,
            id: "rw".into(),
            type_name: "prometheus",
        },
        global: GlobalContext { node_name: "n".into() },
        shutdown: CancellationToken::new(),
    };
    config.build(&cx).unwrap()
}

#[tokio::test]
async fn retried_batches_are_sent_identically_and_counted_once() {
    let (r, port) = receiver(&[(503, Some("7")), (204, None)]).await;
    let mut sink = build(serde_json::json!({
        "mode": "remote_write",
        "endpoint": format!("http://127.0.0.1:{port}/api/v1/write"),
        "basic_auth": { "username": "u", "password": "p" },
        "headers": { "X-Scope-OrgID": "tenant-1" },
    }));
    let mut batch = EventBatch::from(sonde_core::Event::from(
        Metric::counter("sonde_events", 5.0).with_temporality(Temporality::Delta),
    ));
    // As the core numbers a batch taken from a sink's buffer.
    batch.set_id(Some(sonde_core::event::BatchId {
        epoch: 0xab,
        first: 3,
        last: 5,
    }));
    let error = sink.ready().await.unwrap().call(batch.clone()).await.unwrap_err();
    match error {
        SinkError::Retriable { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("503 must be retriable, got {other:?}"),
    }
    // The core's retry layer calls again with the same (shared) batch.
    sink.ready().await.unwrap().call(batch).await.unwrap();
    let seen = r.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, seen[1].1, "the retry must resend the same request");
    let sample = &seen[1].1.timeseries[0].samples[0];
    assert_eq!(sample.value, 5.0, "a retried delta must not be added twice");
    let headers = &seen[0].0;
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(headers["x-scope-orgid"], "tenant-1");
    assert_eq!(headers["authorization"], "Basic dTpw");
    for (headers, _) in seen.iter() {
        assert_eq!(
            headers["sonde-batch-id"], "00000000000000ab:3-5",
            "the same identity on the retry"
        );
    }
}

#[tokio::test]
async fn statuses_are_classified() {
    let (_r, port) = receiver(&[(400, None), (429, None), (500, None), (401, None)]).await;
    let mut sink = build(serde_json::json!({
        "mode": "remote_write",
        "endpoint": format!("http://127.0.0.1:{port}/api/v1/write"),
        "bearer_token": "t",
    }));
    let mut outcomes = Vec::new();
    for i in 0..4 {
        // One millisecond apart: a series gets one sample per millisecond.
        let at = sonde_core::event::Timestamp::from_nanos((i + 1) * 1_000_000);
        let batch = EventBatch::from(sonde_core::Event::from(Metric::gauge("g", i as f64).with_timestamp(at)));
        let result = sink.ready().await.unwrap().call(batch).await;
        outcomes.push(match result {
            Ok(()) => "ok",
            Err(SinkError::Retriable { .. }) => "retriable",
            Err(SinkError::Permanent { .. }) => "permanent",
            Err(SinkError::Rejected { .. }) => "rejected",
        });
    }
    assert_eq!(outcomes, ["permanent", "retriable", "retriable", "permanent"]);

    // Nobody listening: retriable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = build(serde_json::json!({
        "mode": "remote_write",
        "endpoint": format!("http://127.0.0.1:{closed}/api/v1/write"),
    }));
    let batch = EventBatch::from(sonde_core::Event::from(Metric::gauge("g", 1.0)));
    let error = sink.ready().await.unwrap().call(batch).await.unwrap_err();
    assert!(matches!(error, SinkError::Retriable { .. }), "{error:?}");
}

#[test]
fn contradicting_options_are_refused() {
    let error = |options: serde_json::Value| {
        let config: PrometheusSinkConfig = match serde_json::from_value(options) {
            Ok(config) => config,
            Err(error) => return error.to_string(),
        };
        if let Err(invalid) = config.validate() {
            return invalid.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        }
        let cx = SinkContext {
            info: ComponentInfo {
                kind: ComponentKind::Sink,
                id: "x".into(),
                type_name: "prometheus",
            },
            global: GlobalContext { node_name: "n".into() },
            shutdown: CancellationToken::new(),
        };
        config.build(&cx).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(error(serde_json::json!({ "mode": "remote_write" })).contains("needs `endpoint`"));
    assert!(error(serde_json::json!({ "endpoint": "http://x/api/v1/write" })).contains("remote-write option"));
    assert!(error(serde_json::json!({
        "mode": "remote_write", "endpoint": "http://x/", "bearer_token": "t",
        "basic_auth": { "username": "u", "password": "p" },
    }))
    .contains("not both"));
    assert!(
        error(serde_json::json!({ "mode": "remote_write", "endpoint": "ftp://x/" })).contains("the scheme is `ftp`")
    );
    assert!(error(serde_json::json!({ "max_series": 0 })).contains("at least 1"));
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    use super::super::remote_write::retry_after;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    let with = |value: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        retry_after(&headers, now)
    };
    assert_eq!(with("120"), Some(Duration::from_secs(120)));
    assert_eq!(with("Sun, 06 Nov 1994 08:50:07 GMT"), Some(Duration::from_secs(30)));
    assert_eq!(with("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
    assert_eq!(with("soon"), None);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}
