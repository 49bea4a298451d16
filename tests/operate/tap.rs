//! `sonde tap`: the events leaving (or entering) a component, exactly.

use std::process::Stdio;

use crate::common::sonde;
use crate::{assert_consecutive, component, sequences, Agent};

const CONFIG: &str = r#"
agent {
  api        = "127.0.0.1:{api}"
  api_socket = "{dir}/api.sock"
}
source "demo" "gen" {
  rate = 200
  kind = "log"
}
source "demo" "numbers" {
  rate = 50
}
transform "filter" "only_logs" {
  inputs = ["gen", "numbers"]
  kinds  = ["log"]
}
sink "blackhole" "out" {
  inputs = ["only_logs"]
}
"#;

fn tap(agent: &Agent, args: &[&str]) -> (String, String) {
    let output = sonde()
        .arg("tap")
        .args(["--api", &agent.address()])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "sonde tap {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// The demo source's events, in order, none missing, in the file sink's
/// format; on its way out, into the sink, and through the unix socket.
#[test]
fn tap_shows_the_demo_sequence_exactly() {
    let agent = Agent::start(CONFIG);
    let (out, _) = tap(&agent, &["gen", "--limit", "100"]);
    let seq = sequences(&out);
    assert_consecutive(&seq, 100);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "log");
    assert_eq!(first["name"], "sonde.demo");
    assert!(first["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");

    // What enters the sink: only logs (the filter's), so only gen's numbers.
    let (out, _) = tap(&agent, &["--inputs-of", "out", "--limit", "50"]);
    assert_consecutive(&sequences(&out), 50);

    // Metrics only, from both demo sources' outputs: the gauge's value is
    // its sequence number.
    let (out, _) = tap(&agent, &["gen", "numbers", "--kind", "metric", "--limit", "20"]);
    let values: Vec<u64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .inspect(|e| assert_eq!(e["kind"], "metric", "{e}"))
        .map(|e| {
            e["value"]["value"]
                .as_f64()
                .map(|v| v as u64)
                .unwrap_or_else(|| panic!("{e}"))
        })
        .collect();
    assert_consecutive(&values, 20);

    let socket = agent.path("api.sock");
    let output = sonde()
        .args(["tap", "gen", "--limit", "30", "--api"])
        .arg(format!("unix:{}", socket.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_consecutive(&sequences(&String::from_utf8(output.stdout).unwrap()), 30);
}

/// Unknown components and impossible directions are refused with a reason.
#[test]
fn tap_refuses_what_is_not_there() {
    let agent = Agent::start(CONFIG);
    for (args, expected) in [
        (vec!["genn"], "did you mean `gen`?"),
        (vec!["x"], "running: gen, numbers, only_logs, out"),
        (vec!["--inputs-of", "gen"], "is a source"),
        (vec!["out"], "is a sink"),
    ] {
        let output = sonde()
            .arg("tap")
            .args(["--api", &agent.address()])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Over `--rate` the tap is sampled and says so; a reader that stops
/// reading loses its own events, says how many, and the pipeline loses
/// nothing.
#[test]
fn a_fast_or_stuck_tap_costs_the_pipeline_nothing() {
    let agent = Agent::start(
        r#"
agent { api = "127.0.0.1:{api}" }
source "demo" "fast" {
  rate       = 20000
  batch_size = 100
  kind       = "log"
}
sink "blackhole" "out" {
  inputs = ["fast"]
}
"#,
    );
    let (out, err) = tap(&agent, &["fast", "--rate", "1000", "--limit", "2000"]);
    assert_eq!(out.lines().count(), 2000);
    assert!(err.contains("sampled out"), "{err}");

    // A reader that does not read: its pipe, then the socket, fill up.
    let mut stuck = sonde()
        .args(["tap", "fast", "--rate", "100000000", "--api", &agent.address()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let before = agent.sent("fast");
    std::thread::sleep(std::time::Duration::from_secs(5));
    let during = agent.sent("fast") - before;
    // Now read what it says: the agent reports the lost events to it.
    let stdout = stuck.stdout.take().unwrap();
    let drain = std::thread::spawn(move || std::io::copy(&mut { stdout }, &mut std::io::sink()));
    std::thread::sleep(std::time::Duration::from_secs(3));
    stuck.kill().unwrap();
    let output = stuck.wait_with_output().unwrap();
    let _ = drain.join();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("events lost in all"),
        "the stuck tap was not told: {stderr}"
    );
    // 20k/s for 5 s. A pipeline held back by the tap would have stopped
    // once the tap's queue (64 batches of 100) and the socket's buffers
    // were full; that the tap lost events says the producer did not wait.
    // Half the rate leaves room for a loaded test machine.
    assert!(during > 50_000, "the pipeline slowed down: {during} events in 5 s");
    let stats = agent.stats();
    assert_eq!(component(&stats, "out")["dropped"], serde_json::json!({}), "{stats}");
}
