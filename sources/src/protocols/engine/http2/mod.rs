//! HTTP/2 (RFC 9113), and gRPC on it: `frame` cuts each direction into
//! frames, `hpack` decodes header blocks per direction (unknown fields
//! marked, never guessed), `head` keeps what spans need of a block,
//! `streams` pairs each stream's request with its response, `grpc` counts
//! messages, and `fields` makes span fields.
//!
//! Prior knowledge (`PRI * HTTP/2.0` preface), `Upgrade: h2c` (handed
//! over by the HTTP/1 session) and TLS with ALPN `h2` (the library's
//! plaintext starts with the preface) all end here; a connection joined
//! mid-way is picked up at the first plausible frame header.

pub mod fields;
pub mod frame;
pub mod grpc;
pub mod head;
pub mod hpack;
mod static_table;
mod streams;

use sonde_core::event::Timestamp;

use super::super::model::Direction;
use super::reassembly::{Bytes, Piece};
use super::session::{Scope, Session};
use frame::{Frames, Header, Payload, Reader};
use head::Head;
use hpack::Decoder;
pub use streams::Http2Exchange;
use streams::Streams;

/// Largest header block (HEADERS and its CONTINUATIONs) decoded; a larger
/// one is dropped, counted, and its direction's table marked broken.
pub const MAX_BLOCK: usize = 64 * 1024;

/// Whether `data`, one direction's first bytes, is HTTP/2: the preface, or
/// (on a connection joined mid-way) a chain of plausible frames.
pub fn looks_like_http2(data: &[u8], joined: bool) -> bool {
    let n = data.len().min(frame::PREFACE.len());
    if n >= 4 && data[..n] == frame::PREFACE[..n] {
        return true;
    }
    joined && frame::looks_like_frames(data)
}

/// The HTTP/1.1 request a `101` to `h2c` answered, and its span's ids.
#[derive(Debug)]
pub struct Upgraded {
    /// Which way requests go.
    pub requests: Direction,
    /// The request, as stream 1's head.
    pub request: Head,
    /// Its first byte.
    pub start: Timestamp,
    /// The thread that moved it.
    pub tid: u32,
    /// Its span's ids.
    pub context: super::trace_context::Context,
    /// Its span's parent.
    pub parent: Option<[u8; 8]>,
}

/// A header block being put together from HEADERS (or PUSH_PROMISE) and
/// CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    push: bool,
    end_stream: bool,
    bytes: Vec<u8>,
    lost: bool,
    at: Timestamp,
    tid: u32,
}

/// Everything of a connection but its two frame readers.
#[derive(Debug)]
struct State {
    decoders: [Decoder; 2],
    blocks: [Option<Block>; 2],
    streams: Streams,
    /// A frame or block made sense: a later error is the stream's, not
    /// detection's.
    believed: bool,
    failed: bool,
}

/// One HTTP/2 connection.
#[derive(Debug)]
pub struct Http2Session {
    readers: [Reader; 2],
    state: State,
}

fn side(direction: Direction) -> usize {
    match direction {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

impl Http2Session {
    /// A session; `requests` is the direction requests go when the role is
    /// known; `in_sync` when both directions are seen from their start.
    pub fn new(requests: Option<Direction>, in_sync: bool, max_connection_bytes: usize) -> Self {
        let max_kept = MAX_BLOCK.min(max_connection_bytes / 2);
        let client = |d: Direction| requests.map(|r| r == d);
        Http2Session {
            readers: [
                Reader::new(in_sync, client(Direction::Egress), max_kept),
                Reader::new(in_sync, client(Direction::Ingress), max_kept),
            ],
            state: State {
                decoders: [Decoder::new(in_sync), Decoder::new(in_sync)],
                blocks: [None, None],
                streams: Streams::new(requests),
                believed: false,
                failed: false,
            },
        }
    }

    /// A session taking over from HTTP/1 after `101 Switching Protocols`
    /// to `h2c`: stream 1 is the upgraded request.
    pub fn upgraded(upgraded: Upgraded, max_connection_bytes: usize) -> Self {
        let mut session = Http2Session::new(Some(upgraded.requests), true, max_connection_bytes);
        session.state.streams.upgraded(upgraded);
        session.state.believed = true;
        session
    }
}

impl Session for Http2Session {
    fn feed(&mut self, direction: Direction, piece: Piece<'_>, scope: &mut Scope<'_>) {
        if self.state.failed {
            return;
        }
        let reader = &mut self.readers[side(direction)];
        let mut handler = Handler {
            state: &mut self.state,
            direction,
            scope,
        };
        reader.feed(piece, &mut handler);
    }

    fn close(&mut self, _at: Timestamp, scope: &mut Scope<'_>) {
        self.state.streams.drop_waiting(scope, None);
    }

    fn expire(&mut self, before: Timestamp, scope: &mut Scope<'_>) {
        self.state.streams.drop_waiting(scope, Some(before));
    }

    fn memory(&self) -> usize {
        let blocks: usize = self.state.blocks.iter().flatten().map(|b| b.bytes.capacity()).sum();
        self.readers.iter().map(Reader::memory).sum::<usize>()
            + self.state.decoders.iter().map(Decoder::memory).sum::<usize>()
            + blocks
            + self.state.streams.memory()
    }

    fn request_direction(&self) -> Option<Direction> {
        self.state.streams.requests
    }

    fn failed(&self) -> bool {
        self.state.failed
    }
}

/// One direction's frames applied to the connection.
struct Handler<'s, 'c, 'a> {
    state: &'s mut State,
    direction: Direction,
    scope: &'c mut Scope<'a>,
}

impl Handler<'_, '_, '_> {
    /// Bytes that are not HTTP/2 after all (before anything made sense),
    /// or a broken stream of it (after).
    fn invalid(&mut self) {
        if self.state.believed {
            self.scope.counters.parse_errors += 1;
            self.state.decoders[side(self.direction)].lose();
        } else {
            self.state.failed = true;
        }
    }

    fn block_fragment(&mut self, header: &Header, payload: Payload<'_>, at: Timestamp, tid: u32) {
        let i = side(self.direction);
        let fragment = match payload {
            Payload::Whole(p) => strip(header, p),
            Payload::Lost => None,
        };
        if header.kind != frame::CONTINUATION {
            if self.state.blocks[i].take().is_some() {
                // A block left unfinished: its insertions are lost.
                self.invalid();
            }
            self.state.blocks[i] = Some(Block {
                stream: header.stream,
                push: header.kind == frame::PUSH_PROMISE,
                end_stream: header.kind == frame::HEADERS && header.flags & frame::END_STREAM != 0,
                bytes: Vec::new(),
                lost: false,
                at,
                tid,
            });
        }
        let Some(block) = self.state.blocks[i].as_mut().filter(|b| b.stream == header.stream) else {
            self.invalid();
            return;
        };
        match fragment {
            Some(f) if block.bytes.len() + f.len() <= MAX_BLOCK => block.bytes.extend_from_slice(f),
            Some(_) => {
                self.scope.counters.truncated += 1;
                block.lost = true;
            }
            None => block.lost = true,
        }
        block.at = at;
        if header.flags & frame::END_HEADERS != 0 {
            if let Some(block) = self.state.blocks[i].take() {
                self.block(block);
            }
        }
    }

    /// A whole header block.
    fn block(&mut self, block: Block) {
        let i = side(self.direction);
        if block.lost {
            self.scope.counters.gaps += 1;
            self.state.decoders[i].lose();
            self.state
                .streams
                .lost_block(self.direction, block.stream, block.end_stream, block.at, self.scope);
            return;
        }
        let mut head = Head::default();
        let settings = self.scope.settings;
        let decoded = self.state.decoders[i].decode(&block.bytes, &mut |name, value| head.field(name, value, settings));
        match decoded {
            Err(_) => {
                self.invalid();
                self.state
                    .streams
                    .lost_block(self.direction, block.stream, block.end_stream, block.at, self.scope);
                return;
            }
            Ok(d) => self.scope.counters.unknown_header_fields += u64::from(d.unknown),
        }
        self.state.believed = true;
        if head.truncated {
            self.scope.counters.truncated += 1;
        }
        if block.push {
            // Pushed streams are the server's own: decoded (for the table) only.
            return;
        }
        self.state.streams.head(
            self.direction,
            block.stream,
            head,
            block.end_stream,
            (block.at, block.tid),
            self.scope,
        );
    }
}

/// A HEADERS or PUSH_PROMISE payload less its padding, priority and
/// promised stream id: the block fragment.
fn strip<'p>(header: &Header, payload: &'p [u8]) -> Option<&'p [u8]> {
    let mut p = payload;
    let mut pad = 0;
    if header.kind != frame::CONTINUATION && header.flags & frame::PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    let skip = match header.kind {
        frame::HEADERS if header.flags & frame::PRIORITY_FLAG != 0 => 5,
        frame::PUSH_PROMISE => 4,
        _ => 0,
    };
    let p = p.get(skip..)?;
    p.get(..p.len().checked_sub(pad)?)
}

impl Frames for Handler<'_, '_, '_> {
    fn preface(&mut self) {
        self.state.believed = true;
        self.state.streams.client(self.direction);
    }

    fn frame(&mut self, header: &Header, payload: Payload<'_>, at: Timestamp, tid: u32) {
        let pending = self.state.blocks[side(self.direction)].is_some();
        if pending && header.kind != frame::CONTINUATION {
            // RFC 9113 §6.10: nothing may come between a block's frames.
            self.state.blocks[side(self.direction)] = None;
            self.invalid();
        }
        match header.kind {
            frame::HEADERS | frame::PUSH_PROMISE | frame::CONTINUATION => {
                self.block_fragment(header, payload, at, tid);
            }
            frame::RST_STREAM => {
                if let Payload::Whole(p) = payload {
                    let code = p.get(..4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    self.state
                        .streams
                        .reset(header.stream, code.unwrap_or(0), at, self.scope);
                }
            }
            frame::SETTINGS if header.flags & frame::ACK == 0 => {
                if let Payload::Whole(p) = payload {
                    for setting in p.chunks_exact(6) {
                        let id = u16::from_be_bytes([setting[0], setting[1]]);
                        let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                        if id == 1 {
                            // The sender decodes with a table this large: the
                            // other direction's blocks.
                            self.state.decoders[side(self.direction.opposite())].allow(value as usize);
                        }
                    }
                    self.state.believed = true;
                }
            }
            frame::GOAWAY => {
                if let Payload::Whole(p) = payload {
                    if let Some(c) = p.get(..4) {
                        let last = u32::from_be_bytes([c[0], c[1], c[2], c[3]]) & 0x7fff_ffff;
                        self.state.streams.goaway(self.direction, last, self.scope);
                    }
                }
            }
            _ => {}
        }
    }

    fn data(&mut self, header: &Header, bytes: Bytes<'_>) {
        if let Bytes::Hole(_) = bytes {
            self.scope.counters.skipped_body_gaps += 1;
        }
        self.state.streams.data(self.direction, header.stream, bytes);
    }

    fn data_end(&mut self, header: &Header, at: Timestamp, tid: u32) {
        if header.flags & frame::END_STREAM != 0 {
            self.state
                .streams
                .end_stream(self.direction, header.stream, (at, tid), self.scope);
        }
    }

    fn lost(&mut self, at: Timestamp) {
        self.scope.counters.gaps += 1;
        let i = side(self.direction);
        self.state.blocks[i] = None;
        self.state.decoders[i].lose();
        self.state.streams.lost(self.direction, at, self.scope);
    }
}
