//! The running graph end to end, with the mock components of
//! [`crate::testing`]: delivery, `/graph`, reload and failed builds.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::load_str;
use crate::testing::{self, counter, recorded, run_to_end};

fn load(text: &str) -> PipelineConfig {
    load_str("test.hcl", text, &testing::registry())
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

fn ids(v: &[SharedStr]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_every_sink_in_order() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "deliver_gen" {
              count = 2000
              batch_size = 7
            }
            transform "pass" "deliver_pass" { inputs = ["deliver_gen"] }
            sink "record" "deliver_a" { inputs = ["deliver_pass"] }
            sink "record" "deliver_b" {
              inputs = ["deliver_gen"]
              buffer { max_events = 10 }
            }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    assert_eq!(run_to_end(topology, Duration::from_secs(30)).await, Stopped::Drained);
    let expected: Vec<u64> = (0..2000).collect();
    assert_eq!(recorded("deliver_a"), expected);
    assert_eq!(recorded("deliver_b"), expected);
    assert_eq!(counter("sonde_component_sent_events_total", "deliver_pass", None), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_lists_components_in_config_order_with_their_kinds() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "graph_gen" {
              count = 1
              kind = "log"
            }
            transform "pass" "graph_pass" { inputs = ["graph_gen"] }
            sink "record" "graph_sink" { inputs = ["graph_pass"] }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    let graph = topology.graph();
    let listed: Vec<(&str, ComponentKind, EventKinds)> = graph.iter().map(|n| (&*n.id, n.kind, n.outputs)).collect();
    assert_eq!(
        listed,
        [
            ("graph_gen", ComponentKind::Source, EventKinds::LOG),
            ("graph_pass", ComponentKind::Transform, EventKinds::LOG),
            ("graph_sink", ComponentKind::Sink, EventKinds::NONE),
        ]
    );
    assert_eq!(ids(&graph[2].inputs), ["graph_pass"]);
    topology
        .shutdown(Duration::from_secs(5), CancellationToken::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rewires_kept_components_and_a_failed_build_changes_nothing() {
    // A source that never ends on its own, so the reload meets it running;
    // the sinks take 1 ms per batch to keep the recordings small.
    let first = r#"
        source "sequence" "reload_gen" {
          count = 1000000000
          batch_size = 100
        }
        sink "record" "reload_old" {
          inputs = ["reload_gen"]
          delay_ms = 1
        }
    "#;
    let mut topology = Topology::start(load(first), testing::global()).expect("builds");
    wait_until_recorded("reload_old").await;

    let broken = r#"
        source "sequence" "reload_gen" {
          count = 1000000000
          batch_size = 100
        }
        source "sequence" "reload_bad" { fail_build = "no such device" }
        sink "record" "reload_old" {
          inputs = ["reload_gen", "reload_bad"]
          delay_ms = 1
        }
    "#;
    let error = topology.apply(load(broken)).expect_err("reload_bad fails to build");
    assert_eq!(error.failures.len(), 1);
    assert_eq!(error.failures[0].0.id, "reload_bad");
    assert_eq!(topology.graph().len(), 2, "the running graph is left alone");

    let second = r#"
        source "sequence" "reload_gen" {
          count = 1000000000
          batch_size = 100
        }
        sink "record" "reload_new" {
          inputs = ["reload_gen"]
          delay_ms = 1
        }
    "#;
    let summary = topology.apply(load(second)).expect("reloads");
    assert_eq!(ids(&summary.kept), ["reload_gen"]);
    assert_eq!(ids(&summary.added), ["reload_new"]);
    assert_eq!(ids(&summary.removed), ["reload_old"]);
    assert!(summary.rebuilt.is_empty());

    // The kept source now feeds the new sink.
    wait_until_recorded("reload_new").await;
    topology
        .shutdown(Duration::from_secs(5), CancellationToken::new())
        .await;
    // The source kept its sequence across the reload: the new sink starts
    // where the old one stopped, not at 0.
    let old = recorded("reload_old");
    let new = recorded("reload_new");
    assert!(
        new[0] > 0 && new.windows(2).all(|w| w[0] + 1 == w[1]),
        "{:?}",
        &new[..10.min(new.len())]
    );
    assert!(old.last().is_none_or(|last| *last < new[0]));
}

async fn wait_until_recorded(sink: &str) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while recorded(sink).is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{sink} received nothing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_failures_are_retried_until_delivered() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "flaky_gen" {
              count = 500
              batch_size = 50
            }
            sink "flaky" "flaky_sink" {
              inputs = ["flaky_gen"]
              fail_first = 3
              request {
                retry_initial_backoff = "10ms"
                retry_max_backoff = "20ms"
              }
            }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    assert_eq!(run_to_end(topology, Duration::from_secs(30)).await, Stopped::Drained);
    assert_eq!(recorded("flaky_sink"), (0..500).collect::<Vec<_>>());
    assert_eq!(counter("sonde_component_errors_total", "flaky_sink", None), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_is_a_failure_and_its_consumers_still_finish() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "panic_gen" {
              count = 100
              batch_size = 10
              panic_after = 30
            }
            sink "record" "panic_sink" { inputs = ["panic_gen"] }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    let failures = topology.failures();
    // Before the fix the panic left the sink's queue open: this timed out.
    assert_eq!(run_to_end(topology, Duration::from_secs(30)).await, Stopped::Drained);
    let failed = failures.list();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].component, "source \"sequence\" \"panic_gen\"");
    assert!(failed[0].error.contains("told to panic after 30 events"), "{failed:?}");
    assert_eq!(counter("sonde_component_errors_total", "panic_gen", None), 1);
    assert_eq!(recorded("panic_sink"), (0..30).collect::<Vec<u64>>());
}

/// A sink whose backend never recovers, stopped at once: every event the
/// source passed on is accounted for, delivered or dropped, to the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_stop_counts_every_event_still_held() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "forced_gen" {
              count = 100000
              batch_size = 10
            }
            transform "pass" "forced_pass" { inputs = ["forced_gen"] }
            sink "flaky" "forced_sink" {
              inputs = ["forced_pass"]
              fail_first = 1000000000
              buffer { max_events = 500 }
              batch {
                max_events = 50
                timeout = "50ms"
              }
              request { retry_initial_backoff = "10ms" }
            }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    // Let the queues fill behind the failing sink.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = CancellationToken::new();
    now.cancel();
    let started = std::time::Instant::now();
    let stopped = topology.shutdown(Duration::from_secs(60), now).await;
    assert_eq!(stopped, Stopped::Forced);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let sent = counter("sonde_component_sent_events_total", "forced_gen", None);
    let pass_sent = counter("sonde_component_sent_events_total", "forced_pass", None);
    let pass_lost = counter("sonde_component_dropped_events_total", "forced_pass", Some("shutdown"));
    let sink_lost = counter("sonde_component_dropped_events_total", "forced_sink", Some("shutdown"));
    let sink_sent = counter("sonde_component_sent_events_total", "forced_sink", None);
    assert!(sent >= 500, "the source sent only {sent}");
    assert_eq!(sink_sent, 0);
    assert_eq!(
        sent,
        pass_sent + pass_lost,
        "transform: {pass_sent} passed on, {pass_lost} dropped"
    );
    assert_eq!(pass_sent, sink_lost, "sink: {sink_lost} dropped of {pass_sent}");
    assert!(sink_lost >= 500, "{sink_lost}");
}

/// The sink's buffer gauge follows its queue while the sink is stuck on
/// one batch, not only when it takes the next (the backlog was invisible).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_gauge_shows_a_backlog_behind_a_stuck_sink() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "backlog_gen" {
              count = 300
              batch_size = 10
            }
            sink "flaky" "backlog_sink" {
              inputs = ["backlog_gen"]
              fail_first = 1000000000
              buffer { max_events = 1000 }
              request { retry_initial_backoff = "10ms" }
            }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counter("sonde_component_sent_events_total", "backlog_gen", None), 300);
    assert_eq!(gauge("sonde_component_buffer_events", "backlog_sink"), 300.0);
    let now = CancellationToken::new();
    now.cancel();
    topology.shutdown(Duration::from_secs(60), now).await;
    assert_eq!(
        counter("sonde_component_dropped_events_total", "backlog_sink", Some("shutdown")),
        300
    );
    assert_eq!(gauge("sonde_component_buffer_events", "backlog_sink"), 0.0);
}

fn gauge(name: &str, component_id: &str) -> f64 {
    crate::telemetry::install()
        .snapshot()
        .into_iter()
        .filter(|m| m.name == name && m.labels.iter().any(|(k, v)| k == "component_id" && v == component_id))
        .map(|m| match m.value {
            crate::telemetry::InternalValue::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// A sink that dies: what it had accepted is counted as dropped, and its
/// producers do not wait for it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sink_counts_what_it_held_and_frees_its_producers() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "dead_sink_gen" {
              count = 1000
              batch_size = 10
            }
            sink "record" "dead_sink" {
              inputs = ["dead_sink_gen"]
              panic_after = 30
              buffer { max_events = 50 }
            }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    let failures = topology.failures();
    // Before, the source waited forever for room in the dead sink's queue.
    assert_eq!(run_to_end(topology, Duration::from_secs(30)).await, Stopped::Drained);
    assert_eq!(failures.list().len(), 1);
    assert_eq!(recorded("dead_sink"), (0..30).collect::<Vec<u64>>());
    let sent = counter("sonde_component_sent_events_total", "dead_sink_gen", None);
    let lost = counter("sonde_component_dropped_events_total", "dead_sink", Some("error"));
    assert_eq!(counter("sonde_component_sent_events_total", "dead_sink", None), 30);
    assert!(lost >= 10, "the batch it died on: {lost}");
    assert_eq!(sent, 30 + lost, "sent {sent}, delivered 30, dropped {lost}");
}

/// The same with calls in flight together (`request { concurrency }`): the
/// panic comes back from the call's task and ends the sink the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_panicking_in_a_concurrent_call_counts_what_it_held() {
    let topology = Topology::start(
        load(
            r#"
            source "sequence" "dead_conc_gen" {
              count = 1000
              batch_size = 10
            }
            sink "record" "dead_conc" {
              inputs = ["dead_conc_gen"]
              panic_after = 30
              buffer { max_events = 50 }
              request { concurrency = 4 }
            }
            "#,
        ),
        testing::global(),
    )
    .expect("builds");
    let failures = topology.failures();
    assert_eq!(run_to_end(topology, Duration::from_secs(30)).await, Stopped::Drained);
    assert_eq!(failures.list().len(), 1, "{:?}", failures.list());
    let delivered = counter("sonde_component_sent_events_total", "dead_conc", None);
    let sent = counter("sonde_component_sent_events_total", "dead_conc_gen", None);
    let lost = counter("sonde_component_dropped_events_total", "dead_conc", Some("error"));
    let other: u64 = ["shutdown", "output_closed"]
        .iter()
        .map(|r| counter("sonde_component_dropped_events_total", "dead_conc", Some(r)))
        .sum();
    assert_eq!(delivered, recorded("dead_conc").len() as u64);
    assert_eq!(other, 0);
    assert_eq!(
        sent,
        delivered + lost,
        "sent {sent}, delivered {delivered}, dropped {lost}"
    );
}
