//! HTTP/2 under mutation: HPACK blocks of random and mutated bytes into
//! decoders of every table state, and whole h2 conversations (HEADERS,
//! CONTINUATION, DATA, RST_STREAM, SETTINGS, GOAWAY, gRPC messages)
//! mutated, cut anywhere, partly captured, lost and reordered, many
//! connections at once, under a small memory cap. Nothing may panic, the
//! engine stays under its cap, closing everything frees everything, and
//! undamaged conversations give exactly one span per stream.
//!
//! Inputs per run: `SONDE_FUZZ_STREAMS` (default 20 000) conversations,
//! twenty times that many HPACK blocks. The 10^6 run:
//! `SONDE_FUZZ_STREAMS=1000000 cargo test --release -p sonde-sources
//! protocols::engine::tests::fuzz_h2`.

use fastrand::Rng;
use proptest::prelude::*;

use super::super::super::model::{Direction, Role};
use super::super::http2::frame::{self, PREFACE};
use super::super::http2::hpack::{Decoder, MAX_TABLE};
use super::fuzz::{chunks, mutate};
use super::http2::{data, message, raw, settings, settings_frame, Peer};
use super::*;

const PER_CASE: usize = 100;
const MEMORY_CAP: usize = 256 * 1024;

fn streams() -> usize {
    std::env::var("SONDE_FUZZ_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// One block: plausible fields from an encoder, or noise, mutated.
fn block(rng: &mut Rng, peer: &mut Peer) -> Vec<u8> {
    let mut b = match rng.u8(0..3) {
        0 => (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect(),
        _ => {
            let path = format!("/p/{}", rng.u32(..));
            let v = "v".repeat(rng.usize(0..200));
            peer.block(&[
                (":method", "GET"),
                (":path", &path),
                ("x-k", &v),
                ("content-type", "application/grpc"),
            ])
        }
    };
    mutate(rng, &mut b);
    b
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: (streams() / PER_CASE).max(1) as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hpack_blocks_never_panic_and_the_table_stays_bounded(seed in any::<u64>()) {
        let mut rng = Rng::with_seed(seed);
        let mut peer = Peer::new();
        let mut decoders = [Decoder::new(true), Decoder::new(false)];
        for _ in 0..PER_CASE * 20 {
            let b = block(&mut rng, &mut peer);
            let d = &mut decoders[rng.usize(0..2)];
            if rng.u8(0..50) == 0 {
                d.lose();
            }
            if rng.u8(0..50) == 0 {
                d.allow(rng.usize(..1 << 24));
            }
            let mut fields = 0usize;
            let _ = d.decode(&b, &mut |_, _| fields += 1);
            prop_assert!(fields <= b.len());
            prop_assert!(d.memory() <= MAX_TABLE + 64 * 1024, "{}", d.memory());
        }
    }

    #[test]
    fn mutated_h2_conversations_never_panic_and_stay_under_the_cap(seed in any::<u64>()) {
        let spans = run(seed, PER_CASE, true);
        prop_assert!(spans > PER_CASE / 5, "{spans} spans from {PER_CASE} conversations");
    }

    #[test]
    fn undamaged_h2_conversations_cut_anywhere_give_one_span_per_stream(seed in any::<u64>()) {
        prop_assert!(run(seed, 10, false) > 0);
    }
}

/// A conversation: (client bytes, server bytes, streams answered).
fn conversation(rng: &mut Rng) -> (Vec<u8>, Vec<u8>, usize) {
    let (mut client, mut server) = (Peer::new(), Peer::new());
    let mut out = PREFACE.to_vec();
    out.extend(settings_frame());
    let mut back = settings_frame();
    let n = rng.usize(1..6);
    for i in 0..n {
        let stream = 1 + 2 * i as u32;
        let grpc = rng.bool();
        let path = format!("/svc.S{}/M{}", rng.u8(0..3), rng.u32(..));
        let ct = if grpc { "application/grpc" } else { "text/plain" };
        let block = client.block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", &path),
            ("content-type", ct),
        ]);
        if rng.bool() && block.len() > 2 {
            let (a, b) = block.split_at(block.len() / 2);
            out.extend(raw(frame::HEADERS, 0, stream, a));
            out.extend(raw(frame::CONTINUATION, frame::END_HEADERS, stream, b));
        } else {
            out.extend(raw(frame::HEADERS, frame::END_HEADERS, stream, &block));
        }
        out.extend(data(stream, &message(&vec![b'q'; rng.usize(0..300)]), true));
        back.extend(server.headers(stream, &[(":status", "200"), ("content-type", ct)], false));
        for _ in 0..rng.usize(0..4) {
            back.extend(data(stream, &message(&vec![b'r'; rng.usize(0..3000)]), false));
        }
        match rng.u8(0..4) {
            0 => back.extend(data(stream, b"", true)),
            1 => back.extend(raw(frame::RST_STREAM, 0, stream, &[0, 0, 0, 8])),
            _ => back.extend(server.headers(stream, &[("grpc-status", "0")], true)),
        }
    }
    back.extend(raw(frame::GOAWAY, 0, 0, &[0, 0, 0, (2 * n - 1) as u8, 0, 0, 0, 0]));
    (out, back, n)
}

fn run(seed: u64, count: usize, damage: bool) -> usize {
    let mut rng = Rng::with_seed(seed);
    let mut h = Harness::new(Settings {
        max_connection_bytes: 16 * 1024,
        max_memory_bytes: MEMORY_CAP,
        max_routes_per_service: 8,
        max_series: 64,
        ..settings()
    });
    let mut spans = 0;
    for conv in 0..count {
        let c = id(1 + rng.u32(0..4), conv as u32);
        let role = [Role::Client, Role::Server, Role::Unknown][rng.usize(0..3)];
        let joined = damage && rng.u8(0..4) == 0;
        if role != Role::Unknown {
            let mut opened = info(c, role);
            opened.preexisting = joined;
            h.engine.open(opened);
        }
        let (fwd, rev) = match role {
            Role::Server => (Direction::Ingress, Direction::Egress),
            _ => (Direction::Egress, Direction::Ingress),
        };
        let (mut out, mut back, expected) = conversation(&mut rng);
        if damage && rng.u8(0..3) == 0 {
            mutate(&mut rng, &mut out);
            mutate(&mut rng, &mut back);
        }
        let skip = if joined { rng.usize(..=out.len()) } else { 0 };
        let mut feed: Vec<_> = chunks(&mut rng, &out[skip..], skip as u64, damage)
            .into_iter()
            .map(|c| (fwd, c))
            .collect();
        // Answers after the requests (what the undamaged count relies on).
        feed.extend(chunks(&mut rng, &back, 0, damage).into_iter().map(|c| (rev, c)));
        if damage && feed.len() > 1 {
            let i = rng.usize(..feed.len() - 1);
            feed.swap(i, i + 1);
        }
        let before = h.spans().len();
        for (direction, (position, length, bytes)) in feed {
            h.tid = rng.u32(1..4);
            h.chunk_at(c, direction, position, &bytes, length);
            assert!(
                h.engine.memory() <= MEMORY_CAP,
                "memory {} over the cap",
                h.engine.memory()
            );
        }
        if !damage || rng.bool() {
            h.close(c);
        }
        let got = h.spans().len() - before;
        if !damage && role != Role::Unknown {
            assert_eq!(
                got,
                expected,
                "conversation {conv} ({role:?}): {:?}",
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
