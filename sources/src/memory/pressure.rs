//! Page faults per process and reclaim stalls per cgroup, as metrics.

use std::sync::Arc;

use sonde_core::event::{keys, Attributes, Event, Histogram, Metric, SharedStr, Temporality, Timestamp};

use super::bpf::{
    comm_str, MemFaultCounts, MemFaultKey, MemReclaimHist, MemReclaimKey, MEM_FAULT_MAJOR, MEM_FAULT_MINOR,
    MEM_RECLAIM_DIRECT,
};

/// Counter of page faults, by `process.paging.fault_type`.
pub const PAGE_FAULTS: &str = "process.paging.faults";
/// Counter of page faults by user stack (the `top_stacks` per process),
/// when stacks are asked: a breakdown of [`PAGE_FAULTS`], not in its sum.
pub const FAULTS_BY_STACK: &str = "sonde.memory.page_faults_by_stack";
/// Attribute: `minor` or `major` (the OpenTelemetry process metrics' name).
pub const FAULT_TYPE: &str = "process.paging.fault_type";
/// Histogram of reclaim stalls, seconds, by `sonde.memory.reclaim`.
pub const RECLAIM_STALL: &str = "sonde.memory.reclaim_stall";
/// Attribute: `direct` (the page allocator ran short) or `memcg` (a
/// memory cgroup reached its limit).
pub const RECLAIM_KIND: &str = "sonde.memory.reclaim";

/// The fault counters of one process (or one of its stacks, when
/// `stack` is given: the folded stack and the faulting function, and
/// `name` is [`FAULTS_BY_STACK`]).
pub fn fault_metrics(
    name: &'static str,
    key: &MemFaultKey,
    counts: &MemFaultCounts,
    stack: Option<(String, String)>,
    node: &SharedStr,
    now: Timestamp,
) -> Vec<Event> {
    let mut attributes = Attributes::new().with(keys::PID, key.pid);
    let comm = comm_str(&key.comm);
    if !comm.is_empty() {
        attributes.insert(keys::COMM, comm);
    }
    if key.cgroup_id != 0 {
        attributes.insert(keys::CGROUP_ID, key.cgroup_id);
    }
    if let Some((folded, function)) = stack {
        attributes.insert(super::STACK, folded);
        attributes.insert(super::FUNCTION, function);
    }
    attributes.insert(keys::node(), node.clone());
    [(MEM_FAULT_MINOR, "minor"), (MEM_FAULT_MAJOR, "major")]
        .into_iter()
        .map(|(kind, fault_type)| {
            Event::from(
                Metric::counter(name, counts.faults[kind as usize] as f64)
                    .with_description("Page faults of a process: minor (no I/O) and major (read from disk).")
                    .with_unit("{fault}")
                    .with_attributes(attributes.clone().with(FAULT_TYPE, fault_type))
                    .with_timestamp(now),
            )
        })
        .collect()
}

/// The reclaim-stall histogram of one cgroup and kind.
pub fn reclaim_metric(
    key: &MemReclaimKey,
    hist: &MemReclaimHist,
    bounds: &Arc<[f64]>,
    node: &SharedStr,
    now: Timestamp,
) -> Event {
    let mut attributes = Attributes::new().with(
        RECLAIM_KIND,
        if key.kind == MEM_RECLAIM_DIRECT {
            "direct"
        } else {
            "memcg"
        },
    );
    if key.cgroup_id != 0 {
        attributes.insert(keys::CGROUP_ID, key.cgroup_id);
    }
    attributes.insert(keys::node(), node.clone());
    Event::from(
        Metric::histogram(
            RECLAIM_STALL,
            Histogram {
                bounds: Arc::clone(bounds),
                counts: hist.slots.to_vec(),
                sum: hist.sum_ns as f64 / 1e9,
                count: hist.slots.iter().sum(),
            },
            Temporality::Cumulative,
        )
        .with_description("Time tasks of a cgroup spent stalled reclaiming memory.")
        .with_unit("s")
        .with_attributes(attributes)
        .with_timestamp(now),
    )
}
