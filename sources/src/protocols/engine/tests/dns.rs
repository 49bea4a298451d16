//! DNS sessions on real messages (`fixtures/dns-*.txt`, recorded from
//! dnsmasq answering dig), arranged as sockets see them: connected and
//! unconnected, answers out of order, datagrams cut by the capture, TCP;
//! and bytes that are not DNS.

use std::net::SocketAddr;

use sonde_core::event::{SpanKind, SpanStatus};

use super::super::super::model::{Direction::*, Role};
use super::super::infer::{detect, Clue};
use super::super::settings::Protocol;
use super::recorded::{conn, reads, Read};
use super::*;

const UDP: &str = include_str!("fixtures/dns-udp.txt");
const TCP: &str = include_str!("fixtures/dns-tcp.txt");

fn settings() -> Settings {
    Settings {
        protocols: Protocol::ALL.to_vec(),
        ..Settings::default()
    }
}

/// dig's queries and dnsmasq's answers: A, AAAA, NXDOMAIN, REFUSED.
fn messages() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let all = reads(UDP);
    let pick = |client: bool| {
        all.iter()
            .filter(|r: &&Read| r.from_client == client)
            .map(|r| r.bytes.clone())
            .collect()
    };
    (pick(true), pick(false))
}

fn harness(c: ConnId, role: Role, datagram: bool) -> Harness {
    let mut h = Harness::new(settings());
    h.engine.open(conn(c, role, 53, datagram));
    h
}

/// (name, type, rcode, answers, addresses) of every span.
fn summary(h: &Harness) -> Vec<(String, String, String, i64, String)> {
    h.spans()
        .iter()
        .map(|s| {
            (
                field(s, "dns.question.name").unwrap_or("-").to_string(),
                field(s, "dns.question.type").unwrap_or("-").to_string(),
                field(s, "dns.response_code").unwrap_or("-").to_string(),
                int(s, "sonde.dns.answer.count").unwrap_or(-1),
                field(s, "dns.answers").unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn row(name: &str, qtype: &str, rcode: &str, answers: i64, addresses: &str) -> (String, String, String, i64, String) {
    (name.into(), qtype.into(), rcode.into(), answers, addresses.into())
}

#[test]
fn dig_lookups_over_udp_pair_with_their_answers() {
    for role in [Role::Client, Role::Server] {
        let c = id(1, 5);
        let mut h = harness(c, role, true);
        let out = if role == Role::Server { Ingress } else { Egress };
        let (queries, answers) = messages();
        for (q, a) in queries.iter().zip(&answers) {
            h.send(c, out, q);
            h.send(c, out.opposite(), a);
        }
        let want = vec![
            row("example.test", "A", "NOERROR", 1, "10.1.2.3"),
            row("example.test", "AAAA", "NOERROR", 1, "fd00::1"),
            row("host.nx.test", "A", "NXDOMAIN", 0, "-"),
            row("other.org", "A", "REFUSED", 0, "-"),
        ];
        assert_eq!(summary(&h), want, "{role:?}");
        let spans = h.spans();
        let kind = if role == Role::Server {
            SpanKind::Server
        } else {
            SpanKind::Client
        };
        assert!(spans.iter().all(|s| s.kind == kind));
        assert_eq!(spans[0].name.as_str(), "DNS A");
        assert_eq!(field(spans[0], "network.transport"), Some("udp"));
        assert_eq!(spans[0].status, SpanStatus::Unset);
        assert_eq!(field(spans[2], "error.type"), Some("NXDOMAIN"));
        assert!(matches!(spans[3].status, SpanStatus::Error { .. }));
        assert_eq!(h.engine.counters(), &Counters::default());
    }
}

#[test]
fn two_queries_on_one_socket_answered_out_of_order_pair_by_id_and_question() {
    let c = id(1, 5);
    let mut h = harness(c, Role::Client, true);
    let (queries, answers) = messages();
    // glibc: A and AAAA in one sendmmsg, then the answers as they come.
    h.send(c, Egress, &queries[0]);
    h.send(c, Egress, &queries[1]);
    h.send(c, Ingress, &answers[1]);
    h.send(c, Ingress, &answers[0]);
    let got: Vec<String> = summary(&h).into_iter().map(|r| r.4).collect();
    assert_eq!(got, ["fd00::1", "10.1.2.3"]);
    assert_eq!(h.engine.counters(), &Counters::default());
}

#[test]
fn an_unconnected_server_socket_pairs_by_peer() {
    let c = id(1, 5);
    let mut h = Harness::new(settings());
    let mut info = conn(c, Role::Server, 53, true);
    info.remote = None;
    h.engine.open(info);
    let (queries, answers) = messages();
    let one: SocketAddr = "10.0.0.7:5001".parse().unwrap();
    let two: SocketAddr = "10.0.0.8:5002".parse().unwrap();
    // Two clients send the very same query (same id and question).
    for peer in [one, two] {
        h.peer = Some(peer);
        h.send(c, Ingress, &queries[0]);
    }
    // Answered in the other order.
    for peer in [two, one] {
        h.peer = Some(peer);
        h.send(c, Egress, &answers[0]);
    }
    let spans = h.spans();
    assert_eq!(spans.len(), 2);
    let clients: Vec<_> = spans
        .iter()
        .map(|s| (field(s, "client.address").unwrap(), int(s, "client.port").unwrap()))
        .collect();
    assert_eq!(clients, [("10.0.0.8", 5002), ("10.0.0.7", 5001)]);
    // The second answer was sent later: its span is the longer one.
    let long = |s: &Span| s.end.as_nanos() - s.start.as_nanos();
    assert!(long(spans[1]) > long(spans[0]));
    assert_eq!(int(spans[0], "server.port"), Some(53));
    assert_eq!(h.engine.counters(), &Counters::default(), "no duplicates: peers differ");
}

#[test]
fn a_datagram_cut_by_the_capture_still_pairs_by_its_header_and_question() {
    let c = id(1, 5);
    let mut h = harness(c, Role::Client, true);
    let (queries, answers) = messages();
    h.send(c, Egress, &queries[0]);
    let answer = &answers[0];
    // Header (12) + question (18 + 4) fit; the answer record does not.
    h.send_partial(c, Ingress, &answer[..36], answer.len() as u32);
    assert_eq!(summary(&h), vec![row("example.test", "A", "NOERROR", 1, "-")]);
}

#[test]
fn a_retransmitted_query_pairs_with_the_first_answer_and_is_counted() {
    let c = id(1, 5);
    let mut h = harness(c, Role::Client, true);
    let (queries, answers) = messages();
    h.send(c, Egress, &queries[0]);
    let first = h.clock;
    h.send(c, Egress, &queries[0]);
    h.send(c, Ingress, &answers[0]);
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].start.as_nanos(), first);
    assert_eq!(h.engine.counters().duplicates, 1);
}

#[test]
fn unanswered_queries_expire_and_are_counted() {
    let c = id(1, 5);
    let mut h = harness(c, Role::Client, true);
    let (queries, _) = messages();
    h.send(c, Egress, &queries[2]);
    // Not yet.
    h.engine
        .expire(Timestamp::from_nanos(h.clock + 1_000_000_000), &mut h.events);
    assert_eq!(h.engine.counters().unanswered_requests, 0);
    h.send(c, Egress, &queries[3]);
    h.engine
        .expire(Timestamp::from_nanos(h.clock + 61_000_000_000), &mut h.events);
    assert!(h.spans().is_empty());
    assert_eq!(h.engine.counters().unanswered_requests, 2);
    assert_eq!(h.engine.memory(), 0);
}

#[test]
fn an_unknown_role_is_told_by_who_sends_the_query() {
    let c = id(1, 5);
    let mut h = harness(c, Role::Unknown, true);
    let (queries, answers) = messages();
    h.send(c, Ingress, &queries[0]);
    h.send(c, Egress, &answers[0]);
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].kind, SpanKind::Server);
}

#[test]
fn dig_over_tcp_pairs_length_prefixed_messages_cut_anywhere() {
    let recorded = reads(TCP);
    let (query, answer) = (&recorded[0].bytes, &recorded[1].bytes);
    for cut in [1, 2, 3, 7, usize::MAX] {
        let c = id(1, 6);
        let mut h = harness(c, Role::Server, false);
        // A server reads the length, then the message (detection sees both).
        h.send(c, Ingress, &query[..2]);
        h.send(c, Ingress, &query[2..]);
        for piece in answer.chunks(cut) {
            h.send(c, Egress, piece);
        }
        assert_eq!(
            summary(&h),
            vec![row("example.test", "A", "NOERROR", 1, "10.1.2.3")],
            "cut {cut}"
        );
        assert_eq!(field(h.spans()[0], "network.transport"), Some("tcp"));
        assert_eq!(h.engine.counters(), &Counters::default(), "cut {cut}");
    }
}

#[test]
fn other_protocols_and_random_bytes_are_not_dns() {
    let settings = Settings {
        protocols: vec![Protocol::Dns],
        ..Settings::default()
    };
    let mut rng = fastrand::Rng::with_seed(53);
    let mut inputs = super::redis::other_protocols();
    inputs.pop(); // DNS over TCP itself.
    for _ in 0..200_000 {
        let len = rng.usize(1..128);
        inputs.push((0..len).map(|_| rng.u8(..)).collect());
    }
    for data in &inputs {
        for datagram in [false, true] {
            for port in [53, 8080] {
                let clue = Clue {
                    direction: Egress,
                    role: Role::Client,
                    local_port: 40000,
                    remote_port: port,
                    datagram,
                    dns_port: port == 53,
                    joined: false,
                };
                assert_eq!(detect(&settings, &clue, data), None, "{data:?}");
            }
        }
    }
    // A real query is DNS on port 53, and off it only over UDP.
    let (queries, _) = messages();
    let tcp = &reads(TCP)[0].bytes;
    let clue = |port, datagram| Clue {
        direction: Egress,
        role: Role::Client,
        local_port: 40000,
        remote_port: port,
        datagram,
        dns_port: port == 53,
        joined: false,
    };
    assert_eq!(detect(&settings, &clue(5353, true), &queries[0]), Some(Protocol::Dns));
    assert_eq!(detect(&settings, &clue(53, false), tcp), Some(Protocol::Dns));
    assert_eq!(detect(&settings, &clue(8053, false), tcp), None);
    // And through the engine: no spans.
    let c = id(1, 5);
    let mut h = Harness::new(settings);
    h.engine.open(conn(c, Role::Client, 53, true));
    for data in super::redis::other_protocols() {
        h.send(c, Egress, &data);
        h.send(c, Ingress, &data);
    }
    assert!(h.spans().is_empty());
}
