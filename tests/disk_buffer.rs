//! Disk buffers end to end: the sonde binary, a demo source with sequence
//! numbers, `buffer { type = "disk" }` in front of an OTLP sink, and the
//! independent OTLP receiver (tests/otlp_receiver.py).
//!
//! At least once across `kill -9`: the agent is killed under load with a
//! backlog on disk, restarted with the same sink id, and every sequence
//! number the buffer took arrives; duplicates are counted by the agent.

mod common;
mod otlp {
    // Shared with tests/otlp.rs, which uses all of it.
    #[allow(dead_code)]
    pub mod receiver;
}

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use otlp::receiver::{wait_for, Agent, Receiver};

/// Every demo sequence number in the accepted metrics requests, with how
/// many times each arrived.
fn received(receiver: &Receiver) -> BTreeMap<u64, u64> {
    let mut seen = BTreeMap::new();
    for request in receiver.requests() {
        if request["signal"] != "metrics" || request["outcome"] != "ok" {
            continue;
        }
        for rm in request["request"]["resource_metrics"].as_array().unwrap() {
            for sm in rm["scope_metrics"].as_array().unwrap() {
                for m in sm["metrics"].as_array().unwrap() {
                    if m["name"] != "sonde.demo.sequence" {
                        continue;
                    }
                    for p in m["gauge"]["data_points"].as_array().unwrap() {
                        *seen.entry(p["as_double"].as_f64().unwrap_or(0.0) as u64).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    seen
}

/// Each accepted metrics request's batch identity (`sonde-batch-id`:
/// `EPOCH:FIRST-LAST`, the buffer's record numbers) with the sequence
/// numbers it carried.
fn requests_by_batch(receiver: &Receiver) -> Vec<((String, u64, u64), Vec<u64>)> {
    let mut out = Vec::new();
    for request in receiver.requests() {
        if request["signal"] != "metrics" || request["outcome"] != "ok" {
            continue;
        }
        let id = request["headers"]["sonde-batch-id"]
            .as_str()
            .unwrap_or_else(|| panic!("a request without sonde-batch-id: {:?}", request["headers"]));
        let (epoch, range) = id.split_once(':').expect("EPOCH:FIRST-LAST");
        let (first, last) = range.split_once('-').expect("EPOCH:FIRST-LAST");
        let number = |hex: &str| u64::from_str_radix(hex, 16).expect("hexadecimal record numbers");
        let mut sequences = Vec::new();
        for rm in request["request"]["resource_metrics"].as_array().unwrap() {
            for sm in rm["scope_metrics"].as_array().unwrap() {
                for m in sm["metrics"].as_array().unwrap() {
                    for p in m["gauge"]["data_points"].as_array().unwrap() {
                        sequences.push(p["as_double"].as_f64().unwrap_or(0.0) as u64);
                    }
                }
            }
        }
        out.push(((epoch.to_owned(), number(first), number(last)), sequences));
    }
    out
}

fn pipeline(source: &str, endpoint: &str) -> String {
    format!(
        r#"{source}
sink "otlp" "out" {{
  inputs   = ["gen"]
  endpoint = "{endpoint}"
  protocol = "http/protobuf"
  batch {{
    max_events = 2000
    timeout    = "100ms"
  }}
  buffer {{
    type      = "disk"
    max_size  = "64MiB"
    when_full = "block"
  }}
}}
"#
    )
}

#[test]
fn kill_9_under_load_then_restart_delivers_every_sequence_number() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let agent_lines = format!("  data_dir = \"{}\"", data.display());
    // Each export answered after 100 ms: at most 20k events/s delivered
    // (batches of 2000, one at a time), so the 40k/s source builds a
    // backlog on disk however fast the machine is.
    let receiver = Receiver::start(tmp.path(), &["--delay", "0.1"]);
    let endpoint = receiver.endpoint("http");

    // Run 1: faster than the receiver takes, so a backlog builds on disk.
    let run1 = tmp.path().join("run1");
    std::fs::create_dir_all(&run1).unwrap();
    let source = "source \"demo\" \"gen\" {\n  rate = 40000\n  batch_size = 500\n}";
    let agent = Agent::start_with(&run1, &agent_lines, &pipeline(source, &endpoint));
    let written = |agent: &Agent| agent.metric("sonde_buffer_written_events_total", &[("component_id", "out")]);
    wait_for(
        "a backlog on disk and deliveries under way",
        Duration::from_secs(60),
        || {
            let backlog = agent.metric("sonde_buffer_events", &[("component_id", "out")]);
            written(&agent) >= 60_000.0 && backlog >= 10_000.0 && !received(&receiver).is_empty()
        },
    );
    let written_before_kill = written(&agent) as u64;
    // Dropping the agent kills it with SIGKILL: no drain, no final sync.
    drop(agent);
    let delivered_in_run1: u64 = received(&receiver).len() as u64;

    // The buffer is intact offline and holds the backlog.
    let check = common::sonde()
        .args(["buffer", "check"])
        .arg(data.join("out"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.status.success(), "sonde buffer check failed:\n{report}");
    assert!(report.contains("unacknowledged:"), "{report}");

    // Run 2: the same sink id resumes the buffer; its new source (logs,
    // slowly) keeps the agent running and is told apart by its signal.
    let run2 = tmp.path().join("run2");
    std::fs::create_dir_all(&run2).unwrap();
    let source = "source \"demo\" \"gen\" {\n  rate = 1\n  kind = \"log\"\n}";
    let agent = Agent::start_with(&run2, &agent_lines, &pipeline(source, &endpoint));
    wait_for("the backlog delivered", Duration::from_secs(120), || {
        let seen = received(&receiver);
        let recovered = agent.metric("sonde_buffer_recovered_events_total", &[("component_id", "out")]);
        let acked = agent.metric("sonde_buffer_acked_events_total", &[("component_id", "out")]);
        recovered > 0.0 && acked >= recovered && seen.len() as u64 >= written_before_kill
    });
    let redelivered = agent.metric("sonde_buffer_redelivered_events_total", &[("component_id", "out")]) as u64;
    let corrupted = agent.metric("sonde_buffer_corrupted_records_total", &[("component_id", "out")]);
    drop(agent);

    let seen = received(&receiver);
    let highest = *seen.keys().last().unwrap();
    let gaps: Vec<u64> = (0..=highest).filter(|s| !seen.contains_key(s)).take(10).collect();
    assert!(gaps.is_empty(), "sequence numbers missing (first ones): {gaps:?}");
    assert!(
        highest + 1 >= written_before_kill,
        "{} sequence numbers arrived, the buffer had taken {written_before_kill}",
        highest + 1
    );
    let duplicates: u64 = seen.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= redelivered,
        "{duplicates} duplicates arrived but the agent counted only {redelivered} redelivered events"
    );
    assert_eq!(corrupted, 0.0, "a kill -9 damages no record");
    // A receiver can recognise every duplicate: the requests that carried
    // the same event name the same buffer (one epoch across both runs)
    // and overlapping runs of its record numbers.
    let requests = requests_by_batch(&receiver);
    let epochs: BTreeSet<&str> = requests.iter().map(|((epoch, ..), _)| epoch.as_str()).collect();
    assert_eq!(epochs.len(), 1, "one buffer, one epoch across the restart: {epochs:?}");
    let mut carriers: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for ((_, first, last), sequences) in &requests {
        assert!(first <= last, "record range {first}-{last}");
        for s in sequences {
            carriers.entry(*s).or_default().push((*first, *last));
        }
    }
    for (sequence, ranges) in carriers.iter().filter(|(_, r)| r.len() > 1) {
        let overlap = ranges.iter().map(|r| r.0).max() <= ranges.iter().map(|r| r.1).min();
        assert!(
            overlap,
            "event {sequence} arrived in requests of disjoint records {ranges:?}"
        );
    }
    eprintln!(
        "run 1 delivered {delivered_in_run1}, buffer had taken {written_before_kill}; \
         {} arrived in all, {duplicates} duplicates, {redelivered} redelivered",
        highest + 1
    );
}

/// Mounts a tmpfs of `size` at `dir`; unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "sonde-test",
                dir.to_str().unwrap(),
            ])
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs (the test needs root)");
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), self.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_blocks_with_a_clear_error_and_recovers_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tmpfs = Tmpfs::mount(&data, "1m");
    let agent_lines = format!("  data_dir = \"{}\"", data.display());
    // No receiver yet: every request fails (retried), so all stays on disk.
    let http = common::free_port();
    let endpoint = format!("http://127.0.0.1:{http}");
    const EVENTS: u64 = 60_000;
    let source = format!("source \"demo\" \"gen\" {{\n  rate = 0\n  count = {EVENTS}\n  batch_size = 500\n}}");
    let pipeline = pipeline(&source, &endpoint).replace(
        "  buffer {",
        "  request {\n    retry_initial_backoff = \"100ms\"\n    retry_max_backoff = \"500ms\"\n  }\n  buffer {",
    );
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let agent = Agent::start_with(&run, &agent_lines, &pipeline);
    let out = [("component_id", "out")];
    wait_for("writes refused by the full disk", Duration::from_secs(60), || {
        agent.metric("sonde_buffer_write_errors_total", &out) >= 2.0
    });
    // Blocked: nothing more is written, nothing dropped, the agent lives.
    let written = agent.metric("sonde_buffer_written_events_total", &out);
    let generated = agent.metric("sonde_component_sent_events_total", &[("component_id", "gen")]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(agent.metric("sonde_buffer_written_events_total", &out), written);
    assert!(written < EVENTS as f64, "the tmpfs cannot hold {EVENTS} events");
    assert!(
        agent.metric("sonde_component_sent_events_total", &[("component_id", "gen")]) <= generated + 1000.0,
        "the source is held back"
    );
    assert_eq!(
        agent.metric("sonde_component_dropped_events_total", &[]),
        0.0,
        "nothing dropped"
    );
    let log = std::fs::read_to_string(run.join("sonde.log")).unwrap();
    assert!(
        log.contains("cannot write to the disk buffer") && log.contains("No space left on device"),
        "a clear error in the log:\n{log}"
    );

    // Space returns and the backend comes up: everything arrives.
    tmpfs.resize("64m");
    let receiver = Receiver::start_on(tmp.path(), 0, http, &[]);
    let stderr = agent.wait(Duration::from_secs(120));
    let seen = received(&receiver);
    assert_eq!(seen.len() as u64, EVENTS, "every event arrives once the disk has room");
    assert!(stderr.contains("nothing lost"), "{stderr}");
}
