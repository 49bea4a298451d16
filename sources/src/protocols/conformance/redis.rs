//! Redis (RESP2) between a server and a client of this process's own:
//! commands sent one by one and then pipelined in one write, an error
//! among them, must give one server and one client span each, with the
//! command names and the error's code.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::ours;

/// `(command, reply)` pairs, in order; the last three are pipelined.
const EXCHANGES: [(&[u8], &[u8]); 5] = [
    (b"*3\r\n$3\r\nSET\r\n$6\r\nconf:1\r\n$1\r\nv\r\n", b"+OK\r\n"),
    (b"*2\r\n$3\r\nGET\r\n$6\r\nconf:1\r\n", b"$1\r\nv\r\n"),
    (b"*2\r\n$3\r\nGET\r\n$6\r\nconf:2\r\n", b"$-1\r\n"),
    (
        b"*3\r\n$5\r\nLPUSH\r\n$6\r\nconf:1\r\n$1\r\nx\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    ),
    (b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
];
/// Commands made: each gives a server and a client span.
pub const COMMANDS: usize = EXCHANGES.len();
const PIPELINED: usize = 3;

/// Reads until `want` bytes came (or the peer closed).
fn read_exactly(socket: &mut TcpStream, want: usize) -> std::io::Result<Vec<u8>> {
    let mut got = vec![0; want];
    socket.read_exact(&mut got)?;
    Ok(got)
}

/// Runs the commands; returns the server's port.
pub fn workload() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut socket, _) = listener.accept()?;
        for (command, reply) in EXCHANGES {
            read_exactly(&mut socket, command.len())?;
            socket.write_all(reply)?;
        }
        Ok(())
    });
    let mut client = TcpStream::connect(("127.0.0.1", port))?;
    let (single, pipelined) = EXCHANGES.split_at(COMMANDS - PIPELINED);
    for (command, reply) in single {
        client.write_all(command)?;
        read_exactly(&mut client, reply.len())?;
    }
    client.write_all(
        &pipelined
            .iter()
            .flat_map(|(c, _)| c.iter().copied())
            .collect::<Vec<u8>>(),
    )?;
    read_exactly(&mut client, pipelined.iter().map(|(_, r)| r.len()).sum())?;
    server.join().expect("server thread")?;
    Ok(port)
}

fn text(span: &Span, key: &str) -> String {
    match span.fields.get(key) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

/// Checks the spans of the server on `port`.
pub fn verify(spans: &[Span], port: u16) -> Result<String, CheckError> {
    let expected = ["SET", "GET", "GET", "LPUSH", "PING"];
    for kind in [SpanKind::Server, SpanKind::Client] {
        let mut of_kind: Vec<&Span> = spans.iter().filter(|s| ours(s, port) && s.kind == kind).collect();
        of_kind.sort_by_key(|s| s.start);
        let names: Vec<String> = of_kind.iter().map(|s| text(s, "db.operation.name")).collect();
        ensure(names == expected, || {
            format!("{COMMANDS} Redis commands gave {kind:?} spans {names:?}, not {expected:?}")
        })?;
        let code = text(of_kind[3], "db.response.status_code");
        ensure(code == "WRONGTYPE", || {
            format!("the failed LPUSH's {kind:?} span has status code {code:?}, not WRONGTYPE")
        })?;
    }
    Ok(format!(
        "{COMMANDS} Redis commands ({PIPELINED} pipelined): {COMMANDS} server and {COMMANDS} client spans, in order, one WRONGTYPE"
    ))
}
