//! The micro workload: system calls in a loop on one CPU, what every
//! syscall-entry or scheduler program an agent attaches slows down.

use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::{Context, Result};

/// ns per `getpgid(0)` and per 1-byte `write` to /dev/null, `calls` of
/// each, on a thread pinned to the last CPU.
pub fn measure(calls: u64) -> Result<(f64, f64)> {
    std::thread::spawn(move || -> Result<(f64, f64)> {
        pin_to_last_cpu()?;
        let started = Instant::now();
        for _ in 0..calls {
            // SAFETY: getpgid takes a pid and touches no memory.
            unsafe { libc::getpgid(0) };
        }
        let getpgid = started.elapsed().as_nanos() as f64 / calls as f64;
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        let byte = [0u8; 1];
        let started = Instant::now();
        for _ in 0..calls {
            // SAFETY: writes one byte from a live buffer to an open fd.
            unsafe { libc::write(null.as_raw_fd(), byte.as_ptr().cast(), 1) };
        }
        let write = started.elapsed().as_nanos() as f64 / calls as f64;
        Ok((getpgid, write))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the system-call loop panicked"))?
}

fn pin_to_last_cpu() -> Result<()> {
    let cpus = std::thread::available_parallelism().context("number of CPUs")?.get();
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpus - 1 < CPU_SETSIZE on any machine this runs on.
    unsafe { libc::CPU_SET(cpus - 1, &mut set) };
    // SAFETY: pins the calling thread (0) to a valid, initialised set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
    }
    Ok(())
}
