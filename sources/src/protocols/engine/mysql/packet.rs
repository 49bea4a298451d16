//! One direction of a MySQL connection cut into packets: a 3-byte
//! little-endian length and a sequence id, then the payload; a payload of
//! 16 MiB − 1 continues in the next packet (one logical packet). Only a
//! bounded prefix of each payload is kept; a hole inside a packet is
//! skipped, a hole across packets loses the place, found again at a
//! syscall's first byte: a command (sequence 0) from the client, a
//! response (sequence 1) from the server.

use sonde_core::event::Timestamp;

use super::super::reassembly::{Bytes, Piece};

/// A payload this long continues in the next packet.
pub const CONTINUED: u32 = 0xff_ffff;

/// What a direction yields.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A logical packet: its first sequence id, kept prefix, total length.
    Packet {
        /// Sequence id of its first packet.
        seq: u8,
        /// The payload's kept prefix.
        payload: &'a [u8],
        /// The payload's length (all its packets).
        length: u64,
        /// Part of the payload was not kept.
        cut: bool,
        /// Its first byte.
        start: Timestamp,
        /// Its last byte.
        end: Timestamp,
        /// The thread that moved its first byte.
        tid: u32,
    },
    /// The place was lost.
    Lost,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Header,
    Payload,
    Resync,
}

/// One direction's packet state.
#[derive(Debug)]
pub struct Framer {
    state: State,
    /// This direction sends commands (`Some(true)`), responses, or unknown.
    pub client: Option<bool>,
    header: Vec<u8>,
    seq: u8,
    left: u32,
    continued: bool,
    length: u64,
    payload: Vec<u8>,
    cut: bool,
    start: Timestamp,
    tid: u32,
}

impl Framer {
    /// A direction seen from its first byte (`in_sync`) or joined mid-way.
    pub fn new(in_sync: bool) -> Self {
        Framer {
            state: if in_sync { State::Header } else { State::Resync },
            client: None,
            header: Vec::new(),
            seq: 0,
            left: 0,
            continued: false,
            length: 0,
            payload: Vec::new(),
            cut: false,
            start: Timestamp::from_nanos(0),
            tid: 0,
        }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.payload.capacity() + self.header.capacity()
    }

    /// Cuts `piece` into packets; keeps `keep` bytes of each payload.
    pub fn feed(&mut self, piece: Piece<'_>, keep: usize, out: &mut dyn FnMut(Frame<'_>)) {
        match piece.bytes {
            Bytes::Hole(n) => match self.state {
                State::Payload if n <= u64::from(self.left) => {
                    self.left -= n as u32;
                    self.cut = true;
                    if self.left == 0 {
                        self.end(piece.at, out);
                    }
                }
                State::Resync => {}
                _ => {
                    self.header.clear();
                    self.state = State::Resync;
                    out(Frame::Lost);
                }
            },
            Bytes::Data(mut data) => {
                let mut first = true;
                while !data.is_empty() {
                    match self.state {
                        State::Resync => {
                            if !(first && piece.boundary && plausible(data, self.client)) {
                                return;
                            }
                            self.state = State::Header;
                        }
                        State::Header => {
                            if self.header.is_empty() && !self.continued {
                                self.start = piece.at;
                                self.tid = piece.tid;
                            }
                            let take = (4 - self.header.len()).min(data.len());
                            self.header.extend_from_slice(&data[..take]);
                            data = &data[take..];
                            if self.header.len() < 4 {
                                return;
                            }
                            let h = &self.header;
                            self.left = u32::from_le_bytes([h[0], h[1], h[2], 0]);
                            if !self.continued {
                                self.seq = h[3];
                                self.length = 0;
                                self.payload.clear();
                                self.cut = false;
                            }
                            self.continued = self.left == CONTINUED;
                            self.length += u64::from(self.left);
                            self.header.clear();
                            self.state = State::Payload;
                            if self.left == 0 {
                                self.end(piece.at, out);
                            }
                        }
                        State::Payload => {
                            let n = data.len().min(self.left as usize);
                            let room = keep.saturating_sub(self.payload.len()).min(n);
                            self.payload.extend_from_slice(&data[..room]);
                            self.cut |= room < n;
                            self.left -= n as u32;
                            data = &data[n..];
                            if self.left == 0 {
                                self.end(piece.at, out);
                            }
                        }
                    }
                    first = false;
                }
            }
        }
    }

    fn end(&mut self, at: Timestamp, out: &mut dyn FnMut(Frame<'_>)) {
        self.state = State::Header;
        if self.continued {
            return;
        }
        out(Frame::Packet {
            seq: self.seq,
            payload: &self.payload,
            length: self.length,
            cut: self.cut,
            start: self.start,
            end: at,
            tid: self.tid,
        });
        if self.payload.capacity() > 4096 {
            self.payload = Vec::new();
        }
    }
}

/// Whether `data` starts a packet a direction would send after a loss: a
/// command (sequence 0, known command byte) from a client, a response
/// (sequence 1: OK, ERR, EOF or a column count) from a server.
pub fn plausible(data: &[u8], client: Option<bool>) -> bool {
    if data.len() < 5 {
        return false;
    }
    let length = u32::from_le_bytes([data[0], data[1], data[2], 0]);
    let (seq, first) = (data[3], data[4]);
    let command = seq == 0 && length >= 1 && super::command::known(first);
    let response =
        seq == 1 && length >= 1 && (matches!(first, 0x00 | 0xfe | 0xff) || (1..=0xfa).contains(&first) && length <= 9);
    match client {
        Some(true) => command,
        Some(false) => response,
        None => command || response,
    }
}
