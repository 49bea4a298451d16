//! The Prometheus sink against a real Prometheus (Debian's `prometheus`
//! package, started here on loopback with a generated config and a
//! temporary storage directory): scraping a running `sonde run`, remote
//! write through a Prometheus restart, and the cardinality guard.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sonde;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over HTTP/1.0, so that the body is never chunked; the body, or
/// `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server run by the test; killed when dropped.
struct Prometheus {
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Prometheus {
    fn start(dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut prometheus = Prometheus {
            dir: dir.to_path_buf(),
            port,
            args,
            child: None,
        };
        prometheus.resume();
        prometheus
    }

    /// Starts the server (again, on the same storage), and waits until it is ready.
    fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus not found: install Debian's `prometheus` package (`cargo xtask test` does)");
        self.child = Some(child);
        let port = self.port;
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            http_get(port, "/-/ready").filter(|body| body.contains("Ready"))
        });
    }

    /// Stops the server the way a service manager does (SIGTERM), and waits.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// `GET /api/v1/query`: the result vector (or matrix).
    fn query(&self, expr: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let body = http_get(self.port, &path).unwrap_or_default();
        let json: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{expr}: {body}"));
        assert_eq!(json["status"], "success", "{expr}: {body}");
        json["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of a query returning one series.
    fn scalar(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr);
        let value = result.first()?["value"][1].as_str()?;
        value.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `sonde run` of `config`, killed when dropped.
/// A running agent; its log goes to a file, so a test can wait for a line.
struct Agent {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Agent {
    fn run(dir: &Path, config: &str) -> Agent {
        let path = dir.join("pipeline.hcl");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("sonde.log");
        let child = sonde()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child: Some(child),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What the agent has logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the agent's log contains `line`.
    fn wait_for_log(&self, line: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(line) {
            assert!(
                start.elapsed() < timeout,
                "the agent never logged {line:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the agent to exit (sending SIGTERM first when `terminate`); its status and log.
    fn finish(&mut self, terminate: bool, timeout: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        if terminate {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > timeout {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = child.wait().unwrap();
        (status.success(), self.log())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn prometheus_scrapes_a_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let sonde_port = free_port();
    // The demo source sends 100 gauges over 2 series and stops: series "0"
    // ends at 98 and series "1" at 99. internal_metrics keeps the agent
    // running and adds real counters and histograms to the endpoint.
    let mut agent = Agent::run(
        dir.path(),
        &format!(
            r#"
agent {{
  api       = null
  node_name = "test-node"
}}
source "demo" "g" {{
  rate   = 0
  count  = 100
  series = 2
}}
source "internal_metrics" "self" {{
  interval = "1s"
}}
sink "prometheus" "prom" {{
  inputs = ["g", "self"]
  listen = "127.0.0.1:{sonde_port}"
}}
"#
        ),
    );
    let prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['127.0.0.1:{sonde_port}']\n"
        ),
        &[],
    );
    let sequence =
        |series: &str| prometheus.scalar(&format!("sonde_demo_sequence{{job=\"sonde\",series=\"{series}\"}}"));
    wait_for("the demo series in Prometheus", Duration::from_secs(30), || {
        sequence("1").filter(|v| *v == 99.0)
    });
    assert_eq!(sequence("0"), Some(98.0));
    let series = prometheus.query("sonde_demo_sequence");
    assert_eq!(series.len(), 2, "{series:?}");
    let labels = &series[0]["metric"];
    assert_eq!(labels["k8s_node_name"], "test-node", "{labels}");
    assert_eq!(labels["instance"], format!("127.0.0.1:{sonde_port}"));
    assert_eq!(prometheus.scalar("up{job=\"sonde\"}"), Some(1.0));

    // A cumulative counter, named with `_total`, and a histogram whose
    // +Inf bucket equals its count, as Prometheus read them.
    let sent = "sonde_component_sent_events_total{component_id=\"g\"}";
    wait_for("the agent's counters in Prometheus", Duration::from_secs(30), || {
        prometheus.scalar(sent).filter(|v| *v == 100.0)
    });
    let count = wait_for("a histogram", Duration::from_secs(30), || {
        prometheus.scalar("sonde_component_call_duration_seconds_count{component_id=\"prom\"}")
    });
    let inf = prometheus.scalar("sonde_component_call_duration_seconds_bucket{component_id=\"prom\",le=\"+Inf\"}");
    assert!(count > 0.0 && inf == Some(count), "count {count}, +Inf bucket {inf:?}");

    let (ok, log) = agent.finish(true, Duration::from_secs(30));
    assert!(ok, "{log}");
    assert!(!prometheus.log().contains("level=error"), "{}", prometheus.log());
}

#[test]
fn remote_write_loses_nothing_across_a_prometheus_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut prometheus = Prometheus::start(
        dir.path(),
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        &["--web.enable-remote-write-receiver"],
    );
    const EVENTS: u64 = 1200;
    const SERIES: u64 = 10;
    // 100 events per second in batches of 10, one per series: each series
    // gets a sample every 100 ms, for 12 seconds.
    let mut agent = Agent::run(
        dir.path(),
        &format!(
            r#"
agent {{ api = null }}
source "demo" "g" {{
  rate   = 100
  count  = {EVENTS}
  series = {SERIES}
}}
sink "prometheus" "push" {{
  inputs   = ["g"]
  mode     = "remote_write"
  endpoint = "http://127.0.0.1:{}/api/v1/write"
  buffer {{
    when_full = "block"
  }}
  request {{
    retry_initial_backoff = "100ms"
    retry_max_backoff     = "1s"
  }}
}}
"#,
            prometheus.port
        ),
    );
    let received = |p: &Prometheus| p.scalar("sum(count_over_time(sonde_demo_sequence[1h]))").unwrap_or(0.0);
    wait_for("the first samples", Duration::from_secs(20), || {
        (received(&prometheus) >= 200.0).then_some(())
    });
    prometheus.stop();
    // The outage lasts until the sink has felt it (a failed write retried).
    agent.wait_for_log("retrying", Duration::from_secs(30));
    prometheus.resume();

    let (ok, log) = agent.finish(false, Duration::from_secs(60));
    assert!(ok, "{log}");
    assert!(log.contains("retrying"), "the outage was not felt by the sink:\n{log}");
    assert!(log.contains("nothing lost"), "{log}");

    let mut values: Vec<u64> = Vec::new();
    for series in prometheus.query("sonde_demo_sequence[1h]") {
        let s: u64 = series["metric"]["series"].as_str().unwrap().parse().unwrap();
        for point in series["values"].as_array().unwrap() {
            let v: u64 = point[1].as_str().unwrap().parse().unwrap();
            assert_eq!(v % SERIES, s, "value {v} in series {s}");
            values.push(v);
        }
    }
    values.sort_unstable();
    assert_eq!(values, (0..EVENTS).collect::<Vec<_>>(), "{}", prometheus.log());
}

#[test]
fn cardinality_guard_holds_max_series_and_counts_the_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sonde_port, api_port) = (free_port(), free_port());
    // 500 series into room for 120. A sink ends when all its inputs have,
    // and its endpoint with it: an input that never ends (and passes
    // nothing) keeps the endpoint up after the demo source is done.
    let mut agent = Agent::run(
        dir.path(),
        &format!(
            r#"
agent {{ api = "127.0.0.1:{api_port}" }}
source "demo" "g" {{
  rate   = 0
  count  = 500
  series = 500
}}
source "internal_metrics" "keepalive" {{}}
transform "filter" "nothing" {{
  inputs = ["keepalive"]
  action = "drop"
}}
sink "prometheus" "prom" {{
  inputs     = ["g", "nothing"]
  listen     = "127.0.0.1:{sonde_port}"
  max_series = 120
}}
"#
        ),
    );
    let refused_line = wait_for("the refused counter", Duration::from_secs(20), || {
        let metrics = http_get(api_port, "/metrics")?;
        metrics
            .lines()
            .find(|l| {
                l.starts_with("sonde_prometheus_refused_samples_total{")
                    && l.contains("component_id=\"prom\"")
                    && l.contains("reason=\"max_series\"")
                    && l.ends_with(" 380")
            })
            .map(str::to_string)
    });
    let exposed = http_get(sonde_port, "/metrics").unwrap();
    let series = exposed
        .lines()
        .filter(|l| l.starts_with("sonde_demo_sequence{"))
        .count();
    assert_eq!(series, 120, "{refused_line}\n{exposed}");
    let api = http_get(api_port, "/metrics").unwrap();
    assert!(
        api.lines().any(|l| l.starts_with("sonde_prometheus_series{")
            && l.contains("component_id=\"prom\"")
            && l.ends_with(" 120")),
        "{api}"
    );
    let (ok, log) = agent.finish(true, Duration::from_secs(30));
    assert!(ok, "{log}");
}

#[test]
fn a_reload_keeps_the_endpoint_answering() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pipeline = |max_series: usize| {
        format!(
            r#"
agent {{ api = null }}
source "demo" "g" {{
  rate   = 200
  series = 3
}}
sink "prometheus" "prom" {{
  inputs     = ["g"]
  listen     = "127.0.0.1:{port}"
  max_series = {max_series}
}}
"#
        )
    };
    let mut agent = Agent::run(dir.path(), &pipeline(1000));
    wait_for("the endpoint", Duration::from_secs(20), || {
        http_get(port, "/metrics").filter(|body| body.contains("sonde_demo_sequence{"))
    });
    // Scrape without pause while the sink is rebuilt: the new sink binds
    // the address while the old one still serves it.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (stop, answered) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut failed = 0;
            while !stop.load(Relaxed) {
                match http_get(port, "/metrics") {
                    Some(_) => _ = answered.fetch_add(1, Relaxed),
                    None => failed += 1,
                }
            }
            failed
        })
    };
    let scrapes_reach = |n: usize| {
        wait_for("scrapes", Duration::from_secs(20), || {
            (answered.load(Relaxed) >= n).then_some(())
        });
    };
    scrapes_reach(20);
    std::fs::write(dir.path().join("pipeline.hcl"), pipeline(999)).unwrap();
    let _ = Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status();
    agent.wait_for_log("rebuilt=[\"prom\"]", Duration::from_secs(20));
    // Scrapes go on being answered by the rebuilt sink.
    scrapes_reach(answered.load(Relaxed) + 20);
    stop.store(true, Relaxed);
    let failed = scraper.join().unwrap();
    assert!(http_get(port, "/metrics").is_some_and(|b| b.contains("sonde_demo_sequence{")));
    let (ok, log) = agent.finish(true, Duration::from_secs(30));
    assert!(ok, "{log}");
    assert_eq!(
        failed,
        0,
        "{} scrapes answered, {failed} failed",
        answered.load(Relaxed)
    );
}
