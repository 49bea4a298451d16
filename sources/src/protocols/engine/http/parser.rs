//! One direction of an HTTP/1.x connection: heads, then bodies framed by
//! `Content-Length`, chunked encoding or the connection's end; after bad
//! bytes or a hole it cannot skip, it resynchronises at the next start line
//! (first at a syscall's first byte, else after any line feed).

use sonde_core::event::Timestamp;

use super::super::counters::Counters;
use super::super::reassembly::{Bytes, Piece};
use super::super::settings::Settings;
use super::chunked::{Chunked, Step};
use super::head::{parse, start_line, BodyLength, Head, Kind, Parsed};

/// How the message whose head was just parsed goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// How its body ends.
    pub body: BodyLength,
    /// Body bytes to keep.
    pub keep: usize,
    /// The connection leaves HTTP after this message (Upgrade, CONNECT).
    pub stop: bool,
}

/// What a direction's messages are handed to: the pairing of requests
/// and responses.
pub trait Handler {
    /// A head was parsed; its first byte came at `start` from thread `tid`.
    fn head(&mut self, head: Head, start: Timestamp, tid: u32) -> Framing;
    /// The message of the last head ended at `at` (thread `tid`).
    fn end(&mut self, at: Timestamp, tid: u32, body_size: u64, body: Option<Vec<u8>>);
    /// The stream lost its place at `at` (a hole, bad bytes): the message
    /// in progress, if any, is lost, and so may be whole messages.
    fn lost(&mut self, at: Timestamp);
    /// Where losses are counted.
    fn counters(&mut self) -> &mut Counters;
}

#[derive(Debug)]
enum State {
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
    state: State,
    body_size: u64,
    body: Option<Vec<u8>>,
    keep: usize,
    stop: bool,
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
            body: None,
            keep: 0,
            stop: false,
        }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        let state = match &self.state {
            State::Head { buf, .. } => buf.len(),
            State::Chunked(c) => c.memory(),
            _ => 0,
        };
        state + self.body.as_ref().map_or(0, Vec::len)
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
        while !data.is_empty() {
            match &mut self.state {
                State::Stopped => return,
                State::Resync => match self.find_start(data, boundary) {
                    Some(at) => {
                        data = &data[at..];
                        self.state = State::Head {
                            buf: Vec::new(),
                            start: None,
                        };
                    }
                    None => return,
                },
                State::Head { buf, start } => {
                    let kind = self.kind.unwrap_or(Kind::Request);
                    let held = buf.len();
                    let start = *start.get_or_insert((piece.at, piece.tid));
                    buf.extend_from_slice(data);
                    match parse(buf, kind, s) {
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
                            data = &data[n - held..];
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

    fn hole(&mut self, n: u64, piece: Piece<'_>, h: &mut dyn Handler) {
        match &mut self.state {
            State::Stopped | State::Resync => {}
            State::Head { .. } => {
                h.lost(piece.at);
                h.counters().gaps += 1;
                self.state = State::Resync;
            }
            State::Body(left) if n <= *left => {
                *left -= n;
                self.body_size += n;
                h.counters().skipped_body_gaps += 1;
                if *left == 0 {
                    self.finish(piece.at, piece.tid, h);
                }
            }
            State::Body(left) => {
                // The body ended inside the hole, and what followed is lost.
                self.body_size += *left;
                self.finish(piece.at, piece.tid, h);
                h.counters().gaps += 1;
                h.lost(piece.at);
                if !self.stopped() {
                    self.state = State::Resync;
                }
            }
            State::Chunked(decoder) => {
                if decoder.hole(n) {
                    self.body_size += n;
                    h.counters().skipped_body_gaps += 1;
                } else {
                    h.counters().gaps += 1;
                    h.lost(piece.at);
                    self.state = State::Resync;
                }
            }
            State::UntilClose => {
                self.body_size += n;
                h.counters().skipped_body_gaps += 1;
            }
        }
    }

    /// Where in `data` a start line begins: at 0 when the piece starts a
    /// syscall's bytes, else just after a line feed.
    fn find_start(&mut self, data: &[u8], boundary: bool) -> Option<usize> {
        let candidates = boundary.then_some(0).into_iter().chain(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        for at in candidates {
            if let Some(kind) = start_line(&data[at..], self.kind) {
                self.kind = Some(kind);
                return Some(at);
            }
        }
        None
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

    fn finish(&mut self, at: Timestamp, tid: u32, h: &mut dyn Handler) {
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
