//! What runs beside the workload — nothing, sonde (`tcp` and `net_flows`
//! sources), or bpftrace doing the equivalent tracepoint work — and the
//! kernel's run-time statistics of their programs
//! (`BPF_ENABLE_STATS`, kernel 5.8+).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::common::web::TempDir;

/// What runs beside nginx and wrk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Nothing: the baseline.
    Off,
    /// `sonde run` with the `tcp` source into a blackhole.
    SondeTcp,
    /// `sonde run` with the `tcp` and `net_flows` sources into a blackhole.
    Sonde,
    /// bpftrace with the same tracepoints and comparable map work.
    Bpftrace,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 4] = [Mode::Off, Mode::SondeTcp, Mode::Sonde, Mode::Bpftrace];

    /// How the report names it.
    pub const fn label(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::SondeTcp => "sonde tcp",
            Mode::Sonde => "sonde tcp + net_flows",
            Mode::Bpftrace => "bpftrace",
        }
    }
}

/// The reference: what the `tcp` source does in the kernel, in bpftrace
/// (bcc's tools cannot compile here: no kernel headers).
pub const BPFTRACE_SCRIPT: &str = r#"
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
  if (args->newstate == 2) { @start[args->skaddr] = nsecs; @owner[args->skaddr] = pid; }
  if (args->oldstate == 2) {
    @connect[@owner[args->skaddr], args->dport] = hist(nsecs - @start[args->skaddr]);
    delete(@start[args->skaddr]);
  }
  if (args->oldstate == 3 && args->newstate == 1) { @accepts[args->sport] = count(); }
  if (args->oldstate == 1) { @closes[@owner[args->skaddr], args->dport] = count(); }
  if (args->newstate == 7) { delete(@owner[args->skaddr]); }
}
tracepoint:tcp:tcp_retransmit_skb { @retransmits[args->dport] = count(); }
tracepoint:tcp:tcp_send_reset { @resets_sent = count(); }
tracepoint:tcp:tcp_receive_reset { @resets_received = count(); }
tracepoint:skb:kfree_skb { @drops[args->reason] = count(); }
"#;

/// The pipeline sonde runs: the sources (`FLOWS` is replaced), everything
/// into a blackhole; the console shows the first `tcp` batch, which says
/// the programs are attached.
const SONDE_CONFIG: &str = r#"
agent { api = null }
source "tcp" "tcp" { interval = "1s" }
FLOWS
sink "blackhole" "void" { inputs = ["tcp"INPUTS] }
sink "console" "ready" {
  inputs   = ["tcp"]
  encoding = "json"
}
"#;

/// A running agent: its process and the ids of the programs it loaded.
pub struct Agent {
    child: Child,
    programs: Vec<u32>,
    _dir: Option<TempDir>,
}

/// (program name, run time ns, runs) of one program.
pub type ProgramSample = (String, u64, u64);

impl Agent {
    /// Starts `mode`'s agent and waits until its programs are attached.
    /// `poke` makes a loopback connection (so the tcp source has something
    /// to say).
    pub fn start(mode: Mode, sonde: &Path, poke: impl Fn()) -> Result<Option<Agent>> {
        let before: HashSet<u32> = programs().into_iter().map(|p| p.0).collect();
        let (mut child, dir, ready): (Child, Option<TempDir>, fn(&str) -> bool) = match mode {
            Mode::Off => return Ok(None),
            Mode::SondeTcp | Mode::Sonde => {
                let dir = TempDir::new("sonde-bench-agent")?;
                let config = dir.path().join("pipeline.hcl");
                let (flows, inputs) = if mode == Mode::Sonde {
                    (r#"source "net_flows" "flows" {}"#, r#", "flows""#)
                } else {
                    ("", "")
                };
                std::fs::write(&config, SONDE_CONFIG.replace("FLOWS", flows).replace("INPUTS", inputs))?;
                let child = Command::new(sonde)
                    .args(["--log-level", "warn", "run", "--config"])
                    .arg(&config)
                    .stdout(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("cannot start {}", sonde.display()))?;
                (child, Some(dir), |line: &str| line.starts_with('{'))
            }
            Mode::Bpftrace => {
                let child = Command::new("bpftrace")
                    .args(["-e", BPFTRACE_SCRIPT])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("cannot start bpftrace (apt-get install -y bpftrace)")?;
                (child, None, |line: &str| line.starts_with("Attaching"))
            }
        };
        let lines = read_lines(&mut child)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            poke();
            match lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) if ready(&line) => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("{} exited during startup", mode.label()),
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} did not become ready in 60 s", mode.label());
            }
        }
        // bpftrace says "Attaching" before it attaches: let it finish.
        std::thread::sleep(Duration::from_millis(1000));
        let programs = programs()
            .into_iter()
            .filter(|p| !before.contains(&p.0))
            .map(|p| p.0)
            .collect();
        Ok(Some(Agent {
            child,
            programs,
            _dir: dir,
        }))
    }

    /// Run time and count of each of its programs now (cumulative).
    pub fn program_stats(&self) -> Vec<(u32, ProgramSample)> {
        programs()
            .into_iter()
            .filter(|p| self.programs.contains(&p.0))
            .map(|(id, name, ns, runs)| (id, (name, ns, runs)))
            .collect()
    }

    /// Stops it (SIGINT, as Ctrl-C, again each second: bpftrace can miss
    /// one; SIGKILL after 15 s) and waits.
    pub fn stop(mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            for _ in 0..20 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
        }
    }
}

/// Forwards the child's stdout lines, and keeps reading so it never blocks.
fn read_lines(child: &mut Child) -> Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("agent stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok(rx)
}

/// (id, name, run time ns, runs) of every program loaded in the kernel.
fn programs() -> Vec<(u32, String, u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|info| {
            (
                info.id(),
                info.name_as_str().unwrap_or("").to_string(),
                info.run_time().as_nanos() as u64,
                info.run_count(),
            )
        })
        .collect()
}
