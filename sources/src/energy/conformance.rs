//! The kernel check of `energy` (the kernel matrix and
//! `tests/bpf_energy.rs` run it): a thread of this process spins for about a second of CPU;
//! the process' on-CPU time that the `sched_switch` program accounts must
//! grow by what the kernel's own accounting says (getrusage: every thread
//! of the process, its scheduler clock), within ± 20 % (a loose bound:
//! emulated guests have coarse, jumpy clocks; on real hardware the two
//! agree within 1 %).

use sonde_ebpf::conformance::{ensure, CheckError};
use sonde_ebpf::workload::sonde_conformance_busy;

use super::bpf::Energy;

/// On-CPU ns of this process in the map (all cgroups it ran in).
fn ours(energy: &Energy) -> Result<u64, CheckError> {
    energy.flush();
    let tgid = std::process::id();
    Ok(energy
        .read()?
        .iter()
        .filter(|t| t.key.tgid == tgid)
        .map(|t| t.on_cpu_ns)
        .sum())
}

/// User + system time of every thread of this process, exited ones
/// included, ns.
fn rusage_ns() -> u64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let energy = Energy::load()?;
    let (bpf_before, kernel_before) = (ours(&energy)?, rusage_ns());
    let busy_ns = std::thread::spawn(|| sonde_conformance_busy())
        .join()
        .map_err(|_| CheckError::Implausible("the busy thread panicked".to_string()))?;
    let (bpf_after, kernel_after) = (ours(&energy)?, rusage_ns());
    let (bpf, kernel) = (bpf_after - bpf_before, kernel_after - kernel_before);
    ensure(
        (0.8 * kernel as f64..=1.2 * kernel as f64).contains(&(bpf as f64)),
        || format!("{bpf} ns on CPU accounted by sched_switch, the kernel says {kernel} ns (± 20 %)"),
    )?;
    Ok(format!(
        "{:.3} s on CPU accounted, the kernel says {:.3} s (busy thread {:.3} s)",
        bpf as f64 / 1e9,
        kernel as f64 / 1e9,
        busy_ns as f64 / 1e9
    ))
}
