//! `source "disk_latency"` against the real kernel (needs root): a known
//! number of O_DIRECT writes and reads on a loop device this test creates,
//! checked against the kernel's own `/proc/diskstats`.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::collections::BTreeMap;
use std::time::Duration;

use sonde_core::event::{Event, MetricValue};
use sonde_ebpf::testing::{bpf_available_or_skip, direct_io, diskstats, skip_or_fail, DiskStatsLine, LoopDevice};
use sonde_sources::disk_latency::{
    Collector, DiskLatencySourceConfig, BYTES, DEVICE, OPERATION, REQUESTS, REQUEST_DURATION, REQUEST_SIZE,
};

const WRITES: usize = 400;
const WRITE_SIZE: usize = 16 * 1024;
const READS: usize = 300;
const READ_SIZE: usize = 8 * 1024;

/// What the source reported for one operation of the device.
#[derive(Clone, Debug, Default)]
struct Seen {
    requests: u64,
    bytes: u64,
    /// Latency histogram: bucket counts, and its count field.
    latency_counts: Vec<u64>,
    latency_count: u64,
    size_counts: Vec<u64>,
    size_bounds: Vec<f64>,
}

fn by_operation(events: &[Event], device: &str) -> BTreeMap<String, Seen> {
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    for event in events {
        let Event::Metric(metric) = event else { continue };
        if metric.attributes.get(DEVICE).and_then(|v| v.as_str()) != Some(device) {
            continue;
        }
        let op = metric
            .attributes
            .get(OPERATION)
            .and_then(|v| v.as_str())
            .unwrap()
            .to_string();
        let seen = out.entry(op).or_default();
        match (metric.name.as_str(), &metric.value) {
            (REQUESTS, MetricValue::Counter { value }) => seen.requests = *value as u64,
            (BYTES, MetricValue::Counter { value }) => seen.bytes = *value as u64,
            (REQUEST_DURATION, MetricValue::Histogram(h)) => {
                seen.latency_counts = h.counts.clone();
                seen.latency_count = h.count;
            }
            (REQUEST_SIZE, MetricValue::Histogram(h)) => {
                seen.size_counts = h.counts.clone();
                seen.size_bounds = h.bounds.to_vec();
            }
            _ => {}
        }
    }
    out
}

fn delta(after: &BTreeMap<String, Seen>, before: &BTreeMap<String, Seen>, op: &str) -> Seen {
    let a = after.get(op).cloned().unwrap_or_default();
    let b = before.get(op).cloned().unwrap_or_default();
    let sub = |x: &[u64], y: &[u64]| -> Vec<u64> {
        x.iter()
            .enumerate()
            .map(|(i, v)| v - y.get(i).copied().unwrap_or(0))
            .collect()
    };
    Seen {
        requests: a.requests - b.requests,
        bytes: a.bytes - b.bytes,
        latency_counts: sub(&a.latency_counts, &b.latency_counts),
        latency_count: a.latency_count - b.latency_count,
        size_counts: sub(&a.size_counts, &b.size_counts),
        size_bounds: a.size_bounds,
    }
}

fn within_one_percent(ours: u64, kernel: u64) -> bool {
    (ours as f64 - kernel as f64).abs() <= (kernel as f64 * 0.01).max(0.0)
}

fn loop_device(test: &str) -> Option<LoopDevice> {
    match LoopDevice::create(64 << 20) {
        Ok(dev) => Some(dev),
        Err(error) => {
            skip_or_fail(test, &format!("cannot create a loop device: {error}"));
            None
        }
    }
}

#[test]
fn counts_match_diskstats_on_a_loop_device() {
    let test = "counts_match_diskstats_on_a_loop_device";
    if !bpf_available_or_skip(test) {
        return;
    }
    let Some(dev) = loop_device(test) else { return };
    let config = DiskLatencySourceConfig {
        devices: vec![dev.name.clone()],
        ..DiskLatencySourceConfig::default()
    };
    let mut collector = Collector::load(&config, "test-node".into(), &[]).expect("disk_latency loads");

    let before: DiskStatsLine = diskstats(&dev.name).unwrap();
    let ours_before = by_operation(&collector.collect().unwrap(), &dev.name);
    direct_io(&dev.path, true, WRITE_SIZE, WRITES).unwrap();
    direct_io(&dev.path, false, READ_SIZE, READS).unwrap();
    let ours_after = by_operation(&collector.collect().unwrap(), &dev.name);
    let after = diskstats(&dev.name).unwrap();

    let writes = delta(&ours_after, &ours_before, "write");
    let reads = delta(&ours_after, &ours_before, "read");
    let kernel_writes = after.writes - before.writes;
    let kernel_reads = after.reads - before.reads;
    eprintln!("device {}: ours writes={writes:?} reads={reads:?}", dev.name);
    eprintln!("diskstats: writes={kernel_writes} reads={kernel_reads}");

    // The workload itself: the kernel saw at least it.
    assert!(kernel_writes >= WRITES as u64 && kernel_reads >= READS as u64);
    // Op counts equal the kernel's within 1 %.
    assert!(
        within_one_percent(writes.requests, kernel_writes),
        "writes {} vs {kernel_writes}",
        writes.requests
    );
    assert!(
        within_one_percent(reads.requests, kernel_reads),
        "reads {} vs {kernel_reads}",
        reads.requests
    );
    // Bytes equal the kernel's sectors.
    assert!(within_one_percent(
        writes.bytes,
        (after.write_sectors - before.write_sectors) * 512
    ));
    assert!(within_one_percent(
        reads.bytes,
        (after.read_sectors - before.read_sectors) * 512
    ));
    for (name, seen) in [("write", &writes), ("read", &reads)] {
        // Every request in the window was issued after attach: all timed.
        assert_eq!(
            seen.latency_counts.iter().sum::<u64>(),
            seen.requests,
            "{name} latency buckets"
        );
        assert_eq!(seen.latency_count, seen.requests, "{name} latency count");
        assert_eq!(
            seen.size_counts.iter().sum::<u64>(),
            seen.requests,
            "{name} size buckets"
        );
    }
    // Sizes land in the bucket whose upper bound is the request size.
    let slot = |size: usize, seen: &Seen| seen.size_bounds.iter().position(|b| *b == size as f64).unwrap();
    assert!(writes.size_counts[slot(WRITE_SIZE, &writes)] >= WRITES as u64);
    assert!(reads.size_counts[slot(READ_SIZE, &reads)] >= READS as u64);
    assert_eq!(collector.programs().stats().unwrap().read_failed, 0);
}

#[test]
fn sonde_run_emits_disk_metrics_and_loss_counters() {
    let test = "sonde_run_emits_disk_metrics_and_loss_counters";
    if !bpf_available_or_skip(test) {
        return;
    }
    let Some(dev) = loop_device(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.hcl");
    std::fs::write(
        &config,
        format!(
            r#"agent {{
  api       = null
  node_name = "test-node"
}}
source "disk_latency" "disk" {{
  interval = "300ms"
  devices  = ["{}"]
}}
source "internal_metrics" "agent" {{
  interval = "300ms"
}}
sink "console" "out" {{
  inputs   = ["disk", "agent"]
  encoding = "json"
}}
"#,
            dev.name
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(["--log-level", "warn", "run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read stdout on another thread (a full pipe would stall sonde).
    let stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line.clone());
        }
    });
    // The first event means every source was built, so the programs are
    // attached: the I/O below is all seen.
    let first = line_rx.recv_timeout(Duration::from_secs(30)).expect("sonde emits");
    direct_io(&dev.path, true, 4096, 50).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "sonde did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().unwrap();
    assert!(status.success(), "sonde failed: {status}");
    let stdout: String = std::iter::once(first)
        .chain(line_rx.try_iter())
        .collect::<Vec<_>>()
        .join("\n");
    let lines: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let attr = |v: &serde_json::Value, k: &str| v["attributes"][k].as_str().map(str::to_string);
    let writes = lines
        .iter()
        .filter(|v| v["name"] == REQUESTS && attr(v, DEVICE).as_deref() == Some(dev.name.as_str()))
        .filter(|v| attr(v, OPERATION).as_deref() == Some("write"))
        .filter_map(|v| v["value"]["value"].as_f64())
        .fold(0.0, f64::max);
    assert!(writes >= 50.0, "last write count {writes}:\n{stdout}");
    assert!(
        lines
            .iter()
            .all(|v| !v["name"].as_str().unwrap_or("").starts_with("sonde_disk_")
                || attr(v, DEVICE).as_deref() == Some(dev.name.as_str())),
        "`devices` filters"
    );
    assert!(
        lines.iter().any(|v| v["name"] == "sonde_ebpf_lost_events_total"
            && attr(v, "component_id").as_deref() == Some("disk")
            && attr(v, "reason").as_deref() == Some("no_start")),
        "loss counters are exported:\n{stdout}"
    );
}
