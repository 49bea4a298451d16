//! Cost per HTTP request of the `protocols` engine (the agent's user-space
//! half: reassembly, HTTP/1.x parsing, spans, RED metrics), beside a
//! baseline that parses the same request and response with `httparse`
//! and nothing else — the floor of any user-space HTTP tracer — in the
//! same run.
//!
//! `cargo xtask bench engine` runs it. Each request is seen from both
//! ends, as on a node where the client and server are both traced: the
//! server's read of the request and write of the response, the client's
//! write and read, on 100 keep-alive connections a side, with the bytes
//! wrk sends and nginx answers. The spans are dropped on the same thread,
//! counted: a pipeline drops them on a sink's thread, but a second thread
//! freeing what this one allocates made the figure swing by half with the
//! machine's load (glibc's arena lock, contended or not), which a
//! regression gate cannot use. Thread CPU time, interleaved rounds;
//! figures per request (two spans).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::arg;
use sonde_core::event::{Event, Timestamp};
use sonde_sources::protocols::engine::{Engine, Settings};
use sonde_sources::protocols::model::{Chunk, ConnId, ConnInfo, Direction, Role};

const CONNECTIONS: u32 = 100;

const REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 08 Dec 2026 05:00:00 GMT\r\n\
Content-Type: text/html\r\nContent-Length: 28\r\nLast-Modified: Mon, 07 Dec 2026 10:00:00 GMT\r\n\
Connection: keep-alive\r\nETag: \"6752f0a0-1c\"\r\nAccept-Ranges: bytes\r\n\r\nhello world, this is a page\n";

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Both ends of the traced connections and their stream positions.
struct Node {
    engine: Engine,
    /// (server side, client side) of each connection.
    connections: Vec<(ConnId, ConnId)>,
    /// Bytes moved so far each way (the same on every connection: they
    /// move in lockstep).
    requested: u64,
    responded: u64,
    clock: u64,
    /// The spans of a round (reused).
    out: Vec<Event>,
}

impl Node {
    fn new() -> Node {
        let mut engine = Engine::new(Settings {
            node: "bench".into(),
            ..Settings::default()
        });
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut connections = Vec::new();
        for i in 0..CONNECTIONS {
            let client: SocketAddr = format!("127.0.0.1:{}", 40000 + i).parse().unwrap();
            let (at_server, at_client) = (
                ConnId {
                    pid: 1000,
                    fd: 10 + i,
                    generation: 1,
                },
                ConnId {
                    pid: 2000,
                    fd: 10 + i,
                    generation: 1,
                },
            );
            for (id, role, local, remote, comm) in [
                (at_server, Role::Server, server, client, "nginx"),
                (at_client, Role::Client, client, server, "wrk"),
            ] {
                engine.open(ConnInfo {
                    id,
                    role,
                    local: Some(local),
                    remote: Some(remote),
                    comm: comm.into(),
                    cgroup_id: 4242,
                    preexisting: false,
                    datagram: false,
                });
            }
            connections.push((at_server, at_client));
        }
        Node {
            engine,
            connections,
            requested: 0,
            responded: 0,
            clock: 1_000_000_000,
            out: Vec::with_capacity(2 * CONNECTIONS as usize),
        }
    }

    fn chunk<'a>(&mut self, conn: ConnId, direction: Direction, position: u64, data: &'a [u8]) -> Chunk<'a> {
        self.clock += 1_000;
        Chunk {
            conn,
            tid: conn.pid,
            direction,
            position,
            length: data.len() as u32,
            data,
            timestamp: Timestamp::from_nanos(self.clock),
            tls: false,
            peer: None,
        }
    }

    /// One request on every connection, seen from both ends; returns the
    /// spans made (and dropped).
    fn round(&mut self) -> usize {
        let mut out = std::mem::take(&mut self.out);
        let (requested, responded) = (self.requested, self.responded);
        for i in 0..self.connections.len() {
            let (server, client) = self.connections[i];
            let moves = [
                (client, Direction::Egress, requested, REQUEST),
                (server, Direction::Ingress, requested, REQUEST),
                (server, Direction::Egress, responded, RESPONSE),
                (client, Direction::Ingress, responded, RESPONSE),
            ];
            for (conn, direction, position, data) in moves {
                let chunk = self.chunk(conn, direction, position, data);
                self.engine.data(chunk, &mut out);
            }
        }
        self.requested += REQUEST.len() as u64;
        self.responded += RESPONSE.len() as u64;
        let spans = out.len();
        out.clear();
        self.out = out;
        spans
    }
}

/// The floor: each message parsed once by `httparse`, per end.
fn parse_only(rounds: usize) -> usize {
    let mut parsed = 0;
    for _ in 0..rounds {
        for _ in 0..2 * CONNECTIONS {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            parsed += usize::from(request.parse(std::hint::black_box(REQUEST)).unwrap().is_complete());
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            parsed += usize::from(response.parse(std::hint::black_box(RESPONSE)).unwrap().is_complete());
        }
    }
    parsed
}

fn main() {
    let rounds: usize = arg("--rounds", "2000").parse().unwrap();
    let runs: usize = arg("--runs", "7").parse().unwrap();
    let out = std::path::PathBuf::from(arg("--out", "target/bench"));

    let mut node = Node::new();
    // Warm-up: every connection's session made, route caches filled.
    for _ in 0..50 {
        node.round();
    }
    let requests = (rounds * CONNECTIONS as usize) as f64;
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..runs {
        let started = thread_cpu_time();
        let parsed = parse_only(rounds);
        times[0].push((thread_cpu_time() - started).as_secs_f64() * 1e9 / requests);
        assert_eq!(parsed, 4 * rounds * CONNECTIONS as usize);

        let started = thread_cpu_time();
        let mut spans = 0;
        for _ in 0..rounds {
            spans += node.round();
        }
        times[1].push((thread_cpu_time() - started).as_secs_f64() * 1e9 / requests);
        assert_eq!(
            spans,
            2 * rounds * CONNECTIONS as usize,
            "a server and a client span per request"
        );
        eprintln!("run {}/{runs} done", run + 1);
    }

    let names = [
        "baseline: httparse of the request and response, both ends",
        "protocols engine: both ends' spans and RED metrics",
    ];
    let mut table = format!(
        "### protocols engine: CPU ns per HTTP/1.1 request seen at both ends ({} requests per run, {runs} interleaved runs, one core)\n\n\
         Thread CPU time; the spans are dropped on the same thread (a sink drops them on its own). \
         The agent at 10k requests/s spends 1 % of a core per 1000 ns here.\n\n\
         | step | CPU ns/request min / median / max | × baseline (median) |\n|---|---|---|\n",
        rounds * CONNECTIONS as usize
    );
    let mut figures = Vec::new();
    let base = common::spread(&times[0]).1;
    for (i, name) in names.iter().enumerate() {
        figures.push(if i == 0 {
            common::Figure::new(*name, "CPU ns/request", &times[i])
        } else {
            common::Figure::against(*name, "CPU ns/request", &times[i], &times[0])
        });
        let (min, median, max) = common::spread(&times[i]);
        table.push_str(&format!(
            "| {name} | {min:.0} / {median:.0} / {max:.0} | {} |\n",
            if i == 0 {
                "—".to_string()
            } else {
                format!("{:.1}", median / base)
            }
        ));
    }
    println!("{table}");
    let json = serde_json::json!({"requests_per_run": requests, "ns_per_request": times});
    common::write_report(&out, "engine", &table, &figures, json);
}
