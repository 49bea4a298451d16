//! The kernel check of `disk_latency`, run by the kernel matrix
//! (`sonde conformance`) and by `tests/bpf_disk_latency.rs`: O_DIRECT
//! writes and reads on a loop device of its own (a file in the temporary
//! directory), counted by the source and compared with the kernel's
//! `/proc/diskstats` for that device, exactly.

use sonde_core::event::{Event, MetricValue};
use sonde_ebpf::conformance::{ensure, CheckError};
use sonde_ebpf::testing::{direct_io, diskstats, LoopDevice};

use super::bpf::DISK_STAT_READ_FAILED;
use super::{
    operation_of, Collector, DiskLatencySourceConfig, BYTES, DEVICE, REQUESTS, REQUEST_DURATION, REQUEST_SIZE,
};

/// Small on purpose: guests run under emulation.
const WRITES: usize = 32;
const WRITE_SIZE: usize = 16 * 1024;
const READS: usize = 16;
const READ_SIZE: usize = 8 * 1024;

/// What the source reported for one operation of the device.
#[derive(Debug, Default)]
struct Reported {
    requests: u64,
    bytes: u64,
    /// The latency histogram's count (timed requests)…
    timed: u64,
    /// …and the sum of its buckets, which must agree.
    latency_buckets: u64,
    /// Requests per size bucket, with the buckets' upper bounds.
    sizes: Vec<u64>,
    size_bounds: Vec<f64>,
}

impl Reported {
    /// Requests in the size bucket whose upper bound is `size` bytes.
    fn of_size(&self, size: usize) -> u64 {
        let slot = self.size_bounds.iter().position(|b| *b == size as f64);
        slot.and_then(|s| self.sizes.get(s)).copied().unwrap_or(0)
    }
}

fn reported(events: &[Event], device: &str, op: &str) -> Reported {
    let mut out = Reported::default();
    for event in events {
        let Event::Metric(metric) = event else { continue };
        let attr = |key| metric.attributes.get(key).and_then(|v| v.as_str());
        if attr(DEVICE) != Some(device) || operation_of(&metric.attributes) != Some(op) {
            continue;
        }
        match (metric.name.as_str(), &metric.value) {
            (REQUESTS, MetricValue::Counter { value }) => out.requests = *value as u64,
            (BYTES, MetricValue::Counter { value }) => out.bytes = *value as u64,
            (REQUEST_DURATION, MetricValue::Histogram(h)) => {
                out.timed = h.count;
                out.latency_buckets = h.counts.iter().sum();
            }
            (REQUEST_SIZE, MetricValue::Histogram(h)) => {
                out.sizes = h.counts.clone();
                out.size_bounds = h.bounds.to_vec();
            }
            _ => {}
        }
    }
    out
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let dev = LoopDevice::create(4 << 20).map_err(CheckError::workload("create a loop device"))?;
    let config = DiskLatencySourceConfig {
        devices: vec![dev.name.clone()],
        ..DiskLatencySourceConfig::default()
    };
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let before = diskstats(&dev.name).map_err(CheckError::workload("read /proc/diskstats"))?;
    direct_io(&dev.path, true, WRITE_SIZE, WRITES).map_err(CheckError::workload("O_DIRECT writes"))?;
    direct_io(&dev.path, false, READ_SIZE, READS).map_err(CheckError::workload("O_DIRECT reads"))?;
    // The kernel's counters can trail the last completions by a moment
    // (seen once on 6.1 under qemu): wait for them, up to 2 s, before
    // reading ours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let after = loop {
        let now = diskstats(&dev.name).map_err(CheckError::workload("read /proc/diskstats"))?;
        let done = now.writes - before.writes >= WRITES as u64 && now.reads - before.reads >= READS as u64;
        if done || std::time::Instant::now() >= deadline {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let events = collector.collect()?;

    // The source started counting with the workload: its totals are the
    // window's, and must equal the kernel's own.
    let writes = reported(&events, &dev.name, "write");
    let reads = reported(&events, &dev.name, "read");
    let kernel_writes = after.writes - before.writes;
    let kernel_reads = after.reads - before.reads;
    ensure(kernel_writes >= WRITES as u64 && kernel_reads >= READS as u64, || {
        format!("the kernel saw {kernel_writes} writes and {kernel_reads} reads, fewer than the workload's")
    })?;
    ensure(
        writes.requests == kernel_writes && reads.requests == kernel_reads,
        || {
            format!(
                "requests: writes {} reads {}, /proc/diskstats {kernel_writes} {kernel_reads}",
                writes.requests, reads.requests
            )
        },
    )?;
    let (kernel_write_bytes, kernel_read_bytes) = (
        (after.write_sectors - before.write_sectors) * 512,
        (after.read_sectors - before.read_sectors) * 512,
    );
    ensure(
        writes.bytes == kernel_write_bytes && reads.bytes == kernel_read_bytes,
        || {
            format!(
                "bytes: written {} read {}, /proc/diskstats {kernel_write_bytes} {kernel_read_bytes}",
                writes.bytes, reads.bytes
            )
        },
    )?;
    for (op, seen) in [("write", &writes), ("read", &reads)] {
        // Issue and completion were both seen for every request: all timed,
        // and the histogram's buckets add up to its count.
        ensure(
            seen.timed == seen.requests && seen.latency_buckets == seen.timed,
            || {
                format!(
                    "{op}s timed: count {} buckets {} of {} requests",
                    seen.timed, seen.latency_buckets, seen.requests
                )
            },
        )?;
        ensure(seen.sizes.iter().sum::<u64>() == seen.requests, || {
            format!("{op} size buckets hold {:?} for {} requests", seen.sizes, seen.requests)
        })?;
    }
    // Each request lands in the size bucket whose upper bound is its size.
    ensure(
        writes.of_size(WRITE_SIZE) == WRITES as u64 && reads.of_size(READ_SIZE) == READS as u64,
        || format!("size buckets: writes {:?}, reads {:?}", writes.sizes, reads.sizes),
    )?;
    // The depth's time integral counts each request from issue to
    // completion, the latency sum the same spans: with nothing in flight
    // now, the two are equal to the nanosecond.
    let latency_sum_ns = collector
        .programs()
        .read()?
        .iter()
        .filter(|(key, _)| Some(key.dev) == dev_t(&dev.name))
        .map(|(_, hist)| hist.latency_sum_ns)
        .sum::<u64>();
    let (now, depths) = collector.programs().depths()?;
    let depth = depths
        .iter()
        .find(|(d, _)| Some(*d) == dev_t(&dev.name))
        .map(|(_, depth)| *depth)
        .unwrap_or_default();
    let (_, integral) = depth.integral_ns(now);
    ensure(depth.issued == 0 && integral == i128::from(latency_sum_ns), || {
        format!(
            "queue depth: {} in flight after the workload, integral {integral} ns, latency sum {latency_sum_ns} ns",
            depth.issued
        )
    })?;
    let read_failed = collector.programs().stats()?.get(DISK_STAT_READ_FAILED);
    ensure(read_failed == 0, || format!("{read_failed} failed reads of `rwbs`"))?;
    Ok(format!(
        "{} writes ({} B) and {} reads ({} B), all timed and sized, equal to /proc/diskstats; \
         queue depth integral equal to the latency sum",
        writes.requests, writes.bytes, reads.requests, reads.bytes
    ))
}

/// The kernel dev_t (`major << 20 | minor`) of block device `name`.
fn dev_t(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/sys/block/{name}/dev")).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some(major.parse::<u32>().ok()? << 20 | minor.parse::<u32>().ok()?)
}
