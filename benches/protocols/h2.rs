//! HTTP/2 over h2c: nghttpd (Debian's nghttp2-server) serving a small page
//! to h2load at a fixed rate (`--rps` per connection), the agent off and
//! on (`source "protocols"` with `protocols = ["http2"]`). Per request:
//! the eBPF run time of the agent's programs per side (h2load's client
//! calls and nghttpd's server calls are both traced), the agent's CPU, and
//! the spans lost (two per request h2load completed, less what the
//! blackhole received).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::agent::{Agent, COUNTERS_INTERVAL};
use super::common::web::free_port;
use super::common::{spread, Figure};

/// h2load's connections and requests/s each: 10k requests/s in all.
const CONNECTIONS: u32 = 10;
const RPS_PER_CONNECTION: u32 = 1000;

/// nghttpd, stopped when dropped.
struct Nghttpd {
    child: Child,
    port: u16,
}

impl Drop for Nghttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One h2load run: requests it completed and the rate it reached.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub requests: f64,
    pub rps: f64,
}

fn h2load(port: u16, seconds: u32) -> Result<Load> {
    let out = Command::new("h2load")
        .args(["-c", &CONNECTIONS.to_string(), "--rps", &RPS_PER_CONNECTION.to_string()])
        .args(["-D", &seconds.to_string()])
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .output()
        .context("h2load (apt-get install nghttp2-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str, suffix: &str| -> Option<f64> {
        let line = text.lines().find_map(|l| l.trim().strip_prefix(prefix))?;
        line.split(", ")
            .find(|f| f.ends_with(suffix))?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    let requests = field("requests: ", " succeeded").context("h2load's count")?;
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    Ok(Load { requests, rps })
}

/// What one round measured.
#[derive(Clone, Debug, Default)]
pub struct Round {
    pub off: Load,
    pub on: Load,
    pub bpf_ns_per_side: f64,
    pub agent_cpu_percent: f64,
    pub lost_spans: f64,
}

/// `rounds` rounds of `seconds` off, then on.
pub fn measure(sonde: &Path, dir: &Path, rounds: usize, seconds: u32) -> Result<Vec<Round>> {
    let root = dir.join("h2-www");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("index.html"), "x".repeat(100))?;
    let port = free_port()?;
    let child = Command::new("nghttpd")
        .arg("-d")
        .arg(&root)
        .args(["--no-tls", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("nghttpd (apt-get install nghttp2-server)")?;
    let server = Nghttpd { child, port };
    std::thread::sleep(Duration::from_millis(500));
    let mut out = Vec::new();
    for round in 0..rounds {
        let off = h2load(server.port, seconds)?;
        let agent = Agent::start_with(sonde, dir, r#"protocols = ["http2"]"#, || h2load_once(server.port))?;
        std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
        let before = agent.report()?;
        let stats = sonde_ebpf::stats::enable()?;
        let start = agent.process.read();
        let on = h2load(server.port, seconds)?;
        let end = agent.process.read();
        drop(stats);
        std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
        let report = before.until(&agent.report()?);
        agent.stop();
        if on.requests < 1.0 {
            bail!("h2load completed no request with the agent on");
        }
        let wall = end.at.unwrap().duration_since(start.at.unwrap()).as_nanos() as f64;
        let r = Round {
            off,
            on,
            bpf_ns_per_side: (end.bpf_ns - start.bpf_ns) as f64 / on.requests / 2.0,
            agent_cpu_percent: (end.cpu_ns - start.cpu_ns) as f64 / wall * 100.0,
            lost_spans: (2.0 * on.requests - report.spans).max(0.0),
        };
        eprintln!(
            "round {}: h2c off {:.0} req/s, on {:.0} req/s; eBPF {:.0} ns/req/side, agent {:.2} % CPU, {} spans lost",
            round + 1,
            r.off.rps,
            r.on.rps,
            r.bpf_ns_per_side,
            r.agent_cpu_percent,
            r.lost_spans
        );
        out.push(r);
    }
    Ok(out)
}

fn h2load_once(port: u16) -> Result<()> {
    let status = Command::new("h2load")
        .args(["-n", "1", "-c", "1"])
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("h2load -n 1 failed");
    }
    Ok(())
}

/// The report's HTTP/2 section and its figures.
pub fn render(rounds: &[Round]) -> (String, Vec<Figure>) {
    let col = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let mmm = |values: &[f64], decimals: usize| {
        let (min, median, max) = spread(values);
        format!("{median:.decimals$} ({min:.decimals$}–{max:.decimals$})")
    };
    let (off, on) = (col(|r| r.off.rps), col(|r| r.on.rps));
    let (bpf, cpu, lost) = (
        col(|r| r.bpf_ns_per_side),
        col(|r| r.agent_cpu_percent),
        col(|r| r.lost_spans),
    );
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n### HTTP/2 (h2c)\n\nnghttpd serves a 100-byte page on loopback to h2load, {CONNECTIONS} connections × \
         {RPS_PER_CONNECTION} requests/s (`--rps`); agent on: `protocols = [\"http2\"]`. {} rounds, off then on. \
         Median (min–max).\n\n| | h2load off, req/s | on, req/s | eBPF ns/request/side | agent CPU % | spans lost |\n\
         |---|---|---|---|---|---|\n| h2c 10k/s | {} | {} | {} | {} | {} |",
        rounds.len(),
        mmm(&off, 0),
        mmm(&on, 0),
        mmm(&bpf, 0),
        mmm(&cpu, 2),
        mmm(&lost, 0),
    );
    let figures = vec![
        Figure::new("h2c 10k/s: eBPF ns per request per side", "ns/request", &bpf),
        Figure::new("h2c 10k/s: agent CPU", "%", &cpu),
        Figure::new("h2c 10k/s: spans lost", "spans", &lost),
    ];
    (md, figures)
}
