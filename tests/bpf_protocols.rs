//! `source "protocols"` against the real kernel (needs root): the capture
//! layer's bytes equal what the workload wrote and read, and (below) the
//! spans of real servers and clients equal their own counts.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sonde_core::event::Timestamp;
use sonde_ebpf::testing::bpf_available_or_skip;
use sonde_sources::clock::Clock;
use sonde_sources::protocols::bpf::{Options, ProtocolPrograms, Records};
use sonde_sources::protocols::capture::{Capture, Consumer, Followups};
use sonde_sources::protocols::listeners::Listeners;
use sonde_sources::protocols::model::{Chunk, ConnId, ConnInfo, Direction, Role};

/// Every byte the capture layer delivered, by connection and direction,
/// placed at its position.
#[derive(Default)]
struct Recorded {
    infos: Vec<ConnInfo>,
    streams: BTreeMap<(ConnId, bool), Vec<u8>>,
    moved: BTreeMap<(ConnId, bool), u64>,
    closed: Vec<ConnId>,
}

impl Consumer for Recorded {
    fn open(&mut self, info: ConnInfo) {
        self.infos.push(info);
    }
    fn data(&mut self, chunk: Chunk<'_>) {
        let key = (chunk.conn, chunk.direction == Direction::Egress);
        let stream = self.streams.entry(key).or_default();
        let at = chunk.position as usize;
        if stream.len() < at + chunk.data.len() {
            stream.resize(at + chunk.data.len(), 0);
        }
        stream[at..at + chunk.data.len()].copy_from_slice(chunk.data);
        *self.moved.entry(key).or_default() += u64::from(chunk.length);
    }
    fn close(&mut self, id: ConnId, _at: Timestamp) {
        self.closed.push(id);
    }
}

/// Feeds the records for `wait` into a recording consumer.
fn record_for(records: &mut Records, wait: Duration) -> Recorded {
    let mut recorded = Recorded::default();
    let mut capture = Capture::default();
    let listeners = Listeners::read();
    let mut followups = Followups::default();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let clock = Clock::now();
        records.drain(usize::MAX, |record| {
            capture.handle(record, &clock, &listeners, &mut recorded, &mut followups)
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    recorded
}

#[test]
fn captured_bytes_equal_what_the_workload_moved() {
    if !bpf_available_or_skip("captured_bytes_equal_what_the_workload_moved") {
        return;
    }
    let mut programs = ProtocolPrograms::load(&Options {
        exclude_self: false,
        ..Options::default()
    })
    .expect("load");
    let mut records = programs.take_records().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        for _ in 0..3 {
            let n = socket.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        }
        seen
    });
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut written = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 0..3 {
        let request = format!("GET /item/{i} HTTP/1.1\r\nHost: x\r\n\r\n");
        client.write_all(request.as_bytes()).unwrap();
        written.extend_from_slice(request.as_bytes());
        let mut got = 0;
        while got < 40 {
            got += client.read(&mut buf).unwrap();
        }
    }
    drop(client);
    let server_seen = server.join().unwrap();
    assert_eq!(server_seen, written);
    let recorded = record_for(&mut records, Duration::from_secs(1));
    let client = recorded
        .infos
        .iter()
        .find(|i| i.remote.map(|r| r.port()) == Some(port))
        .expect("client conn");
    let server = recorded
        .infos
        .iter()
        .find(|i| i.local.map(|l| l.port()) == Some(port))
        .expect("server conn");
    assert_eq!((client.role, server.role), (Role::Client, Role::Server));
    assert!(!client.preexisting && !server.preexisting);
    assert_eq!(client.id.pid, std::process::id());
    assert!(recorded.closed.contains(&client.id), "the client's close is seen");
    drop(programs);
    let client_egress: Vec<&Vec<u8>> = recorded
        .streams
        .iter()
        .filter(|((id, egress), _)| {
            *egress
                && recorded
                    .infos
                    .iter()
                    .any(|i| i.id == *id && i.remote.map(|r| r.port()) == Some(port))
        })
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        client_egress,
        [&written],
        "client's requests as captured; infos: {:?}",
        recorded.infos
    );
    let server_ingress: Vec<&Vec<u8>> = recorded
        .streams
        .iter()
        .filter(|((id, egress), _)| {
            !*egress
                && recorded
                    .infos
                    .iter()
                    .any(|i| i.id == *id && i.local.map(|l| l.port()) == Some(port))
        })
        .map(|(_, s)| s)
        .collect();
    assert_eq!(server_ingress, [&written], "server's requests as captured");
}
