//! PostgreSQL and MariaDB conversations recorded from the real servers
//! (psql: SSL refused, SCRAM login, statements, an error; the mariadb
//! client: login, statements, an error), replayed byte for byte between a
//! server and a client of this process's own: each must give one server
//! and one client span per statement, with the recorded operations and
//! error codes, as the engine's own tests get from the same recordings.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::ours;

/// A recording: `> hex` from the client, `< hex` from the server, one
/// line per `recv()` of the recording proxy.
pub struct Recording {
    /// Its name in summaries.
    pub name: &'static str,
    text: &'static str,
    /// `(db.operation.name, db.response.status_code)` of each statement.
    expected: &'static [(&'static str, &'static str)],
}

/// psql against PostgreSQL 15.
pub const POSTGRES: Recording = Recording {
    name: "PostgreSQL",
    text: include_str!("../engine/tests/fixtures/pg_psql.txt"),
    expected: &[
        ("INSERT", "00000"),
        ("SELECT", "00000"),
        ("UPDATE", "00000"),
        ("SELECT", "42P01"),
        ("BEGIN", "00000"),
        ("INSERT", "00000"),
        ("COMMIT", "00000"),
        ("DELETE", "00000"),
        ("", "00000"),
    ],
};

/// The mariadb client against MariaDB 10.11.
pub const MARIADB: Recording = Recording {
    name: "MariaDB",
    text: include_str!("../engine/tests/fixtures/mariadb_cli.txt"),
    expected: &[("INSERT", ""), ("SELECT", ""), ("UPDATE", ""), ("SELECT", "1146")],
};

/// grpcio 1.85 (C-core) over h2c: three unary calls on one connection.
/// Checked by [`super::http2`] (its spans are gRPC, not statements).
pub const H2C_GRPC: Recording = Recording {
    name: "gRPC over h2c",
    text: include_str!("../engine/tests/fixtures/h2-grpc-python.txt"),
    expected: &[],
};

impl Recording {
    /// Spans each side must give.
    pub fn statements(&self) -> usize {
        self.expected.len()
    }

    fn lines(&self) -> Vec<(bool, Vec<u8>)> {
        self.text
            .lines()
            .filter_map(|line| {
                let (tag, hex) = line.split_once(' ')?;
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect();
                Some((tag == ">", bytes))
            })
            .collect()
    }
}

/// Plays one side: writes its lines, reads the other side's.
fn play(mut socket: TcpStream, lines: &[(bool, Vec<u8>)], client: bool) -> std::io::Result<()> {
    for (from_client, bytes) in lines {
        if *from_client == client {
            socket.write_all(bytes)?;
        } else {
            let mut got = vec![0; bytes.len()];
            socket.read_exact(&mut got)?;
        }
    }
    Ok(())
}

/// Replays `recording`; returns the server's port.
pub fn workload(recording: &Recording) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let lines = recording.lines();
    let server_lines = lines.clone();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (socket, _) = listener.accept()?;
        play(socket, &server_lines, false)
    });
    play(TcpStream::connect(("127.0.0.1", port))?, &lines, true)?;
    server.join().expect("server thread")?;
    Ok(port)
}

fn text(span: &Span, key: &str) -> String {
    match span.fields.get(key) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

/// Checks the spans of `recording`'s server on `port`.
pub fn verify(recording: &Recording, spans: &[Span], port: u16) -> Result<String, CheckError> {
    let expected: Vec<(String, String)> = recording
        .expected
        .iter()
        .map(|(op, code)| (op.to_string(), code.to_string()))
        .collect();
    for kind in [SpanKind::Server, SpanKind::Client] {
        let mut of_kind: Vec<&Span> = spans.iter().filter(|s| ours(s, port) && s.kind == kind).collect();
        of_kind.sort_by_key(|s| s.start);
        let got: Vec<(String, String)> = of_kind
            .iter()
            .map(|s| (text(s, "db.operation.name"), text(s, "db.response.status_code")))
            .collect();
        ensure(got == expected, || {
            format!(
                "the {} recording gave {kind:?} spans {got:?}, not {expected:?}",
                recording.name
            )
        })?;
    }
    let n = recording.statements();
    Ok(format!(
        "a recorded {} session: {n} server and {n} client spans with its operations and codes",
        recording.name
    ))
}
