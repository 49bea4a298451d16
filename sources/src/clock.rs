//! The kernel's clock and the wall clock: eBPF programs stamp records with
//! `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`), events carry wall-clock
//! [`Timestamp`]s.

use sonde_core::event::Timestamp;

/// `CLOCK_MONOTONIC` now, ns: the clock of `bpf_ktime_get_ns()` and of a
/// task's `start_time`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Converts monotonic kernel times to wall-clock timestamps.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall_ns: u64,
    mono_ns: u64,
}

impl Clock {
    /// The two clocks now.
    pub fn now() -> Self {
        Clock::at(Timestamp::now(), monotonic_ns())
    }

    /// A clock where monotonic `mono_ns` is wall time `wall`.
    pub fn at(wall: Timestamp, mono_ns: u64) -> Self {
        Clock {
            wall_ns: wall.as_nanos(),
            mono_ns,
        }
    }

    /// The wall-clock time of monotonic time `mono_ns`.
    pub fn wall(&self, mono_ns: u64) -> Timestamp {
        let wall = if mono_ns <= self.mono_ns {
            self.wall_ns.saturating_sub(self.mono_ns - mono_ns)
        } else {
            self.wall_ns.saturating_add(mono_ns - self.mono_ns)
        };
        Timestamp::from_nanos(wall)
    }
}
