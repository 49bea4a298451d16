//! The ring buffer of closed TCP flows: one record per connection, written
//! by the kernel as it closes.

use std::os::fd::{AsRawFd, RawFd};

use sonde_ebpf::aya::maps::{MapData, RingBuf};

use super::FlowRecord;

/// The records of closed TCP flows, as the kernel writes them. Pollable
/// (`AsRawFd`): readable when records wait.
pub struct ClosedFlows(pub(super) RingBuf<MapData>);

impl std::fmt::Debug for ClosedFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosedFlows").finish_non_exhaustive()
    }
}

impl ClosedFlows {
    /// Every record waiting now.
    pub fn drain(&mut self) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        while let Some(item) = self.0.next() {
            out.extend(FlowRecord::from_bytes(&item));
        }
        out
    }
}

impl AsRawFd for ClosedFlows {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
