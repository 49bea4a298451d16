use std::collections::BTreeMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use sonde_core::component::{ComponentInfo, ComponentKind, GlobalContext};
use sonde_core::event::{
    keys, Attributes, Event, Frame, FrameKind, Histogram, Log, Metric, Profile, Severity, Span, SpanKind, SpanStatus,
    StackSample, Temporality, Timestamp,
};
use sonde_core::{SinkContext, SinkError};

use prost::Message as _;

use super::encode::{Encoder, Request, Signal};
use super::*;

fn encoder() -> Encoder {
    Encoder::new(&BTreeMap::new(), "node-1".into(), usize::MAX)
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match find(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn at(seconds: u64) -> Timestamp {
    Timestamp::from_nanos(seconds * 1_000_000_000)
}

fn process(pid: u32, comm: &'static str) -> Attributes {
    Attributes::new()
        .with(keys::PID, pid)
        .with(keys::COMM, comm)
        .with(keys::NODE, "node-1")
        .with("device", "vda")
}

#[test]
fn metrics_become_sums_gauges_and_histograms_grouped_by_resource() {
    let mut histogram = Histogram::new(Arc::from([0.001, 0.01]));
    for v in [0.0005, 0.002, 0.5] {
        histogram.observe(v);
    }
    let events: Vec<Event> = vec![
        Metric::counter("io_total", 10.0)
            .with_temporality(Temporality::Delta)
            .with_attributes(process(1, "postgres"))
            .with_timestamp(at(2))
            .into(),
        Metric::counter("io_total", 5.0)
            .with_temporality(Temporality::Delta)
            .with_attributes(process(2, "redis"))
            .with_timestamp(at(2))
            .into(),
        Metric::gauge("queue", 3.0)
            .with_attributes(process(1, "postgres"))
            .into(),
        Metric::histogram("latency_seconds", histogram, Temporality::Cumulative)
            .with_unit("s")
            .with_attributes(process(1, "postgres"))
            .into(),
    ];
    let requests = encoder().encode(&events);
    let [Request::Metrics(encoded)] = requests.as_slice() else {
        panic!("one metrics request expected: {requests:?}")
    };
    let request = &encoded.decode();
    assert_eq!(request.resource_metrics.len(), 2, "one resource per process");
    let postgres = &request.resource_metrics[0];
    let resource = &postgres.resource.as_ref().unwrap().attributes;
    assert_eq!(find(resource, keys::PID), Some(&any_value::Value::IntValue(1)));
    assert_eq!(text(resource, keys::COMM).as_deref(), Some("postgres"));
    assert_eq!(
        text(resource, "service.name").as_deref(),
        Some("unknown_service:postgres")
    );
    assert_eq!(text(resource, keys::HOST).as_deref(), Some("node-1"));
    let scope = &postgres.scope_metrics[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "sonde");
    assert_eq!(scope.metrics.len(), 3);

    let Some(metric::Data::Sum(sum)) = &scope.metrics[0].data else {
        panic!("counter is not a sum")
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, AggregationTemporality::Delta as i32);
    let point = &sum.data_points[0];
    assert_eq!(point.value, Some(number_data_point::Value::AsDouble(10.0)));
    assert_eq!(text(&point.attributes, "device").as_deref(), Some("vda"));
    assert!(
        find(&point.attributes, keys::PID).is_none(),
        "pid is a resource attribute"
    );
    assert_eq!(point.time_unix_nano, at(2).as_nanos());

    assert!(matches!(scope.metrics[1].data, Some(metric::Data::Gauge(_))));
    let Some(metric::Data::Histogram(h)) = &scope.metrics[2].data else {
        panic!("not a histogram")
    };
    assert_eq!(scope.metrics[2].unit, "s");
    assert_eq!(h.aggregation_temporality, AggregationTemporality::Cumulative as i32);
    let point = &h.data_points[0];
    assert_eq!(point.explicit_bounds, vec![0.001, 0.01]);
    assert_eq!(point.bucket_counts, vec![1, 1, 1]);
    assert_eq!((point.count, point.sum), (3, Some(0.5025)));
    assert_eq!(Request::Metrics(encoded.clone()).items(), 4);
    assert_eq!(
        request.encoded_len(),
        encoded.body.len(),
        "no byte more than prost writes"
    );
}

#[test]
fn delta_points_tile_time_and_retries_keep_their_start() {
    let encoder = encoder();
    let point = |seconds, value| -> Event {
        Metric::counter("x_total", value)
            .with_temporality(Temporality::Delta)
            .with_timestamp(at(seconds))
            .into()
    };
    let start = |requests: Vec<Request>| -> Vec<u64> {
        let Request::Metrics(r) = &requests[0] else { panic!() };
        let r = r.decode();
        let Some(metric::Data::Sum(sum)) = &r.resource_metrics[0].scope_metrics[0].metrics[0].data else {
            panic!()
        };
        sum.data_points.iter().map(|p| p.start_time_unix_nano).collect()
    };
    // The first point starts when the sink did (before 1970 + 10 s: its own time).
    assert_eq!(
        start(encoder.encode(&[point(10, 1.0), point(20, 2.0)])),
        vec![at(10).as_nanos(), at(10).as_nanos()]
    );
    assert_eq!(start(encoder.encode(&[point(30, 1.0)])), vec![at(20).as_nanos()]);
    // A retried batch encodes the same start times again.
    assert_eq!(
        start(encoder.encode(&[point(20, 2.0), point(30, 1.0)])),
        vec![at(10).as_nanos(), at(20).as_nanos()]
    );
    // Cumulative points start at the sink's start (or their own time if earlier).
    let cumulative: Event = Metric::counter("c_total", 1.0).with_timestamp(at(5)).into();
    assert_eq!(start(encoder.encode(&[cumulative])), vec![at(5).as_nanos()]);
}

#[test]
fn events_sharing_a_process_set_share_a_resource() {
    use sonde_core::event::{SharedAttributes, SharedStr, Value};
    let shared = |pod: &str| -> SharedAttributes {
        Arc::from(vec![
            (SharedStr::from(keys::POD), Value::from(pod.to_string())),
            (SharedStr::from("container.id"), Value::from("c1")),
        ])
    };
    let (web, db) = (shared("web"), shared("db"));
    let event = |set: &SharedAttributes, value: f64| -> Event {
        let mut attributes = Attributes::new().with(keys::PID, 7u32).with("device", "vda");
        attributes.add_shared(set.clone());
        Metric::gauge("g", value).with_attributes(attributes).into()
    };
    let requests = encoder().encode(&[event(&web, 1.0), event(&db, 2.0), event(&web, 3.0)]);
    let [Request::Metrics(encoded)] = requests.as_slice() else {
        panic!()
    };
    let request = encoded.decode();
    let pods: Vec<_> = request
        .resource_metrics
        .iter()
        .map(|rm| text(&rm.resource.as_ref().unwrap().attributes, keys::POD).unwrap())
        .collect();
    assert_eq!(pods, ["web", "db"]);
    let points = |i: usize| match &request.resource_metrics[i].scope_metrics[0].metrics[0].data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!((points(0), points(1)), (2, 1));
    let web_resource = &request.resource_metrics[0].resource.as_ref().unwrap().attributes;
    assert_eq!(text(web_resource, "container.id").as_deref(), Some("c1"));
}

#[test]
fn logs_have_structured_bodies_and_severities() {
    let mut flow = Log::new("net.flow").with_severity(Severity::Warn);
    flow.fields.insert("bytes", 1500u64);
    flow.attributes = process(7, "curl");
    let plain = Log::new("note").with_message("hello");
    let requests = encoder().encode(&[flow.into(), plain.into()]);
    let [Request::Logs(request)] = requests.as_slice() else {
        panic!()
    };
    assert_eq!(request.resource_logs.len(), 2);
    let record = &request.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.event_name, "net.flow");
    assert_eq!((record.severity_number, record.severity_text.as_str()), (13, "WARN"));
    let Some(AnyValue {
        value: Some(any_value::Value::KvlistValue(body)),
    }) = &record.body
    else {
        panic!("body is not a key/value list: {:?}", record.body)
    };
    assert_eq!(find(&body.values, "bytes"), Some(&any_value::Value::IntValue(1500)));
    assert_eq!(text(&record.attributes, "device").as_deref(), Some("vda"));
    let record = &request.resource_logs[1].scope_logs[0].log_records[0];
    let resource = &request.resource_logs[1].resource.as_ref().unwrap().attributes;
    assert_eq!(text(resource, "service.name").as_deref(), Some("sonde"));
    assert_eq!(
        record.body.as_ref().unwrap().value,
        Some(any_value::Value::StringValue("hello".into()))
    );
}

#[test]
fn spans_keep_ids_kind_and_status() {
    let span = Span {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: Some([3; 8]),
        name: "GET /api".into(),
        kind: SpanKind::Server,
        start: at(1),
        end: at(2),
        status: SpanStatus::Error { message: "503".into() },
        fields: Attributes::new().with("http.response.status_code", 503i64),
        attributes: process(9, "nginx"),
    };
    let requests = encoder().encode(&[Event::Span(Box::new(span))]);
    let [Request::Traces(request)] = requests.as_slice() else {
        panic!()
    };
    let s = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        (s.trace_id.as_slice(), s.span_id.as_slice()),
        (&[1u8; 16][..], &[2u8; 8][..])
    );
    assert_eq!(s.parent_span_id, vec![3; 8]);
    assert_eq!(s.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        (s.start_time_unix_nano, s.end_time_unix_nano),
        (at(1).as_nanos(), at(2).as_nanos())
    );
    let status = s.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (StatusCode::Error as i32, "503")
    );
    assert_eq!(
        find(&s.attributes, "http.response.status_code"),
        Some(&any_value::Value::IntValue(503))
    );
}

fn frame(function: &'static str, module: &'static str, kind: FrameKind) -> Frame {
    Frame {
        function: function.into(),
        module: Some(module.into()),
        file: None,
        line: None,
        address: 0x1000,
        kind,
    }
}

#[test]
fn profiles_share_a_dictionary_with_zero_entries_first() {
    let stack: Arc<[Frame]> = Arc::from(vec![
        frame("memcpy", "libc.so.6", FrameKind::Native),
        frame("main", "app", FrameKind::Native),
    ]);
    let profile = Profile {
        sample_type: "cpu".into(),
        sample_unit: "nanoseconds".into(),
        period: 10_101_010,
        start: at(1),
        end: at(11),
        samples: vec![
            StackSample {
                frames: stack.clone(),
                count: 7,
            },
            StackSample {
                frames: Arc::from(&stack[1..]),
                count: 3,
            },
        ],
        attributes: process(42, "app"),
    };
    let requests = encoder().encode(&[Event::Profile(Box::new(profile))]);
    let [Request::Profiles(request)] = requests.as_slice() else {
        panic!()
    };
    let d = request.dictionary.as_ref().unwrap();
    assert_eq!(d.string_table[0], "");
    assert_eq!(d.stack_table[0].location_indices, Vec::<i32>::new());
    assert_eq!(d.location_table[0], Default::default());
    let p = &request.resource_profiles[0].scope_profiles[0].profiles[0];
    assert_eq!(p.duration_nano, 10_000_000_000);
    assert_eq!(p.period, 10_101_010);
    let name = |i: i32| d.string_table[i as usize].as_str();
    let period_type = p.period_type.unwrap();
    assert_eq!(
        (name(period_type.type_strindex), name(period_type.unit_strindex)),
        ("cpu", "nanoseconds")
    );
    let functions = |sample: usize| -> Vec<&str> {
        let stack = &d.stack_table[p.samples[sample].stack_index as usize];
        stack
            .location_indices
            .iter()
            .map(|&l| {
                name(d.function_table[d.location_table[l as usize].lines[0].function_index as usize].name_strindex)
            })
            .collect()
    };
    assert_eq!(functions(0), vec!["memcpy", "main"]);
    assert_eq!(functions(1), vec!["main"]);
    assert_eq!(p.samples[0].values, vec![7]);
    // `main` is interned once although two stacks hold it.
    assert_eq!(d.function_table.len(), 3);
    assert_ne!(p.profile_id, vec![0; 16]);
}

#[test]
fn oversized_batches_are_split_without_losing_events() {
    let events: Vec<Event> = (0..1000)
        .map(|i| Metric::gauge("g", i as f64).with_timestamp(at(i)).into())
        .collect();
    let whole = encoder().encode(&events);
    let limit = whole[0].encoded_len() / 3;
    let parts = Encoder::new(&BTreeMap::new(), "n".into(), limit).encode(&events);
    assert!(parts.len() >= 3, "{} requests", parts.len());
    assert!(parts.iter().all(|r| r.encoded_len() <= limit));
    assert_eq!(parts.iter().map(Request::items).sum::<usize>(), 1000);
    // One event larger than the limit still goes, alone.
    assert_eq!(
        Encoder::new(&BTreeMap::new(), "n".into(), 1).encode(&events[..3]).len(),
        3
    );
}

#[test]
fn configured_resource_attributes_fill_in_but_do_not_override() {
    let resource = BTreeMap::from([
        ("service.name".to_string(), "ingest".to_string()),
        ("deployment.environment.name".to_string(), "prod".to_string()),
    ]);
    let encoder = Encoder::new(&resource, "node-1".into(), usize::MAX);
    let own: Event = Metric::gauge("g", 1.0)
        .with_attributes(Attributes::new().with("service.name", "api"))
        .into();
    let requests = encoder.encode(&[own, Metric::gauge("g", 2.0).into()]);
    let [Request::Metrics(r)] = requests.as_slice() else {
        panic!()
    };
    let r = r.decode();
    let names: Vec<_> = r
        .resource_metrics
        .iter()
        .map(|rm| text(&rm.resource.as_ref().unwrap().attributes, "service.name").unwrap())
        .collect();
    assert_eq!(names, vec!["api", "ingest"]);
    let env = text(
        &r.resource_metrics[0].resource.as_ref().unwrap().attributes,
        "deployment.environment.name",
    );
    assert_eq!(env.as_deref(), Some("prod"));
}

#[test]
fn http_responses_decode_partial_success() {
    use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
    use prost::Message;
    assert_eq!(http::decode_response(Signal::Logs, b"").unwrap(), Default::default());
    let body = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 4,
            error_message: "too old".into(),
        }),
    }
    .encode_to_vec();
    let accepted = http::decode_response(Signal::Logs, &body).unwrap();
    assert_eq!((accepted.rejected, accepted.message.as_str()), (4, "too old"));
}

fn context() -> SinkContext {
    SinkContext {
        info: ComponentInfo {
            kind: ComponentKind::Sink,
            id: "otlp".into(),
            type_name: "otlp",
        },
        global: GlobalContext {
            node_name: "node-1".into(),
        },
        shutdown: Default::default(),
    }
}

fn build(json: serde_json::Value) -> Result<OtlpSink, String> {
    let config: OtlpSinkConfig = serde_json::from_value(json).map_err(|e| e.to_string())?;
    OtlpSink::new(&config, &context()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn options_are_checked_when_building() {
    build(serde_json::json!({})).unwrap();
    build(serde_json::json!({"protocol": "http/protobuf", "endpoint": "http://127.0.0.1:4318/otlp/"})).unwrap();
    let error = build(serde_json::json!({"protocol": "http"})).unwrap_err();
    assert!(error.contains("unknown variant"), "{error}");
    let error = build(serde_json::json!({"endpont": "x"})).unwrap_err();
    assert!(error.contains("unknown field"), "{error}");
    let error = build(serde_json::json!({"tls": {}})).unwrap_err();
    assert!(error.contains("https://"), "{error}");
    let error = build(serde_json::json!({"endpoint": "https://x:4317", "tls": {"ca_file": "/nonexistent/ca.pem"}}))
        .unwrap_err();
    assert!(
        error.contains("tls.ca_file") && error.contains("/nonexistent/ca.pem"),
        "{error}"
    );
    let error = build(serde_json::json!({"headers": {"bad header": "x"}})).unwrap_err();
    assert!(error.contains("bad header"), "{error}");
    let error = build(serde_json::json!({"protocol": "http/protobuf", "endpoint": "ftp://x"})).unwrap_err();
    assert!(error.contains("scheme"), "{error}");
}

#[tokio::test]
async fn an_unreachable_server_is_retriable() {
    use sonde_core::BatchSink;
    // Port 1 on loopback: nothing listens, the connection is refused.
    for protocol in ["grpc", "http/protobuf"] {
        let sink = build(serde_json::json!({"protocol": protocol, "endpoint": "http://127.0.0.1:1"})).unwrap();
        let batch = sonde_core::EventBatch::from(Event::from(Metric::gauge("g", 1.0)));
        let error = sink.send(batch).await.unwrap_err();
        assert!(matches!(error, SinkError::Retriable { .. }), "{protocol}: {error:?}");
    }
}
