//! One connection: what is known of it, its two reorder buffers, and its
//! protocol session once the first bytes told which protocol it speaks.

use sonde_core::event::Timestamp;

use super::super::model::{Chunk, ConnInfo, Direction, Role};
use super::detect::{Detector, Verdict};
use super::infer::{self, Clue};
use super::reassembly::{Bytes, Piece, Reassembler};
use super::session::{Scope, Session};
use super::settings::Settings;
use super::span::Identity;

/// Bytes counted for a connection besides its buffers.
pub const CONNECTION_OVERHEAD: usize = 512;

/// Where protocol detection stands.
#[derive(Debug)]
enum Protocol {
    /// Not decided yet.
    Undecided(Detector),
    /// Parsed by this session.
    Speaking(Box<dyn Session>),
    /// No enabled protocol: the bytes are ignored.
    Unknown,
}

/// One tracked connection.
#[derive(Debug)]
pub struct Connection {
    /// What the capture layer said of it.
    pub info: ConnInfo,
    egress: Reassembler,
    ingress: Reassembler,
    protocol: Protocol,
    /// When its last chunk came; unset until its first chunk or the first
    /// expiry round after its open, which starts its idle clock.
    pub last_seen: Option<Timestamp>,
    /// Its [`Connection::memory`] as the engine last added it up (read
    /// instead of walking the buffers again before each change).
    pub held: usize,
    /// The attributes its spans share (from `info`: reset with it).
    pub identity: Identity,
}

fn requests(role: Role) -> Option<Direction> {
    match role {
        Role::Client => Some(Direction::Egress),
        Role::Server => Some(Direction::Ingress),
        Role::Unknown => None,
    }
}

impl Connection {
    /// A connection just seen.
    pub fn new(info: ConnInfo) -> Self {
        // A connection opened while the agent ran is seen from byte 0.
        let start = (!info.preexisting).then_some(0);
        let mut connection = Connection {
            info,
            egress: Reassembler::starting_at(start),
            ingress: Reassembler::starting_at(start),
            protocol: Protocol::Undecided(Detector::default()),
            last_seen: None,
            held: 0,
            identity: Identity::default(),
        };
        connection.account();
        connection
    }

    /// Adds up its memory again after a change; returns it.
    pub fn account(&mut self) -> usize {
        self.held = self.memory();
        self.held
    }

    /// Bytes held, overhead included.
    pub fn memory(&self) -> usize {
        let session = match &self.protocol {
            Protocol::Undecided(d) => d.memory(),
            Protocol::Speaking(s) => s.memory(),
            Protocol::Unknown => 0,
        };
        CONNECTION_OVERHEAD + self.egress.memory() + self.ingress.memory() + session
    }

    /// Whether its bytes were found to be no enabled protocol.
    pub fn refused(&self) -> bool {
        matches!(self.protocol, Protocol::Unknown)
    }

    /// Takes one chunk; `room` is how many more bytes it may hold back.
    pub fn data(&mut self, chunk: &Chunk<'_>, room: usize, scope: &mut Scope<'_>) {
        self.last_seen = self.last_seen.max(Some(chunk.timestamp));
        let Connection {
            info,
            egress,
            ingress,
            protocol,
            ..
        } = self;
        let (stream, other) = match chunk.direction {
            Direction::Egress => (egress, ingress),
            Direction::Ingress => (ingress, egress),
        };
        let in_sync = !info.preexisting;
        let clue = clue_of(info, scope.settings);
        if info.datagram {
            // Each datagram is a whole message: nothing to put in order.
            deliver_datagram(protocol, &clue, chunk, scope);
            return;
        }
        if other.holding() {
            // The other side moved on: what it still waits for was lost, not
            // late (a peer answers what it has received).
            let direction = chunk.direction.opposite();
            scope.counters.duplicates += other.flush(&mut |piece| {
                deliver(protocol, &clue.toward(direction), in_sync, piece, scope);
            });
        }
        let clue = clue.toward(chunk.direction);
        scope.counters.duplicates += stream.push(chunk, room, &mut |piece| {
            deliver(protocol, &clue, in_sync, piece, scope);
        });
    }

    /// Releases held chunks (none will fill the hole before them).
    pub fn flush(&mut self, scope: &mut Scope<'_>) {
        let in_sync = !self.info.preexisting;
        let clue = clue_of(&self.info, scope.settings);
        for (direction, stream) in [
            (Direction::Egress, &mut self.egress),
            (Direction::Ingress, &mut self.ingress),
        ] {
            if stream.holding() {
                let protocol = &mut self.protocol;
                let clue = clue.toward(direction);
                scope.counters.duplicates += stream.flush(&mut |piece| deliver(protocol, &clue, in_sync, piece, scope));
            }
        }
    }

    /// The connection is gone: flush, then let the session finish.
    pub fn close(&mut self, at: Timestamp, scope: &mut Scope<'_>) {
        self.flush(scope);
        if let Protocol::Speaking(session) = &mut self.protocol {
            session.close(at, scope);
        }
    }

    /// Drops requests waiting since before `before`.
    pub fn expire(&mut self, before: Timestamp, scope: &mut Scope<'_>) {
        if let Protocol::Speaking(session) = &mut self.protocol {
            session.expire(before, scope);
        }
    }
}

/// What detection may know of `info`, for bytes going `Egress` (see
/// [`Clue::toward`]).
fn clue_of(info: &ConnInfo, settings: &Settings) -> Clue {
    let (local_port, remote_port) = (info.local.map_or(0, |a| a.port()), info.remote.map_or(0, |a| a.port()));
    Clue {
        direction: Direction::Egress,
        role: info.role,
        local_port,
        remote_port,
        datagram: info.datagram,
        dns_port: [local_port, remote_port]
            .iter()
            .any(|p| *p != 0 && settings.dns_ports.contains(p)),
        joined: info.preexisting,
    }
}

impl Clue {
    fn toward(mut self, direction: Direction) -> Clue {
        self.direction = direction;
        self
    }
}

/// One datagram, whole: its captured bytes, then what was not captured.
fn deliver_datagram(protocol: &mut Protocol, clue: &Clue, chunk: &Chunk<'_>, scope: &mut Scope<'_>) {
    let clue = clue.toward(chunk.direction);
    let data = &chunk.data[..chunk.data.len().min(chunk.length as usize)];
    let piece = |bytes| Piece {
        bytes,
        at: chunk.timestamp,
        tid: chunk.tid,
        boundary: true,
        peer: chunk.peer,
    };
    deliver(protocol, &clue, true, piece(Bytes::Data(data)), scope);
    let missing = u64::from(chunk.length).saturating_sub(data.len() as u64);
    if missing > 0 {
        let mut hole = piece(Bytes::Hole(missing));
        hole.boundary = false;
        deliver(protocol, &clue, true, hole, scope);
    }
}

fn deliver(protocol: &mut Protocol, clue: &Clue, in_sync: bool, piece: Piece<'_>, scope: &mut Scope<'_>) {
    let direction = clue.direction;
    match protocol {
        Protocol::Speaking(session) => {
            session.feed(direction, piece, scope);
            if session.failed() {
                // Detection was wrong: not this protocol after all.
                scope.counters.misdetected += 1;
                *protocol = Protocol::Unknown;
            } else if let Some(upgrade) = session.upgrade(scope.settings) {
                let mut next = upgrade.session;
                for (direction, bytes, at, tid) in &upgrade.leftover {
                    let piece = Piece {
                        bytes: Bytes::Data(bytes),
                        at: *at,
                        tid: *tid,
                        boundary: false,
                        peer: None,
                    };
                    next.feed(*direction, piece, scope);
                }
                *protocol = Protocol::Speaking(next);
            }
        }
        Protocol::Unknown => {}
        Protocol::Undecided(detector) => match detector.offer(clue, &piece, scope.settings) {
            Verdict::Wait => {}
            Verdict::Unknown => {
                scope.counters.unknown_protocol += 1;
                *protocol = Protocol::Unknown;
            }
            Verdict::Found(found) => {
                let detector = std::mem::take(detector);
                let mut session = infer::session(found, requests(clue.role), in_sync, scope.settings);
                detector.replay(&mut |direction, piece| session.feed(direction, piece, scope));
                if session.failed() {
                    scope.counters.misdetected += 1;
                    *protocol = Protocol::Unknown;
                } else {
                    *protocol = Protocol::Speaking(session);
                }
            }
        },
    }
}
