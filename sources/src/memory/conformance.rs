//! The kernel check of `memory` (the kernel matrix and `tests/bpf_memory.rs`
//! run it): this process touches fresh anonymous memory; the pages the
//! source counted on the whole node must agree with the kernel's own
//! `/proc/vmstat` `pgalloc_*` over the same window within 5 %, and the
//! minor page faults it counted for this process with the process' own
//! count (`getrusage`) within 1 %.

use sonde_core::event::{Event, MetricValue};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::pressure::{FAULT_TYPE, PAGE_FAULTS};
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

/// Minor page faults the source counted for this process.
pub fn own_minor_faults(events: &[Event]) -> u64 {
    let pid = i64::from(std::process::id());
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m)
                if m.name.as_str() == PAGE_FAULTS
                    && m.attributes.get(sonde_core::event::keys::PID).and_then(|v| v.as_int()) == Some(pid)
                    && m.attributes.get(FAULT_TYPE).and_then(|v| v.as_str()) == Some("minor") =>
            {
                match m.value {
                    MetricValue::Counter { value } => Some(value as u64),
                    _ => None,
                }
            }
            _ => None,
        })
        .sum()
}

/// This process' minor faults, all threads (`getrusage`).
fn rusage_minor_faults() -> u64 {
    // SAFETY: a zeroed rusage is valid; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    u64::try_from(usage.ru_minflt).unwrap_or(0)
}

/// Maps `TOUCHED` bytes of anonymous memory without transparent huge
/// pages (guests often have them on: one fault per 2 MiB), writes a byte
/// in each 4 KiB page, and unmaps it.
fn touch_small_pages() -> std::io::Result<()> {
    // SAFETY: a fresh private anonymous mapping, written inside its length
    // and unmapped before return; no Rust reference to it escapes.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            TOUCHED,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        libc::madvise(base, TOUCHED, libc::MADV_NOHUGEPAGE);
        for offset in (0..TOUCHED).step_by(4096) {
            std::ptr::write_volatile(base.cast::<u8>().add(offset), 1);
        }
        libc::munmap(base, TOUCHED);
    }
    Ok(())
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let mut collector = Collector::load(&MemorySourceConfig::default(), "conformance".into(), &[])?;
    let vmstat = || CheckError::workload("read /proc/vmstat");
    let first = collector.collect()?;
    let (ours_before, kernel_before) = (pages_allocated(&first), vmstat_pgalloc().map_err(vmstat())?);
    let (faults_before, rusage_before) = (own_minor_faults(&first), rusage_minor_faults());
    for _ in 0..4 {
        touch_small_pages().map_err(CheckError::workload("map and touch memory"))?;
    }
    let kernel = vmstat_pgalloc().map_err(vmstat())? - kernel_before;
    let rusage = rusage_minor_faults() - rusage_before;
    let second = collector.collect()?;
    let ours = pages_allocated(&second) - ours_before;
    let faults = own_minor_faults(&second) - faults_before;
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
    ensure(rusage >= (4 * TOUCHED / 4096) as u64, || {
        format!("this process had {rusage} minor faults, fewer than the pages it touched")
    })?;
    // Faults taken for this process through get_user_pages (no registers,
    // no perf event) are in getrusage only: a handful, never 1 %.
    let faults_off = (faults as f64 - rusage as f64).abs() / rusage as f64;
    ensure(faults_off <= 0.01, || {
        format!("minor faults of this process: ours {faults}, getrusage {rusage}")
    })?;
    Ok(format!(
        "{ours} pages allocated on the node, /proc/vmstat says {kernel} ({:.2} % apart); \
         {faults} minor faults here, getrusage says {rusage}",
        off * 100.0
    ))
}
