//! The exec storm and the agent under test.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::common::process::Measured;
use super::common::web::free_port;

/// What one storm did.
#[derive(Clone, Debug, Default)]
pub struct Storm {
    /// Execs per second achieved.
    pub achieved: f64,
    /// Mean time of one spawn and wait, µs.
    pub spawn_us: f64,
}

/// `rate` fork+execs of `/bin/true` per second for `seconds`, from two
/// threads, each spawn waited for.
pub fn run(rate: u64, seconds: u64) -> Result<Storm> {
    const THREADS: u64 = 2;
    let per_thread = rate * seconds / THREADS;
    let interval = Duration::from_nanos(1_000_000_000 * THREADS / rate);
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
                let mut busy = Duration::ZERO;
                let first = start + interval * t as u32 / THREADS as u32;
                for i in 0..per_thread {
                    let due = first + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t0 = Instant::now();
                    let status = Command::new("/bin/true").arg("storm").status()?;
                    busy += t0.elapsed();
                    if !status.success() {
                        return Err(std::io::Error::other("/bin/true failed"));
                    }
                }
                Ok((per_thread, busy))
            })
        })
        .collect();
    let (mut n, mut busy) = (0u64, Duration::ZERO);
    for t in threads {
        let (k, b) = t.join().expect("storm thread")?;
        n += k;
        busy += b;
    }
    let wall = start.elapsed();
    Ok(Storm {
        achieved: n as f64 / wall.as_secs_f64(),
        spawn_us: busy.as_secs_f64() * 1e6 / n as f64,
    })
}

/// A running agent: `sonde run` with the process source into a blackhole.
pub struct Agent {
    pub process: Measured,
    api: u16,
}

/// The agent's counters at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// `sonde_ebpf_lost_events_total` + `sonde_ebpf_map_full_total`, every reason.
    pub lost: f64,
    /// Events the blackhole received.
    pub delivered: f64,
}

impl Agent {
    /// Starts the agent and waits until its pipeline runs.
    pub fn start(sonde: &Path, dir: &Path) -> Result<Agent> {
        let api = free_port()?;
        let config = dir.join("process.hcl");
        std::fs::write(
            &config,
            format!(
                "agent {{ api = \"127.0.0.1:{api}\" }}\n\
                 source \"process\" \"procs\" {{ interval = \"1s\" }}\n\
                 sink \"blackhole\" \"void\" {{ inputs = [\"procs\"] }}\n"
            ),
        )?;
        let mut command = Command::new(sonde);
        command
            .args(["--log-level", "info", "run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Measured::spawn(&mut command).context("cannot start sonde")?;
        let stderr = process.child.stderr.take().context("sonde's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
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
        // Settled: its /proc bootstrap done, its first counters out.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(Agent { process, api })
    }

    /// Its counters now.
    pub fn report(&self) -> Result<Report> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.api))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        let sum = |name: &str, label: &str| -> f64 {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Ok(Report {
            lost: sum("sonde_ebpf_lost_events_total", "reason=\"ringbuf_full\"") + sum("sonde_ebpf_map_full_total", ""),
            delivered: sum("sonde_component_received_events_total", "component_id=\"void\""),
        })
    }

    /// SIGTERM: the agent drains and exits.
    pub fn stop(self) {
        self.process.stop("-TERM");
    }
}
