//! DNS over TCP: each message behind a two-byte length. One direction's
//! framer finds the messages in the stream and keeps the first
//! [`MAX_KEPT`] bytes of each (header, question and the first answers);
//! the rest is counted, not held. A hole inside a message of known length
//! is skipped (the message's tail is then not parsed); anywhere else the
//! framer waits for a piece that starts with a plausible length and header.

use sonde_core::event::Timestamp;

use super::message::{header, HEADER};

/// Bytes kept of one message.
pub const MAX_KEPT: usize = 4096;

/// A message found in the stream.
#[derive(Debug)]
pub struct Framed {
    /// Its first bytes, at most [`MAX_KEPT`].
    pub bytes: Vec<u8>,
    /// All of it was captured and kept.
    pub whole: bool,
    /// When its last byte came.
    pub at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the length: `have` of its two bytes, the first in `high`.
    Length { have: u8, high: u8 },
    /// Reading a message: `left` bytes to go.
    Message { left: usize, whole: bool },
    /// Lost: waiting for a piece that starts a message.
    Resync,
}

/// One direction's framer.
#[derive(Debug)]
pub struct Framer {
    state: State,
    kept: Vec<u8>,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            state: State::Length { have: 0, high: 0 },
            kept: Vec::new(),
        }
    }
}

/// Whether `data` starts with a length and a plausible header.
pub fn starts_message(data: &[u8]) -> bool {
    data.len() >= 2 + HEADER
        && usize::from(u16::from_be_bytes([data[0], data[1]])) >= HEADER
        && header(&data[2..]).is_ok()
}

impl Framer {
    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.kept.capacity()
    }

    /// Takes captured bytes; complete messages go to `out`. Returns false
    /// when a length is too small to be a message (the framer resyncs).
    pub fn data(&mut self, mut data: &[u8], boundary: bool, at: Timestamp, out: &mut Vec<Framed>) -> bool {
        if self.state == State::Resync {
            if !(boundary && starts_message(data)) {
                return true;
            }
            self.state = State::Length { have: 0, high: 0 };
        }
        while let Some((&first, rest)) = data.split_first() {
            match self.state {
                State::Resync => return true,
                State::Length { have: 0, .. } => {
                    self.state = State::Length { have: 1, high: first };
                    data = rest;
                }
                State::Length { high, .. } => {
                    data = rest;
                    let left = usize::from(u16::from_be_bytes([high, first]));
                    if left < HEADER {
                        self.resync();
                        return false;
                    }
                    self.kept.clear();
                    self.state = State::Message { left, whole: true };
                }
                State::Message { left, whole } => {
                    let take = left.min(data.len());
                    let room = MAX_KEPT.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&data[..take.min(room)]);
                    let whole = whole && take <= room;
                    data = &data[take..];
                    self.advance(left - take, whole, at, out);
                }
            }
        }
        true
    }

    /// `n` bytes were not captured; false when the stream lost its place.
    pub fn hole(&mut self, n: u64, at: Timestamp, out: &mut Vec<Framed>) -> bool {
        match self.state {
            State::Resync => true,
            State::Message { left, .. } if n <= left as u64 => {
                self.advance(left - n as usize, false, at, out);
                true
            }
            _ => {
                self.resync();
                false
            }
        }
    }

    fn advance(&mut self, left: usize, whole: bool, at: Timestamp, out: &mut Vec<Framed>) {
        if left > 0 {
            self.state = State::Message { left, whole };
            return;
        }
        out.push(Framed {
            bytes: std::mem::take(&mut self.kept),
            whole,
            at,
        });
        self.state = State::Length { have: 0, high: 0 };
    }

    fn resync(&mut self) {
        self.state = State::Resync;
        self.kept = Vec::new();
    }
}
