//! One direction of a connection put back in order by stream position.
//!
//! Chunks usually arrive in order (one ring buffer, one CPU per syscall),
//! but two threads writing the same socket can be reported out of order;
//! a chunk ahead of the expected position is held back, up to [`WINDOW`]
//! chunks, until the missing one arrives. What never arrives, and what a
//! syscall moved but the kernel did not capture (`data.len() < length`),
//! is handed on as a [`Bytes::Hole`] of known length: the parser skips it
//! inside a body of known length and resynchronises anywhere else.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sonde_core::event::Timestamp;

use super::super::model::Chunk;

/// Chunks held back waiting for an earlier one; beyond it the earliest
/// held chunk is released and the missing bytes become a hole.
pub const WINDOW: usize = 8;

/// Bookkeeping bytes counted for each held chunk besides its data.
const HELD_OVERHEAD: usize = 64;

/// Bytes in stream order, or a hole of that many bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bytes<'a> {
    /// Captured bytes.
    Data(&'a [u8]),
    /// Bytes that were moved but not seen.
    Hole(u64),
}

/// A run of bytes from one chunk, in order.
#[derive(Clone, Copy, Debug)]
pub struct Piece<'a> {
    /// The bytes.
    pub bytes: Bytes<'a>,
    /// When the chunk's syscall returned.
    pub at: Timestamp,
    /// The thread that made it.
    pub tid: u32,
    /// The piece starts where a syscall's bytes start: a message usually
    /// does too, so resynchronisation looks here first.
    pub boundary: bool,
    /// On a datagram socket, the datagram's other end when the call named
    /// it (pieces of streams: `None`).
    pub peer: Option<SocketAddr>,
}

/// A chunk held back, with its own copy of the captured bytes.
#[derive(Debug)]
struct Held {
    length: u32,
    data: Vec<u8>,
    at: Timestamp,
    tid: u32,
}

/// One direction's reorder state.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// The stream position expected next; unset before the first chunk.
    next: Option<u64>,
    held: BTreeMap<u64, Held>,
    held_bytes: usize,
}

impl Reassembler {
    /// A stream whose first byte is at `start`, or at the first chunk's
    /// position when unknown (a connection joined mid-way).
    pub fn starting_at(start: Option<u64>) -> Self {
        Reassembler {
            next: start,
            ..Reassembler::default()
        }
    }

    /// Bytes held back.
    pub fn memory(&self) -> usize {
        self.held_bytes
    }

    /// Takes one chunk; hands every piece now in order to `deliver`.
    /// `room` is how many bytes this stream may still hold back; a chunk
    /// that does not fit is not held, the bytes before it become a hole.
    /// Returns how many chunks were duplicates.
    pub fn push(&mut self, chunk: &Chunk<'_>, room: usize, deliver: &mut dyn FnMut(Piece<'_>)) -> u64 {
        if chunk.length == 0 {
            return 0;
        }
        let next = *self.next.get_or_insert(chunk.position);
        let end = chunk.position.saturating_add(u64::from(chunk.length));
        if end <= next || self.held.contains_key(&chunk.position) {
            return 1;
        }
        let data = &chunk.data[..chunk.data.len().min(chunk.length as usize)];
        if chunk.position > next {
            let cost = data.len() + HELD_OVERHEAD;
            if self.held.len() < WINDOW && cost <= room {
                self.held_bytes += cost;
                let held = Held {
                    length: chunk.length,
                    data: data.to_vec(),
                    at: chunk.timestamp,
                    tid: chunk.tid,
                };
                self.held.insert(chunk.position, held);
                return 0;
            }
            // The window is full: give up waiting for what comes before.
            let mut duplicates = 0;
            while self.held.first_key_value().is_some_and(|(p, _)| *p < chunk.position) {
                duplicates += self.release_first(deliver);
            }
            self.hole_until(chunk.position, chunk.timestamp, chunk.tid, deliver);
            self.deliver_span(chunk.position, chunk.length, data, chunk.timestamp, chunk.tid, deliver);
            return duplicates + self.drain(deliver);
        }
        self.deliver_span(chunk.position, chunk.length, data, chunk.timestamp, chunk.tid, deliver);
        self.drain(deliver)
    }

    /// Releases every held chunk, holes and all (at close or expiry).
    pub fn flush(&mut self, deliver: &mut dyn FnMut(Piece<'_>)) -> u64 {
        let mut duplicates = 0;
        while !self.held.is_empty() {
            duplicates += self.release_first(deliver);
        }
        duplicates
    }

    /// Whether chunks are held back.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn release_first(&mut self, deliver: &mut dyn FnMut(Piece<'_>)) -> u64 {
        let Some((position, held)) = self.held.pop_first() else {
            return 0;
        };
        self.held_bytes -= held.data.len() + HELD_OVERHEAD;
        let next = self.next.unwrap_or(position);
        if position.saturating_add(u64::from(held.length)) <= next {
            return 1;
        }
        self.hole_until(position, held.at, held.tid, deliver);
        self.deliver_span(position, held.length, &held.data, held.at, held.tid, deliver);
        0
    }

    /// Delivers held chunks that are now in order.
    fn drain(&mut self, deliver: &mut dyn FnMut(Piece<'_>)) -> u64 {
        let mut duplicates = 0;
        while let Some((&position, _)) = self.held.first_key_value() {
            if position > self.next.unwrap_or(position) {
                break;
            }
            duplicates += self.release_first(deliver);
        }
        duplicates
    }

    fn hole_until(&mut self, position: u64, at: Timestamp, tid: u32, deliver: &mut dyn FnMut(Piece<'_>)) {
        let next = self.next.unwrap_or(position);
        if position > next {
            deliver(Piece {
                bytes: Bytes::Hole(position - next),
                at,
                tid,
                boundary: false,
                peer: None,
            });
            self.next = Some(position);
        }
    }

    /// Delivers the part of a chunk at or after the expected position: its
    /// captured bytes, then the bytes it moved but did not capture.
    fn deliver_span(
        &mut self,
        position: u64,
        length: u32,
        data: &[u8],
        at: Timestamp,
        tid: u32,
        deliver: &mut dyn FnMut(Piece<'_>),
    ) {
        let next = self.next.unwrap_or(position);
        let end = position + u64::from(length);
        let skip = (next - position) as usize;
        if skip < data.len() {
            deliver(Piece {
                bytes: Bytes::Data(&data[skip..]),
                at,
                tid,
                boundary: skip == 0,
                peer: None,
            });
        }
        let seen_end = (position + data.len() as u64).max(next);
        if end > seen_end {
            deliver(Piece {
                bytes: Bytes::Hole(end - seen_end),
                at,
                tid,
                boundary: false,
                peer: None,
            });
        }
        self.next = Some(end);
    }
}
