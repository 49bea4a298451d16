//! HTTP/2 framing (RFC 9113 §4): one direction's bytes cut into frames.
//! Header-carrying and control frames are kept whole (bounded); DATA
//! content is streamed through, so a hole inside it (bytes the kernel did
//! not copy) is skipped by length; a hole anywhere else loses the framing,
//! and the reader looks for a frame header again at a syscall's first byte.

use sonde_core::event::Timestamp;

use super::super::reassembly::{Bytes, Piece};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// Largest frame believed when looking for a frame header (RFC 9113's
/// largest `SETTINGS_MAX_FRAME_SIZE` is 2^24 - 1, but servers rarely go
/// past 1 MiB; a larger length is more likely not a header at all).
const PLAUSIBLE_LENGTH: u32 = 1 << 20;

/// A frame's 9-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Header {
    /// Reads the header at the start of `b` (at least 9 bytes).
    pub fn parse(b: &[u8; 9]) -> Header {
        Header {
            length: u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether this could be a real frame header: a known type with only
    /// its own flags, the stream rule of its type, the fixed lengths of
    /// fixed-size frames, the reserved bit clear.
    pub fn plausible(b: &[u8; 9]) -> bool {
        let h = Header::parse(b);
        if b[5] & 0x80 != 0 || h.length > PLAUSIBLE_LENGTH {
            return false;
        }
        let connection = h.stream == 0;
        let (flags, ok) = match h.kind {
            DATA => (END_STREAM | PADDED, !connection),
            HEADERS => (END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, !connection),
            PRIORITY => (0, !connection && h.length == 5),
            RST_STREAM => (0, !connection && h.length == 4),
            SETTINGS => (
                ACK,
                connection && h.length.is_multiple_of(6) && (h.flags & ACK == 0 || h.length == 0),
            ),
            PUSH_PROMISE => (END_HEADERS | PADDED, !connection),
            PING => (ACK, connection && h.length == 8),
            GOAWAY => (0, connection && h.length >= 8),
            WINDOW_UPDATE => (0, h.length == 4),
            CONTINUATION => (END_HEADERS, !connection),
            _ => (0, false),
        };
        ok && h.flags & !flags == 0
    }
}

/// Whether `data` (the first bytes of a stream seen) is a chain of
/// plausible frames: the preface (or its start), or frame headers that
/// follow each other to the end of `data` or past it.
pub fn looks_like_frames(data: &[u8]) -> bool {
    let n = data.len().min(PREFACE.len());
    if n >= 4 && data[..n] == PREFACE[..n] {
        return true;
    }
    let mut at = 0;
    let mut frames = 0;
    while let Some(head) = data.get(at..at + 9) {
        let head: &[u8; 9] = head.try_into().unwrap_or(&[0xff; 9]);
        if !Header::plausible(head) {
            return false;
        }
        frames += 1;
        at += 9 + Header::parse(head).length as usize;
    }
    // A lone header cut short is not enough to believe.
    frames > 0 && (at >= data.len() || frames > 1)
}

/// What a frame's payload was.
#[derive(Debug)]
pub enum Payload<'a> {
    /// Captured whole.
    Whole(&'a [u8]),
    /// Partly not captured, or larger than what is kept.
    Lost,
}

/// What the reader hands on.
pub trait Frames {
    /// The client preface went by.
    fn preface(&mut self);
    /// A whole frame other than DATA, finished at `at` by thread `tid`.
    fn frame(&mut self, header: &Header, payload: Payload<'_>, at: Timestamp, tid: u32);
    /// Content of a DATA frame (padding left out), or a hole in it.
    fn data(&mut self, header: &Header, bytes: Bytes<'_>);
    /// A DATA frame ended at `at`.
    fn data_end(&mut self, header: &Header, at: Timestamp, tid: u32);
    /// Framing was lost at `at`: frames until the next found are unknown.
    fn lost(&mut self, at: Timestamp);
}

#[derive(Debug)]
enum State {
    /// Matching the client preface; this many bytes matched.
    Preface(usize),
    /// Reading a frame header; this many bytes of it so far.
    Head([u8; 9], usize),
    /// A kept payload: its header and what is buffered (`None`: lost).
    Kept(Header, Option<Vec<u8>>, u32),
    /// A DATA payload: the pad length still to read (`PADDED`), content
    /// left, padding left.
    Data {
        header: Header,
        pad_byte: bool,
        content: u32,
        padding: u32,
    },
    /// Looking for a frame header at a syscall's first byte.
    Resync,
}

/// One direction's framing.
#[derive(Debug)]
pub struct Reader {
    state: State,
    /// Largest payload kept whole.
    max_kept: usize,
}

impl Reader {
    /// A reader of a stream seen from its start (`in_sync`): the client's
    /// starts with the preface; otherwise it first finds a frame header.
    pub fn new(in_sync: bool, client: Option<bool>, max_kept: usize) -> Self {
        let state = match (in_sync, client) {
            (true, Some(true)) => State::Preface(0),
            (true, Some(false)) => State::Head([0; 9], 0),
            // The preface if it comes, else frames: decided on the bytes.
            (true, None) => State::Preface(0),
            (false, _) => State::Resync,
        };
        Reader { state, max_kept }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        match &self.state {
            State::Kept(_, Some(buf), _) => buf.capacity(),
            _ => 0,
        }
    }

    /// Takes one piece.
    pub fn feed(&mut self, piece: Piece<'_>, out: &mut dyn Frames) {
        match piece.bytes {
            Bytes::Data(data) => self.data(data, piece, out),
            Bytes::Hole(n) => self.hole(n, piece.at, out),
        }
    }

    fn data(&mut self, mut data: &[u8], piece: Piece<'_>, out: &mut dyn Frames) {
        let (at, tid) = (piece.at, piece.tid);
        let mut boundary = piece.boundary;
        while !data.is_empty() {
            match &mut self.state {
                State::Preface(seen) => {
                    let n = data.len().min(PREFACE.len() - *seen);
                    if data[..n] != PREFACE[*seen..*seen + n] {
                        if *seen == 0 {
                            // Not a client (or a client joined later): frames.
                            self.state = State::Head([0; 9], 0);
                            continue;
                        }
                        out.lost(at);
                        self.state = State::Resync;
                        continue;
                    }
                    *seen += n;
                    data = &data[n..];
                    if *seen == PREFACE.len() {
                        out.preface();
                        self.state = State::Head([0; 9], 0);
                    }
                }
                State::Resync => {
                    let found = boundary
                        && data
                            .get(..9)
                            .and_then(|h| <&[u8; 9]>::try_from(h).ok())
                            .is_some_and(Header::plausible);
                    if !found {
                        return;
                    }
                    self.state = State::Head([0; 9], 0);
                }
                State::Head(buf, have) => {
                    let n = data.len().min(9 - *have);
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == 9 {
                        let header = Header::parse(buf);
                        if !Header::plausible(buf) && header.kind <= CONTINUATION {
                            out.lost(at);
                            self.state = State::Resync;
                            return;
                        }
                        self.begin(header, at, tid, out);
                    }
                }
                State::Kept(header, buf, left) => {
                    let n = data.len().min(*left as usize);
                    if let Some(buf) = buf {
                        buf.extend_from_slice(&data[..n]);
                    }
                    *left -= n as u32;
                    data = &data[n..];
                    if *left == 0 {
                        let header = *header;
                        match buf.take() {
                            Some(buf) => out.frame(&header, Payload::Whole(&buf), at, tid),
                            None => out.frame(&header, Payload::Lost, at, tid),
                        }
                        self.state = State::Head([0; 9], 0);
                    }
                }
                State::Data {
                    header,
                    pad_byte,
                    content,
                    padding,
                } => {
                    if *pad_byte {
                        *pad_byte = false;
                        let pad = u32::from(data[0]);
                        data = &data[1..];
                        *padding = pad.min(*content);
                        *content -= *padding;
                        continue;
                    }
                    let n = data.len().min(*content as usize);
                    if n > 0 {
                        out.data(header, Bytes::Data(&data[..n]));
                        *content -= n as u32;
                        data = &data[n..];
                    }
                    let m = data.len().min(*padding as usize);
                    *padding -= m as u32;
                    data = &data[m..];
                    if *content == 0 && *padding == 0 {
                        let header = *header;
                        self.state = State::Head([0; 9], 0);
                        out.data_end(&header, at, tid);
                    }
                }
            }
            boundary = false;
        }
    }

    /// Enters the payload of the frame `header`.
    fn begin(&mut self, header: Header, at: Timestamp, tid: u32, out: &mut dyn Frames) {
        if header.kind == DATA {
            let padded = header.flags & PADDED != 0;
            self.state = State::Data {
                header,
                pad_byte: padded,
                content: header.length - u32::from(padded && header.length > 0),
                padding: 0,
            };
            if header.length == 0 {
                self.state = State::Head([0; 9], 0);
                out.data_end(&header, at, tid);
            }
            return;
        }
        let kept = header.length as usize <= self.max_kept;
        if header.length == 0 {
            out.frame(&header, Payload::Whole(&[]), at, tid);
            self.state = State::Head([0; 9], 0);
            return;
        }
        let buf = kept.then(|| Vec::with_capacity(header.length as usize));
        self.state = State::Kept(header, buf, header.length);
    }

    fn hole(&mut self, n: u64, at: Timestamp, out: &mut dyn Frames) {
        match &mut self.state {
            State::Resync => {}
            State::Data {
                header,
                pad_byte,
                content,
                padding,
            } if !*pad_byte && n <= u64::from(*content) + u64::from(*padding) => {
                let c = n.min(u64::from(*content)) as u32;
                *content -= c;
                *padding -= (n as u32) - c;
                if c > 0 {
                    out.data(header, Bytes::Hole(u64::from(c)));
                }
                if *content == 0 && *padding == 0 {
                    let header = *header;
                    self.state = State::Head([0; 9], 0);
                    out.data_end(&header, at, 0);
                }
            }
            State::Kept(header, buf, left) if n <= u64::from(*left) => {
                // The frame is lost; the framing is not.
                *buf = None;
                *left -= n as u32;
                if *left == 0 {
                    let header = *header;
                    self.state = State::Head([0; 9], 0);
                    out.frame(&header, Payload::Lost, at, 0);
                }
            }
            _ => {
                out.lost(at);
                self.state = State::Resync;
            }
        }
    }
}
