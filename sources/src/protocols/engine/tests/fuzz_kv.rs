//! Mutated-stream fuzzing of the Redis and DNS sessions, driven by the
//! proptest entries in `fuzz.rs`: plausible conversations (pipelined
//! commands, every RESP3 type, attributes and pushes, values larger than
//! a chunk; DNS queries and answers over UDP from several peers and over
//! TCP) with bytes flipped, inserted and deleted, cut into chunks that are
//! partly captured, lost, duplicated and reordered. Nothing may panic,
//! memory stays under the cap and is all freed at the end, and undamaged
//! conversations seen from their start give exactly one span per request.

use std::net::SocketAddr;

use fastrand::Rng;

use super::super::super::model::{Direction, Role};
use super::super::settings::Protocol;
use super::fuzz::{chunks, mutate};
use super::recorded::conn;
use super::*;

/// The engine's memory cap in these runs.
pub const MEMORY_CAP: usize = 256 * 1024;

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn command(rng: &mut Rng, out: &mut Vec<u8>) {
    let names: [&[u8]; 10] = [
        b"GET", b"SET", b"HGETALL", b"AUTH", b"CLIENT", b"SELECT", b"LRANGE", b"MULTI", b"ZADD", b"X.Y",
    ];
    if rng.u8(0..8) == 0 {
        out.extend_from_slice(b"PING\r\n");
        return;
    }
    let args = rng.usize(1..5);
    out.extend_from_slice(format!("*{args}\r\n").as_bytes());
    bulk(out, names[rng.usize(..names.len())]);
    for _ in 1..args {
        let len = if rng.u8(0..10) == 0 {
            rng.usize(0..20_000)
        } else {
            rng.usize(0..40)
        };
        bulk(out, &vec![b'a' + rng.u8(0..26); len]);
    }
}

fn value(rng: &mut Rng, out: &mut Vec<u8>, depth: u32) {
    let kinds = if depth > 2 { 8 } else { 13 };
    match rng.u8(0..kinds) {
        0 => out.extend_from_slice(b"+OK\r\n"),
        1 => out.extend_from_slice(b"-WRONGTYPE Operation against a key\r\n"),
        2 => out.extend_from_slice(format!(":{}\r\n", rng.i64(..)).as_bytes()),
        3 => bulk(out, &vec![b'v'; rng.usize(0..3000)]),
        4 => out.extend_from_slice(b"$-1\r\n"),
        5 => out.extend_from_slice(b"_\r\n"),
        6 => out.extend_from_slice(
            b",3.14\r\n#t\r\n(12345678901234567890\r\n"
                .split_inclusive(|b| *b == b'\n')
                .nth(rng.usize(0..3))
                .unwrap_or_default(),
        ),
        7 => out.extend_from_slice(b"=15\r\ntxt:Some string\r\n"),
        8 | 9 => {
            let n = rng.usize(0..5);
            let kind = [b'*', b'~'][rng.usize(0..2)];
            out.extend_from_slice(format!("{}{n}\r\n", kind as char).as_bytes());
            for _ in 0..n {
                value(rng, out, depth + 1);
            }
        }
        10 => {
            out.extend_from_slice(b"%1\r\n+key\r\n");
            value(rng, out, depth + 1);
        }
        11 => {
            out.extend_from_slice(b"|1\r\n+ttl\r\n:3\r\n");
            value(rng, out, depth + 1);
        }
        _ => out.extend_from_slice(b"!21\r\nSYNTAX invalid syntax\r\n"),
    }
}

/// A reply, sometimes after a RESP3 push.
fn reply(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.u8(0..8) == 0 {
        out.extend_from_slice(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n");
    }
    value(rng, out, 0);
}

/// A Redis conversation: (requests, replies, commands) per round trip
/// (several commands per round trip: pipelining).
fn redis(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>, usize)> {
    // Detection looks at a connection's first 2 KiB: it starts small.
    let first = (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec(), b"$-1\r\n".to_vec(), 1);
    std::iter::once(first)
        .chain((0..rng.usize(0..5)).map(|_| {
            let n = rng.usize(1..17);
            let (mut requests, mut replies) = (Vec::new(), Vec::new());
            for _ in 0..n {
                command(rng, &mut requests);
                reply(rng, &mut replies);
            }
            (requests, replies, n)
        }))
        .collect()
}

fn name(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.usize(1..4) {
        let len = rng.usize(1..12);
        out.push(len as u8);
        out.extend((0..len).map(|_| b'a' + rng.u8(0..26)));
    }
    out.push(0);
    out
}

/// A DNS query and its response.
fn dns(rng: &mut Rng, id: u16) -> (Vec<u8>, Vec<u8>) {
    let qtype: u16 = [1, 28, 5, 16, 33, 65][rng.usize(0..6)];
    let question = [name(rng), qtype.to_be_bytes().to_vec(), vec![0, 1]].concat();
    let answers = if rng.bool() { rng.u16(0..12) } else { 0 };
    let rcode = [0u8, 0, 0, 3, 2, 5][rng.usize(0..6)];
    let header = |flags: u16, an: u16| {
        [
            id.to_be_bytes(),
            flags.to_be_bytes(),
            [0, 1],
            an.to_be_bytes(),
            [0, 0],
            [0, 0],
        ]
        .concat()
    };
    let query = [header(0x0100, 0), question.clone()].concat();
    let mut response = [header(0x8180 | u16::from(rcode), answers), question].concat();
    for _ in 0..answers {
        response.extend_from_slice(&[0xc0, 0x0c]);
        if rng.bool() {
            response.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            response.extend((0..4).map(|_| rng.u8(..)));
        } else {
            response.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
            response.extend((0..16).map(|_| rng.u8(..)));
        }
    }
    (query, response)
}

fn settings() -> Settings {
    Settings {
        protocols: Protocol::ALL.to_vec(),
        max_connection_bytes: 16 * 1024,
        max_memory_bytes: MEMORY_CAP,
        max_series: 64,
        ..Settings::default()
    }
}

/// Which protocol a run speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Redis over TCP.
    Redis,
    /// DNS over UDP.
    DnsUdp,
    /// DNS over TCP.
    DnsTcp,
}

/// One chunk to feed: direction, position, length, captured bytes, peer.
type Feed = (Direction, (u64, u32, Vec<u8>), Option<SocketAddr>);

/// Feeds `count` conversations of `kind`, mutated and damaged when
/// `damage`; returns how many spans they gave.
pub fn run(kind: Kind, seed: u64, count: usize, damage: bool) -> usize {
    let mut rng = Rng::with_seed(seed);
    let mut h = Harness::new(settings());
    let mut spans = 0;
    let peers: [Option<SocketAddr>; 3] = [None, "10.9.0.1:5000".parse().ok(), "10.9.0.2:5000".parse().ok()];
    for stream in 0..count {
        let c = id(1 + rng.u32(0..4), stream as u32);
        let role = [Role::Client, Role::Server, Role::Unknown][rng.usize(0..3)];
        let start = if rng.bool() || kind == Kind::DnsUdp {
            0
        } else {
            rng.u64(0..1 << 40)
        };
        let port = if kind == Kind::Redis { 6379 } else { 53 };
        let mut opened = conn(c, role, port, kind == Kind::DnsUdp);
        opened.preexisting = start != 0;
        h.engine.open(opened);
        let (out, back) = match role {
            Role::Server => (Direction::Ingress, Direction::Egress),
            _ => (Direction::Egress, Direction::Ingress),
        };
        let mut feed: Vec<Feed> = Vec::new();
        let (mut sent, mut received, mut expected) = (start, start, 0);
        let rounds: Vec<(Vec<u8>, Vec<u8>, usize)> = match kind {
            Kind::Redis => redis(&mut rng),
            _ => (0..rng.usize(1..8))
                .map(|i| {
                    let (q, r) = dns(&mut rng, 1000 + i as u16);
                    if kind == Kind::DnsTcp {
                        let prefix = |m: &[u8]| [(m.len() as u16).to_be_bytes().to_vec(), m.to_vec()].concat();
                        (prefix(&q), prefix(&r), 1)
                    } else {
                        (q, r, 1)
                    }
                })
                .collect(),
        };
        for (mut requests, mut replies, n) in rounds {
            expected += n;
            if damage && rng.u8(0..3) == 0 {
                mutate(&mut rng, &mut requests);
                mutate(&mut rng, &mut replies);
            }
            let peer = peers[rng.usize(0..3)];
            if kind == Kind::DnsUdp {
                // One datagram each way, sometimes cut, lost or sent twice.
                for (direction, bytes) in [(out, requests), (back, replies)] {
                    let captured = if damage && rng.u8(0..6) == 0 {
                        rng.usize(0..=bytes.len())
                    } else {
                        bytes.len()
                    };
                    let copies = if damage { rng.usize(0..3) } else { 1 };
                    for _ in 0..copies {
                        feed.push((direction, (0, bytes.len() as u32, bytes[..captured].to_vec()), peer));
                    }
                }
                continue;
            }
            feed.extend(
                chunks(&mut rng, &requests, sent, damage)
                    .into_iter()
                    .map(|c| (out, c, None)),
            );
            feed.extend(
                chunks(&mut rng, &replies, received, damage)
                    .into_iter()
                    .map(|c| (back, c, None)),
            );
            sent += requests.len() as u64;
            received += replies.len() as u64;
        }
        if damage && feed.len() > 1 {
            let i = rng.usize(..feed.len() - 1);
            feed.swap(i, i + 1);
        }
        let before = h.spans().len();
        let undetected = h.engine.counters().unknown_protocol;
        if std::env::var("FUZZ_DEBUG").is_ok() {
            for (d, (p, l, data), peer) in &feed {
                eprintln!("{stream} {role:?} {d:?} {p} {l} {peer:?} {data:02x?}");
            }
        }
        for (direction, (position, length, data), peer) in feed {
            h.tid = rng.u32(1..4);
            h.peer = peer;
            h.chunk_at(c, direction, position, &data, length);
            assert!(
                h.engine.memory() <= MEMORY_CAP,
                "memory {} over the cap",
                h.engine.memory()
            );
        }
        match rng.u8(0..4) {
            0 if damage => h.engine.expire(
                Timestamp::from_nanos(h.clock + rng.u64(0..120_000_000_000)),
                &mut h.events,
            ),
            1 if damage => {}
            _ => h.close(c),
        }
        let got = h.spans().len() - before;
        // Detection looks at 8 pieces at most: one cut into tiny pieces
        // may not be recognised (the detector's limit, not the session's).
        let detected = h.engine.counters().unknown_protocol == undetected;
        if !damage && start == 0 && detected && (role != Role::Unknown || kind != Kind::Redis) {
            assert_eq!(
                got,
                expected,
                "{kind:?} stream {stream} ({role:?}): {:?}",
                h.engine.counters()
            );
        }
        spans += got;
        h.events.clear();
    }
    // Connections that got no chunk start their idle clock at the first expiry.
    h.engine.expire(Timestamp::from_nanos(h.clock), &mut h.events);
    h.engine.expire(Timestamp::from_nanos(u64::MAX), &mut h.events);
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.engine.memory(), 0, "everything closed, nothing held");
    spans
}
