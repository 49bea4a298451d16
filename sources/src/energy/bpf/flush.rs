//! Forcing a context switch on every CPU, so that the `energy` program
//! accounts the slices running now instead of whenever their CPUs next
//! switch (a busy process on an idle CPU may not switch for seconds).
//!
//! A thread of ours asks to run on one CPU after another
//! (`sched_setaffinity`): the call returns only once the thread runs on that
//! CPU, which took a switch there. CPUs outside our cpuset are skipped; their
//! slices are accounted at their next switch, one interval late at worst.

use std::mem;

/// Moves a fresh thread onto each CPU this process may run on, in turn.
/// Costs one or two context switches per CPU; on a CPU busy with a
/// CPU-bound task the scheduler may make it wait up to a time slice
/// (a few ms).
pub fn flush_cpus() {
    // A thread of its own, so the caller's affinity is left alone.
    let _ = std::thread::Builder::new()
        .name("sonde-flush".into())
        .spawn(|| {
            let Some(allowed) = affinity() else { return };
            for cpu in 0..libc::CPU_SETSIZE as usize {
                // SAFETY: CPU_ISSET only reads the set, and cpu < CPU_SETSIZE.
                if unsafe { libc::CPU_ISSET(cpu, &allowed) } {
                    pin(cpu);
                }
            }
        })
        .map(|handle| handle.join());
}

/// The CPUs this thread may run on.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data, all-zero is a valid empty set; the
    // kernel writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        (libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

/// Runs this thread on `cpu` (returns once it does, or at once if the
/// kernel refuses).
fn pin(cpu: usize) {
    // SAFETY: as in `affinity`; CPU_SET writes inside the set, cpu <
    // CPU_SETSIZE; sched_setaffinity only reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
