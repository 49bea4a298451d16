//! The kernel check of `memory` (the kernel matrix and `tests/bpf_memory.rs`
//! run it): this process touches fresh anonymous memory; the pages the
//! source counted on the whole node must agree with the kernel's own
//! `/proc/vmstat` `pgalloc_*` over the same window within 5 %.

use sonde_core::event::{Event, MetricValue};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::{Collector, MemorySourceConfig, PAGES_ALLOCATED};

/// Memory touched by the workload: 8192 pages of 4 KiB.
const TOUCHED: usize = 32 << 20;

/// The sum of `pgalloc_*` in `/proc/vmstat`: pages allocated, node-wide.
pub fn vmstat_pgalloc() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/vmstat")?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("pgalloc_"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum())
}

/// Pages allocated, summed over every process the source reported.
pub fn pages_allocated(events: &[Event]) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m) if m.name.as_str() == PAGES_ALLOCATED => match m.value {
                MetricValue::Counter { value } => Some(value as u64),
                _ => None,
            },
            _ => None,
        })
        .sum()
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let mut collector = Collector::load(&MemorySourceConfig::default(), "conformance".into(), &[])?;
    let vmstat = || CheckError::workload("read /proc/vmstat");
    let (ours_before, kernel_before) = (
        pages_allocated(&collector.collect()?),
        vmstat_pgalloc().map_err(vmstat())?,
    );
    for _ in 0..4 {
        let touched = vec![1u8; TOUCHED];
        std::hint::black_box(&touched);
    }
    let kernel = vmstat_pgalloc().map_err(vmstat())? - kernel_before;
    let ours = pages_allocated(&collector.collect()?) - ours_before;
    ensure(kernel >= (4 * TOUCHED / 4096) as u64, || {
        format!("the kernel allocated {kernel} pages, fewer than the workload touched")
    })?;
    let off = (ours as f64 - kernel as f64).abs() / kernel as f64;
    ensure(off <= 0.05, || {
        format!(
            "pages allocated: ours {ours}, /proc/vmstat pgalloc_* {kernel}: {:.1} % apart",
            off * 100.0
        )
    })?;
    Ok(format!(
        "{ours} pages allocated on the node, /proc/vmstat says {kernel} ({:.2} % apart)",
        off * 100.0
    ))
}
