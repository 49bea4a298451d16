//! Disk buffer throughput against the memory buffer, in the same run.
//!
//! `cargo xtask bench buffer` runs it. Two measurements, each repeated
//! `--runs` times with the variants interleaved:
//!
//! - the pipeline, on one core (a single-threaded runtime): demo →
//!   blackhole with the default memory buffer, and the same with
//!   `buffer { type = "disk" }` (every batch encoded, written with one
//!   `write(2)`, read back or taken from the buffer's in-memory cache,
//!   acknowledged);
//! - the buffer alone ([`DiskBuffer`]): `--events` demo-like metric events
//!   in batches of 1000 appended, then read back from disk (cache off: a
//!   reader far behind its writer) and acknowledged.
//!
//! fsync policy (the buffer's own, see `sonde_core::buffer`): each batch
//! is handed to the kernel as it is taken (kill -9 safe); data files are
//! fdatasynced once a second and when a segment is full. The pipeline
//! figures include those syncs; the buffer-alone figures sync once at the
//! end of the writes. Vector's disk buffer (v2) is the comparison: it also
//! syncs on a timer (500ms by default).

mod common;

use std::time::{Duration, Instant};

use common::arg;
use sonde_core::buffer::{BufferMetrics, DiskBuffer, Encoded};
use sonde_core::event::{Attributes, Event, EventBatch, Metric};

const SOURCE: &str = r#"
source "demo" "gen" {
  rate       = 0
  count      = COUNT
  batch_size = 1000
  series     = 4
}
"#;

fn graph(disk: Option<&std::path::Path>, events: u64) -> String {
    let agent = match disk {
        Some(dir) => format!("agent {{\n  data_dir = \"{}\"\n}}\n", dir.display()),
        None => String::new(),
    };
    let buffer = if disk.is_some() {
        "  buffer {\n    type = \"disk\"\n    max_size = \"256MiB\"\n  }\n"
    } else {
        ""
    };
    format!(
        "{agent}{}sink \"blackhole\" \"void\" {{\n  inputs = [\"gen\"]\n{buffer}}}\n",
        SOURCE.replace("COUNT", &events.to_string())
    )
}

fn batch(first: u64, n: u64) -> EventBatch {
    let attributes = Attributes::new()
        .with("series", "1")
        .with("k8s.node.name", "bench-node");
    (first..first + n)
        .map(|i| Event::from(Metric::gauge("sonde_demo_sequence", i as f64).with_attributes(attributes.clone())))
        .collect()
}

/// Appends then reads back `events`: (write seconds, read seconds, bytes).
fn buffer_alone(dir: &std::path::Path, events: u64) -> (f64, f64, u64) {
    let _ = std::fs::remove_dir_all(dir);
    let mut buffer = DiskBuffer::open(dir, 4 << 30, BufferMetrics::noop()).unwrap();
    let batches: Vec<EventBatch> = (0..events / 1000).map(|b| batch(b * 1000, 1000)).collect();
    let started = Instant::now();
    let mut bytes = 0;
    for b in &batches {
        let mut record = Encoded::new(b);
        bytes += record.len();
        buffer.append(&mut record, b).unwrap();
    }
    for file in buffer.take_sync() {
        file.sync_data().unwrap();
    }
    let write = started.elapsed().as_secs_f64();
    drop(buffer);
    // Reopened: nothing cached, every record read from the files.
    let mut buffer = DiskBuffer::open(dir, 4 << 30, BufferMetrics::noop()).unwrap();
    let started = Instant::now();
    let mut read = 0;
    while let Some(record) = buffer.read_next() {
        read += record.batch.len() as u64;
        buffer.ack(record.ticket);
    }
    let read_seconds = started.elapsed().as_secs_f64();
    assert_eq!(read, events / 1000 * 1000);
    (write, read_seconds, bytes)
}

fn main() {
    let events: u64 = arg("--events", "2000000").parse().unwrap();
    let runs: usize = arg("--runs", "5").parse().unwrap();
    let out = std::path::PathBuf::from(arg("--out", "target/bench"));
    let tmp = tempfile::tempdir().unwrap();
    let run_graph = |disk: bool, n: u64| -> Duration {
        let dir = tmp.path().join("data");
        let _ = std::fs::remove_dir_all(&dir);
        common::run_to_completion(&graph(disk.then_some(dir.as_path()), n), None)
    };
    run_graph(true, events / 10);

    let mut memory = Vec::new();
    let mut disk = Vec::new();
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    let mut bytes = 0;
    for run in 0..runs {
        memory.push(run_graph(false, events).as_secs_f64());
        disk.push(run_graph(true, events).as_secs_f64());
        let (w, r, b) = buffer_alone(&tmp.path().join("alone"), events);
        writes.push(w);
        reads.push(r);
        bytes = b;
        eprintln!("run {}/{runs} done", run + 1);
    }
    let per_event = bytes as f64 / events as f64;
    let eps = |t: f64| events as f64 / t;
    let mbps = |t: f64| bytes as f64 / t / 1e6;
    let ns_runs = |v: &[f64]| v.iter().map(|t| t * 1e9 / events as f64).collect::<Vec<_>>();
    let (_, m, _) = common::spread(&memory);
    let (dmin, d, dmax) = common::spread(&disk);
    let (_, w, _) = common::spread(&writes);
    let (_, r, _) = common::spread(&reads);
    let mut table = format!(
        "### Disk buffer throughput ({events} metric events per run, {runs} interleaved runs, one core)\n\n\
         fsync policy: each batch is written to the kernel as the buffer takes it (nothing lost to `kill -9`); \
         segment files are fdatasynced once a second and when full. {per_event:.1} bytes per event on disk.\n\n\
         | what | events/s (median) | MB/s (median) | ns/event min / median / max |\n|---|---|---|---|\n"
    );
    table.push_str(&format!(
        "| pipeline, memory buffer: demo → blackhole | {:.2} M | – | {:.0} |\n",
        eps(m) / 1e6,
        m * 1e9 / events as f64
    ));
    table.push_str(&format!(
        "| pipeline, disk buffer: demo → disk → blackhole | {:.2} M | {:.0} | {:.0} / {:.0} / {:.0} |\n",
        eps(d) / 1e6,
        mbps(d),
        dmin * 1e9 / events as f64,
        d * 1e9 / events as f64,
        dmax * 1e9 / events as f64
    ));
    table.push_str(&format!(
        "| buffer alone: encode + write (+ one fdatasync) | {:.2} M | {:.0} | {:.0} |\n",
        eps(w) / 1e6,
        mbps(w),
        w * 1e9 / events as f64
    ));
    table.push_str(&format!(
        "| buffer alone: read from files + decode + acknowledge | {:.2} M | {:.0} | {:.0} |\n",
        eps(r) / 1e6,
        mbps(r),
        r * 1e9 / events as f64
    ));
    table.push_str(
        "\nTarget: a disk-buffered sink at ≥ 1 M events/s on one core. Comparison: Vector's disk buffer \
         (v2), which also syncs on a timer; Vector publishes no per-core figure to set beside these.\n",
    );
    println!("{table}");
    let figures = vec![
        common::Figure::new("pipeline, memory buffer", "ns/event", &ns_runs(&memory)),
        common::Figure::against("pipeline, disk buffer", "ns/event", &ns_runs(&disk), &ns_runs(&memory)),
        common::Figure::new("disk buffer alone: write", "ns/event", &ns_runs(&writes)),
        common::Figure::new("disk buffer alone: read", "ns/event", &ns_runs(&reads)),
    ];
    let json = serde_json::json!({
        "events": events,
        "runs": runs,
        "bytes_per_event": per_event,
        "memory_seconds": memory,
        "disk_seconds": disk,
        "alone_write_seconds": writes,
        "alone_read_seconds": reads,
        "disk_events_per_second_median": eps(d),
        "disk_mb_per_second_median": mbps(d),
        "fsync": "per batch write(2); fdatasync every 1s and at segment end",
    });
    common::write_report(&out, "buffer", &table, &figures, json);
}
