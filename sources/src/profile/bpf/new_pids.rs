//! The ring buffer on which the program announces each process it samples
//! for the first time, so that its memory maps are read while it lives, and
//! again (the pid with `PROFILE_ANNOUNCE_UNWIND` set) once it has been
//! sampled `PROFILE_UNWIND_AFTER_SAMPLES` times, for its unwind tables.

use std::os::fd::{AsRawFd, RawFd};

use sonde_ebpf::aya::maps::{MapData, RingBuf};

/// The pids the program saw for the first time, as it announces them.
pub struct NewPids {
    pub(super) ring: RingBuf<MapData>,
}

impl NewPids {
    /// Every pid announced since the last call, as announced (some with
    /// `PROFILE_ANNOUNCE_UNWIND` set).
    pub fn read(&mut self) -> Vec<u32> {
        let mut pids = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Ok(bytes) = <[u8; 4]>::try_from(&item[..]) {
                pids.push(u32::from_ne_bytes(bytes));
            }
        }
        pids
    }
}

impl AsRawFd for NewPids {
    /// Readable (`poll`) when pids are waiting.
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}
