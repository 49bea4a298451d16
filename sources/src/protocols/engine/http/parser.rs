//! One direction of an HTTP/1.x connection: heads, then bodies framed by
//! `Content-Length`, chunked encoding or the connection's end; after bad
//! bytes or a hole it cannot skip, it resynchronises at the next start line
//! (first at a syscall's first byte, else after any line feed).

use sonde_core::event::Timestamp;

use super::super::reassembly::{Bytes, Piece};
use super::super::settings::Settings;
use super::chunked::{Chunked, Step};
use super::handler::{Framing, Handler};
use super::head::{parse, BodyLength, Kind, Parsed};

#[derive(Debug)]
pub(super) enum State {
    /// Looking for a start line.
    Resync,
    /// Reading a head (an empty buffer: between messages).
    Head {
        buf: Vec<u8>,
        start: Option<(Timestamp, u32)>,
    },
    /// A body of known length, this many bytes left.
    Body(u64),
    /// A chunked body.
    Chunked(Chunked),
    /// A response body that ends with the connection.
    UntilClose,
    /// Not HTTP any more.
    Stopped,
}

/// One direction's parser.
#[derive(Debug)]
pub struct Parser {
    /// Requests or responses; unknown until a start line is seen.
    pub kind: Option<Kind>,
    pub(super) state: State,
    pub(super) body_size: u64,
    /// While resynchronising: bytes at a line start that may begin a start
    /// line cut by a syscall boundary (`GE` + `T /path`), and when they came.
    pub(super) carry: Vec<u8>,
    pub(super) carry_since: Option<(Timestamp, u32)>,
    body: Option<Vec<u8>>,
    keep: usize,
    stop: bool,
    /// Bytes after the head that left HTTP, in the same piece (the first
    /// frames of `h2c`), with when they came.
    pub(super) leftover: Option<(Vec<u8>, Timestamp, u32)>,
}

impl Parser {
    /// A parser of a stream seen from its first byte (`in_sync`) whose
    /// kind is known, or else one that first looks for a start line: the
    /// stream may have been joined mid-message.
    pub fn new(kind: Option<Kind>, in_sync: bool) -> Self {
        let state = match kind {
            Some(_) if in_sync => State::Head {
                buf: Vec::new(),
                start: None,
            },
            _ => State::Resync,
        };
        Parser {
            kind,
            state,
            body_size: 0,
            carry: Vec::new(),
            carry_since: None,
            body: None,
            keep: 0,
            stop: false,
            leftover: None,
        }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        let state = match &self.state {
            State::Head { buf, .. } => buf.len(),
            State::Chunked(c) => c.memory(),
            _ => 0,
        };
        state
            + self.carry.len()
            + self.body.as_ref().map_or(0, Vec::len)
            + self.leftover.as_ref().map_or(0, |(l, _, _)| l.len())
    }

    /// Whether the connection left HTTP in this direction.
    pub fn stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// Leaves HTTP (the other direction saw the upgrade).
    pub fn stop(&mut self) {
        self.state = State::Stopped;
    }

    /// Takes one piece.
    pub fn feed(&mut self, piece: Piece<'_>, s: &Settings, h: &mut dyn Handler) {
        match piece.bytes {
            Bytes::Data(data) => self.data(data, piece, s, h),
            Bytes::Hole(n) => self.hole(n, piece, h),
        }
    }

    /// The connection closed at `at`: a body read to the end ends here.
    pub fn close(&mut self, at: Timestamp, h: &mut dyn Handler) {
        match &self.state {
            State::UntilClose => self.finish(at, 0, h),
            State::Head { buf, .. } if buf.is_empty() => {}
            State::Resync | State::Stopped => {}
            _ => h.lost(at),
        }
        self.state = State::Stopped;
    }

    fn data(&mut self, mut data: &[u8], piece: Piece<'_>, s: &Settings, h: &mut dyn Handler) {
        let mut boundary = piece.boundary;
        let was_stopped = matches!(self.state, State::Stopped);
        while !data.is_empty() {
            match &mut self.state {
                State::Stopped => {
                    if !was_stopped && self.leftover.is_none() && data.len() <= s.max_connection_bytes / 2 {
                        self.leftover = Some((data.to_vec(), piece.at, piece.tid));
                    }
                    return;
                }
                State::Resync => match self.resync(data, boundary, (piece.at, piece.tid)) {
                    Some(at) => data = &data[at..],
                    None => return,
                },
                State::Head { buf, start } => {
                    let kind = self.kind.unwrap_or(Kind::Request);
                    let held = buf.len();
                    let start = *start.get_or_insert((piece.at, piece.tid));
                    // A head that starts this piece is parsed where it
                    // lies: only an incomplete one is copied, to be
                    // completed by the next piece.
                    let parsed = if held == 0 {
                        parse(data, kind, s)
                    } else {
                        buf.extend_from_slice(data);
                        parse(buf, kind, s)
                    };
                    if held == 0 && matches!(parsed, Parsed::Partial) {
                        buf.extend_from_slice(data);
                    }
                    match parsed {
                        Parsed::Partial if buf.len() > s.max_connection_bytes / 2 => {
                            h.counters().truncated += 1;
                            h.lost(piece.at);
                            self.state = State::Resync;
                            return;
                        }
                        Parsed::Partial => return,
                        Parsed::Invalid => {
                            h.counters().parse_errors += 1;
                            h.lost(piece.at);
                            self.state = State::Resync;
                        }
                        Parsed::Complete(head, n) => {
                            data = &data[n.saturating_sub(held).min(data.len())..];
                            let framing = h.head(head, start.0, start.1);
                            self.begin(framing, piece.at, piece.tid, h);
                        }
                    }
                }
                State::Body(left) => {
                    let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    let done = *left == 0;
                    self.take_body(&data[..n]);
                    data = &data[n..];
                    if done {
                        self.finish(piece.at, piece.tid, h);
                    }
                }
                State::Chunked(decoder) => {
                    let (mut size, mut kept) = (0u64, Vec::new());
                    let room = self.keep.saturating_sub(self.body.as_ref().map_or(0, Vec::len));
                    let step = decoder.feed(data, &mut |bytes| {
                        size += bytes.len() as u64;
                        let n = bytes.len().min(room.saturating_sub(kept.len()));
                        kept.extend_from_slice(&bytes[..n]);
                    });
                    self.body_size += size;
                    if let Some(body) = &mut self.body {
                        body.extend_from_slice(&kept);
                    }
                    match step {
                        Step::More => return,
                        Step::Done(n) => {
                            data = &data[n..];
                            self.finish(piece.at, piece.tid, h);
                        }
                        Step::Invalid => {
                            h.counters().parse_errors += 1;
                            h.lost(piece.at);
                            self.state = State::Resync;
                        }
                    }
                }
                State::UntilClose => {
                    self.take_body(data);
                    return;
                }
            }
            boundary = false;
        }
    }

    fn begin(&mut self, framing: Framing, at: Timestamp, tid: u32, h: &mut dyn Handler) {
        self.body_size = 0;
        self.keep = framing.keep;
        self.body = (framing.keep > 0).then(Vec::new);
        self.stop = framing.stop;
        self.state = match framing.body {
            BodyLength::None | BodyLength::Length(0) => {
                self.finish(at, tid, h);
                return;
            }
            BodyLength::Length(n) => State::Body(n),
            BodyLength::Chunked => State::Chunked(Chunked::default()),
            BodyLength::UntilClose => State::UntilClose,
        };
    }

    fn take_body(&mut self, bytes: &[u8]) {
        self.body_size += bytes.len() as u64;
        if let Some(body) = &mut self.body {
            let n = bytes.len().min(self.keep.saturating_sub(body.len()));
            body.extend_from_slice(&bytes[..n]);
        }
    }

    pub(super) fn finish(&mut self, at: Timestamp, tid: u32, h: &mut dyn Handler) {
        h.end(at, tid, self.body_size, self.body.take());
        self.state = if self.stop {
            State::Stopped
        } else {
            State::Head {
                buf: Vec::new(),
                start: None,
            }
        };
    }
}
