//! The running graph, in process: delivery, fan-out, backpressure, drops.

mod common;

use std::time::Duration;

use sonde_core::component::GlobalContext;
use sonde_core::config::load_str;
use sonde_core::testing::{counter, recorded};
use sonde_core::topology::Topology;

/// Every component type of the binary, and core's mock ones (`record`,
/// `flaky`, …: see `sonde_core::testing`).
fn registry() -> sonde_core::Registry {
    let mut registry = common::registry();
    sonde_core::testing::register(&mut registry);
    registry
}

/// Runs `config` until every component finishes (sources with `count`),
/// woken only by the topology's task-ended notifications, as the agent is.
async fn run_to_end(config: &str) {
    let loaded = load_str("test.hcl", config, &registry()).unwrap_or_else(|e| panic!("{e}"));
    let global = GlobalContext {
        node_name: "test-node".into(),
    };
    let topology = Topology::start(loaded.config, global).unwrap();
    let task_ended = topology.task_ended();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !topology.is_finished() {
            task_ended.notified().await;
        }
    })
    .await
    .expect("pipeline did not finish within 60s");
    let stopped = topology
        .shutdown(Duration::from_secs(5), sonde_core::CancellationToken::new())
        .await;
    assert_eq!(stopped, sonde_core::topology::Stopped::Drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_filter_tag_file_delivers_exactly_the_expected_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    run_to_end(&format!(
        r#"
        source "demo" "gen" {{
          rate = 0
          count = 10000
          batch_size = 64
          kind = "log"
          series = 2
        }}
        transform "filter" "odd" {{
          inputs = ["gen"]
          attributes = {{ series = "1" }}
        }}
        transform "tag" "t" {{
          inputs = ["odd"]
          add = {{ env = "test" }}
          remove = ["series"]
        }}
        sink "file" "out" {{
          inputs = ["t"]
          path = "{}"
        }}
        "#,
        path.display()
    ))
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["kind"], "log");
        assert_eq!(line["fields"]["sequence"], (2 * i + 1) as u64, "line {i}");
        assert_eq!(line["attributes"]["env"], "test");
        assert!(line["attributes"].get("series").is_none());
        assert_eq!(line["attributes"]["k8s.node.name"], "test-node");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(counter("sonde_component_received_events_total", "odd", None), 10000);
    assert_eq!(counter("sonde_component_sent_events_total", "odd", None), 5000);
    assert_eq!(counter("sonde_component_sent_events_total", "out", None), 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_gives_every_sink_the_same_events() {
    run_to_end(
        r#"
        source "demo" "fan_gen" {
          rate = 0
          count = 20000
          batch_size = 100
        }
        sink "record" "fan_a" { inputs = ["fan_gen"] }
        sink "record" "fan_b" {
          inputs = ["fan_gen"]
          delay_ms = 1
        }
        "#,
    )
    .await;
    let expected: Vec<u64> = (0..20000).collect();
    assert_eq!(recorded("fan_a"), expected);
    assert_eq!(recorded("fan_b"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sink_with_block_loses_nothing() {
    run_to_end(
        r#"
        source "demo" "block_gen" {
          rate = 0
          count = 3000
          batch_size = 50
        }
        sink "record" "block_slow" {
          inputs = ["block_gen"]
          delay_ms = 2
          buffer {
            max_events = 100
            when_full = "block"
          }
        }
        "#,
    )
    .await;
    assert_eq!(recorded("block_slow"), (0..3000).collect::<Vec<_>>());
    assert_eq!(counter("sonde_component_dropped_events_total", "block_slow", None), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_counts_exactly_what_it_drops() {
    run_to_end(
        r#"
        source "demo" "drop_gen" {
          rate = 0
          count = 5000
          batch_size = 50
        }
        sink "record" "drop_slow" {
          inputs = ["drop_gen"]
          delay_ms = 50
          buffer {
            max_events = 100
            when_full = "drop_newest"
          }
        }
        "#,
    )
    .await;
    let delivered = recorded("drop_slow");
    let dropped = counter("sonde_component_dropped_events_total", "drop_slow", Some("buffer_full"));
    // The source makes its 100 batches in a few milliseconds; the sink
    // takes 50 ms a call with room for two batches: most are dropped.
    assert!(dropped > 0, "the slow sink should have dropped something");
    assert_eq!(delivered.len() as u64 + dropped, 5000);
    // What was delivered is in order, with whole batches missing.
    assert!(delivered.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_sink_cannot_take_are_removed_and_counted() {
    run_to_end(
        r#"
        source "demo" "kind_logs" {
          rate = 0
          count = 100
          kind = "log"
        }
        source "demo" "kind_metrics" {
          rate = 0
          count = 150
        }
        transform "tag" "kind_mix" { inputs = ["kind_logs", "kind_metrics"] }
        sink "record" "kind_sink" {
          inputs = ["kind_mix"]
          logs_only = true
        }
        "#,
    )
    .await;
    assert_eq!(recorded("kind_sink").len(), 100);
    assert_eq!(
        counter(
            "sonde_component_dropped_events_total",
            "kind_sink",
            Some("unsupported_kind")
        ),
        150
    );
    assert_eq!(counter("sonde_component_sent_events_total", "kind_sink", None), 100);
}

async fn run_flaky(config: &str) {
    let loaded = load_str("test.hcl", config, &registry()).unwrap_or_else(|e| panic!("{e}"));
    let topology = Topology::start(loaded.config, GlobalContext { node_name: "n".into() }).unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !topology.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("finished");
    topology
        .shutdown(Duration::from_secs(1), sonde_core::CancellationToken::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_failures_are_retried_until_delivered() {
    run_flaky(
        r#"
        source "demo" "retry_gen" {
          rate = 0
          count = 1000
          batch_size = 100
        }
        sink "flaky" "retry_sink" {
          inputs = ["retry_gen"]
          fail_first = 4
          permanent = false
          request {
            retry_initial_backoff = "10ms"
            retry_max_backoff = "20ms"
          }
        }
        "#,
    )
    .await;
    assert_eq!(recorded("retry_sink"), (0..1000).collect::<Vec<_>>());
    assert_eq!(counter("sonde_component_errors_total", "retry_sink", None), 4);
    assert_eq!(counter("sonde_component_dropped_events_total", "retry_sink", None), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_drop_the_batch_and_count_it() {
    run_flaky(
        r#"
        source "demo" "perm_gen" {
          rate = 0
          count = 1000
          batch_size = 100
        }
        sink "flaky" "perm_sink" {
          inputs = ["perm_gen"]
          fail_first = 2
          permanent = true
        }
        "#,
    )
    .await;
    let delivered = recorded("perm_sink");
    assert_eq!(delivered.len(), 800);
    assert_eq!(
        counter("sonde_component_dropped_events_total", "perm_sink", Some("error")),
        200
    );
    assert_eq!(counter("sonde_component_errors_total", "perm_sink", None), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_metrics_reports_component_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.jsonl");
    let config = format!(
        r#"
        source "demo" "im_gen" {{
          rate = 0
          count = 500
        }}
        sink "blackhole" "im_void" {{ inputs = ["im_gen"] }}
        source "internal_metrics" "im_agent" {{ interval = "100ms" }}
        sink "file" "im_out" {{
          inputs = ["im_agent"]
          path = "{}"
        }}
        "#,
        path.display()
    );
    let loaded = load_str("test.hcl", &config, &registry()).unwrap();
    let topology = Topology::start(loaded.config, GlobalContext { node_name: "n".into() }).unwrap();
    let mut found = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        found = text.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["name"] == "sonde.component.sent_events"
                && v["attributes"]["component_id"] == "im_void"
                && v["value"]["value"] == 500.0
        });
        if found {
            break;
        }
    }
    topology
        .shutdown(Duration::from_secs(1), sonde_core::CancellationToken::new())
        .await;
    assert!(found, "internal_metrics never reported 500 events sent by im_void");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_block_merges_small_batches_into_bigger_calls() {
    run_to_end(
        r#"
        source "demo" "batch_gen" {
          rate = 0
          count = 1000
          batch_size = 10
        }
        sink "record" "batch_sink" {
          inputs = ["batch_gen"]
          batch {
            max_events = 100
            timeout = "2s"
          }
        }
        "#,
    )
    .await;
    assert_eq!(recorded("batch_sink"), (0..1000).collect::<Vec<_>>());
    // 100 batches of 10 arrive at once; merging stops at 100 events (the
    // 2 s timeout never expires while the source runs), so the sink itself
    // saw exactly ten calls of 100, and the core's counter agrees.
    let calls = sonde_core::testing::recorded_calls("batch_sink");
    assert_eq!(calls, vec![100; 10], "the sizes of the sink's calls");
    let counted = counter("sonde_component_received_batches_total", "batch_sink", None);
    assert_eq!(counted, 10, "the core's count of the sink's calls");
}
