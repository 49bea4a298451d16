//! One direction of a PostgreSQL connection cut into messages: a type
//! byte and a 4-byte length (the startup packet has no type byte, the
//! answer to SSLRequest is one bare byte). Only the bodies the session
//! reads are kept, and only a bounded prefix of them; the rest (rows,
//! COPY data) is counted past. A hole inside a message is skipped (the
//! length says where the next one starts); a hole across a message
//! boundary loses the place, found again at a syscall's first byte whose
//! header is plausible, or at a ReadyForQuery anywhere.

use sonde_core::event::Timestamp;

use super::super::reassembly::{Bytes, Piece};

/// The version number of protocol 3.0 in a startup packet.
pub const PROTOCOL_3: u32 = 196_608;
/// SSLRequest's code.
pub const SSL_REQUEST: u32 = 80_877_103;
/// GSSENCRequest's code.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// CancelRequest's code.
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Longest message believed (the server's own limit is 1 GiB).
const MAX_LENGTH: u32 = 1 << 30;
/// Longest startup packet believed.
const MAX_STARTUP: u32 = 10_000;

/// Frontend message types.
pub const FRONTEND: &[u8] = b"BCdcfDEFHPpQSX";
/// Backend message types.
pub const BACKEND: &[u8] = b"123AcCdDEGHIKnNRsStTVvWZ";

/// How much of a message's body the session reads.
fn keep(tag: u8, sql_bytes: usize) -> usize {
    match tag {
        b'Q' | b'P' => sql_bytes,
        0 => 2048,
        b'B' | b'E' | b'C' | b'Z' | b'I' | b'G' | b'H' => 512,
        _ => 0,
    }
}

/// What a direction yields.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A message (`tag` 0: a startup packet) and the kept prefix of its
    /// body; `cut` when part of the body was not kept.
    Message {
        /// Its type byte.
        tag: u8,
        /// Its body's kept prefix.
        body: &'a [u8],
        /// Part of the body is missing (too long, or not captured).
        cut: bool,
        /// Its first byte.
        start: Timestamp,
        /// Its last byte.
        end: Timestamp,
        /// The thread that moved its first byte.
        tid: u32,
    },
    /// The server's one-byte answer to SSLRequest or GSSENCRequest.
    EncryptionReply,
    /// The stream lost its place.
    Lost,
    /// Bytes that are no PostgreSQL message.
    Invalid,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Header,
    Body,
    Resync,
}

/// One direction's framing state.
#[derive(Debug)]
pub struct Framer {
    state: State,
    /// The next message may be a startup packet (no type byte).
    pub startup: bool,
    /// The next byte may be the bare answer to an encryption request.
    pub encryption_reply: bool,
    /// Which types this direction sends, once known.
    pub types: Option<&'static [u8]>,
    header: Vec<u8>,
    tag: u8,
    left: u64,
    body: Vec<u8>,
    keep: usize,
    cut: bool,
    start: Timestamp,
    tid: u32,
}

impl Framer {
    /// A direction seen from its first byte (`in_sync`) or joined mid-way.
    pub fn new(in_sync: bool) -> Self {
        Framer {
            state: if in_sync { State::Header } else { State::Resync },
            startup: in_sync,
            encryption_reply: false,
            types: None,
            header: Vec::new(),
            tag: 0,
            left: 0,
            body: Vec::new(),
            keep: 0,
            cut: false,
            start: Timestamp::from_nanos(0),
            tid: 0,
        }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.body.capacity() + self.header.capacity()
    }

    /// Cuts `piece` into frames, handed to `out`; `sql_bytes` is how much of
    /// a statement's text to keep.
    pub fn feed(&mut self, piece: Piece<'_>, sql_bytes: usize, out: &mut dyn FnMut(Frame<'_>)) {
        match piece.bytes {
            Bytes::Hole(n) => self.hole(n, piece.at, out),
            Bytes::Data(data) => self.data(data, &piece, sql_bytes, out),
        }
    }

    fn hole(&mut self, n: u64, at: Timestamp, out: &mut dyn FnMut(Frame<'_>)) {
        match self.state {
            State::Body if n <= self.left => {
                self.left -= n;
                self.cut = true;
                if self.left == 0 {
                    self.finish(at, out);
                }
            }
            State::Resync => {}
            _ => {
                self.header.clear();
                self.body.clear();
                self.state = State::Resync;
                out(Frame::Lost);
            }
        }
    }

    fn data(&mut self, mut data: &[u8], piece: &Piece<'_>, sql_bytes: usize, out: &mut dyn FnMut(Frame<'_>)) {
        let mut first = true;
        while !data.is_empty() {
            match self.state {
                State::Resync => {
                    let Some(at) = self.resync(data, piece.boundary && first) else {
                        return;
                    };
                    data = &data[at..];
                    self.state = State::Header;
                }
                State::Header => {
                    if self.encryption_reply && self.header.is_empty() && matches!(data[0], b'S' | b'N' | b'G') {
                        self.encryption_reply = false;
                        out(Frame::EncryptionReply);
                        data = &data[1..];
                        continue;
                    }
                    self.encryption_reply = false;
                    let startup =
                        self.startup && (self.header.first() == Some(&0) || self.header.is_empty() && data[0] == 0);
                    let size = if startup { 8 } else { 5 };
                    let take = (size - self.header.len()).min(data.len());
                    if self.header.is_empty() {
                        self.start = piece.at;
                        self.tid = piece.tid;
                    }
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() < size {
                        return;
                    }
                    if !self.begin(startup, sql_bytes) {
                        self.header.clear();
                        self.state = State::Resync;
                        out(Frame::Invalid);
                        continue;
                    }
                    self.header.clear();
                    if self.left == 0 {
                        self.finish(piece.at, out);
                    }
                }
                State::Body => {
                    let n = data.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
                    let room = self.keep.saturating_sub(self.body.len()).min(n);
                    self.body.extend_from_slice(&data[..room]);
                    self.cut |= room < n;
                    self.left -= n as u64;
                    data = &data[n..];
                    if self.left == 0 {
                        self.finish(piece.at, out);
                    }
                }
            }
            first = false;
        }
    }

    /// A complete header is in `header`: starts its message's body.
    fn begin(&mut self, startup: bool, sql_bytes: usize) -> bool {
        let h = &self.header;
        let (tag, body) = if startup {
            let length = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            let code = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            if !(8..=MAX_STARTUP).contains(&length)
                || !matches!(code, PROTOCOL_3 | SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST)
            {
                return false;
            }
            // Until protocol 3.0's startup packet, more untyped ones may come.
            self.startup = code != PROTOCOL_3;
            (0, length - 8)
        } else {
            let length = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
            if !valid(h[0], length, self.types) {
                return false;
            }
            self.startup = false;
            (h[0], length - 4)
        };
        self.tag = tag;
        self.left = u64::from(body);
        self.keep = keep(tag, sql_bytes);
        self.body.clear();
        if startup {
            // The code stays in front of the parameters.
            self.body.extend_from_slice(&self.header[4..8]);
        }
        self.cut = false;
        self.state = State::Body;
        true
    }

    fn finish(&mut self, at: Timestamp, out: &mut dyn FnMut(Frame<'_>)) {
        self.state = State::Header;
        out(Frame::Message {
            tag: self.tag,
            body: &self.body,
            cut: self.cut,
            start: self.start,
            end: at,
            tid: self.tid,
        });
        if self.body.capacity() > 4096 {
            self.body = Vec::new();
        }
    }

    /// Where in `data` a message plausibly starts: its first byte when a
    /// syscall starts there, else the next ReadyForQuery.
    fn resync(&self, data: &[u8], boundary: bool) -> Option<usize> {
        if boundary && data.len() >= 5 && plausible(data, self.types) {
            return Some(0);
        }
        if self.types == Some(FRONTEND) {
            return None;
        }
        data.windows(6)
            .position(|w| w[..5] == *b"Z\0\0\0\x05" && matches!(w[5], b'I' | b'T' | b'E'))
    }
}

/// Whether `tag` and `length` make a message header of `types`.
pub fn valid(tag: u8, length: u32, types: Option<&[u8]>) -> bool {
    let known = match types {
        Some(types) => types.contains(&tag),
        None => FRONTEND.contains(&tag) || BACKEND.contains(&tag),
    };
    let fits = match tag {
        b'Z' => length == 5,
        b'S' | b'H' | b'c' if types == Some(FRONTEND) => length == 4,
        b'C' => (5..=1024).contains(&length),
        _ => (4..=MAX_LENGTH).contains(&length),
    };
    known && fits
}

/// Whether `data` starts with a plausible header, and so does the message
/// after it when `data` reaches it.
pub fn plausible(data: &[u8], types: Option<&[u8]>) -> bool {
    let header = |d: &[u8]| (d.len() >= 5).then(|| (d[0], u32::from_be_bytes([d[1], d[2], d[3], d[4]])));
    let Some((tag, length)) = header(data) else {
        return false;
    };
    if !valid(tag, length, types) {
        return false;
    }
    let next = 1 + length as usize;
    match data.get(next..).and_then(header) {
        Some((tag, length)) => valid(tag, length, types),
        None => true,
    }
}
