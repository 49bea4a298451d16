//! One round: read the kernel maps, turn each disk and operation into
//! metric events.

use std::collections::HashSet;
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
use super::device::{DeviceNames, DEVICE, OPERATION};

/// Histogram of request latency, issue → complete.
pub const REQUEST_DURATION: &str = "sonde_disk_request_duration_seconds";
/// Histogram of queue time, insert → issue.
pub const QUEUE_DURATION: &str = "sonde_disk_queue_duration_seconds";
/// Histogram of completed bytes per request.
pub const REQUEST_SIZE: &str = "sonde_disk_request_size_bytes";
/// Counter of completed requests.
pub const REQUESTS: &str = "sonde_disk_requests_total";
/// Counter of completed bytes.
pub const BYTES: &str = "sonde_disk_bytes_total";

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
}

impl Collector {
    /// Loads and attaches the programs. `labels` identify the component in
    /// the `sonde_ebpf_*` internal metrics.
    pub fn load(config: &DiskLatencySourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let programs = DiskLatency::load(Options {
            queue_time: config.queue_time,
        })?;
        Ok(Collector {
            programs,
            names: DeviceNames::default(),
            devices: (!config.devices.is_empty()).then(|| config.devices.iter().cloned().collect()),
            node,
            bounds: Bounds::new(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_HISTS),
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
        Ok(events)
    }

    /// The loaded programs (for their run-time statistics and loss counters).
    pub fn programs(&self) -> &DiskLatency {
        &self.programs
    }
}

fn attributes(key: &DiskKey, device: SharedStr, node: &SharedStr) -> Attributes {
    Attributes::new()
        .with(DEVICE, device)
        .with(OPERATION, SharedStr::from(key.operation().as_str()))
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
            .with_unit("{request}"),
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
