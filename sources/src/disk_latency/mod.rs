//! `source "disk_latency"`: block I/O latency, queue time, request size,
//! request and byte counts per disk and operation, measured in the kernel.
//!
//! The eBPF programs ([`bpf`]: `bpf/disk_latency.bpf.c` and its loader) time each request from
//! `block:block_rq_issue` to `block:block_rq_complete` (and from
//! `block:block_rq_insert` to issue, the time spent in the I/O scheduler)
//! and keep log2 histograms in a per-CPU map. Every `interval` the source
//! sums the CPUs and emits:
//!
//! | metric (OpenTelemetry) | Prometheus | kind | unit |
//! |---|---|---|---|
//! | `sonde.disk.request.duration` | `sonde_disk_request_duration_seconds` | histogram | s |
//! | `sonde.disk.queue.duration` | `sonde_disk_queue_duration_seconds` | histogram (once a request was queued) | s |
//! | `sonde.disk.request.size` | `sonde_disk_request_size_bytes` | histogram | By |
//! | `system.disk.operations` | `system_disk_operations_total` | counter | {operation} |
//! | `system.disk.io` | `system_disk_io_bytes_total` | counter | By |
//! | `sonde.disk.queue.depth.average` | same, `_` for `.` | gauge: time-weighted mean over the interval, by `sonde.disk.queue.stage` | {request} |
//! | `sonde.disk.queue.depth.max` | same | gauge: highest in the interval, by `sonde.disk.queue.stage` | {request} |
//! | `sonde.disk.device.in_flight` | same | gauge: `/sys/block/DEV/inflight`, by `disk.io.direction` | {request} |
//!
//! with attributes `system.device` (`vda`, `nvme0n1`: the disk, not the
//! partition), `disk.io.direction` (`read`, `write`) or, for requests
//! without a direction, `sonde.disk.operation` (`flush`, `discard`,
//! `other`), and the node name.
//!
//! **Queue depth** (per device only, no operation): `stage = "scheduler"`
//! counts requests inserted into the I/O scheduler and not yet issued
//! (disks with a scheduler only), `stage = "device"` those issued and not
//! yet completed. The kernel keeps, per device and stage, the depth and the
//! sum of entry minus exit times, so that the time integral of the depth
//! up to T is `depth × T − sum`: two atomic adds per transition, exact, no
//! lock. Each interval the source turns the integral's increase into the
//! time-weighted mean (what iostat's `aqu-sz` is, from the kernel's
//! weighted time in queue), and reads and resets the kernel's maximum
//! (two epochs, flipped at each read). Requests in flight at load are not
//! counted (their issue was not seen). These two are gauges of the last
//! interval; the device's own `inflight` file is read beside them.
//!
//! **Cumulative temporality** for the histograms and counters, deliberately: the kernel map is never reset,
//! so each point is the running total since the source started. That is
//! what Prometheus expects, needs no read-and-reset race with the kernel,
//! and a missed or dropped batch loses nothing (the next point carries it).
//! Sinks that want deltas convert.
//!
//! Requests already in flight when the programs attach, and requests whose
//! issue record was evicted, have no start time: they are counted in
//! `system.disk.operations` and bytes but not timed, and counted in
//! `sonde_ebpf_lost_events_total{reason="no_start"}`. So the latency
//! histogram's count can trail the request count by those.
//!
//! Minimum kernel 5.5 with BTF (`/sys/kernel/btf/vmlinux`); needs
//! CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
mod device;
#[cfg(test)]
mod tests;

pub use collect::{
    Collector, BYTES, DEVICE_IN_FLIGHT, QUEUE_DEPTH_AVERAGE, QUEUE_DEPTH_MAX, QUEUE_DURATION, REQUESTS,
    REQUEST_DURATION, REQUEST_SIZE, STAGE,
};
pub use config::{DiskLatencySourceConfig, DEFAULT_INTERVAL, DEFAULT_QUEUE_DEPTH, DEFAULT_QUEUE_TIME};
pub use device::{device_name, operation_key, operation_of, DEVICE, DIRECTION, OPERATION};
