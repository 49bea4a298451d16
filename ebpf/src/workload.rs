//! Workloads for the sources' kernel checks that more than one source
//! uses: a busy loop in a function of known name (samples of `profile`,
//! on-CPU time of `energy`).

use std::time::Duration;

/// The function the samples must land in.
pub const BUSY_FN: &str = "sonde_conformance_busy";
/// CPU time to burn: long enough for ~100 samples at the default 99 Hz.
pub const BUSY: Duration = Duration::from_millis(1200);

/// Spins until `BUSY` of this thread's CPU time passed; returns it, in ns.
/// The loop is assembly so that every sampled instruction is in this
/// function whatever the build profile (a debug build calls out even for
/// `wrapping_add`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sonde_conformance_busy() -> u64 {
    let start = thread_cpu_ns();
    loop {
        spin(5_000_000);
        let spent = thread_cpu_ns().saturating_sub(start);
        if spent >= BUSY.as_nanos() as u64 {
            return spent;
        }
    }
}

/// Counts `n` down to zero, in registers.
#[inline(always)]
fn spin(n: u64) {
    // SAFETY: a register-only countdown loop: no memory, no stack, no flags
    // anyone relies on afterwards.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("2:", "dec {n}", "jnz 2b", n = inout(reg) n => _, options(nomem, nostack));
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("2:", "subs {n}, {n}, #1", "b.ne 2b", n = inout(reg) n => _, options(nomem, nostack));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::hint::black_box(n);
}

/// This thread's time on CPU, as the scheduler counts it.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
