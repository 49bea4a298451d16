//! HTTP/2 and gRPC: HPACK against RFC 7541's examples, then sessions on
//! the frames a client and a server write (encoded with `loona-hpack`, an
//! independent encoder), seen from the start and joined mid-connection.

use sonde_core::event::{SpanKind, SpanStatus, Timestamp};

use super::super::super::model::{Direction::*, Role};
use super::super::http2::frame::{self, PREFACE};
use super::super::http2::hpack::{Decoder, Table};
use super::super::settings::Protocol;
use super::*;

pub fn settings() -> Settings {
    Settings {
        protocols: vec![Protocol::Http1, Protocol::Http2],
        ..Settings::default()
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

type Fields = Vec<(Option<String>, Option<String>)>;

fn decode(d: &mut Decoder, block: &[u8]) -> Fields {
    let mut out = Vec::new();
    d.decode(block, &mut |n, v| {
        let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        out.push((s(n), s(v)));
    })
    .expect("valid block");
    out
}

fn known(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(n, v)| (Some(n.to_string()), Some(v.to_string())))
        .collect()
}

#[test]
fn hpack_decodes_rfc7541_requests_with_and_without_huffman() {
    // RFC 7541 C.3 (literals) and C.4 (Huffman): the same three requests.
    for blocks in [
        [
            "828684410f7777772e6578616d706c652e636f6d",
            "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        ],
        [
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        ],
    ] {
        let mut d = Decoder::new(true);
        let first = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(decode(&mut d, &hex(blocks[0])), known(&first));
        let mut second = first.to_vec();
        second.push(("cache-control", "no-cache"));
        assert_eq!(decode(&mut d, &hex(blocks[1])), known(&second));
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        assert_eq!(decode(&mut d, &hex(blocks[2])), known(&third));
        assert_eq!(d.table(), Table::Complete);
    }
}

#[test]
fn a_joined_decoder_marks_what_predates_it_unknown_and_keeps_the_rest_right() {
    // The second block of C.3 alone: index 62 (`:authority`) was inserted
    // before this decoder existed.
    let mut d = Decoder::new(false);
    let fields = decode(&mut d, &hex("828684be58086e6f2d6361636865"));
    assert_eq!(fields[3], (None, None));
    assert_eq!(fields[4], (Some("cache-control".into()), Some("no-cache".into())));
    // The third block references 63 (`:authority`, older than the agent) and
    // inserts `custom-key`; a later reference to 62 resolves to it.
    let fields = decode(
        &mut d,
        &hex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"),
    );
    assert_eq!(fields[3], (None, None));
    assert_eq!(decode(&mut d, &hex("be")), known(&[("custom-key", "custom-value")]));
    assert_eq!(d.table(), Table::Partial);
}

#[test]
fn a_lost_block_breaks_the_table_until_it_is_emptied() {
    let mut d = Decoder::new(true);
    decode(&mut d, &hex("828684410f7777772e6578616d706c652e636f6d"));
    d.lose();
    assert_eq!(
        decode(&mut d, &hex("82be")),
        vec![(Some(":method".into()), Some("GET".into())), (None, None)]
    );
    // A size update to 0 empties the peer's table: known again after it.
    let fields = decode(
        &mut d,
        &hex("203fe11f 400a637573746f6d2d6b65790c637573746f6d2d76616c7565 be"),
    );
    assert_eq!(fields[1], (Some("custom-key".into()), Some("custom-value".into())));
    assert_eq!(d.table(), Table::Complete);
}

#[test]
fn a_complete_table_refuses_an_index_it_does_not_have() {
    let mut d = Decoder::new(true);
    assert!(d.decode(&hex("be"), &mut |_, _| {}).is_err());
    assert!(d.decode(&hex("80"), &mut |_, _| {}).is_err());
    assert_eq!(d.table(), Table::Broken);
}

/// Frames of one peer, with its own HPACK encoder.
pub struct Peer {
    encoder: loona_hpack::Encoder<'static>,
}

impl Peer {
    pub fn new() -> Self {
        Peer {
            encoder: loona_hpack::Encoder::new(),
        }
    }

    pub fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        self.encoder
            .encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    pub fn headers(&mut self, stream: u32, headers: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.block(headers);
        let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
        raw(frame::HEADERS, flags, stream, &block)
    }
}

pub fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut out = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn data(stream: u32, payload: &[u8], end_stream: bool) -> Vec<u8> {
    raw(
        frame::DATA,
        if end_stream { frame::END_STREAM } else { 0 },
        stream,
        payload,
    )
}

pub fn settings_frame() -> Vec<u8> {
    raw(frame::SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0, 0, 3, 0, 0, 0, 100])
}

/// A gRPC length-prefixed message.
pub fn message(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn request(method: &str, path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", method.to_string()),
        (":scheme", "http".into()),
        (":path", path.to_string()),
        (":authority", "example".into()),
        ("user-agent", "h2load".into()),
        ("authorization", "Bearer s3cret".into()),
    ]
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// Harness, connection, and a client and server peer: the connection is
/// seen from `role`.
fn h2(role: Role) -> (Harness, ConnId, Direction, Peer, Peer) {
    let c = id(1, 5);
    let mut h = Harness::new(settings());
    h.engine.open(info(c, role));
    let forward = if role == Role::Server { Ingress } else { Egress };
    (h, c, forward, Peer::new(), Peer::new())
}

#[test]
fn prior_knowledge_streams_pair_by_id_whatever_the_order_of_answers() {
    let (mut h, c, fwd, mut client, mut server) = h2(Role::Server);
    h.send(c, fwd.opposite(), &settings_frame());
    let mut hello = PREFACE.to_vec();
    hello.extend(settings_frame());
    hello.extend(client.headers(1, &pairs(&request("GET", "/a")), true));
    h.send(c, fwd, &hello);
    let mut two = client.headers(3, &pairs(&request("POST", "/b/17")), false);
    two.extend(data(3, b"hello", true));
    two.extend(client.headers(5, &pairs(&request("GET", "/a")), true));
    h.send(c, fwd, &two);
    // Answers: 5, then 3, then 1 (interleaved DATA).
    let mut back = server.headers(5, &[(":status", "200")], false);
    back.extend(server.headers(3, &[(":status", "201"), ("content-type", "text/plain")], false));
    back.extend(data(5, b"five!", true));
    back.extend(server.headers(1, &[(":status", "404")], false));
    back.extend(data(3, b"x", true));
    h.send(c, fwd.opposite(), &back);
    h.send(c, fwd.opposite(), &data(1, b"gone", true));
    let spans = h.spans();
    let got: Vec<(String, String, i64, i64)> = spans
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                field(s, "url.path").unwrap_or("-").to_string(),
                int(s, "http.response.status_code").unwrap_or(0),
                int(s, "http.response.body.size").unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET /a".into(), "/a".into(), 200, 5),
            ("POST /b/{id}".into(), "/b/17".into(), 201, 1),
            ("GET /a".into(), "/a".into(), 404, 4),
        ]
    );
    let post = spans[1];
    assert_eq!(post.kind, SpanKind::Server);
    assert_eq!(field(post, "network.protocol.version"), Some("2"));
    assert_eq!(int(post, "http.request.body.size"), Some(5));
    assert_eq!(field(post, "user_agent.original"), Some("h2load"));
    assert!(post.fields.get("http.request.header.authorization").is_none());
    assert_eq!(h.engine.counters().unknown_header_fields, 0);
    assert_eq!(h.engine.counters().unanswered_requests, 0);
}

#[test]
fn continuation_padding_and_priority_are_stripped() {
    let (mut h, c, fwd, mut client, mut server) = h2(Role::Client);
    let block = client.block(&pairs(&request("DELETE", "/items/9")));
    let (a, b) = block.split_at(block.len() / 2);
    // HEADERS: PADDED (3 bytes) and PRIORITY (5 bytes), no END_HEADERS.
    let mut payload = vec![3, 0, 0, 0, 0, 16];
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut out = PREFACE.to_vec();
    out.extend(raw(
        frame::HEADERS,
        frame::PADDED | frame::PRIORITY_FLAG | frame::END_STREAM,
        1,
        &payload,
    ));
    out.extend(raw(frame::CONTINUATION, frame::END_HEADERS, 1, b));
    h.send(c, fwd, &out);
    // A padded DATA answer, cut across reads.
    let mut back = server.headers(1, &[(":status", "204")], false);
    back.extend(raw(
        frame::DATA,
        frame::PADDED | frame::END_STREAM,
        1,
        &[2, b'o', b'k', 0, 0],
    ));
    for piece in back.chunks(4) {
        h.send(c, fwd.opposite(), piece);
    }
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name.as_str(), "DELETE /items/{id}");
    assert_eq!(spans[0].kind, SpanKind::Client);
    assert_eq!(int(spans[0], "http.response.body.size"), Some(2));
}

fn grpc_request(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":scheme", "http".into()),
        (":path", path.to_string()),
        (":authority", "localhost:50051".into()),
        ("content-type", "application/grpc".into()),
        ("te", "trailers".into()),
    ]
}

#[test]
fn grpc_unary_streaming_and_trailers_only_calls() {
    let (mut h, c, fwd, mut client, mut server) = h2(Role::Server);
    let mut out = PREFACE.to_vec();
    out.extend(settings_frame());
    for (stream, method) in [(1, "SayHello"), (3, "ListFeatures"), (5, "GetFeature")] {
        out.extend(client.headers(
            stream,
            &pairs(&grpc_request(&format!("/routeguide.RouteGuide/{method}"))),
            false,
        ));
        out.extend(data(stream, &message(b"req"), true));
    }
    h.send(c, fwd, &out);
    let ok = [(":status", "200"), ("content-type", "application/grpc")];
    // Unary: headers, one message, trailers.
    let mut back = server.headers(1, &ok, false);
    back.extend(data(1, &message(b"hello"), false));
    back.extend(server.headers(1, &[("grpc-status", "0")], true));
    // Server streaming: three messages, two in one DATA frame, one cut in two.
    back.extend(server.headers(3, &ok, false));
    back.extend(data(3, &[message(b"one"), message(b"two")].concat(), false));
    let third = message(b"three");
    back.extend(data(3, &third[..3], false));
    back.extend(data(3, &third[3..], false));
    back.extend(server.headers(3, &[("grpc-status", "0")], true));
    // Trailers-only NOT_FOUND.
    back.extend(server.headers(
        5,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
        ],
        true,
    ));
    h.send(c, fwd.opposite(), &back);
    let spans = h.spans();
    let got: Vec<(String, String, String, i64, i64, i64)> = spans
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                field(s, "rpc.system").unwrap_or("-").into(),
                field(s, "rpc.method").unwrap_or("-").into(),
                int(s, "rpc.grpc.status_code").unwrap_or(-1),
                int(s, "sonde.rpc.request.messages").unwrap_or(-1),
                int(s, "sonde.rpc.response.messages").unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "routeguide.RouteGuide/SayHello".into(),
                "grpc".into(),
                "SayHello".into(),
                0,
                1,
                1
            ),
            (
                "routeguide.RouteGuide/ListFeatures".into(),
                "grpc".into(),
                "ListFeatures".into(),
                0,
                1,
                3
            ),
            (
                "routeguide.RouteGuide/GetFeature".into(),
                "grpc".into(),
                "GetFeature".into(),
                5,
                1,
                0
            ),
        ]
    );
    assert_eq!(field(spans[0], "rpc.service"), Some("routeguide.RouteGuide"));
    // NOT_FOUND is the client's error, not the server's.
    assert_eq!(spans[2].status, SpanStatus::Unset);
    let metrics = h.engine.metrics(Timestamp::from_nanos(h.clock));
    let rpc: Vec<_> = metrics
        .iter()
        .filter(|m| m.name.as_str() == "rpc.server.call.duration")
        .collect();
    assert_eq!(rpc.len(), 3, "one series per method and status");
    assert!(rpc.iter().all(|m| m.unit.as_deref() == Some("s")));
    assert!(metrics
        .iter()
        .any(|m| m.name.as_str() == crate::protocols::engine::red::GRAPH_REQUESTS
            && m.attributes.get("rpc.system").and_then(|v| v.as_str()) == Some("grpc")));
}

#[test]
fn a_grpc_client_sees_not_found_as_an_error() {
    let (mut h, c, fwd, mut client, mut server) = h2(Role::Client);
    let mut out = PREFACE.to_vec();
    out.extend(client.headers(1, &pairs(&grpc_request("/helloworld.Greeter/SayHello")), false));
    out.extend(data(1, &message(b"x"), true));
    h.send(c, fwd, &out);
    h.send(
        c,
        fwd.opposite(),
        &server.headers(
            1,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
            ],
            true,
        ),
    );
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].kind, SpanKind::Client);
    assert!(matches!(&spans[0].status, SpanStatus::Error { message } if message.as_str() == "NOT_FOUND"));
    let metrics = h.engine.metrics(Timestamp::from_nanos(h.clock));
    assert!(metrics.iter().any(|m| m.name.as_str() == "rpc.client.call.duration"));
}

/// A literal with incremental indexing of a static name: what h2 peers
/// send for `:path` the first time, then referenced by dynamic index.
fn indexed_literal(name_index: u8, value: &str) -> Vec<u8> {
    let mut out = vec![0x40 | name_index, value.len() as u8];
    out.extend_from_slice(value.as_bytes());
    out
}

#[test]
fn joining_mid_connection_marks_unknowns_and_never_gives_a_wrong_path() {
    let c = id(1, 5);
    let mut h = Harness::new(settings());
    let mut conn = info(c, Role::Server);
    conn.preexisting = true;
    h.engine.open(conn);
    // The client's table holds `:path: /old` (62) and `x-id` from before
    // the agent. A request referencing both: GET, path unknown.
    let before = raw(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        7,
        &[0x82, 0x86, 0xbe, 0xbf],
    );
    h.send(c, Ingress, &before);
    h.send(
        c,
        Egress,
        &raw(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, 7, &[0x88]),
    );
    // Then a request inserting `:path: /new` (62 now), and one using it:
    // the old entries are 63 and 64 now.
    let mut block = vec![0x82, 0x86];
    block.extend(indexed_literal(4, "/new"));
    h.send(
        c,
        Ingress,
        &raw(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, 9, &block),
    );
    h.send(
        c,
        Ingress,
        &raw(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            11,
            &[0x83, 0x86, 0xbe, 0xbf],
        ),
    );
    h.send(
        c,
        Egress,
        &raw(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, 9, &[0x88]),
    );
    h.send(
        c,
        Egress,
        &raw(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, 11, &[0x8d]),
    );
    let spans = h.spans();
    type Row<'a> = (String, Option<&'a str>, Option<&'a str>, Option<i64>);
    let got: Vec<Row> = spans
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                field(s, "url.path"),
                field(s, "http.route"),
                int(s, "sonde.http2.unknown_fields"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET".into(), None, None, Some(2)),
            ("GET /new".into(), Some("/new"), Some("/new"), None),
            ("POST /new".into(), Some("/new"), Some("/new"), Some(1)),
        ]
    );
    assert_eq!(h.engine.counters().unknown_header_fields, 3);
}

#[test]
fn a_joined_connection_with_a_method_only_in_the_dynamic_table_says_other() {
    let c = id(1, 5);
    let mut h = Harness::new(settings());
    let mut conn = info(c, Role::Server);
    conn.preexisting = true;
    h.engine.open(conn);
    // `:method: PURGE` was inserted before the agent: method unknown.
    h.send(
        c,
        Ingress,
        &raw(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, 3, &[0xbe, 0x84]),
    );
    h.send(
        c,
        Egress,
        &raw(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, 3, &[0x88]),
    );
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(field(spans[0], "http.request.method"), Some("_OTHER"));
    assert_eq!(spans[0].name.as_str(), "HTTP /");
    assert!(spans[0].fields.get("http.request.method_original").is_none());
}

#[test]
fn a_hole_in_a_header_block_still_counts_the_request_as_unknown() {
    let (mut h, c, fwd, mut client, mut server) = h2(Role::Server);
    let mut out = PREFACE.to_vec();
    out.extend(client.headers(1, &pairs(&request("GET", "/first")), true));
    h.send(c, fwd, &out);
    // Stream 3's block is captured in part only.
    let lost = client.headers(3, &pairs(&request("GET", "/second")), true);
    h.send_partial(c, fwd, &lost[..12], lost.len() as u32);
    h.send(c, fwd.opposite(), &server.headers(1, &[(":status", "200")], true));
    h.send(c, fwd.opposite(), &server.headers(3, &[(":status", "200")], true));
    let names: Vec<String> = h.spans().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["GET /first", "HTTP"]);
}

#[test]
fn a_large_data_frame_partly_captured_is_skipped_by_length() {
    let (mut h, c, fwd, mut client, mut server) = h2(Role::Server);
    let mut out = PREFACE.to_vec();
    out.extend(client.headers(1, &pairs(&request("GET", "/big")), true));
    out.extend(client.headers(3, &pairs(&request("GET", "/small")), true));
    h.send(c, fwd, &out);
    let mut back = server.headers(1, &[(":status", "200")], false);
    back.extend(data(1, &vec![b'x'; 20_000], true));
    let captured = back.len() - 15_000;
    h.send_partial(c, fwd.opposite(), &back[..captured], back.len() as u32);
    h.send(c, fwd.opposite(), &server.headers(3, &[(":status", "200")], true));
    let got: Vec<(String, Option<i64>)> = h
        .spans()
        .iter()
        .map(|s| (s.name.to_string(), int(s, "http.response.body.size")))
        .collect();
    assert_eq!(
        got,
        vec![("GET /big".into(), Some(20_000)), ("GET /small".into(), Some(0))]
    );
}

#[test]
fn closing_counts_streams_left_unanswered() {
    let (mut h, c, fwd, mut client, _server) = h2(Role::Server);
    let mut out = PREFACE.to_vec();
    out.extend(client.headers(1, &pairs(&request("GET", "/a")), true));
    h.send(c, fwd, &out);
    h.close(c);
    assert!(h.spans().is_empty());
    assert_eq!(h.engine.counters().unanswered_requests, 1);
    assert_eq!(h.engine.memory(), 0);
}

#[test]
fn detection_takes_the_preface_and_frames_only_on_joined_connections() {
    use super::super::http2::looks_like_http2;
    assert!(looks_like_http2(PREFACE, false));
    assert!(looks_like_http2(&PREFACE[..6], false));
    let frames = [
        settings_frame(),
        raw(frame::HEADERS, frame::END_HEADERS, 1, &[0x82, 0x84]),
    ]
    .concat();
    assert!(!looks_like_http2(&frames, false));
    assert!(looks_like_http2(&frames, true));
    assert!(!looks_like_http2(b"GET / HTTP/1.1\r\n\r\n", true));
    assert!(!looks_like_http2(&[0u8; 64], true));
}

#[test]
fn upgrade_to_h2c_makes_the_upgraded_request_stream_one() {
    let (mut h, c, fwd, mut client, mut server) = h2(Role::Server);
    h.send(
        c,
        fwd,
        b"GET /up HTTP/1.1\r\nHost: example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    );
    // The 101 and the server's first frames in one write.
    let mut back = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    back.extend(settings_frame());
    back.extend(server.headers(1, &[(":status", "200")], false));
    h.send(c, fwd.opposite(), &back);
    let mut hello = PREFACE.to_vec();
    hello.extend(settings_frame());
    hello.extend(client.headers(3, &pairs(&request("GET", "/next")), true));
    h.send(c, fwd, &hello);
    h.send(c, fwd.opposite(), &data(1, b"upgraded", true));
    h.send(c, fwd.opposite(), &server.headers(3, &[(":status", "200")], true));
    let got: Vec<(String, Option<&str>, Option<i64>)> = h
        .spans()
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                field(s, "network.protocol.version"),
                int(s, "http.response.status_code"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET /up".into(), Some("2"), Some(200)),
            ("GET /next".into(), Some("2"), Some(200))
        ]
    );
    assert_eq!(h.engine.counters(), &Counters::default());
}

#[test]
fn other_upgrades_still_leave_http() {
    let (mut h, c, fwd, _client, _server) = h2(Role::Server);
    h.send(c, fwd, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    h.send(c, fwd.opposite(), b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02hi");
    h.send(c, fwd, &[PREFACE, &settings_frame()[..]].concat());
    assert_eq!(h.spans().len(), 1);
    assert_eq!(int(h.spans()[0], "http.response.status_code"), Some(101));
}

/// Three unary calls of grpcio 1.85 (C-core's chttp2) on one channel,
/// recorded through a proxy: each read or write as it went.
const GRPC_PYTHON: &str = include_str!("fixtures/h2-grpc-python.txt");

#[test]
fn recorded_grpc_python_calls_pair_with_their_status() {
    for role in [Role::Server, Role::Client] {
        let (mut h, c, fwd, _, _) = h2(role);
        for read in super::recorded::reads(GRPC_PYTHON) {
            let direction = if read.from_client { fwd } else { fwd.opposite() };
            h.send(c, direction, &read.bytes);
        }
        let got: Vec<(String, Option<i64>, Option<i64>)> = h
            .spans()
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    int(s, "rpc.grpc.status_code"),
                    int(s, "sonde.http2.unknown_fields"),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("demo.Greeter/SayHello".into(), Some(0), None); 3],
            "{role:?}"
        );
    }
}
