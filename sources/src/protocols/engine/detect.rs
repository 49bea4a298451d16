//! Protocol detection on a connection's first bytes. A start line may be
//! cut across several syscalls (`GET` then ` /path HTTP/1.1`), so the
//! first pieces are kept, detection looks at each direction's bytes so
//! far, and once a protocol is found its session gets every kept piece in
//! order: nothing seen before the decision is lost.

use sonde_core::event::Timestamp;

use super::super::model::Direction;
use super::infer::{self, Clue};
use super::reassembly::{Bytes, Piece};
use super::settings::{Protocol, Settings};

/// Data pieces looked at before giving up.
const MAX_PIECES: u32 = 8;
/// Bytes kept while undecided.
const MAX_BYTES: usize = 2048;

/// A piece kept while undecided.
#[derive(Debug)]
struct Kept {
    direction: Direction,
    data: Vec<u8>,
    hole: u64,
    at: Timestamp,
    tid: u32,
    boundary: bool,
    peer: Option<std::net::SocketAddr>,
}

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough bytes yet.
    Wait,
    /// This protocol.
    Found(Protocol),
    /// None of the enabled protocols.
    Unknown,
}

/// The kept pieces and each direction's bytes since its last hole.
#[derive(Debug, Default)]
pub struct Detector {
    kept: Vec<Kept>,
    prefix: [Vec<u8>; 2],
    pieces: u32,
    bytes: usize,
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

impl Detector {
    /// Bytes kept.
    pub fn memory(&self) -> usize {
        2 * self.bytes
    }

    /// Keeps `piece` and decides, if its direction's bytes now tell.
    pub fn offer(&mut self, clue: &Clue, piece: &Piece<'_>, settings: &Settings) -> Verdict {
        let direction = clue.direction;
        let (data, hole) = match piece.bytes {
            Bytes::Data(data) => (data, 0),
            Bytes::Hole(n) => (&[][..], n),
        };
        self.bytes += data.len();
        if self.bytes > MAX_BYTES {
            return Verdict::Unknown;
        }
        self.kept.push(Kept {
            direction,
            data: data.to_vec(),
            hole,
            at: piece.at,
            tid: piece.tid,
            boundary: piece.boundary,
            peer: piece.peer,
        });
        let prefix = &mut self.prefix[index(direction)];
        if hole > 0 {
            prefix.clear();
            return Verdict::Wait;
        }
        prefix.extend_from_slice(data);
        self.pieces += 1;
        match infer::detect(settings, clue, prefix) {
            Some(protocol) => Verdict::Found(protocol),
            None if self.pieces >= MAX_PIECES => Verdict::Unknown,
            None => Verdict::Wait,
        }
    }

    /// Hands every kept piece, in order, to `feed`.
    pub fn replay(self, feed: &mut dyn FnMut(Direction, Piece<'_>)) {
        for kept in &self.kept {
            let bytes = if kept.hole > 0 {
                Bytes::Hole(kept.hole)
            } else {
                Bytes::Data(&kept.data)
            };
            let piece = Piece {
                bytes,
                at: kept.at,
                tid: kept.tid,
                boundary: kept.boundary,
                peer: kept.peer,
            };
            feed(kept.direction, piece);
        }
    }
}
