//! The agent configurations the benchmark compares, and starting them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::common::process::Measured;
use crate::workload::{self, Connections, Nginx};

/// The pipeline `sonde run` runs when given no config.
const DEFAULT_PIPELINE: &str = include_str!("../../configs/default.hcl");

/// What runs beside the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No agent: the baseline.
    Off,
    /// `configs/default.hcl`.
    Default,
    /// The default pipeline plus every other eBPF source, into a blackhole.
    All,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 3] = [Mode::Off, Mode::Default, Mode::All];
    /// The modes that run an agent.
    pub const AGENTS: [Mode; 2] = [Mode::Default, Mode::All];

    /// How the report names it.
    pub fn label(self) -> String {
        match self {
            Mode::Off => "off".into(),
            Mode::Default => "default pipeline".into(),
            Mode::All => format!("all sources ({})", all_sources().join(", ")),
        }
    }
}

/// Every eBPF source type the binary has.
pub fn all_sources() -> Vec<&'static str> {
    sonde::registry().ebpf_sources().map(|(name, _)| name).collect()
}

/// The pipeline of `mode`, its agent API moved to a free port.
fn pipeline(mode: Mode) -> Result<String> {
    let api = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut text = DEFAULT_PIPELINE.replace("127.0.0.1:8686", &api.to_string());
    if text == DEFAULT_PIPELINE {
        bail!("configs/default.hcl no longer sets api = \"127.0.0.1:8686\": update benches/agent");
    }
    if mode == Mode::All {
        let extra: Vec<&str> = all_sources()
            .into_iter()
            .filter(|t| !DEFAULT_PIPELINE.contains(&format!("source \"{t}\"")))
            .collect();
        for source_type in &extra {
            text.push_str(&format!("\nsource \"{source_type}\" \"bench_{source_type}\" {{}}\n"));
        }
        let inputs: Vec<String> = extra.iter().map(|t| format!("\"bench_{t}\"")).collect();
        if !inputs.is_empty() {
            text.push_str(&format!(
                "\nsink \"blackhole\" \"bench_extra\" {{\n  inputs = [{}]\n}}\n",
                inputs.join(", ")
            ));
        }
    }
    Ok(text)
}

/// A running agent.
pub struct Agent {
    pub process: Measured,
}

impl Agent {
    /// Starts `mode`'s agent (not `Off`) with its files under `dir`, and
    /// waits until its pipeline runs.
    pub fn start(mode: Mode, dir: &Path) -> Result<Agent> {
        let config = dir.join("pipeline.hcl");
        std::fs::write(&config, pipeline(mode)?)?;
        let prometheus = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_sonde"));
        command
            .args(["--log-level", "info", "run", "--config"])
            .arg(&config)
            .env("SONDE_OUTPUT", dir.join("events.jsonl"))
            .env("SONDE_PROFILES", dir.join("profiles"))
            .env("SONDE_PROMETHEUS_LISTEN", prometheus.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Measured::spawn(&mut command).context("cannot start sonde")?;
        let stderr = process.child.stderr.take().context("sonde's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("pipeline running") {
                    let _ = tx.send(None);
                } else if line.contains("ERROR") {
                    let _ = tx.send(Some(line));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(None) => break,
                Ok(Some(error)) => bail!("sonde ({}) logged an error: {error}", mode.label()),
                Err(_) if Instant::now() > deadline => bail!("sonde ({}) did not start in 60 s", mode.label()),
                Err(_) => {}
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!("sonde ({}) exited during startup: {status}", mode.label());
            }
        }
        process.note_programs();
        Ok(Agent { process })
    }

    /// ns per run of each of its programs (those of one name summed per
    /// run) during a 2 s connection-per-request wrk run (which exercises
    /// the TCP tracepoints) with statistics on.
    pub fn program_costs(&self, nginx: &Nginx) -> Result<Vec<(String, f64)>> {
        let stats = sonde_ebpf::stats::enable()?;
        let before = self.process.program_stats();
        workload::wrk(nginx, Connections::PerRequest, 2)?;
        let after = self.process.program_stats();
        drop(stats);
        let mut by_name: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for p in after {
            let (ns0, runs0) = before
                .iter()
                .find(|b| b.id == p.id)
                .map_or((0, 0), |b| (b.run_time_ns, b.run_count));
            let entry = by_name.entry(p.name).or_default();
            entry.0 += p.run_time_ns - ns0;
            entry.1 += p.run_count - runs0;
        }
        Ok(by_name
            .into_iter()
            .filter(|(_, (_, runs))| *runs > 0)
            .map(|(name, (ns, runs))| (name, ns as f64 / runs as f64))
            .collect())
    }

    /// SIGTERM: the agent drains and exits.
    pub fn stop(self) {
        self.process.stop("-TERM");
    }
}
