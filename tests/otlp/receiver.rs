//! The independent OTLP receiver (tests/otlp_receiver.py) and the agent
//! under test, as processes.

#[allow(unused_imports)] // the failure tests take these from their harness
pub use crate::common::{free_port, http_get, wait_for};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The Python of `.venv`, which `cargo xtask test` creates. A missing one
/// fails the test: an OTLP test that cannot run must not pass silently.
pub fn python() -> PathBuf {
    let python = Path::new(ROOT).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask test` (it creates .venv with grpcio, protobuf, opentelemetry-proto)",
        python.display()
    );
    python
}

/// A running receiver, killed on drop.
pub struct Receiver {
    child: Child,
    /// Its JSON-lines record of every request.
    pub out: PathBuf,
    /// Its gRPC port.
    pub grpc: u16,
    /// Its HTTP port.
    pub http: u16,
}

impl Receiver {
    /// Starts one on any free ports, with the failure flags `args`.
    pub fn start(dir: &Path, args: &[&str]) -> Receiver {
        Receiver::start_on(dir, 0, 0, args)
    }

    /// Starts one on the given ports (0: any), appending to `dir/received.jsonl`.
    pub fn start_on(dir: &Path, grpc: u16, http: u16, args: &[&str]) -> Receiver {
        let out = dir.join("received.jsonl");
        let mut child = Command::new(python())
            .arg(Path::new(ROOT).join("tests/otlp_receiver.py"))
            .args(["--grpc", &grpc.to_string(), "--http", &http.to_string(), "--out"])
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/otlp_receiver.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("receiver said {line:?}: {e}"));
        Receiver {
            child,
            out,
            grpc: ports["grpc"].as_u64().unwrap() as u16,
            http: ports["http"].as_u64().unwrap() as u16,
        }
    }

    /// The endpoint for `protocol`.
    pub fn endpoint(&self, protocol: &str) -> String {
        match protocol {
            "grpc" => format!("http://127.0.0.1:{}", self.grpc),
            _ => format!("http://127.0.0.1:{}", self.http),
        }
    }

    /// Every request recorded so far (by this and earlier receivers on the same file).
    pub fn requests(&self) -> Vec<Value> {
        requests(&self.out)
    }

    /// Kills it at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The requests recorded in a receiver's file: its complete lines (the
/// receiver may be writing the last one while this reads).
pub fn requests(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A running `sonde run`, killed on drop.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
    /// Port of its API.
    pub api: u16,
}

impl Agent {
    /// Runs `pipeline` (without its `agent` block, which this adds).
    pub fn start(dir: &Path, pipeline: &str) -> Agent {
        Agent::start_with(dir, "", pipeline)
    }

    /// [`Agent::start`] with more lines for its `agent` block (`data_dir = …`).
    pub fn start_with(dir: &Path, agent: &str, pipeline: &str) -> Agent {
        let api = free_port();
        let config = dir.join("pipeline.hcl");
        let text =
            format!("agent {{\n  api = \"127.0.0.1:{api}\"\n  node_name = \"test-node\"\n{agent}\n}}\n{pipeline}");
        std::fs::write(&config, text).unwrap();
        // A file, not a pipe: nobody reads a pipe until the end, and a full
        // one would block the agent.
        let log = dir.join("sonde.log");
        let child = crate::common::sonde()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child: Some(child),
            log,
            api,
        }
    }

    /// Waits for it to exit by itself (every source finished); returns its stderr.
    pub fn wait(mut self, timeout: Duration) -> String {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(status.success(), "sonde exited with {status}:\n{stderr}");
                return stderr;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("sonde did not finish in {timeout:?}:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of the agent metric `name` whose labels include `labels`
    /// (0 when absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Some(text) = http_get(self.api, "/metrics") else {
            return 0.0;
        };
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
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
