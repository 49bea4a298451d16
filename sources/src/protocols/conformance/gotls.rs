//! Go's `crypto/tls`, when a Go test program is at hand
//! ([`GO_TLS_ENV`]: the kernel matrix builds tests/workload/gotls and names
//! it; the guest sees the host's files): its HTTPS server, started before
//! the programs load (found by the scan of running processes), and its
//! client, started after (the same executable, attached already), must
//! give one server and one client span per request, through the Go TLS
//! uprobes at the call and at each return instruction.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

/// The Go test program (tests/workload/gotls, built): set, the check
/// includes Go TLS.
pub const GO_TLS_ENV: &str = "SONDE_CONFORMANCE_GO_TLS";
/// Requests the client makes on one keep-alive connection.
pub const REQUESTS: usize = 6;
/// Their path.
const PATH: &str = "/conformance/go";

/// The program named by [`GO_TLS_ENV`], if any.
pub fn program() -> Option<PathBuf> {
    std::env::var_os(GO_TLS_ENV).map(PathBuf::from)
}

/// The Go HTTPS server, running.
pub struct Server {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts the server (before the programs load).
pub fn start(program: &Path) -> std::io::Result<Server> {
    let mut child = Command::new(program)
        .arg("server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().expect("piped");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let port = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("the Go server said {line:?}")))?;
    Ok(Server {
        child,
        _stdin: stdin,
        port,
    })
}

/// Runs the client; returns its pid.
pub fn workload(program: &Path, server: &Server) -> std::io::Result<u32> {
    let child = Command::new(program)
        .args(["client", &server.port.to_string(), &REQUESTS.to_string(), PATH])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !said.contains(&format!("done {PATH} {REQUESTS}")) {
        let _ = std::io::stderr().write_all(&out.stderr);
        return Err(std::io::Error::other(format!("the Go client: {said}")));
    }
    Ok(pid)
}

/// Whether `span` is of a request to `PATH` by process `pid`.
pub fn ours(span: &Span, pid: u32) -> bool {
    span.attributes.get(sonde_core::event::keys::PID) == Some(&Value::from(pid))
        && span.fields.get("url.path") == Some(&Value::from(PATH))
}

/// Checks the server's and the client's spans.
pub fn verify(spans: &[Span], server: u32, client: u32) -> Result<String, CheckError> {
    let count = |pid: u32, kind: SpanKind| {
        spans
            .iter()
            .filter(|s| ours(s, pid) && s.kind == kind)
            .filter(|s| s.fields.get("http.response.status_code") == Some(&Value::from(200u32)))
            .count()
    };
    let (servers, clients) = (count(server, SpanKind::Server), count(client, SpanKind::Client));
    ensure(servers == REQUESTS && clients == REQUESTS, || {
        format!("{REQUESTS} Go HTTPS requests gave {servers} server and {clients} client spans")
    })?;
    Ok(format!(
        "{REQUESTS} Go crypto/tls HTTPS requests: {servers} server and {clients} client spans"
    ))
}
