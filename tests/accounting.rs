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
use sonde_ebpf::testing::TestCgroup;

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

/// Runs `/bin/true` `runs` times, each child moved into `cgroup` before
/// its exec: `runs` execs and `runs` exits in the cgroup.
fn exec_true(cgroup: &TestCgroup, runs: usize) {
    use std::os::unix::process::CommandExt;
    for _ in 0..runs {
        let procs = cgroup.path.join("cgroup.procs");
        let mut command = std::process::Command::new("/bin/true");
        // SAFETY: only a write(2) to a path prepared before the fork: no
        // allocation, no lock, async-signal-safe.
        unsafe {
            command.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        assert!(command.status().unwrap().success());
    }
}

/// The same accounting from the kernel on, on a real eBPF source: the
/// `process` source with its smallest ring buffer (64 KiB, some 25 exec
/// records) and a tiny map of live processes, feeding a slow sink that
/// blocks (so the source stops draining and the ring overflows) and,
/// through a transform, a slow sink that drops. The workload is known exactly: RUNS
/// execs and RUNS exits in a cgroup of its own. Every record the kernel
/// made is delivered to the source or counted as lost in the kernel, and
/// every stage after it accounts for each event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_ebpf_source_accounts_for_every_record_from_the_kernel_on() {
    const RUNS: usize = 1000;
    let test = "a_real_ebpf_source_accounts_for_every_record_from_the_kernel_on";
    if !sonde_ebpf::testing::bpf_available_or_skip(test) {
        return;
    }
    let cgroup = match TestCgroup::create("accounting-overload") {
        Ok(c) => c,
        Err(e) => {
            sonde_ebpf::testing::skip_or_fail(test, &format!("cannot create a cgroup v2 directory: {e}"));
            return;
        }
    };
    let config = format!(
        r#"
        source "process" "kacc_proc" {{
          cgroups = ["{cgroup}"]
          ring_buffer_bytes = 65536
          max_processes = 1
          metrics = false
        }}
        transform "pass" "kacc_pass" {{
          inputs = ["kacc_proc"]
        }}
        sink "record" "kacc_blocking" {{
          inputs = ["kacc_proc"]
          delay_ms = 100
          buffer {{
            max_events = 64
            when_full = "block"
          }}
        }}
        sink "record" "kacc_dropping" {{
          inputs = ["kacc_pass"]
          delay_ms = 100
          buffer {{
            max_events = 32
            when_full = "drop_newest"
          }}
        }}
        "#,
        cgroup = cgroup.relative
    );
    let loaded = load_str("kernel_accounting.hcl", &config, &registry()).unwrap_or_else(|e| panic!("{e}"));
    // The programs are attached when the topology has started.
    let topology = Topology::start(loaded.config, GlobalContext { node_name: "n".into() }).unwrap();
    // Four threads at once, so live processes outnumber the map's one slot.
    let cgroup = std::sync::Arc::new(cgroup);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let cgroup = cgroup.clone();
            tokio::task::spawn_blocking(move || exec_true(&cgroup, RUNS / 4))
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    // Let the slow sinks catch up with what the pipeline holds, then stop
    // (the source reads the ring a last time).
    tokio::time::sleep(Duration::from_secs(2)).await;
    topology
        .shutdown(Duration::from_secs(20), sonde_core::CancellationToken::new())
        .await;
    drop(cgroup);

    let made = 2 * RUNS as u64;
    let ring_full = counter("sonde_ebpf_lost_events_total", "kacc_proc", Some("ringbuf_full"));
    let kernel_lost = counter("sonde_ebpf_lost_events_total", "kacc_proc", None);
    // Other processes' records, left out by the cgroup filter.
    let filtered = counter("sonde_ebpf_lost_events_total", "kacc_proc", Some("filtered"));
    let map_full = counter("sonde_ebpf_map_full_total", "kacc_proc", None);
    let source_sent = sent("kacc_proc");
    let source_dropped = dropped_all("kacc_proc");
    eprintln!(
        "{made} records made: {source_sent} sent, {source_dropped} dropped by the source, \
         {kernel_lost} lost in the kernel ({ring_full} ring buffer full, {filtered} filtered out), \
         map full {map_full}"
    );
    assert!(ring_full > 0, "the ring buffer never overflowed: no overload");
    assert_eq!(
        kernel_lost,
        ring_full + filtered,
        "no other kernel loss (no rate limit)"
    );
    // A full map of live processes loses nothing: exits match by start time.
    assert!(map_full > 0, "the map of live processes never filled");
    assert_eq!(
        source_sent + source_dropped + ring_full,
        made,
        "each record the kernel made is sent, dropped or lost, counted"
    );

    // The transform, behind a queue that blocks, loses nothing.
    assert_eq!(received("kacc_pass"), source_sent);
    assert_eq!(sent("kacc_pass") + dropped_all("kacc_pass"), source_sent);
    let passed = sent("kacc_pass");

    // The blocking sink: handed = delivered + dropped (at shutdown only).
    let delivered = recorded("kacc_blocking").len() as u64;
    assert_eq!(sent("kacc_blocking"), delivered);
    assert_eq!(delivered + dropped_all("kacc_blocking"), source_sent);

    // The dropping sink: handed = delivered + buffer_full (+ shutdown).
    let delivered = recorded("kacc_dropping").len() as u64;
    assert!(
        dropped("kacc_dropping", "buffer_full") > 0,
        "the dropping sink was overloaded"
    );
    assert_eq!(sent("kacc_dropping"), delivered);
    assert_eq!(delivered + dropped_all("kacc_dropping"), passed);
}
