//! `sink "otlp"` end to end: the sonde binary with demo sources against an
//! independent OTLP receiver (tests/otlp_receiver.py, decoding with the
//! official opentelemetry-proto Python package), over gRPC and HTTP.

mod common;
mod otlp {
    pub mod exact;
    pub mod receiver;
}

use std::time::Duration;

use otlp::receiver::{free_port, wait_for, Agent, Receiver};
use serde_json::Value;

const PROTOCOLS: [&str; 2] = ["grpc", "http/protobuf"];

/// The attribute `key` of an OTLP attribute list, as JSON.
pub fn attribute<'a>(list: &'a Value, key: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// Accepted requests of `signal`.
fn accepted<'a>(requests: &'a [Value], signal: &str) -> impl Iterator<Item = &'a Value> {
    let signal = signal.to_string();
    requests
        .iter()
        .filter(move |r| r["signal"] == signal.as_str() && r["outcome"] == "ok")
}

/// Every metric (with its resource and scope) of a metrics request.
fn metrics(request: &Value) -> Vec<(&Value, &Value, &Value)> {
    let mut out = Vec::new();
    for rm in request["request"]["resource_metrics"].as_array().unwrap() {
        for sm in rm["scope_metrics"].as_array().unwrap() {
            for m in sm["metrics"].as_array().unwrap() {
                out.push((&rm["resource"], &sm["scope"], m));
            }
        }
    }
    out
}

/// The demo sequence numbers in a request: gauge values or log body `sequence`s.
fn sequences(request: &Value) -> Vec<u64> {
    let mut out = Vec::new();
    match request["signal"].as_str().unwrap() {
        "metrics" => {
            for (_, _, m) in metrics(request) {
                assert_eq!(m["name"], "sonde.demo.sequence");
                for p in m["gauge"]["data_points"].as_array().unwrap() {
                    out.push(p["as_double"].as_f64().unwrap() as u64);
                }
            }
        }
        "logs" => {
            for rl in request["request"]["resource_logs"].as_array().unwrap() {
                for sl in rl["scope_logs"].as_array().unwrap() {
                    for record in sl["log_records"].as_array().unwrap() {
                        let body = &record["body"]["kvlist_value"]["values"];
                        let sequence = attribute(body, "sequence").expect("sequence in the body");
                        out.push(sequence["int_value"].as_str().unwrap().parse().unwrap());
                    }
                }
            }
        }
        other => panic!("unexpected signal {other}"),
    }
    out
}

/// Sequence numbers of every accepted request of `signal`, sorted.
fn received(requests: &[Value], signal: &str) -> Vec<u64> {
    let mut all: Vec<u64> = accepted(requests, signal).flat_map(sequences).collect();
    all.sort_unstable();
    all
}

fn sink(receiver: &Receiver, protocol: &str, inputs: &str, extra: &str) -> String {
    format!(
        r#"
        sink "otlp" "otlp" {{
          inputs   = [{inputs}]
          endpoint = "{}"
          protocol = "{protocol}"
          {extra}
          request {{
            retry_initial_backoff = "20ms"
            retry_max_backoff     = "200ms"
          }}
        }}
        "#,
        receiver.endpoint(protocol)
    )
}

#[test]
fn demo_metrics_and_logs_arrive_whole_with_their_attributes() {
    for protocol in PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(dir.path(), &[]);
        let before = std::time::SystemTime::now();
        let pipeline = format!(
            r#"
            source "demo" "metrics" {{
              rate = 0
              count = 2000
              batch_size = 500
              series = 4
            }}
            source "demo" "logs" {{
              rate = 0
              count = 1000
              kind = "log"
            }}
            {}"#,
            sink(
                &receiver,
                protocol,
                r#""metrics", "logs""#,
                r#"headers = { authorization = "Bearer t0k" }
                   resource = { "deployment.environment.name" = "test" }"#
            )
        );
        Agent::start(dir.path(), &pipeline).wait(Duration::from_secs(60));
        let requests = receiver.requests();
        assert_eq!(
            received(&requests, "metrics"),
            (0..2000).collect::<Vec<_>>(),
            "{protocol}"
        );
        assert_eq!(received(&requests, "logs"), (0..1000).collect::<Vec<_>>(), "{protocol}");
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let before_ns = before.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        for request in &requests {
            assert_eq!(request["headers"]["authorization"], "Bearer t0k", "{protocol}");
            if protocol == "http/protobuf" {
                assert_eq!(request["content_encoding"], "gzip");
                assert!(request["body_bytes"].as_u64() < request["decoded_bytes"].as_u64());
            }
        }
        for request in accepted(&requests, "metrics") {
            for (resource, scope, metric) in metrics(request) {
                let r = &resource["attributes"];
                assert_eq!(attribute(r, "service.name").unwrap()["string_value"], "sonde");
                assert_eq!(attribute(r, "host.name").unwrap()["string_value"], "test-node");
                assert_eq!(attribute(r, "k8s.node.name").unwrap()["string_value"], "test-node");
                assert_eq!(
                    attribute(r, "deployment.environment.name").unwrap()["string_value"],
                    "test"
                );
                assert_eq!(scope["name"], "sonde");
                for p in metric["gauge"]["data_points"].as_array().unwrap() {
                    let value = p["as_double"].as_f64().unwrap() as u64;
                    // The demo source cycles its series: event n is series n mod 4.
                    let series = attribute(&p["attributes"], "series").unwrap()["string_value"]
                        .as_str()
                        .unwrap();
                    assert_eq!(series, (value % 4).to_string());
                    assert!(
                        attribute(&p["attributes"], "k8s.node.name").is_none(),
                        "resource key on a point"
                    );
                    let time: u128 = p["time_unix_nano"].as_str().unwrap().parse().unwrap();
                    assert!(before_ns <= time && time <= now_ns, "time {time} outside the run");
                }
            }
        }
        let record = &accepted(&requests, "logs").next().unwrap()["request"]["resource_logs"][0]["scope_logs"][0]
            ["log_records"][0];
        assert_eq!(record["event_name"], "sonde.demo");
        assert_eq!(record["severity_number"], "SEVERITY_NUMBER_INFO");
        assert_eq!(record["severity_text"], "INFO");
    }
}

#[test]
fn unavailable_first_requests_are_retried_and_nothing_is_lost() {
    for protocol in PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(dir.path(), &["--fail-first", "3"]);
        let pipeline = format!(
            r#"source "demo" "metrics" {{
                 rate = 0
                 count = 3000
                 batch_size = 500
               }}
               {}"#,
            sink(&receiver, protocol, r#""metrics""#, "")
        );
        Agent::start(dir.path(), &pipeline).wait(Duration::from_secs(60));
        let requests = receiver.requests();
        let failed = requests.iter().filter(|r| r["outcome"] == "unavailable").count();
        assert_eq!(failed, 3, "{protocol}");
        // Exactly once: the failed attempts delivered nothing.
        assert_eq!(
            received(&requests, "metrics"),
            (0..3000).collect::<Vec<_>>(),
            "{protocol}"
        );
    }
}

#[test]
fn retry_after_and_retry_info_set_the_delay() {
    for protocol in PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(dir.path(), &["--fail-first", "1", "--retry-after", "2"]);
        let pipeline = format!(
            r#"source "demo" "metrics" {{
                 rate = 0
                 count = 10
               }}
               {}"#,
            sink(&receiver, protocol, r#""metrics""#, "")
        );
        Agent::start(dir.path(), &pipeline).wait(Duration::from_secs(60));
        let requests = receiver.requests();
        assert_eq!(requests.len(), 2, "{protocol}: {requests:?}");
        let waited = requests[1]["time"].as_f64().unwrap() - requests[0]["time"].as_f64().unwrap();
        // The backoff alone would be under 20 ms.
        assert!(
            (1.9..10.0).contains(&waited),
            "{protocol}: retried after {waited:.3}s, not 2s"
        );
        assert_eq!(received(&requests, "metrics"), (0..10).collect::<Vec<_>>());
    }
}

#[test]
fn a_receiver_killed_and_restarted_mid_stream_loses_nothing_with_block() {
    for protocol in PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let (grpc, http) = (free_port(), free_port());
        let mut receiver = Receiver::start_on(dir.path(), grpc, http, &[]);
        let pipeline = format!(
            r#"source "demo" "metrics" {{
                 rate = 2000
                 count = 8000
                 batch_size = 100
               }}
               {}"#,
            sink(
                &receiver,
                protocol,
                r#""metrics""#,
                r#"buffer {
                     max_events = 1000
                     when_full  = "block"
                   }"#
            )
        );
        let agent = Agent::start(dir.path(), &pipeline);
        wait_for("a few requests", Duration::from_secs(20), || {
            receiver.requests().len() >= 3
        });
        receiver.kill();
        // The outage lasts until the buffer is full (ten batches of 100,
        // the one in flight included) and so blocks the source.
        wait_for("the buffer to fill", Duration::from_secs(20), || {
            agent.metric("sonde_component_buffer_events", &[("component_id", "otlp")]) >= 1000.0
        });
        let receiver = Receiver::start_on(dir.path(), grpc, http, &[]);
        let log = agent.wait(Duration::from_secs(60));
        let all = received(&receiver.requests(), "metrics");
        let mut distinct = all.clone();
        distinct.dedup();
        let missing: Vec<u64> = (0..8000).filter(|s| distinct.binary_search(s).is_err()).collect();
        let drops: Vec<&str> = log.lines().filter(|l| l.contains("dropped")).collect();
        assert!(
            missing.is_empty(),
            "{protocol}: lost {} events from {:?}: {drops:#?}",
            missing.len(),
            missing.first()
        );
        assert_eq!(distinct.len(), 8000);
        // A request the receiver recorded but could not answer is sent again.
        assert!(
            all.len() - distinct.len() <= 1000,
            "{protocol}: {} duplicates",
            all.len() - distinct.len()
        );
        // Each request names its batch (`sonde-batch-id`, `sonde-batch-part`)
        // and a request sent again carries the same events under the same
        // name: keeping one request per name removes every duplicate.
        let mut by_name: std::collections::HashMap<(String, String), Vec<u64>> = Default::default();
        let requests = receiver.requests();
        for request in accepted(&requests, "metrics") {
            let header = |name: &str| {
                request["headers"][name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{protocol}: a request without {name}: {:?}", request["headers"]))
                    .to_owned()
            };
            let mut events = sequences(request);
            events.sort_unstable();
            match by_name.entry((header("sonde-batch-id"), header("sonde-batch-part"))) {
                std::collections::hash_map::Entry::Occupied(seen) => {
                    assert_eq!(
                        seen.get(),
                        &events,
                        "{protocol}: {:?} sent again with other events",
                        seen.key()
                    )
                }
                std::collections::hash_map::Entry::Vacant(new) => _ = new.insert(events),
            }
        }
        let mut once: Vec<u64> = by_name.into_values().flatten().collect();
        once.sort_unstable();
        assert_eq!(
            once,
            (0..8000).collect::<Vec<_>>(),
            "{protocol}: deduplicated by batch name"
        );
    }
}

/// Runs `count` demo metrics through the sink while the agent stays up (an
/// idle second source keeps it running), so its metrics can be read.
fn run_with_live_agent(receiver: &Receiver, protocol: &str, count: u64) -> (Agent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        r#"source "demo" "metrics" {{
             rate = 0
             count = {count}
             batch_size = 500
           }}
           source "demo" "idle" {{ rate = 1 }}
           sink "blackhole" "idle_out" {{ inputs = ["idle"] }}
           {}"#,
        // One demo batch per request, so a rejected request is one known batch.
        sink(receiver, protocol, r#""metrics""#, "batch { max_events = 500 }")
    );
    let agent = Agent::start(dir.path(), &pipeline);
    let otlp = [("component_id", "otlp")];
    wait_for("the sink to settle every event", Duration::from_secs(60), || {
        agent.metric("sonde_component_sent_events_total", &otlp)
            + agent.metric("sonde_component_dropped_events_total", &otlp)
            >= count as f64
    });
    (agent, dir)
}

#[test]
fn invalid_argument_drops_the_batch_counts_it_and_the_pipeline_goes_on() {
    for protocol in PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(dir.path(), &["--reject", "2"]);
        let (agent, _dir) = run_with_live_agent(&receiver, protocol, 3000);
        let requests = receiver.requests();
        let rejected: Vec<u64> = requests
            .iter()
            .filter(|r| r["outcome"] == "invalid")
            .flat_map(sequences)
            .collect();
        assert_eq!(rejected.len(), 500, "{protocol}: one batch rejected, not retried");
        let dropped = agent.metric(
            "sonde_component_dropped_events_total",
            &[("component_id", "otlp"), ("reason", "error")],
        );
        assert_eq!(dropped, 500.0, "{protocol}");
        let mut expected: Vec<u64> = (0..3000).filter(|s| !rejected.contains(s)).collect();
        expected.sort_unstable();
        assert_eq!(
            received(&requests, "metrics"),
            expected,
            "{protocol}: batches after the rejected one"
        );
        assert_eq!(requests.len(), 6, "{protocol}: no request repeated");
    }
}

#[test]
fn partial_success_is_counted() {
    for protocol in PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(dir.path(), &["--partial", "2"]);
        let (agent, _dir) = run_with_live_agent(&receiver, protocol, 1500);
        let requests = receiver.requests().len() as f64;
        let labels = [("component_id", "otlp"), ("signal", "metrics")];
        assert_eq!(
            agent.metric("sonde_otlp_rejected_items_total", &labels),
            2.0 * requests,
            "{protocol}"
        );
        // Not a failed batch (nothing retried, nothing dropped for an
        // error), but the refused events are dropped exactly, and only the
        // rest counted as delivered.
        let dropped = |reason| {
            agent.metric(
                "sonde_component_dropped_events_total",
                &[("component_id", "otlp"), ("reason", reason)],
            )
        };
        assert_eq!(
            dropped("error"),
            0.0,
            "{protocol}: a partial success is not a failed batch"
        );
        assert_eq!(dropped("rejected"), 2.0 * requests, "{protocol}");
        let sent = agent.metric("sonde_component_sent_events_total", &[("component_id", "otlp")]);
        let handed = agent.metric("sonde_component_received_events_total", &[("component_id", "otlp")]);
        assert_eq!(
            sent + dropped("rejected"),
            handed,
            "{protocol}: delivered + rejected = received"
        );
    }
}
