//! `disk_latency`: O_DIRECT writes and reads on a loop device of its own
//! (a file in the temporary directory), counted by the source and
//! compared with the kernel's `/proc/diskstats` for that device.

use sonde_core::event::{Event, MetricValue};
use sonde_ebpf::testing::{direct_io, diskstats, LoopDevice};
use sonde_sources::disk_latency::{
    Collector, DiskLatencySourceConfig, BYTES, DEVICE, OPERATION, REQUESTS, REQUEST_DURATION,
};

use super::{ensure, Check, CheckError};

pub const CHECK: Check = Check {
    source: "disk_latency",
    run,
};

/// Small on purpose: guests run under emulation.
const WRITES: usize = 32;
const WRITE_SIZE: usize = 16 * 1024;
const READS: usize = 16;
const READ_SIZE: usize = 8 * 1024;

/// (requests, bytes, timed requests) the source reported for `op` of `device`.
fn reported(events: &[Event], device: &str, op: &str) -> (u64, u64, u64) {
    let mut out = (0, 0, 0);
    for event in events {
        let Event::Metric(metric) = event else { continue };
        let attr = |key| metric.attributes.get(key).and_then(|v| v.as_str());
        if attr(DEVICE) != Some(device) || attr(OPERATION) != Some(op) {
            continue;
        }
        match (metric.name.as_str(), &metric.value) {
            (REQUESTS, MetricValue::Counter { value }) => out.0 = *value as u64,
            (BYTES, MetricValue::Counter { value }) => out.1 = *value as u64,
            (REQUEST_DURATION, MetricValue::Histogram(h)) => out.2 = h.count,
            _ => {}
        }
    }
    out
}

fn run() -> Result<String, CheckError> {
    let dev = LoopDevice::create(4 << 20).map_err(CheckError::workload("create a loop device"))?;
    let config = DiskLatencySourceConfig {
        devices: vec![dev.name.clone()],
        ..DiskLatencySourceConfig::default()
    };
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let before = diskstats(&dev.name).map_err(CheckError::workload("read /proc/diskstats"))?;
    direct_io(&dev.path, true, WRITE_SIZE, WRITES).map_err(CheckError::workload("O_DIRECT writes"))?;
    direct_io(&dev.path, false, READ_SIZE, READS).map_err(CheckError::workload("O_DIRECT reads"))?;
    let after = diskstats(&dev.name).map_err(CheckError::workload("read /proc/diskstats"))?;
    let events = collector.collect()?;

    // The source started counting with the workload: its totals are the
    // window's, and must equal the kernel's own.
    let (writes, write_bytes, writes_timed) = reported(&events, &dev.name, "write");
    let (reads, read_bytes, reads_timed) = reported(&events, &dev.name, "read");
    let kernel_writes = after.writes - before.writes;
    let kernel_reads = after.reads - before.reads;
    ensure(kernel_writes >= WRITES as u64 && kernel_reads >= READS as u64, || {
        format!("the kernel saw {kernel_writes} writes and {kernel_reads} reads, fewer than the workload's")
    })?;
    ensure(writes == kernel_writes && reads == kernel_reads, || {
        format!("requests: writes {writes} reads {reads}, /proc/diskstats {kernel_writes} {kernel_reads}")
    })?;
    let (kernel_write_bytes, kernel_read_bytes) = (
        (after.write_sectors - before.write_sectors) * 512,
        (after.read_sectors - before.read_sectors) * 512,
    );
    ensure(
        write_bytes == kernel_write_bytes && read_bytes == kernel_read_bytes,
        || {
            format!(
            "bytes: written {write_bytes} read {read_bytes}, /proc/diskstats {kernel_write_bytes} {kernel_read_bytes}"
        )
        },
    )?;
    // Issue and completion were both seen for every request: all timed.
    ensure(writes_timed == writes && reads_timed == reads, || {
        format!("timed: {writes_timed} of {writes} writes, {reads_timed} of {reads} reads")
    })?;
    Ok(format!(
        "{} writes ({write_bytes} B) and {reads} reads ({read_bytes} B), all timed, equal to /proc/diskstats",
        writes
    ))
}
