//! Unit tests of the conversion; the kernel side is tested for real in
//! `tests/bpf_memory.rs`.

use std::sync::Arc;

use sonde_core::event::{Attributes, Event, MetricValue, Timestamp};
use sonde_ebpf::slot::log2_bounds;

use super::bpf::{MemPageCounts, MemPageKey, MemProc, MEM_SIZE_MIN_SHIFT, SIZE_SLOTS};
use super::collect::{page_metrics, proc_metrics};
use super::*;

#[test]
fn pages_become_counters_by_order_and_in_all() {
    let mut counts = MemPageCounts::default();
    counts.allocs[0] = 5;
    counts.allocs[3] = 1;
    let events = page_metrics(&MemPageKey::default(), &counts, &"n".into(), Timestamp::from_nanos(1));
    let value = |name: &str| {
        events.iter().find_map(|e| match e {
            Event::Metric(m) if m.name.as_str() == name => Some(m.value.clone()),
            _ => None,
        })
    };
    assert_eq!(value(PAGES_ALLOCATED), Some(MetricValue::Counter { value: 13.0 }));
    assert_eq!(events.len(), 3, "two orders and the total; no empty series");
}

#[test]
fn sizes_become_a_histogram() {
    let mut proc = MemProc {
        allocs: 2,
        alloc_bytes: 4100,
        ..MemProc::default()
    };
    proc.size[0] = 1;
    proc.size[9] = 1;
    let bounds: Arc<[f64]> = log2_bounds(MEM_SIZE_MIN_SHIFT, SIZE_SLOTS, 1.0).into();
    let events = proc_metrics(&proc, &Attributes::new(), &bounds, Timestamp::from_nanos(1));
    let Event::Metric(m) = &events[2] else {
        panic!("a metric")
    };
    let MetricValue::Histogram(h) = &m.value else {
        panic!("a histogram")
    };
    assert_eq!((h.count, h.sum), (2, 4100.0));
    assert_eq!(h.bounds[9], 4096.0);
}

#[test]
fn config_defaults_and_rejects_unknown_options() {
    let config: MemorySourceConfig = serde_json::from_str("{}").unwrap();
    assert!(config.page_allocations && config.pids.is_empty());
    assert_eq!(config.top_stacks, DEFAULT_TOP_STACKS);
    assert!(serde_json::from_str::<MemorySourceConfig>(r#"{"pid": [1]}"#).is_err());
}
