//! Every event kind, with known values, through the sink service (no
//! topology) to the receiver; the receiver's decoding is compared field by
//! field. Also TLS with a custom CA.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sonde_core::component::{ComponentInfo, ComponentKind, GlobalContext};
use sonde_core::event::{
    keys, Attributes, Event, EventBatch, Frame, FrameKind, Histogram, Log, Metric, Profile, Severity, Span, SpanKind,
    SpanStatus, StackSample, Temporality, Timestamp,
};
use sonde_core::{SinkConfig, SinkContext, SinkError};
use sonde_sinks::otlp::OtlpSinkConfig;
use tower::{Service, ServiceExt};

use super::receiver::Receiver;
use crate::attribute;

const T0: u64 = 1_700_000_000_000_000_000;

fn origin() -> Attributes {
    Attributes::new()
        .with(keys::PID, 4242u32)
        .with(keys::COMM, "postgres")
        .with(keys::CONTAINER_ID, "c0ffee")
        .with(keys::POD, "db-0")
        .with(keys::NAMESPACE, "prod")
        .with("system.device", "vda")
}

fn events() -> Vec<Event> {
    let mut histogram = Histogram::new(Arc::from([0.001, 0.01, 0.1]));
    for v in [0.0005, 0.003, 0.004, 0.05, 2.0] {
        histogram.observe(v);
    }
    let mut log = Log::new("net.flow")
        .with_severity(Severity::Error)
        .with_message("reset");
    log.timestamp = Timestamp::from_nanos(T0);
    log.fields.insert("bytes", 1500u64);
    log.fields.insert("tcp.state", "CLOSE");
    log.attributes = origin();
    let frame = |function: &'static str, kind| Frame {
        function: function.into(),
        module: Some("postgres".into()),
        file: None,
        line: None,
        address: 0x4000,
        kind,
    };
    let stack: Arc<[Frame]> = Arc::from(vec![
        frame("do_sys_open", FrameKind::Kernel),
        frame("main", FrameKind::Native),
    ]);
    vec![
        Metric::counter("system.disk.io", 12.0)
            .with_temporality(Temporality::Delta)
            .with_attributes(origin())
            .with_timestamp(Timestamp::from_nanos(T0))
            .into(),
        Metric::counter("sonde.component.sent_events", 99.0)
            .with_timestamp(Timestamp::from_nanos(T0))
            .into(),
        Metric::histogram("sonde.disk.request.duration", histogram, Temporality::Delta)
            .with_unit("s")
            .with_description("block I/O latency")
            .with_attributes(origin())
            .with_timestamp(Timestamp::from_nanos(T0))
            .into(),
        log.into(),
        Event::Span(Box::new(Span {
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
            parent_span_id: None,
            name: "SELECT".into(),
            kind: SpanKind::Client,
            start: Timestamp::from_nanos(T0),
            end: Timestamp::from_nanos(T0 + 1_000_000),
            status: SpanStatus::Ok,
            fields: Attributes::new().with("db.system.name", "postgresql"),
            attributes: origin(),
        })),
        Event::Profile(Box::new(Profile {
            sample_type: "cpu".into(),
            sample_unit: "nanoseconds".into(),
            period: 10_101_010,
            start: Timestamp::from_nanos(T0),
            end: Timestamp::from_nanos(T0 + 10_000_000_000),
            samples: vec![StackSample {
                frames: stack,
                count: 17,
            }],
            attributes: origin(),
        })),
    ]
}

async fn send(options: Value, batch: EventBatch) -> Result<(), SinkError> {
    let config: OtlpSinkConfig = serde_json::from_value(options).unwrap();
    let cx = SinkContext {
        info: ComponentInfo {
            kind: ComponentKind::Sink,
            id: "otlp".into(),
            type_name: "otlp",
        },
        global: GlobalContext {
            node_name: "node-1".into(),
        },
        shutdown: Default::default(),
    };
    let mut sink = config.build(&cx).unwrap();
    tokio::time::timeout(Duration::from_secs(10), sink.ready().await.unwrap().call(batch))
        .await
        .expect("the export finishes")
}

fn string(v: &Value) -> &str {
    v["string_value"]
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The one resource/scope content of `signal`'s request.
fn only<'a>(requests: &'a [Value], signal: &str, resource_key: &str, scope_key: &str) -> (&'a Value, &'a Value) {
    let request = requests
        .iter()
        .find(|r| r["signal"] == signal)
        .unwrap_or_else(|| panic!("no {signal}"));
    let resources = request["request"][resource_key].as_array().unwrap();
    assert_eq!(resources.len(), 1, "{signal}: one resource");
    let resource = &resources[0];
    let attrs = &resource["resource"]["attributes"];
    assert_eq!(
        attribute(attrs, "process.pid").unwrap()["int_value"],
        "4242",
        "{signal}"
    );
    assert_eq!(
        string(attribute(attrs, "service.name").unwrap()),
        "unknown_service:postgres"
    );
    assert_eq!(string(attribute(attrs, "k8s.pod.name").unwrap()), "db-0");
    assert_eq!(string(attribute(attrs, "container.id").unwrap()), "c0ffee");
    assert_eq!(string(attribute(attrs, "host.name").unwrap()), "node-1");
    (resource, &resource[scope_key][0])
}

fn check_everything(requests: &[Value]) {
    // Metrics: two resources (the agent counter has no process).
    let request = requests.iter().find(|r| r["signal"] == "metrics").unwrap();
    assert_eq!(request["request"]["resource_metrics"].as_array().unwrap().len(), 2);
    let process = &request["request"]["resource_metrics"][0]["scope_metrics"][0]["metrics"];
    let sum = &process[0];
    assert_eq!(sum["name"], "system.disk.io");
    assert_eq!(sum["sum"]["is_monotonic"], true);
    assert_eq!(sum["sum"]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_DELTA");
    let point = &sum["sum"]["data_points"][0];
    assert_eq!(point["as_double"], 12.0);
    assert_eq!(point["time_unix_nano"], T0.to_string());
    assert_eq!(string(attribute(&point["attributes"], "system.device").unwrap()), "vda");
    assert!(attribute(&point["attributes"], "process.pid").is_none());
    let h = &process[1];
    assert_eq!(
        (h["name"].as_str(), h["unit"].as_str()),
        (Some("sonde.disk.request.duration"), Some("s"))
    );
    assert_eq!(h["description"], "block I/O latency");
    let point = &h["histogram"]["data_points"][0];
    assert_eq!(point["explicit_bounds"], serde_json::json!([0.001, 0.01, 0.1]));
    assert_eq!(point["bucket_counts"], serde_json::json!(["1", "2", "1", "1"]));
    assert_eq!(point["count"], "5");
    assert!((point["sum"].as_f64().unwrap() - 2.0575).abs() < 1e-12);
    let agent = &request["request"]["resource_metrics"][1];
    assert_eq!(
        string(attribute(&agent["resource"]["attributes"], "service.name").unwrap()),
        "sonde"
    );
    let cumulative = &agent["scope_metrics"][0]["metrics"][0]["sum"];
    assert_eq!(
        cumulative["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    let start: u64 = cumulative["data_points"][0]["start_time_unix_nano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(start > 0 && start <= T0, "cumulative start {start}");

    let (_, scope) = only(requests, "logs", "resource_logs", "scope_logs");
    assert_eq!(scope["scope"]["name"], "sonde");
    let record = &scope["log_records"][0];
    assert_eq!(record["event_name"], "net.flow");
    assert_eq!(record["severity_number"], "SEVERITY_NUMBER_ERROR");
    let body = &record["body"]["kvlist_value"]["values"];
    assert_eq!(attribute(body, "bytes").unwrap()["int_value"], "1500");
    assert_eq!(string(attribute(body, "tcp.state").unwrap()), "CLOSE");
    assert_eq!(string(attribute(body, "message").unwrap()), "reset");

    let (_, scope) = only(requests, "traces", "resource_spans", "scope_spans");
    let span = &scope["spans"][0];
    assert_eq!(span["trace_id"], base64(&[0xab; 16]));
    assert_eq!(span["span_id"], base64(&[0xcd; 8]));
    assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(span["status"]["code"], "STATUS_CODE_OK");
    assert_eq!(span["end_time_unix_nano"], (T0 + 1_000_000).to_string());
    assert_eq!(
        string(attribute(&span["attributes"], "db.system.name").unwrap()),
        "postgresql"
    );

    let (_, scope) = only(requests, "profiles", "resource_profiles", "scope_profiles");
    let request = requests.iter().find(|r| r["signal"] == "profiles").unwrap();
    let dictionary = &request["request"]["dictionary"];
    let strings = dictionary["string_table"].as_array().unwrap();
    let s = |i: &Value| strings[i.as_i64().unwrap_or(0) as usize].as_str().unwrap();
    let profile = &scope["profiles"][0];
    assert_eq!(s(&profile["period_type"]["type_strindex"]), "cpu");
    assert_eq!(s(&profile["period_type"]["unit_strindex"]), "nanoseconds");
    assert_eq!(profile["period"], "10101010");
    assert_eq!(profile["duration_nano"], "10000000000");
    let sample = &profile["samples"][0];
    assert_eq!(sample["values"], serde_json::json!(["17"]));
    let stack = &dictionary["stack_table"][sample["stack_index"].as_i64().unwrap() as usize];
    let functions: Vec<&str> = stack["location_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let location = &dictionary["location_table"][l.as_i64().unwrap() as usize];
            let function =
                &dictionary["function_table"][location["lines"][0]["function_index"].as_i64().unwrap() as usize];
            s(&function["name_strindex"])
        })
        .collect();
    assert_eq!(functions, vec!["do_sys_open", "main"]);
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_arrives_with_its_exact_values() {
    for protocol in super::super::PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(dir.path(), &[]);
        let options = serde_json::json!({"endpoint": receiver.endpoint(protocol), "protocol": protocol});
        send(options, EventBatch::new(events())).await.unwrap();
        let requests = receiver.requests();
        assert_eq!(requests.len(), 4, "{protocol}: one request per signal");
        check_everything(&requests);
    }
}

/// A CA and a certificate it signed for 127.0.0.1, made with openssl.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            status.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=sonde test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let receiver = Receiver::start(
        dir.path(),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let ca = dir.path().join("ca.pem");
    for protocol in super::super::PROTOCOLS {
        let endpoint = receiver.endpoint(protocol).replace("http://", "https://");
        let batch = || EventBatch::from(Event::from(Metric::gauge("tls_ok", 1.0)));
        // The system's trust store does not know the test CA.
        let untrusted = send(serde_json::json!({"endpoint": endpoint, "protocol": protocol}), batch()).await;
        assert!(untrusted.is_err(), "{protocol}: an unknown CA was trusted");
        let options = serde_json::json!({"endpoint": endpoint, "protocol": protocol, "tls": {"ca_file": ca}});
        send(options, batch())
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
    }
    let names: Vec<String> = receiver.requests().iter().map(|r| r["transport"].to_string()).collect();
    assert_eq!(names, vec!["\"grpc\"", "\"http\""]);
}
