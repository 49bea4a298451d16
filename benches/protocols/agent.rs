//! The agent under test: `sonde run` with the `protocols` source at its
//! defaults, its spans into a blackhole, in a cgroup of its own; and what
//! it says about itself (the API's `/metrics`, with the source's
//! `sonde_protocols_*` counters).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::common::process::Measured;
use super::common::web::free_port;

/// How often the source emits its counters here (default 10 s): so that
/// they can be read after each run. Only the emission of a few metrics
/// gets more frequent; every size is the default.
pub const COUNTERS_INTERVAL: Duration = Duration::from_secs(1);

/// The pipeline: the source at its defaults but `interval`; spans into
/// the blackhole `void` (whose received count is the spans delivered). The
/// source's own counters are on the agent API's `/metrics`.
fn pipeline(api: u16, source: &str) -> String {
    format!(
        r#"
agent {{ api = "127.0.0.1:{api}" }}
source "protocols" "l7" {{
  interval = "{}s"
  {source}
}}
transform "filter" "spans" {{
  inputs = ["l7"]
  kinds  = ["span"]
}}
sink "blackhole" "void" {{ inputs = ["spans"] }}
"#,
        COUNTERS_INTERVAL.as_secs()
    )
}

/// A running agent.
pub struct Agent {
    pub process: Measured,
    api: u16,
}

/// What the agent reported at one instant (cumulative).
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Spans the blackhole received.
    pub spans: f64,
    /// `sonde_ebpf_lost_events_total` (every reason) and
    /// `sonde_ebpf_map_full_total`: what the kernel side lost.
    pub lost_events: f64,
    pub map_full: f64,
    /// `sonde_protocols_dropped_total` and `sonde_protocols_gaps_total`,
    /// by reason.
    pub dropped: BTreeMap<String, f64>,
    pub gaps: BTreeMap<String, f64>,
}

impl Report {
    /// What happened between `self` and a later `end`.
    pub fn until(&self, end: &Report) -> Report {
        let delta = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
            b.iter()
                .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
                .collect()
        };
        Report {
            spans: end.spans - self.spans,
            lost_events: end.lost_events - self.lost_events,
            map_full: end.map_full - self.map_full,
            dropped: delta(&self.dropped, &end.dropped),
            gaps: delta(&self.gaps, &end.gaps),
        }
    }
}

impl Agent {
    /// Starts the agent with its config under `dir` and waits until it
    /// turns a request to nginx on `nginx_port` into spans.
    pub fn start(sonde: &Path, dir: &Path, nginx_port: u16) -> Result<Agent> {
        Agent::start_with(sonde, dir, "", || http_get(nginx_port, "/index.html").map(drop))
    }

    /// Starts the agent, its source with the extra settings `source`, and
    /// waits until a request `probe` makes comes back as spans.
    pub fn start_with(sonde: &Path, dir: &Path, source: &str, mut probe: impl FnMut() -> Result<()>) -> Result<Agent> {
        let api = free_port()?;
        let config = dir.join("protocols.hcl");
        std::fs::write(&config, pipeline(api, source))?;
        let mut command = Command::new(sonde);
        command
            .args(["--log-level", "info", "run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Measured::spawn(&mut command).context("cannot start sonde")?;
        let stderr = process.child.stderr.take().context("sonde's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads to the end, so that the agent never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("pipeline running") {
                    let _ = tx.send(None);
                } else if line.contains("ERROR") || line.contains("error:") {
                    let _ = tx.send(Some(line));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(None) => break,
                Ok(Some(error)) => bail!("sonde logged an error: {error}"),
                Err(_) if Instant::now() > deadline => bail!("sonde did not start in 60 s"),
                Err(_) => {}
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!("sonde exited during startup: {status}");
            }
        }
        process.note_programs();
        let agent = Agent { process, api };
        // Attached once a request comes back as spans.
        while agent.report()?.spans < 1.0 {
            if Instant::now() > deadline {
                bail!("sonde made no span of a probe request in 60 s");
            }
            probe()?;
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(agent)
    }

    /// Its figures now (the counters as of their last emission).
    pub fn report(&self) -> Result<Report> {
        let api = http_get(self.api, "/metrics")?;
        Ok(Report {
            spans: metric_sum(&api, "sonde_component_received_events_total", r#"component_id="void""#),
            lost_events: metric_sum(&api, "sonde_ebpf_lost_events_total", ""),
            map_full: metric_sum(&api, "sonde_ebpf_map_full_total", ""),
            dropped: by_reason(&api, "sonde_protocols_dropped"),
            gaps: by_reason(&api, "sonde_protocols_gaps"),
        })
    }

    /// SIGTERM: the agent drains and exits.
    pub fn stop(self) {
        self.process.stop("-TERM");
    }
}

/// The body of `GET path` on a loopback port.
pub fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response from port {port}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path} on port {port}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// The sum of the samples of `name` (exactly; `name` plus a suffix such as
/// `_bucket` is another metric) whose labels contain `label`.
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    samples(text)
        .filter(|(n, labels, _)| *n == name && labels.contains(label))
        .map(|(_, _, value)| value)
        .sum()
}

/// The samples of the metrics whose names start with `prefix`, summed by
/// their `reason` label.
pub fn by_reason(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (_, labels, value) in samples(text).filter(|(n, _, _)| n.starts_with(prefix)) {
        let reason = labels
            .split("reason=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_string();
        *out.entry(reason).or_insert(0.0) += value;
    }
    out
}

/// (name, labels, value) of each sample line of a Prometheus text page.
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let value = value.parse().ok()?;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        Some((name, labels, value))
    })
}

// Run by tests/bench_protocols.rs (bench targets have no libtest).
#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn reads_prometheus_samples_by_name_label_and_reason() {
        let page = "# HELP sonde_component_received_events_total Events.\n\
            sonde_component_received_events_total{component_id=\"void\",component_kind=\"sink\"} 2000\n\
            sonde_component_received_events_total{component_id=\"spans\",component_kind=\"transform\"} 2013\n\
            sonde_component_received_events_total_extra{component_id=\"void\"} 7\n\
            sonde_protocols_dropped_total{sonde_protocols_reason=\"duplicate\",node=\"n\"} 3\n\
            sonde_protocols_dropped_total{sonde_protocols_reason=\"parse_error\",node=\"n\"} 1\n\
            sonde_protocols_dropped_total{sonde_protocols_reason=\"duplicate\",node=\"m\"} 2\n\
            sonde_protocols_gaps_total{sonde_protocols_reason=\"uncaptured\"} 0\n";
        assert_eq!(
            metric_sum(page, "sonde_component_received_events_total", "component_id=\"void\""),
            2000.0
        );
        assert_eq!(metric_sum(page, "sonde_component_received_events_total", ""), 4013.0);
        assert_eq!(metric_sum(page, "sonde_ebpf_lost_events_total", ""), 0.0);
        let dropped = by_reason(page, "sonde_protocols_dropped");
        assert_eq!(dropped.get("duplicate"), Some(&5.0));
        assert_eq!(dropped.get("parse_error"), Some(&1.0));
        assert_eq!(dropped.len(), 2);
        let before = Report {
            spans: 10.0,
            dropped: by_reason(
                "sonde_protocols_dropped_total{reason=\"duplicate\"} 1\n",
                "sonde_protocols_dropped",
            ),
            ..Report::default()
        };
        let after = Report {
            spans: 30.0,
            dropped,
            ..Report::default()
        };
        let delta = before.until(&after);
        assert_eq!(delta.spans, 20.0);
        assert_eq!(delta.dropped.get("duplicate"), Some(&4.0));
    }
}
