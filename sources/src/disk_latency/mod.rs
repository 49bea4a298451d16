//! `source "disk_latency"`: block I/O latency, queue time, request size,
//! request and byte counts per disk and operation, measured in the kernel.
//!
//! The eBPF programs ([`bpf`]: `bpf/disk_latency.bpf.c` and its loader) time each request from
//! `block:block_rq_issue` to `block:block_rq_complete` (and from
//! `block:block_rq_insert` to issue, the time spent in the I/O scheduler)
//! and keep log2 histograms in a per-CPU map. Every `interval` the source
//! sums the CPUs and emits:
//!
//! | metric | kind | unit |
//! |---|---|---|
//! | `sonde_disk_request_duration_seconds` | histogram | s |
//! | `sonde_disk_queue_duration_seconds` | histogram (once a request was queued) | s |
//! | `sonde_disk_request_size_bytes` | histogram | By |
//! | `sonde_disk_requests_total` | counter | requests |
//! | `sonde_disk_bytes_total` | counter | By |
//!
//! with attributes `device` (`vda`, `nvme0n1`: the disk, not the
//! partition), `operation` (`read`, `write`, `flush`, `discard`, `other`)
//! and the node name.
//!
//! **Cumulative temporality**, deliberately: the kernel map is never reset,
//! so each point is the running total since the source started. That is
//! what Prometheus expects, needs no read-and-reset race with the kernel,
//! and a missed or dropped batch loses nothing (the next point carries it).
//! Sinks that want deltas convert.
//!
//! Requests already in flight when the programs attach, and requests whose
//! issue record was evicted, have no start time: they are counted in
//! `sonde_disk_requests_total` and bytes but not timed, and counted in
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

pub use collect::{Collector, BYTES, QUEUE_DURATION, REQUESTS, REQUEST_DURATION, REQUEST_SIZE};
pub use config::{DiskLatencySourceConfig, DEFAULT_INTERVAL, DEFAULT_QUEUE_TIME};
pub use device::{device_name, DEVICE, OPERATION};
