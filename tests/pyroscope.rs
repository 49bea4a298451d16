//! `sink "pyroscope"` against an independent receiver: tests/pprof/decode.py
//! serves Pyroscope's `/ingest`, parses the multipart body with Python's
//! email package and decodes the pprof with pprof's own profile.proto.
//! The first requests are refused with 503: the core retries, the sink
//! does not resend what was accepted, and nothing is lost.

#[path = "pprof/mod.rs"]
mod pprof;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use sonde_core::component::GlobalContext;
use sonde_core::config::load_str;
use sonde_core::event::{
    keys, Attributes, Event, EventBatch, EventKinds, Frame, FrameKind, Profile, StackSample, Timestamp,
};
use sonde_core::topology::Topology;
use sonde_core::{BoxError, Registry, Source, SourceConfig, SourceContext};

const PERIOD: u64 = 10_101_010;
const BASE_S: u64 = 1_800_000_000;

/// Emits `count` batches, each with a profile of process `alpha` and one of `beta`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SyntheticProfilesConfig {
    count: u64,
}

fn frame(name: &str) -> Frame {
    Frame {
        function: name.to_string().into(),
        module: Some("/usr/bin/app".into()),
        file: Some("app.c".into()),
        line: Some(7),
        address: name.len() as u64 * 16,
        kind: FrameKind::Native,
    }
}

/// Interval `i` of process `comm`: `i + 1` samples in leaf_a, 2 in leaf_b.
fn synthetic(i: u64, comm: &'static str, pid: u32) -> Profile {
    let start = Timestamp::from_nanos((BASE_S + i) * 1_000_000_000);
    Profile {
        sample_type: "cpu".into(),
        sample_unit: "nanoseconds".into(),
        period: PERIOD,
        start,
        end: Timestamp::from_nanos(start.as_nanos() + 1_000_000_000),
        samples: vec![
            StackSample {
                frames: Arc::from(vec![frame("leaf_a"), frame("main")]),
                count: i + 1,
            },
            StackSample {
                frames: Arc::from(vec![frame("leaf_b"), frame("main")]),
                count: 2,
            },
        ],
        attributes: Attributes::new().with(keys::PID, pid).with(keys::COMM, comm),
    }
}

impl SourceConfig for SyntheticProfilesConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::PROFILE
    }

    fn build(&self, mut cx: SourceContext) -> Result<Source, BoxError> {
        let count = self.count;
        Ok(Box::pin(async move {
            for i in 0..count {
                let batch = vec![
                    Event::from(synthetic(i, "alpha", 100)),
                    Event::from(synthetic(i, "beta", 200)),
                ];
                cx.out.send(EventBatch::new(batch)).await?;
            }
            Ok(())
        }))
    }
}

struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    fn start(out: &Path, fail_first: u32) -> Receiver {
        let mut child = Command::new(pprof::PYTHON)
            .arg(pprof::Decoder::script())
            .args(["serve", "--fail-first", &fail_first.to_string(), "--out"])
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("receiver said {line:?}: {e}"));
        Receiver {
            child,
            port: port["port"].as_u64().unwrap() as u16,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn refused_requests_are_retried_and_nothing_is_lost_or_doubled() {
    let test = "refused_requests_are_retried_and_nothing_is_lost_or_doubled";
    if pprof::Decoder::new(test).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let receiver = Receiver::start(&out, 3);
    let config = format!(
        r#"
source "synthetic_profiles" "gen" {{
  count = 10
}}
sink "pyroscope" "pyro" {{
  inputs    = ["gen"]
  endpoint  = "http://127.0.0.1:{port}"
  tenant_id = "team-a"
  basic_auth {{
    username = "u"
    password = "p"
  }}
  batch {{
    max_events = 4
    timeout    = "50ms"
  }}
  request {{
    retry_initial_backoff = "20ms"
    retry_max_backoff     = "100ms"
  }}
}}
"#,
        port = receiver.port
    );
    let mut registry = Registry::new();
    sonde_sinks::register(&mut registry);
    registry.source::<SyntheticProfilesConfig>();
    let loaded = load_str("test.hcl", &config, &registry).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let topology = Topology::start(loaded.config, GlobalContext { node_name: "n".into() }).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !topology.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "the pipeline did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        topology
            .shutdown(Duration::from_secs(30), sonde_core::CancellationToken::new())
            .await;
    });

    let records: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rejected = records.iter().filter(|r| r.get("rejected").is_some()).count();
    assert_eq!(rejected, 3, "the receiver refused the first 3 requests");
    // (service, leaf) → samples, and (service, leaf) → cpu ns.
    let mut samples: BTreeMap<(String, String), i64> = BTreeMap::new();
    for record in records.iter().filter(|r| r.get("profile").is_some()) {
        let query = &record["query"];
        let name = query["name"].as_str().unwrap();
        assert_eq!(query["format"], "pprof");
        assert_eq!(query["sampleRate"], "99");
        let (from, until): (u64, u64) = (
            query["from"].as_str().unwrap().parse().unwrap(),
            query["until"].as_str().unwrap().parse().unwrap(),
        );
        assert!(
            BASE_S <= from && from < until && until <= BASE_S + 10,
            "{from}..{until}"
        );
        assert_eq!(record["tenant"], "team-a");
        assert_eq!(record["authorization"], "Basic dTpw");
        let service = name.split('{').next().unwrap().to_string();
        assert_eq!(
            name,
            format!("{service}{{process_executable_name={service}}}"),
            "pid is not a label"
        );
        let profile = &record["profile"];
        assert_eq!(profile["period"], PERIOD);
        for sample in profile["samples"].as_array().unwrap() {
            let stack: Vec<&str> = sample["stack"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert_eq!(stack[1], "main");
            assert_eq!(sample["lines"][0], 7);
            assert_eq!(sample["modules"][0], "/usr/bin/app");
            let values = sample["values"].as_array().unwrap();
            assert_eq!(values[1].as_i64().unwrap(), values[0].as_i64().unwrap() * PERIOD as i64);
            *samples.entry((service.clone(), stack[0].to_string())).or_default() += values[0].as_i64().unwrap();
        }
    }
    let expected: BTreeMap<(String, String), i64> = ["alpha", "beta"]
        .into_iter()
        .flat_map(|s| {
            [
                ((s.to_string(), "leaf_a".to_string()), 55),
                ((s.to_string(), "leaf_b".to_string()), 20),
            ]
        })
        .collect();
    assert_eq!(samples, expected, "every sample arrived exactly once");
}

impl sonde_core::registry::SourceType for SyntheticProfilesConfig {
    const NAME: &'static str = "synthetic_profiles";
}
