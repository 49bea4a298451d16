//! The `sonde` binary as a user runs it: validate, run, signals, API.

mod common;

use common::{free_port, http_get, wait_for};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::sonde;

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sequence numbers in a JSON-lines file written by the file sink.
fn sequences(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["sequence"].as_u64())
        .collect()
}

fn spawn_run(config: &Path) -> Child {
    sonde()
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: Child) -> (std::process::ExitStatus, String) {
    let output = child.wait_with_output().unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn validate_accepts_good_and_rejects_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.hcl");
    std::fs::write(
        &good,
        "source \"demo\" \"a\" {}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
    )
    .unwrap();
    let out = sonde().args(["validate", "--config"]).arg(&good).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (2 components)"));

    let bad = dir.path().join("bad.hcl");
    std::fs::write(
        &bad,
        "source \"demo\" \"a\" { rat = 1 }\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
    )
    .unwrap();
    let out = sonde().args(["validate", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:1:21: error: unknown option `rat`", bad.display())),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `rate`?"), "{stderr}");
}

#[test]
fn components_and_schema_document_every_type() {
    let out = sonde().arg("components").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "demo",
        "internal_metrics",
        "filter",
        "tag",
        "file",
        "console",
        "blackhole",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let out = sonde().args(["components", "demo"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("rate (number)"));
    let out = sonde().arg("schema").output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"]["sink"]["properties"]["file"].is_object());
}

#[test]
fn run_delivers_everything_then_exits_when_sources_finish() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("p.hcl");
    std::fs::write(
        &config,
        format!(
            "agent {{ api = null }}\nsource \"demo\" \"g\" {{\n  rate = 0\n  count = 20000\n  kind = \"log\"\n}}\nsink \"file\" \"f\" {{\n  inputs = [\"g\"]\n  path = \"{}\"\n}}\n",
            out.display()
        ),
    )
    .unwrap();
    let (status, stderr) = stderr_of(spawn_run(&config));
    assert!(status.success(), "{stderr}");
    assert_eq!(sequences(&out), (0..20000).collect::<Vec<_>>());
    assert!(stderr.contains("nothing lost"), "{stderr}");
}

#[test]
fn sigterm_drains_every_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("p.hcl");
    let port = free_port();
    // 4000 events reach the sink's buffer at once, but it writes only
    // 10 batches of 50 per second (8 s in all): SIGTERM arrives with most
    // still queued, however slow the machine is to get there.
    std::fs::write(
        &config,
        format!(
            r#"
agent {{ api = "127.0.0.1:{port}" }}
source "demo" "g" {{
  rate = 0
  count = 4000
  batch_size = 50
  kind = "log"
}}
sink "file" "f" {{
  inputs = ["g"]
  path = "{}"
  request {{ rate_limit_per_second = 10 }}
}}
"#,
            out.display()
        ),
    )
    .unwrap();
    let child = spawn_run(&config);
    wait_for("first events", Duration::from_secs(10), || !sequences(&out).is_empty());
    let health = http_get(port, "/health").unwrap_or_default();
    assert!(health.contains("\"ok\""), "{health}");
    let graph = http_get(port, "/graph").unwrap_or_default();
    assert!(
        graph.contains("\"id\":\"g\"") && graph.contains("\"type\":\"file\""),
        "{graph}"
    );
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    assert!(metrics.contains("sonde_component_sent_events_total"), "{metrics}");
    let before = sequences(&out).len();
    assert!(
        before < 4000,
        "the sink was too fast for this test ({before} already written)"
    );
    signal(&child, "TERM");
    let (status, stderr) = stderr_of(child);
    assert!(status.success(), "{stderr}");
    assert_eq!(sequences(&out), (0..4000).collect::<Vec<_>>(), "{stderr}");
    assert!(stderr.contains("SIGTERM: draining"), "{stderr}");
}

#[test]
fn sighup_rebuilds_only_what_changed_and_keeps_running_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    let config = dir.path().join("p.hcl");
    let pipeline = |path: &Path| {
        format!(
            "agent {{ api = null }}\nsource \"demo\" \"g\" {{\n  rate = 500\n  kind = \"log\"\n}}\nsink \"file\" \"f\" {{\n  inputs = [\"g\"]\n  path = \"{}\"\n}}\n",
            path.display()
        )
    };
    std::fs::write(&config, pipeline(&first)).unwrap();
    let child = spawn_run(&config);
    wait_for("first file", Duration::from_secs(10), || sequences(&first).len() > 200);

    // Change only the sink: the source keeps running, so its sequence
    // continues in the new file exactly where the old one stopped.
    std::fs::write(&config, pipeline(&second)).unwrap();
    signal(&child, "HUP");
    wait_for("second file", Duration::from_secs(10), || {
        sequences(&second).len() > 200
    });

    // A broken config leaves the running pipeline alone.
    std::fs::write(&config, "source \"demo\" \"g\" {\n  rate = \"x\"\n}\n").unwrap();
    signal(&child, "HUP");
    let len = sequences(&second).len();
    wait_for("still running", Duration::from_secs(10), || {
        sequences(&second).len() > len + 200
    });

    signal(&child, "TERM");
    let (status, stderr) = stderr_of(child);
    assert!(status.success(), "{stderr}");
    let (a, b) = (sequences(&first), sequences(&second));
    assert_eq!(a[0], 0);
    assert!(b[0] > 0, "the source restarted instead of being kept");
    let all: Vec<u64> = a.iter().chain(&b).copied().collect();
    assert_eq!(
        all,
        (0..all.len() as u64).collect::<Vec<_>>(),
        "gap or duplicate across the reload"
    );
    assert!(stderr.contains("rebuilt=[\"f\"]"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:10: error: invalid value for `rate`", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("keeping the running pipeline"), "{stderr}");
}
