//! One round: read the kernel maps, turn each disk and operation into
//! metric events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use metrics::Label;
use sonde_core::event::{keys, Attributes, Event, Histogram, Metric, SharedStr, Temporality, Timestamp};
use sonde_ebpf::slot::log2_bounds;
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{
    DiskHist, DiskKey, DiskLatency, Options, DISK_LATENCY_MIN_SHIFT, DISK_SIZE_MIN_SHIFT, LATENCY_SLOTS, MAP_HISTS,
    OBJECT, SIZE_SLOTS, STATS,
};

use super::config::DiskLatencySourceConfig;
use super::device::{operation_key, DeviceNames, DEVICE};

/// Histogram of request latency, issue → complete.
pub const REQUEST_DURATION: &str = "sonde.disk.request.duration";
/// Histogram of queue time, insert → issue.
pub const QUEUE_DURATION: &str = "sonde.disk.queue.duration";
/// Histogram of completed bytes per request.
pub const REQUEST_SIZE: &str = "sonde.disk.request.size";
/// Counter of completed requests.
pub const REQUESTS: &str = "system.disk.operations";
/// Counter of completed bytes.
pub const BYTES: &str = "system.disk.io";
/// Gauge: time-weighted mean queue depth over the last interval, by `stage`.
pub const QUEUE_DEPTH_AVERAGE: &str = "sonde.disk.queue.depth.average";
/// Gauge: highest queue depth in the last interval, by `stage`.
pub const QUEUE_DEPTH_MAX: &str = "sonde.disk.queue.depth.max";
/// Gauge: the device's own count of requests in flight
/// (`/sys/block/DEV/inflight`), by `operation` (`read`, `write`).
pub const DEVICE_IN_FLIGHT: &str = "sonde.disk.device.in_flight";
/// Attribute of the queue depth: `scheduler` (inserted into the I/O
/// scheduler, not issued) or `device` (issued, not completed).
pub const STAGE: &str = "sonde.disk.queue.stage";

const NS_PER_S: f64 = 1e9;

/// Bucket bounds shared by every point (an `Arc` clone per point).
#[derive(Clone, Debug)]
pub(super) struct Bounds {
    pub latency: Arc<[f64]>,
    pub size: Arc<[f64]>,
}

impl Bounds {
    pub fn new() -> Self {
        Bounds {
            latency: log2_bounds(DISK_LATENCY_MIN_SHIFT, LATENCY_SLOTS, 1.0 / NS_PER_S).into(),
            size: log2_bounds(DISK_SIZE_MIN_SHIFT, SIZE_SLOTS, 1.0).into(),
        }
    }
}

/// The loaded programs plus what turns their maps into events.
#[derive(Debug)]
pub struct Collector {
    programs: DiskLatency,
    names: DeviceNames,
    devices: Option<HashSet<String>>,
    node: SharedStr,
    bounds: Bounds,
    telemetry: LossCounters,
    depth: Option<DepthState>,
}

/// What the depth of each device was at the previous read.
#[derive(Debug, Default)]
struct DepthState {
    /// The programs' clock at the previous read (at load, first).
    read_ns: u64,
    /// Per device: the integrals and depths then.
    previous: HashMap<u32, DepthPoint>,
    /// Devices that ever queued in a scheduler (the `scheduler` stage is
    /// reported for them only).
    scheduled: HashSet<u32>,
}

#[derive(Clone, Copy, Debug, Default)]
struct DepthPoint {
    queued_integral: i128,
    issued_integral: i128,
    queued: i64,
    issued: i64,
}

impl Collector {
    /// Loads and attaches the programs. `labels` identify the component in
    /// the `sonde_ebpf_*` internal metrics.
    pub fn load(config: &DiskLatencySourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let programs = DiskLatency::load(Options {
            queue_time: config.queue_time,
            queue_depth: config.queue_depth,
        })?;
        let depth = config.queue_depth.then(|| DepthState {
            read_ns: sonde_ebpf::loader::monotonic_ns(),
            ..DepthState::default()
        });
        Ok(Collector {
            programs,
            names: DeviceNames::default(),
            devices: (!config.devices.is_empty()).then(|| config.devices.iter().cloned().collect()),
            node,
            bounds: Bounds::new(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_HISTS),
            depth,
        })
    }

    /// The running totals of every disk and operation, as metric events
    /// stamped now; also exports what the programs lost.
    pub fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read disk_latency loss counters");
            }
        }
        let hists = self.programs.read().inspect_err(|_| self.telemetry.map_read_failed())?;
        let now = Timestamp::now();
        let mut events = Vec::with_capacity(hists.len() * 5);
        for (key, hist) in &hists {
            let device = self.names.name(key.dev, key.major(), key.minor());
            if self.devices.as_ref().is_some_and(|d| !d.contains(device.as_str())) {
                continue;
            }
            let attributes = attributes(key, device, &self.node);
            events.extend(
                to_metrics(hist, attributes, &self.bounds, now)
                    .into_iter()
                    .map(Event::from),
            );
        }
        events.extend(self.depth_metrics(now)?);
        Ok(events)
    }

    /// Per device: the mean and highest depth of each stage since the
    /// previous read, and the device's own in-flight count now.
    fn depth_metrics(&mut self, now: Timestamp) -> Result<Vec<Event>, ReadError> {
        let Some(state) = self.depth.as_mut() else {
            return Ok(Vec::new());
        };
        let read = self
            .programs
            .read_depth()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        let elapsed = read.now_ns.saturating_sub(state.read_ns) as f64;
        state.read_ns = read.now_ns;
        let mut events = Vec::new();
        for (dev, depth) in &read.depths {
            let (queued_integral, issued_integral) = depth.integral_ns(read.now_ns);
            let point = DepthPoint {
                queued_integral,
                issued_integral,
                queued: depth.queued,
                issued: depth.issued,
            };
            // A device first seen now had no request before the last read.
            let before = state.previous.insert(*dev, point).unwrap_or_default();
            let key = DiskKey { dev: *dev, op: 0 };
            let device = self.names.name(*dev, key.major(), key.minor());
            if elapsed <= 0.0 || self.devices.as_ref().is_some_and(|d| !d.contains(device.as_str())) {
                continue;
            }
            let max = read.max.get(dev).copied().unwrap_or_default();
            let stages = [
                (
                    "scheduler",
                    (queued_integral - before.queued_integral) as f64 / elapsed,
                    max.queued.max(before.queued).max(depth.queued),
                ),
                (
                    "device",
                    (issued_integral - before.issued_integral) as f64 / elapsed,
                    max.issued.max(before.issued).max(depth.issued),
                ),
            ];
            if stages[0].1 > 0.0 || stages[0].2 > 0 {
                state.scheduled.insert(*dev);
            }
            let attributes = Attributes::new()
                .with(DEVICE, device.clone())
                .with(keys::node(), self.node.clone());
            for (stage, average, highest) in stages {
                if stage == "scheduler" && !state.scheduled.contains(dev) {
                    continue;
                }
                let attributes = attributes.clone().with(STAGE, stage);
                events.push(Event::from(
                    Metric::gauge(QUEUE_DEPTH_AVERAGE, average.max(0.0))
                        .with_description("Time-weighted mean of the block requests in a stage over the last interval.")
                        .with_unit("{request}")
                        .with_attributes(attributes.clone())
                        .with_timestamp(now),
                ));
                events.push(Event::from(
                    Metric::gauge(QUEUE_DEPTH_MAX, highest.max(0) as f64)
                        .with_description("Highest number of block requests in a stage during the last interval.")
                        .with_unit("{request}")
                        .with_attributes(attributes)
                        .with_timestamp(now),
                ));
            }
            if let Some((reads, writes)) = device_in_flight(&device) {
                for (operation, n) in [("read", reads), ("write", writes)] {
                    events.push(Event::from(
                        Metric::gauge(DEVICE_IN_FLIGHT, n as f64)
                            .with_description("Requests in flight as the device counts them (/sys/block/DEV/inflight).")
                            .with_unit("{request}")
                            .with_attributes(attributes.clone().with(operation_key(operation), operation))
                            .with_timestamp(now),
                    ));
                }
            }
        }
        Ok(events)
    }

    /// The loaded programs (for their run-time statistics and loss counters).
    pub fn programs(&self) -> &DiskLatency {
        &self.programs
    }
}

/// `/sys/block/DEV/inflight`: reads and writes in flight, as the block
/// layer counts them now.
pub(super) fn device_in_flight(device: &str) -> Option<(u64, u64)> {
    parse_in_flight(&std::fs::read_to_string(format!("/sys/block/{device}/inflight")).ok()?)
}

pub(super) fn parse_in_flight(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

fn attributes(key: &DiskKey, device: SharedStr, node: &SharedStr) -> Attributes {
    Attributes::new()
        .with(DEVICE, device)
        .with(
            operation_key(key.operation().as_str()),
            SharedStr::from(key.operation().as_str()),
        )
        .with(keys::node(), node.clone())
}

/// The metrics of one disk and operation.
pub(super) fn to_metrics(hist: &DiskHist, attributes: Attributes, bounds: &Bounds, now: Timestamp) -> Vec<Metric> {
    let point = |metric: Metric| metric.with_attributes(attributes.clone()).with_timestamp(now);
    let histogram = |bounds: &Arc<[f64]>, counts: &[u64], sum: f64| Histogram {
        bounds: Arc::clone(bounds),
        counts: counts.to_vec(),
        sum,
        count: counts.iter().sum(),
    };
    let mut out = vec![
        point(Metric::counter(REQUESTS, hist.requests as f64))
            .with_description("Block requests completed.")
            .with_unit("{operation}"),
        point(Metric::counter(BYTES, hist.bytes as f64))
            .with_description("Bytes of completed block requests.")
            .with_unit("By"),
        point(Metric::histogram(
            REQUEST_DURATION,
            histogram(&bounds.latency, &hist.latency, hist.latency_sum_ns as f64 / NS_PER_S),
            Temporality::Cumulative,
        ))
        .with_description("Block request latency, from issue to the device to completion.")
        .with_unit("s"),
        point(Metric::histogram(
            REQUEST_SIZE,
            histogram(&bounds.size, &hist.size, hist.bytes as f64),
            Temporality::Cumulative,
        ))
        .with_description("Bytes per completed block request.")
        .with_unit("By"),
    ];
    // Devices without an I/O scheduler never queue: no empty series for them.
    if hist.queued() > 0 {
        out.push(
            point(Metric::histogram(
                QUEUE_DURATION,
                histogram(&bounds.latency, &hist.queue, hist.queue_sum_ns as f64 / NS_PER_S),
                Temporality::Cumulative,
            ))
            .with_description("Time block requests waited in the I/O scheduler before issue.")
            .with_unit("s"),
        );
    }
    out
}

impl sonde_core::polling::Collect for Collector {
    type Error = ReadError;

    fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        Collector::collect(self)
    }
}
