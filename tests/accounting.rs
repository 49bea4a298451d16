//! Exact accounting under overload, in process: for every stage, what it
//! was handed = what it sent + what it dropped, by reason + what it still
//! buffers, read from the agent's own counters (those of `/metrics`).
//!
//! One source overloads a transform and four sinks, each losing events its
//! own way: a slow `drop_newest` buffer, a backend failing permanently, a
//! backend refusing part of each batch (a partial success), and a disk
//! buffer in front of a slow sink.

mod common;

use std::time::Duration;

use sonde_core::component::GlobalContext;
use sonde_core::config::load_str;
use sonde_core::testing::{counter, recorded};
use sonde_core::topology::Topology;

const EVENTS: u64 = 20_000;

fn registry() -> sonde_core::Registry {
    let mut registry = common::registry();
    sonde_core::testing::register(&mut registry);
    registry
}

fn sent(id: &str) -> u64 {
    counter("sonde_component_sent_events_total", id, None)
}
fn received(id: &str) -> u64 {
    counter("sonde_component_received_events_total", id, None)
}
fn dropped(id: &str, reason: &str) -> u64 {
    counter("sonde_component_dropped_events_total", id, Some(reason))
}
fn dropped_all(id: &str) -> u64 {
    counter("sonde_component_dropped_events_total", id, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_accounts_for_every_event_under_overload() {
    let data = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
        agent {{
          data_dir = "{data}"
        }}
        source "demo" "acc_gen" {{
          rate = 0
          count = {EVENTS}
          batch_size = 100
        }}
        transform "pass" "acc_pass" {{
          inputs = ["acc_gen"]
        }}
        sink "record" "acc_dropping" {{
          inputs = ["acc_pass"]
          delay_ms = 2
          buffer {{
            max_events = 300
            when_full = "drop_newest"
          }}
        }}
        sink "flaky" "acc_failing" {{
          inputs = ["acc_pass"]
          fail_first = 7
          permanent = true
        }}
        sink "record" "acc_partial" {{
          inputs = ["acc_pass"]
          reject_every = 7
        }}
        sink "record" "acc_disk" {{
          inputs = ["acc_pass"]
          delay_ms = 1
          batch {{
            max_events = 500
            timeout = "10ms"
          }}
          buffer {{
            type = "disk"
            max_size = "4MiB"
          }}
        }}
        "#,
        data = data.path().display()
    );
    let loaded = load_str("accounting.hcl", &config, &registry()).unwrap_or_else(|e| panic!("{e}"));
    let topology = Topology::start(loaded.config, GlobalContext { node_name: "n".into() }).unwrap();
    let task_ended = topology.task_ended();
    tokio::time::timeout(Duration::from_secs(120), async {
        while !topology.is_finished() {
            task_ended.notified().await;
        }
    })
    .await
    .expect("the pipeline finishes");
    topology
        .shutdown(Duration::from_secs(5), sonde_core::CancellationToken::new())
        .await;

    // The source and the transform (a `block` queue) lose nothing.
    assert_eq!(sent("acc_gen"), EVENTS);
    assert_eq!(received("acc_pass"), EVENTS);
    assert_eq!(sent("acc_pass"), EVENTS);
    assert_eq!(dropped_all("acc_pass"), 0);

    // A full drop_newest buffer: handed = delivered + buffer_full.
    let delivered = recorded("acc_dropping").len() as u64;
    assert!(
        dropped("acc_dropping", "buffer_full") > 0,
        "the slow sink was overloaded"
    );
    assert_eq!(sent("acc_dropping"), delivered);
    assert_eq!(delivered + dropped("acc_dropping", "buffer_full"), EVENTS);
    assert_eq!(received("acc_dropping"), delivered, "received = sent at the call");

    // Permanent failures: handed = delivered + error.
    let delivered = recorded("acc_failing").len() as u64;
    assert!(dropped("acc_failing", "error") > 0);
    assert_eq!(sent("acc_failing"), delivered);
    assert_eq!(delivered + dropped("acc_failing", "error"), EVENTS);

    // A partial success: exactly the refused events are dropped, and only
    // the rest counted as delivered.
    let delivered = recorded("acc_partial").len() as u64;
    let refused = EVENTS.div_ceil(7);
    assert_eq!(dropped("acc_partial", "rejected"), refused);
    assert_eq!(sent("acc_partial"), delivered);
    assert_eq!(delivered + refused, EVENTS);

    // A disk buffer: written = acknowledged, all delivered, none left.
    assert_eq!(recorded("acc_disk").len() as u64, EVENTS);
    assert_eq!(sent("acc_disk"), EVENTS);
    assert_eq!(dropped_all("acc_disk"), 0);
    assert_eq!(counter("sonde_buffer_written_events_total", "acc_disk", None), EVENTS);
    assert_eq!(counter("sonde_buffer_acked_events_total", "acc_disk", None), EVENTS);
    let report = sonde_core::buffer::check::check(&data.path().join("acc_disk")).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unacked_events, 0, "{report}");
}

/// A scrape endpoint lives until the agent stops, not until its inputs
/// end: a finite source feeding it finishes while another keeps the agent
/// running, and the endpoint still serves what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_endpoint_outlives_its_inputs() {
    let port = common::free_port();
    let config = format!(
        r#"
        source "demo" "outlive_finite" {{
          rate = 0
          count = 10
        }}
        source "demo" "outlive_forever" {{
          rate = 1
        }}
        sink "prometheus" "outlive_prom" {{
          inputs = ["outlive_finite"]
          listen = "127.0.0.1:{port}"
        }}
        sink "blackhole" "outlive_hole" {{
          inputs = ["outlive_forever"]
        }}
        "#
    );
    let loaded = load_str("outlive.hcl", &config, &registry()).unwrap_or_else(|e| panic!("{e}"));
    let topology = Topology::start(loaded.config, GlobalContext { node_name: "n".into() }).unwrap();
    let start = std::time::Instant::now();
    while sent("outlive_prom") < 10 {
        assert!(start.elapsed() < Duration::from_secs(30), "the sink never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its input has ended and its task drained; longer than the endpoint's
    // drain time, so a stopped endpoint would be gone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!topology.is_finished());
    let body = tokio::task::spawn_blocking(move || common::http_get(port, "/metrics"))
        .await
        .unwrap()
        .expect("the endpoint still answers");
    assert!(body.contains("sonde_demo_sequence"), "{body}");
    topology
        .shutdown(Duration::from_secs(5), sonde_core::CancellationToken::new())
        .await;
    let stopped = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if common::http_get(port, "/metrics").is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    assert!(stopped.await.unwrap(), "the endpoint stops with the agent");
}
