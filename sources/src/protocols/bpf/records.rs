//! The ring buffer of records, decoded in place (no copy of the bytes).

use std::os::fd::{AsRawFd, RawFd};

use sonde_ebpf::aya::maps::{MapData, RingBuf};

use super::abi::{
    read, ProtoEvent, ProtoOpen, PROTO_EVENT_CLOSE, PROTO_EVENT_DATA, PROTO_EVENT_ENCRYPTED, PROTO_EVENT_EXIT,
    PROTO_EVENT_OPEN,
};

/// One record, borrowed from the ring.
#[derive(Debug)]
pub enum Record<'a> {
    /// A connection's first record: who and where.
    Open(ProtoOpen),
    /// Bytes moved by one call; `data` is the captured prefix.
    Data(ProtoEvent, &'a [u8]),
    /// The process closed the connection.
    Close(ProtoEvent),
    /// The process exited (every connection of its pid is gone).
    Exit(ProtoEvent),
    /// A connection of the process started a TLS handshake.
    Encrypted(ProtoEvent),
}

impl<'a> Record<'a> {
    /// Decodes one record; `None` for a malformed one (counted by the caller).
    pub fn parse(bytes: &'a [u8]) -> Option<Record<'a>> {
        let head: ProtoEvent = read(bytes)?;
        match head.kind as u32 {
            PROTO_EVENT_OPEN => read(bytes).map(Record::Open),
            PROTO_EVENT_DATA => {
                let start = std::mem::size_of::<ProtoEvent>();
                let data = bytes.get(start..start + head.captured as usize)?;
                Some(Record::Data(head, data))
            }
            PROTO_EVENT_CLOSE => Some(Record::Close(head)),
            PROTO_EVENT_EXIT => Some(Record::Exit(head)),
            PROTO_EVENT_ENCRYPTED => Some(Record::Encrypted(head)),
            _ => None,
        }
    }
}

/// The records, as the kernel writes them. Pollable (`AsRawFd`): readable
/// when records wait.
pub struct Records(RingBuf<MapData>);

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish_non_exhaustive()
    }
}

impl Records {
    pub(super) fn new(ring: RingBuf<MapData>) -> Self {
        Records(ring)
    }

    /// Hands every record waiting now to `each`, up to `limit` of them (so
    /// one drain cannot starve the rest of the agent). Returns how many
    /// were read and how many of them were malformed.
    pub fn drain(&mut self, limit: usize, mut each: impl FnMut(Record<'_>)) -> (usize, usize) {
        let (mut read, mut malformed) = (0, 0);
        while read < limit {
            let Some(item) = self.0.next() else { break };
            read += 1;
            match Record::parse(&item) {
                Some(record) => each(record),
                None => malformed += 1,
            }
        }
        (read, malformed)
    }
}

impl AsRawFd for Records {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
