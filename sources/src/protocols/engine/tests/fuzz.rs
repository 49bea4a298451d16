//! The reassembler and the HTTP parser under mutated streams: valid
//! exchanges (keep-alive, pipelining, chunked, HEAD, 100-continue,
//! Upgrade) with bytes flipped, inserted and deleted, cut into chunks that
//! are partly captured, lost, duplicated and reordered, on many connections
//! at once, under small memory caps. Nothing may panic, the engine's memory
//! must stay under its cap, and closing everything must free everything.
//!
//! Streams per run: `SONDE_FUZZ_STREAMS` (default 20 000). The 10^6 run:
//! `SONDE_FUZZ_STREAMS=1000000 cargo test --release -p sonde-sources
//! protocols::engine::tests::fuzz`.

use fastrand::Rng;
use proptest::prelude::*;

use super::super::super::model::{Direction, Direction::Ingress, Role};
use super::*;

/// Streams generated from one proptest case's seed.
const STREAMS_PER_CASE: usize = 100;
const MEMORY_CAP: usize = 256 * 1024;

fn streams() -> usize {
    std::env::var("SONDE_FUZZ_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// One plausible exchange: (request bytes, response bytes).
fn exchange(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let body = "b".repeat(rng.usize(0..300));
    let path = format!("/p/{}?q={}", rng.u32(..), rng.u8(..));
    match rng.u8(0..7) {
        0 => (get(&path), ok(200, &body)),
        1 => (
            // An empty body is the last chunk alone (a 0-size chunk ends it).
            if body.is_empty() {
                format!("POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes()
            } else {
                format!("POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes()
            },
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n".to_vec(),
        ),
        2 => (
            format!("HEAD {path} HTTP/1.1\r\n\r\n").into_bytes(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec(),
        ),
        3 => (
            format!("PUT {path} HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
            [b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), ok(204, "")].concat(),
        ),
        4 => (
            format!("GET {path} HTTP/1.1\r\nUpgrade: websocket\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n").into_bytes(),
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02hi".to_vec(),
        ),
        5 => (get(&path), ok(503, &body)),
        _ => (b"GET / HTTP/1.0\r\n\r\n".to_vec(), format!("HTTP/1.0 200 OK\r\n\r\n{body}").into_bytes()),
    }
}

pub(super) fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.usize(0..4) {
        if bytes.is_empty() {
            return;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(0..4) {
            0 => bytes[at] = rng.u8(..),
            1 => bytes.insert(
                at,
                *b"\r\n: 0123456789abcdefHTTP/1.1 GET"
                    .get(rng.usize(0..32))
                    .unwrap_or(&b'x'),
            ),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
}

/// Chunks of one direction: (position, length, captured bytes).
pub(super) fn chunks(rng: &mut Rng, stream: &[u8], start: u64, damage: bool) -> Vec<(u64, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < stream.len() {
        let len = rng.usize(1..=(stream.len() - at).min(2048));
        let captured = if damage && rng.u8(0..16) == 0 {
            rng.usize(0..=len)
        } else {
            len
        };
        out.push((start + at as u64, len as u32, stream[at..at + captured].to_vec()));
        at += len;
    }
    // Lose, duplicate and swap a few.
    for _ in 0..if damage { rng.usize(0..2) } else { 0 } {
        if out.is_empty() {
            break;
        }
        let i = rng.usize(..out.len());
        match rng.u8(0..3) {
            0 => drop(out.remove(i)),
            1 => out.insert(i, out[i].clone()),
            _ => {
                let j = rng.usize(..out.len());
                out.swap(i, j);
            }
        }
    }
    out
}

/// Feeds `count` streams, mutated and damaged when `damage`, many
/// connections at once; returns how many spans they gave. Undamaged streams
/// of connections seen from their start must give exactly one span per
/// exchange (up to the first that leaves HTTP or reads until the close).
fn run(seed: u64, count: usize, damage: bool) -> usize {
    let mut rng = Rng::with_seed(seed);
    let settings = Settings {
        max_connection_bytes: 16 * 1024,
        max_memory_bytes: MEMORY_CAP,
        max_routes_per_service: 8,
        max_series: 64,
        ..Settings::default()
    };
    let mut h = Harness::new(settings);
    let mut spans = 0;
    for stream in 0..count {
        let c = id(1 + rng.u32(0..4), stream as u32);
        let role = [Role::Client, Role::Server, Role::Unknown][rng.usize(0..3)];
        let start = if rng.bool() { 0 } else { rng.u64(0..1 << 40) };
        if role != Role::Unknown {
            let mut opened = info(c, role);
            opened.preexisting = start != 0 && (!damage || rng.bool());
            h.engine.open(opened);
        }
        let (out, back) = match role {
            Role::Server => (Direction::Ingress, Direction::Egress),
            _ => (Direction::Egress, Direction::Ingress),
        };
        // Each exchange's request chunks, then its response's: causal order.
        let mut feed = Vec::new();
        let (mut sent, mut received) = (start, start);
        let (mut expected, mut stopped) = (0, false);
        for _ in 0..rng.usize(1..6) {
            let (mut request, mut response) = exchange(&mut rng);
            if !stopped {
                expected += 1;
                stopped = request.starts_with(b"GET / HTTP/1.0") || request.windows(7).any(|w| w == b"Upgrade");
            }
            if damage && rng.u8(0..3) == 0 {
                mutate(&mut rng, &mut request);
                mutate(&mut rng, &mut response);
            }
            feed.extend(chunks(&mut rng, &request, sent, damage).into_iter().map(|c| (out, c)));
            feed.extend(
                chunks(&mut rng, &response, received, damage)
                    .into_iter()
                    .map(|c| (back, c)),
            );
            sent += request.len() as u64;
            received += response.len() as u64;
        }
        if damage && feed.len() > 1 {
            let i = rng.usize(..feed.len() - 1);
            feed.swap(i, i + 1);
        }
        let before = h.spans().len();
        let counters_before = h.engine.counters().clone();
        if std::env::var("FUZZ_DEBUG").is_ok() {
            for (d, (p, l, data)) in &feed {
                eprintln!("{stream} {role:?} {d:?} {p} {l} {:?}", String::from_utf8_lossy(data));
            }
        }
        for (direction, (position, length, data)) in feed {
            h.tid = rng.u32(1..4);
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
        if !damage && role != Role::Unknown && start == 0 {
            assert_eq!(
                got,
                expected,
                "stream {stream} ({role:?}): {:?} before {counters_before:?}",
                h.engine.counters()
            );
        }
        spans += got;
        h.events.clear();
    }
    h.engine.expire(Timestamp::from_nanos(u64::MAX), &mut h.events);
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.engine.memory(), 0, "everything closed, nothing held");
    spans
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: (streams() / STREAMS_PER_CASE).max(1) as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_streams_never_panic_and_stay_under_the_memory_cap(seed in any::<u64>()) {
        // Damage spares some exchanges: the parser is exercised, not just resyncing.
        let spans = run(seed, STREAMS_PER_CASE, true);
        prop_assert!(spans > STREAMS_PER_CASE / 5, "{spans} spans from {STREAMS_PER_CASE} streams");
    }

    #[test]
    fn undamaged_streams_cut_anywhere_give_one_span_per_exchange(seed in any::<u64>()) {
        prop_assert!(run(seed, 10, false) > 0);
    }
}

/// The recorded database conversations, mutated, cut anywhere, partly
/// captured, lost and reordered, many connections at once, under the
/// memory cap; closing everything frees everything.
fn run_databases(seed: u64, count: usize) -> usize {
    let fixtures = [
        include_str!("fixtures/pg_psql.txt"),
        include_str!("fixtures/pg_copy_in.txt"),
        include_str!("fixtures/pg_pgbench_extended.txt"),
        include_str!("fixtures/pg_pgbench_prepared.txt"),
        include_str!("fixtures/mariadb_cli.txt"),
        include_str!("fixtures/mariadb_prepared.txt"),
    ]
    .map(super::sqlreplay::lines);
    let mut rng = Rng::with_seed(seed);
    let settings = Settings {
        protocols: crate::protocols::engine::Protocol::ALL.to_vec(),
        max_connection_bytes: 16 * 1024,
        max_memory_bytes: MEMORY_CAP,
        ..Settings::default()
    };
    let mut h = Harness::new(settings);
    let mut spans = 0;
    let mut open = Vec::new();
    for stream in 0..count {
        let c = id(1 + rng.u32(0..4), stream as u32);
        let role = [Role::Client, Role::Server, Role::Unknown][rng.usize(0..3)];
        if role != Role::Unknown {
            h.engine.open(info(c, role));
        }
        let out = super::sqlreplay::client_direction(role);
        let lines = &fixtures[rng.usize(..fixtures.len())];
        let skip = if rng.u8(0..4) == 0 { rng.usize(..lines.len()) } else { 0 };
        let (mut sent, mut received) = (0u64, 0u64);
        let mut feed = Vec::new();
        for (client, bytes) in &lines[skip..] {
            let mut bytes = bytes.clone();
            if rng.u8(0..4) == 0 {
                mutate(&mut rng, &mut bytes);
            }
            let (direction, at) = if *client {
                (out, &mut sent)
            } else {
                (out.opposite(), &mut received)
            };
            let damage = rng.u8(0..3) == 0;
            feed.extend(
                chunks(&mut rng, &bytes, *at, damage)
                    .into_iter()
                    .map(|c| (direction, c)),
            );
            *at += bytes.len() as u64;
        }
        for (direction, (position, length, data)) in feed {
            h.tid = rng.u32(1..4);
            h.chunk_at(c, direction, position, &data, length);
            assert!(
                h.engine.memory() <= MEMORY_CAP,
                "memory {} over the cap",
                h.engine.memory()
            );
        }
        if rng.bool() {
            h.close(c);
        } else {
            open.push(c);
        }
        spans += h.spans().len();
        h.events.clear();
    }
    h.engine.expire(Timestamp::from_nanos(u64::MAX), &mut h.events);
    // Opened but never sent a byte (every chunk lost): not idle yet.
    for c in open {
        h.close(c);
    }
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.engine.memory(), 0, "everything closed, nothing held");
    spans
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: (streams() / STREAMS_PER_CASE).max(1) as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_database_conversations_never_panic_and_stay_under_the_cap(seed in any::<u64>()) {
        let spans = run_databases(seed, STREAMS_PER_CASE);
        prop_assert!(spans > 0);
    }
}

#[test]
fn many_connections_at_once_hit_the_global_cap_and_count_it() {
    let settings = Settings {
        max_memory_bytes: 64 * 1024,
        ..Settings::default()
    };
    let mut h = Harness::new(settings);
    // Heads that never end: each connection buffers until the caps bite.
    for fd in 0..200 {
        let c = id(1, fd);
        h.engine.open(info(c, Role::Server));
        h.send(c, Ingress, b"GET /slow HTTP/1.1\r\nX-Pad: ");
        for _ in 0..4 {
            h.send(c, Ingress, &[b'a'; 1000]);
        }
        assert!(h.engine.memory() <= 64 * 1024);
    }
    assert!(h.engine.counters().memory_drops > 0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: (streams() / STREAMS_PER_CASE / 3).max(1) as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_redis_and_dns_streams_never_panic_and_stay_under_the_memory_cap(seed in any::<u64>()) {
        use super::fuzz_kv::{run, Kind};
        for kind in [Kind::Redis, Kind::DnsUdp, Kind::DnsTcp] {
            let spans = run(kind, seed, STREAMS_PER_CASE, true);
            prop_assert!(spans > STREAMS_PER_CASE / 5, "{kind:?}: {spans} spans from {STREAMS_PER_CASE} streams");
        }
    }

    #[test]
    fn undamaged_redis_and_dns_streams_give_one_span_per_request(seed in any::<u64>()) {
        use super::fuzz_kv::{run, Kind};
        for kind in [Kind::Redis, Kind::DnsUdp, Kind::DnsTcp] {
            prop_assert!(run(kind, seed, 10, false) > 0);
        }
    }
}

/// A seed the 10^6 run failed with: the generator made an empty chunked
/// body as `0\r\n\r\n0\r\n\r\n` (two ends), which no client sends.
#[test]
fn undamaged_stream_seed_10353058038512376081() {
    assert!(run(10_353_058_038_512_376_081, 10, false) > 0);
}
