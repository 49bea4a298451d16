//! Truthful under failure (issue 24, part A): the real `sonde` binary
//! against backends that refuse, fail and recover, a full tmpfs, a deleted
//! file, a closed pipe and a taken port. Every test compares the agent's
//! own account with an independent count (the receiver's record, the
//! file's lines, the sequence numbers).

#[path = "../common/mod.rs"]
mod common;
mod harness;
#[allow(dead_code)] // the OTLP tests use the rest of it
#[path = "../otlp/receiver.rs"]
mod receiver;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::{account, free_port, wait_for, Agent};
use serde_json::Value;

/// `sonde run`'s status when accepted events were lost or a component died.
const EXIT_LOST: i32 = 3;

/// The demo sequence numbers of one OTLP logs request, as the receiver decoded it.
fn log_sequences(request: &Value) -> Vec<u64> {
    let mut out = Vec::new();
    for rl in request["request"]["resource_logs"].as_array().into_iter().flatten() {
        for sl in rl["scope_logs"].as_array().into_iter().flatten() {
            for record in sl["log_records"].as_array().into_iter().flatten() {
                let body = record["body"]["kvlist_value"]["values"].as_array().unwrap();
                let sequence = body.iter().find(|kv| kv["key"] == "sequence").unwrap();
                out.push(sequence["value"]["int_value"].as_str().unwrap().parse().unwrap());
            }
        }
    }
    out
}

/// Sequence numbers of the receiver's requests answered with one of `outcomes`.
fn sequences_answered(requests: &[Value], outcomes: &[&str]) -> Vec<u64> {
    requests
        .iter()
        .filter(|r| outcomes.iter().any(|o| r["outcome"] == *o))
        .flat_map(log_sequences)
        .collect()
}

/// The done-when test of issue 24: an OTLP receiver that refuses (nothing
/// listens), then answers 500 twice, garbage once (a 200 whose body is no
/// OTLP answer), an HTML page once, then accepts, then is unavailable for
/// good; the agent is stopped with SIGTERM, which cannot drain, then
/// SIGINT, which stops it at once. Every event the source passed on is
/// accounted for: delivered (what the receiver accepted), dropped for an
/// error (what it refused), dropped at shutdown (never received), and the
/// exit status says events were lost.
#[test]
fn otlp_outage_then_two_signals_accounts_for_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let agent = Agent::start(
        dir.path(),
        &format!(
            r#"
source "demo" "gen" {{
  rate = 200
  kind = "log"
}}
sink "otlp" "out" {{
  inputs   = ["gen"]
  endpoint = "{endpoint}"
  protocol = "http/protobuf"
  batch {{
    max_events = 100
    timeout    = "200ms"
  }}
  request {{
    retry_initial_backoff = "100ms"
    retry_max_backoff     = "200ms"
  }}
}}
"#
        ),
    );
    // Refused: retried, and the error says where to and why.
    wait_for("a refused export in the log", Duration::from_secs(20), || {
        let log = agent.log();
        log.contains("sink failed, retrying") && log.contains(&endpoint) && log.contains("refused")
    });
    let receiver = receiver::Receiver::start_on(
        dir.path(),
        0,
        port,
        &[
            "--server-error",
            "1,2",
            "--garbage",
            "3",
            "--html",
            "4",
            "--unavailable-from",
            "8",
        ],
    );
    wait_for(
        "the receiver to fail again after recovering",
        Duration::from_secs(30),
        || receiver.requests().iter().any(|r| r["n"] == 9),
    );
    agent.signal(libc::SIGTERM);
    wait_for("the drain to start", Duration::from_secs(10), || {
        agent.log().contains("SIGTERM: draining")
    });
    // The backend is down: the drain cannot finish; the second signal must
    // not wait for the 30 s grace period.
    std::thread::sleep(Duration::from_millis(500));
    let second = Instant::now();
    agent.signal(libc::SIGINT);
    let (status, log) = agent.wait(Duration::from_secs(20));
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "took {:?}:\n{log}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(EXIT_LOST), "{log}");
    assert!(log.contains("SIGINT again: stopping now"), "{log}");
    assert!(!log.contains("nothing lost"), "{log}");
    assert!(log.contains("not an OTLP response"), "{log}");

    let requests = receiver.requests();
    let delivered = sequences_answered(&requests, &["ok", "garbage"]);
    let refused = sequences_answered(&requests, &["server_error", "html"]);
    let source = account(&log, r#"source "demo" "gen""#);
    let sink = account(&log, r#"sink "otlp" "out""#);
    assert!(!delivered.is_empty() && !refused.is_empty(), "{requests:?}");
    assert_eq!(sink.sent, delivered.len() as u64, "{log}");
    assert_eq!(sink.dropped("error"), refused.len() as u64, "{log}");
    assert!(sink.dropped("shutdown") > 0, "{log}");
    assert_eq!(
        source.sent,
        sink.sent + sink.dropped("error") + sink.dropped("shutdown"),
        "{log}"
    );
    // Each event once, and those the receiver never accepted or refused are
    // exactly the ones counted as dropped at shutdown.
    let mut seen: Vec<u64> = delivered.iter().chain(&refused).copied().collect();
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "an event was received twice");
    assert!(seen.iter().all(|s| *s < source.sent), "{seen:?}");
    assert_eq!(source.sent - seen.len() as u64, sink.dropped("shutdown"));
}

/// `drop_newest` losses and the backlog are visible while running (a log
/// line, the buffer gauge), and the final account lists them by reason
/// instead of "nothing lost".
#[test]
fn drop_newest_losses_and_the_backlog_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent = Agent::start(
        dir.path(),
        &format!(
            r#"
source "demo" "gen" {{
  rate       = 0
  count      = 5000
  batch_size = 100
  kind       = "log"
}}
sink "otlp" "out" {{
  inputs   = ["gen"]
  endpoint = "http://127.0.0.1:{port}"
  protocol = "http/protobuf"
  buffer {{
    max_events = 300
    when_full  = "drop_newest"
  }}
  request {{
    retry_initial_backoff = "100ms"
    retry_max_backoff     = "200ms"
  }}
}}
"#
        ),
    );
    wait_for("the source to finish", Duration::from_secs(20), || {
        agent.metric("sonde_component_sent_events_total", &[("component_id", "gen")]) == 5000.0
    });
    // Everything the sink accepted is still there, in its buffer.
    let buffered = agent.metric("sonde_component_buffer_events", &[("component_id", "out")]);
    let dropped = agent.metric(
        "sonde_component_dropped_events_total",
        &[("component_id", "out"), ("reason", "buffer_full")],
    );
    assert_eq!(buffered, 300.0, "{}", agent.log());
    assert_eq!(buffered + dropped, 5000.0);
    wait_for("a log line about the drops", Duration::from_secs(10), || {
        agent
            .log()
            .contains("buffer full (when_full = \"drop_newest\"), events dropped")
    });
    agent.signal(libc::SIGTERM);
    wait_for("the drain to start", Duration::from_secs(10), || {
        agent.log().contains("SIGTERM: draining")
    });
    agent.signal(libc::SIGTERM);
    let (status, log) = agent.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(EXIT_LOST), "{log}");
    assert!(!log.contains("nothing lost"), "{log}");
    let sink = account(&log, r#"sink "otlp" "out""#);
    assert_eq!(sink.sent, 0);
    assert_eq!(sink.dropped("buffer_full"), 4700, "{log}");
    assert_eq!(sink.dropped("shutdown"), 300, "{log}");
}

/// Mounts a tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs (the test needs root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Every line of a JSON-lines file: its demo sequence number; panics on a
/// line that is not a whole JSON event.
fn file_sequences(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a whole JSON line ({e}): {l:?}"));
            v["fields"]["sequence"].as_u64().unwrap()
        })
        .collect()
}

/// A disk that fills and then has room again: the file holds whole lines
/// only, each event exactly once, and the error names the file.
#[test]
fn file_sink_on_a_full_disk_writes_whole_lines_once() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(dir.path(), "256k");
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 200 * 1024]).unwrap();
    let out = dir.path().join("events.jsonl");
    let logs = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        logs.path(),
        &format!(
            r#"
source "demo" "gen" {{
  rate = 100
  kind = "log"
}}
sink "file" "out" {{
  inputs = ["gen"]
  path   = "{}"
  request {{
    retry_initial_backoff = "100ms"
    retry_max_backoff     = "200ms"
  }}
}}
"#,
            out.display()
        ),
    );
    wait_for("the disk to fill", Duration::from_secs(30), || {
        agent.log().contains("No space left on device")
    });
    let log = agent.log();
    assert!(log.contains(&format!("cannot write to {}", out.display())), "{log}");
    // Let a few retries fail, then make room.
    std::thread::sleep(Duration::from_millis(600));
    std::fs::remove_file(&filler).unwrap();
    let written = std::fs::metadata(&out).unwrap().len();
    wait_for("writing to resume", Duration::from_secs(20), || {
        std::fs::metadata(&out).unwrap().len() > written + 20_000
    });
    agent.signal(libc::SIGTERM);
    let (status, log) = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let sequences = file_sequences(&std::fs::read_to_string(&out).unwrap());
    let source = account(&log, r#"source "demo" "gen""#);
    assert_eq!(sequences, (0..source.sent).collect::<Vec<_>>(), "{log}");
    assert!(log.contains("nothing lost"), "{log}");
}

/// `rm` of the file being written: the sink notices and writes to a new
/// file at the path; the old inode and the new file together hold every
/// event once.
#[test]
fn file_sink_reopens_a_deleted_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let agent = Agent::start(
        dir.path(),
        &format!(
            r#"
source "demo" "gen" {{
  rate = 200
  kind = "log"
}}
sink "file" "out" {{
  inputs = ["gen"]
  path   = "{}"
}}
"#,
            out.display()
        ),
    );
    wait_for("first events", Duration::from_secs(20), || {
        std::fs::metadata(&out).is_ok_and(|m| m.len() > 0)
    });
    // Kept open, to read what went to the old file after the `rm`.
    let old = std::fs::File::open(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    wait_for("a new file at the path", Duration::from_secs(20), || {
        std::fs::metadata(&out).is_ok_and(|m| m.len() > 2000)
    });
    agent.signal(libc::SIGTERM);
    let (status, log) = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(log.contains("the file was deleted or replaced; reopening it"), "{log}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &old, &mut text).unwrap();
    let before = file_sequences(&text);
    let after = file_sequences(&std::fs::read_to_string(&out).unwrap());
    assert!(!after.is_empty());
    let all: Vec<u64> = before.iter().chain(&after).copied().collect();
    let source = account(&log, r#"source "demo" "gen""#);
    assert_eq!(all, (0..source.sent).collect::<Vec<_>>(), "{log}");
}

/// `sonde run … | head -1`: the console sink ends when its reader goes
/// away, and the agent with it (it was the only sink), cleanly and once.
#[test]
fn console_into_a_closed_pipe_ends_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let config = format!(
        r#"
agent {{ api = "127.0.0.1:{api}" }}
source "demo" "gen" {{
  rate = 1000
  kind = "log"
}}
sink "console" "out" {{ inputs = ["gen"] }}
"#
    );
    let mut agent = Agent::start_raw(dir.path(), &config, api, Stdio::piped());
    let stdout = agent.child().stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.contains("\"sequence\""), "{first}");
    // The BufReader and the pipe's read end are gone: `head` exited.
    let (status, log) = agent.wait(Duration::from_secs(20));
    assert!(status.success(), "{log}");
    assert_eq!(log.matches("stdout was closed by its reader").count(), 1, "{log}");
    assert!(!log.contains("Broken pipe"), "{log}");
    assert!(log.contains("every sink has stopped"), "{log}");
}

/// A taken API port stops the agent before any source ran and before any
/// sink opened its file.
#[test]
fn an_api_port_clash_is_found_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = taken.local_addr().unwrap().port();
    let out = dir.path().join("events.jsonl");
    let config = format!(
        r#"
agent {{ api = "127.0.0.1:{api}" }}
source "demo" "gen" {{ kind = "log" }}
sink "file" "out" {{
  inputs = ["gen"]
  path   = "{}"
}}
"#,
        out.display()
    );
    let agent = Agent::start_raw(dir.path(), &config, api, Stdio::null());
    let (status, log) = agent.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("cannot listen on 127.0.0.1:{api}")), "{log}");
    assert!(!out.exists(), "the file sink was started:\n{log}");
    assert!(!log.contains("started"), "{log}");
}

/// Values that made a source busy-loop or panic are refused by `validate`,
/// at their line.
#[test]
fn validate_refuses_intervals_and_rates_out_of_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "source \"demo\" \"g\" {\n  rate = 1e300\n}\nsink \"blackhole\" \"b\" { inputs = [\"g\"] }\n",
            "p.hcl:2:10: error: invalid value for `rate` in source \"demo\": must be 0 or between 0.001 and 10000000",
        ),
        (
            "source \"internal_metrics\" \"m\" {\n  interval = \"1ns\"\n}\nsink \"blackhole\" \"b\" { inputs = [\"m\"] }\n",
            "p.hcl:2:14: error: invalid value for `interval` in source \"internal_metrics\": must be at least 100ms",
        ),
        (
            "source \"demo\" \"g\" {}\nsink \"blackhole\" \"b\" {\n  inputs = [\"g\"]\n  request {\n    retry_initial_backoff = \"0s\"\n  }\n}\n",
            "p.hcl:5:29: error: invalid value for `request.retry_initial_backoff` in sink \"blackhole\": must be at least 10ms",
        ),
        (
            "source \"demo\" \"g\" {}\nsink \"blackhole\" \"b\" {\n  inputs = [\"g\"]\n  print_interval = \"1ns\"\n}\n",
            "error: invalid value for `print_interval` in sink \"blackhole\": must be at least 100ms",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("p.hcl");
        std::fs::write(&path, text).unwrap();
        let output = common::sonde()
            .current_dir(dir.path())
            .args(["validate", "--config", "p.hcl"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
}

/// A minimal HTTP/1.1 server on loopback that answers every request with
/// `reply` and counts the requests; returns its port and the count.
fn http1_server(reply: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let counted = counted.clone();
            std::thread::spawn(move || loop {
                // One request: the head, then Content-Length bytes of body.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap_or(0));
                let mut body = vec![0u8; length];
                if stream.read_exact(&mut body).is_err() {
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            });
        }
    });
    (port, count)
}

/// Remote write merges the source's batches into requests (1000 events or
/// 1s by default) instead of sending one request per source batch.
#[test]
fn remote_write_merges_source_batches_into_requests() {
    let (port, posts) = http1_server("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    let dir = tempfile::tempdir().unwrap();
    // 30 source batches of 10 events, one every 100 ms.
    let agent = Agent::start(
        dir.path(),
        &format!(
            r#"
source "demo" "gen" {{
  rate  = 100
  count = 300
}}
sink "prometheus" "rw" {{
  inputs   = ["gen"]
  mode     = "remote_write"
  endpoint = "http://127.0.0.1:{port}/api/v1/write"
}}
"#
        ),
    );
    let (status, log) = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert_eq!(account(&log, r#"sink "prometheus" "rw""#).sent, 300, "{log}");
    let requests = posts.load(std::sync::atomic::Ordering::SeqCst);
    // 3 s of data at one request a second, and the last at the drain.
    assert!((2..=6).contains(&requests), "{requests} requests for 30 source batches");
}

/// A gRPC sink pointed at an HTTP/1 server is told to use http/protobuf.
#[test]
fn grpc_to_an_http1_port_suggests_http_protobuf() {
    // An HTTP/1 server answers the HTTP/2 preface with a 400, in HTTP/1.
    // The client reports either the protocol error or the connection its
    // own h2 layer then closes, depending on timing: both say what to do.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut preface = [0u8; 24];
                if stream.read_exact(&mut preface).is_ok() {
                    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                    std::thread::sleep(Duration::from_secs(30));
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        dir.path(),
        &format!(
            r#"
source "demo" "gen" {{ kind = "log" }}
sink "otlp" "out" {{
  inputs   = ["gen"]
  endpoint = "http://127.0.0.1:{port}"
  protocol = "grpc"
  request {{ retry_max_attempts = 1 }}
}}
"#
        ),
    );
    wait_for("the export error", Duration::from_secs(20), || {
        agent.log().contains("OTLP/gRPC logs export to")
    });
    let log = agent.log();
    assert!(log.contains(&format!("http://127.0.0.1:{port}")), "{log}");
    assert!(log.contains("set `protocol = \"http/protobuf\"`"), "{log}");
}
