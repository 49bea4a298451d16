//! `source "protocols"` end to end (needs root): `sonde run` with the
//! source feeding a file sink and an OTLP sink (the independent Python
//! receiver), against nginx, curl and a Python server that calls nginx
//! while it handles a request. Checks passive trace context (a request's
//! `traceparent` is continued; the calls a server thread makes while
//! handling a request are children of its span), and that secrets in
//! headers, cookies and query strings reach no sink.

mod common;
#[allow(dead_code)] // the receiver module serves several test files
mod otlp {
    pub mod receiver;
}

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use otlp::receiver::{free_port, wait_for, Agent, Receiver};
use serde_json::Value;
use sonde_ebpf::testing::bpf_available_or_skip;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const CANARIES: [&str; 3] = ["CANARY-AUTH-1", "CANARY-COOKIE-2", "CANARY-QUERY-3"];

/// A one-thread Python HTTP server that calls nginx's `/echo` for each
/// request it handles, on the handling thread.
fn python_server(port: u16, nginx_port: u16) -> Child {
    let script = format!(
        r#"
import http.server, http.client
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        upstream = http.client.HTTPConnection('127.0.0.1', {nginx_port})
        upstream.request('GET', '/echo')
        upstream.getresponse().read()
        upstream.close()
        body = b'done'
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(('127.0.0.1', {port}), Handler).serve_forever()
"#
    );
    let child = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3");
    wait_for("the Python server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

fn curl(args: &[&str]) {
    let out = Command::new("curl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The spans in the file sink's output.
fn file_spans(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "span")
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Standard base64, as protobuf's JSON shows bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A child process killed on drop (a failing test leaves none behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn field<'a>(span: &'a Value, key: &str) -> &'a Value {
    span.get("fields").and_then(|f| f.get(key)).unwrap_or(&Value::Null)
}

#[test]
fn trace_context_is_continued_and_nested_and_secrets_reach_no_sink() {
    if !bpf_available_or_skip("trace_context_is_continued_and_nested_and_secrets_reach_no_sink") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nginx = common::nginx::Nginx::start();
    let receiver = Receiver::start(dir.path(), &[]);
    let out = dir.path().join("spans.jsonl");
    let _agent = Agent::start(
        dir.path(),
        &format!(
            r#"
source "protocols" "l7" {{
  interval = "1s"
}}
sink "file" "spans" {{
  inputs = ["l7"]
  path   = "{}"
}}
sink "otlp" "traces" {{
  inputs   = ["l7"]
  endpoint = "{}"
  protocol = "http/protobuf"
}}
"#,
            out.display(),
            receiver.endpoint("http/protobuf")
        ),
    );
    // The API listens before the pipeline starts: wait for the pipeline,
    // so that the source's programs are attached before the workload.
    wait_for("the pipeline to run", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.path().join("sonde.log")).is_ok_and(|log| log.contains("pipeline running"))
    });
    let port = free_port();
    let server = Killed(python_server(port, nginx.http_port));
    curl(&[
        "-s",
        "-H",
        &format!("traceparent: 00-{TRACE_ID}-{PARENT_ID}-01"),
        &format!("http://127.0.0.1:{port}/handle"),
    ]);
    curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-H",
        "Authorization: Bearer CANARY-AUTH-1",
        "-b",
        "session=CANARY-COOKIE-2",
        &format!("http://127.0.0.1:{}/echo?token=CANARY-QUERY-3&page=2", nginx.http_port),
    ]);
    wait_for("the spans in the file", Duration::from_secs(20), || {
        file_spans(&out).iter().any(|s| field(s, "url.query") != &Value::Null)
            && file_spans(&out)
                .iter()
                .filter(|s| field(s, "url.path") == "/handle")
                .count()
                == 2
    });
    let spans = file_spans(&out);
    let python_pid = server.0.id();
    let of_python = |s: &&Value| s["attributes"]["process.pid"] == python_pid;
    let handled = spans
        .iter()
        .filter(of_python)
        .find(|s| s["span_kind"] == "server" && field(s, "url.path") == "/handle")
        .expect("the Python server's span");
    assert_eq!(handled["trace_id"], TRACE_ID, "the incoming traceparent is continued");
    assert_eq!(handled["parent_span_id"], PARENT_ID);
    let upstream = spans
        .iter()
        .filter(of_python)
        .find(|s| s["span_kind"] == "client" && field(s, "url.path") == "/echo")
        .expect("the Python server's call to nginx");
    assert_eq!(
        upstream["trace_id"], TRACE_ID,
        "the call belongs to the request's trace"
    );
    assert_eq!(
        upstream["parent_span_id"], handled["span_id"],
        "the call is a child of the server span"
    );
    let query = spans
        .iter()
        .find(|s| field(s, "url.query") != &Value::Null)
        .map(|s| field(s, "url.query").clone())
        .unwrap();
    assert!(
        query.as_str().unwrap().contains("token="),
        "query keys are kept: {query}"
    );

    // The same spans reached the OTLP receiver, as traces (its JSON shows
    // bytes in base64).
    let (trace_b64, parent_b64) = (base64(&hex(TRACE_ID)), base64(&hex(PARENT_ID)));
    wait_for("spans at the OTLP receiver", Duration::from_secs(20), || {
        receiver.requests().iter().any(|r| {
            let text = r.to_string();
            text.contains(&trace_b64) && text.contains(&parent_b64)
        })
    });
    let received = std::fs::read_to_string(&receiver.out).unwrap();
    let written = std::fs::read_to_string(&out).unwrap();
    for canary in CANARIES {
        assert!(!written.contains(canary), "{canary} in the file sink's output");
        assert!(!received.contains(canary), "{canary} in what the OTLP sink sent");
    }
    drop(server);
}
