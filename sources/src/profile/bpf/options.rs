//! How the profile program is loaded: the sampling event, its frequency,
//! whether idle samples count, the stack map size.

use super::{PROFILE_MAX_STACKS, UNWIND_DEFAULT_ROWS};

/// Which perf event drives the sampling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SampleEvent {
    /// The software CPU clock (an hrtimer per CPU): works everywhere,
    /// including VMs without a virtual PMU.
    #[default]
    CpuClock,
    /// Hardware CPU cycles (needs a PMU): samples also where interrupts
    /// are disabled.
    Cycles,
    /// Cycles when the PMU offers them, else the CPU clock.
    Auto,
}

/// How to load the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Samples per second per CPU.
    pub frequency_hz: u64,
    /// The perf event.
    pub event: SampleEvent,
    /// Record samples of the idle task (pid 0).
    pub include_idle: bool,
    /// Capacity of each of the two stack maps (rounded up to a power of two by the kernel).
    pub max_stacks: u32,
    /// Walk user stacks in BPF with `.eh_frame` tables (x86-64), rather
    /// than letting the kernel walk frame pointers.
    pub unwind: bool,
    /// Rows of the unwind table pool (8 bytes each).
    pub unwind_rows: u32,
    /// Tests: capture one sample in this many for the oracle (0: none).
    pub oracle_every: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            frequency_hz: 99,
            event: SampleEvent::CpuClock,
            include_idle: false,
            max_stacks: PROFILE_MAX_STACKS,
            unwind: true,
            unwind_rows: UNWIND_DEFAULT_ROWS,
            oracle_every: 0,
        }
    }
}
