//! Metric names as users meet them: the Prometheus exposition of every
//! source passes `promtool check metrics` with no finding, and OTLP carries
//! the OpenTelemetry semantic-convention names (decoded by the official
//! `opentelemetry-proto` Python package in tests/otlp_receiver.py).
//!
//! Both run the sonde binary with real eBPF sources; without BPF they skip,
//! and with `SONDE_REQUIRE_BPF=1` they fail.

mod common;
#[allow(dead_code)] // the agent's `wait` and `metric` serve tests/otlp.rs
mod otlp {
    pub mod receiver;
}

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use otlp::receiver::{free_port, http_get, wait_for, Agent, Receiver};
use serde_json::Value;
use sonde_core::component::ComponentKind;
use sonde_core::event::EventKind;
use sonde_core::registry::AnyConfig;
use sonde_ebpf::testing::bpf_available_or_skip;

/// One `source` block per source type the binary has, each with a one
/// second interval where it takes one; returns the blocks and the ids of
/// the sources that emit metrics.
fn every_source() -> (String, Vec<String>) {
    let registry = sonde::registry();
    let mut text = String::new();
    let mut metric_ids = Vec::new();
    for name in registry.names(ComponentKind::Source) {
        let ty = registry.get(ComponentKind::Source, name).unwrap();
        let schema = serde_json::to_value(ty.schema(&mut Default::default())).unwrap();
        let options = if schema["properties"].get("interval").is_some() {
            serde_json::json!({ "interval": "1s" })
        } else {
            serde_json::json!({})
        };
        let Ok(AnyConfig::Source(config)) = ty.parse(options.clone()) else {
            panic!("source {name} does not build from {options}");
        };
        let id = format!("s_{name}");
        let body = if options["interval"].is_string() {
            "interval = \"1s\""
        } else {
            ""
        };
        text.push_str(&format!("source \"{name}\" \"{id}\" {{ {body} }}\n"));
        if config.outputs().contains(EventKind::Metric) {
            metric_ids.push(format!("\"{id}\""));
        }
    }
    (text, metric_ids)
}

/// Some of everything the sources count: disk writes flushed to a disk,
/// a TCP connection, a process exec.
fn workload(dir: &Path) {
    let mut file = std::fs::File::create(dir.join("workload")).unwrap();
    for _ in 0..16 {
        file.write_all(&[7u8; 64 * 1024]).unwrap();
        file.sync_all().unwrap();
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for _ in 0..3 {
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop((client, server));
    }
    let _ = Command::new("true").status();
}

/// The exposition body of a `GET /metrics`, without the headers.
fn scrape(port: u16) -> Option<String> {
    let response = http_get(port, "/metrics")?;
    Some(response.split_once("\r\n\r\n")?.1.to_string())
}

/// The metric family names of an exposition (`# TYPE` lines).
fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's `prometheus` package (`cargo xtask test` does)");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn every_source_passes_promtool_with_no_finding() {
    let test = "every_source_passes_promtool_with_no_finding";
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // internal_metrics is one of them: the agent's own metrics too.
    let (sources, inputs) = every_source();
    let port = free_port();
    let pipeline = format!(
        "{sources}\n\
         sink \"prometheus\" \"prom\" {{\n  inputs = [{}]\n  listen = \"127.0.0.1:{port}\"\n}}\n",
        inputs.join(", ")
    );
    let agent = Agent::start(dir.path(), &pipeline);
    // Families that a source emits once the workload ran: the scrape is
    // of every source at work, not of an agent still starting.
    let expected = [
        "system_disk_operations_total",
        "system_disk_io_bytes_total",
        "sonde_disk_request_duration_seconds",
        "sonde_tcp_connections_opened_total",
        "system_network_connections",
        "sonde_node_energy_joules_total",
        "sonde_component_sent_events_total",
    ];
    let mut body = String::new();
    wait_for(
        "every source's metrics in the exposition",
        Duration::from_secs(60),
        || {
            workload(dir.path());
            std::thread::sleep(Duration::from_millis(500));
            body = scrape(port).unwrap_or_default();
            let have = families(&body);
            expected.iter().all(|f| have.contains(*f))
        },
    );
    // One more interval, so that series that needed a round of their own
    // (histograms, gauges of the last interval) are there too.
    std::thread::sleep(Duration::from_secs(2));
    body = scrape(port).expect("a scrape");
    drop(agent);
    let (ok, said) = promtool_check(&body);
    eprintln!("promtool checked {} families", families(&body).len());
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics found:\n{said}\nin {} families:\n{:?}",
        families(&body).len(),
        families(&body)
    );
}

/// The metrics of every accepted OTLP metrics request: name → unit.
fn otlp_metrics(requests: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for request in requests {
        if request["signal"] != "metrics" || request["outcome"] != "ok" {
            continue;
        }
        for rm in request["request"]["resource_metrics"].as_array().into_iter().flatten() {
            for sm in rm["scope_metrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    out.push((
                        m["name"].as_str().unwrap_or("").to_string(),
                        m["unit"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn otlp_carries_the_convention_names_of_disk_tcp_and_energy() {
    let test = "otlp_carries_the_convention_names_of_disk_tcp_and_energy";
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let receiver = Receiver::start(dir.path(), &[]);
    let pipeline = format!(
        r#"
        source "disk_latency" "disk" {{ interval = "1s" }}
        source "tcp" "tcp" {{ interval = "1s" }}
        source "energy" "energy" {{ interval = "1s" }}
        sink "otlp" "otlp" {{
          inputs   = ["disk", "tcp", "energy"]
          endpoint = "{}"
        }}
        "#,
        receiver.endpoint("grpc")
    );
    let agent = Agent::start(dir.path(), &pipeline);
    use sonde_sources::{disk_latency, energy, tcp};
    // (name, unit) as the semantic conventions (or sonde's own namespace,
    // where they have none) spell them.
    let expected: [(&str, &str); 8] = [
        (disk_latency::REQUESTS, "{operation}"),
        (disk_latency::BYTES, "By"),
        (disk_latency::REQUEST_DURATION, "s"),
        (tcp::OPENS, "{connection}"),
        (tcp::CONNECTIONS, "{connection}"),
        (energy::NODE_ENERGY, "J"),
        (energy::NODE_POWER, "W"),
        (energy::PROCESS_ENERGY, "J"),
    ];
    assert_eq!(
        expected.map(|(name, _)| name),
        [
            "system.disk.operations",
            "system.disk.io",
            "sonde.disk.request.duration",
            "sonde.tcp.connections.opened",
            "system.network.connections",
            "sonde.node.energy",
            "sonde.node.power",
            "sonde.process.energy",
        ]
    );
    let mut seen = Vec::new();
    wait_for(
        "disk, tcp and energy metrics at the receiver",
        Duration::from_secs(60),
        || {
            workload(dir.path());
            std::thread::sleep(Duration::from_millis(500));
            seen = otlp_metrics(&receiver.requests());
            expected.iter().all(|(name, _)| seen.iter().any(|(n, _)| n == name))
        },
    );
    drop(agent);
    for (name, unit) in expected {
        let units: BTreeSet<&str> = seen
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, u)| u.as_str())
            .collect();
        assert_eq!(units, BTreeSet::from([unit]), "unit of {name}");
    }
    // No Prometheus spelling reaches OTLP: no `_total`, no unit suffix, no
    // underscore-separated namespaces.
    let names: BTreeSet<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    for name in &names {
        assert!(
            name.contains('.')
                && !name.ends_with("_total")
                && !name.ends_with("_seconds")
                && !name.ends_with("_bytes")
                && !name.starts_with("sonde_"),
            "{name} is not an OpenTelemetry name (all: {names:?})"
        );
    }
}
