//! What operating a running agent costs it, `cargo xtask bench operate`:
//! the agent's CPU (user + system of all its threads, from its own cgroup)
//! with nothing attached, with an idle `sonde tap` (on a component that
//! sends one event a second), with a busy `sonde tap` (on the busy source,
//! sampled at its default 10 000 events/s), and with `sonde top` running
//! (in tmux, refreshing every second). The pipeline is a demo source at
//! `--rate` events/s into a blackhole, and a quiet demo source.
//!
//! Modes take turns, `--rounds` of them, the order rotating each round so
//! drift on a shared machine hits all alike; each figure is also given as
//! the median of its per-round ratio to "nothing attached". `top`'s eBPF
//! statistics cost the programs' run time, not the agent process: this
//! pipeline has no eBPF source (the `agent` benchmark measures those).
//!
//! Needs tmux. Writes `operate.md` and `operate.json`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::process::Measured;
use common::{arg, spread, Figure};

const MODES: [&str; 4] = ["nothing attached", "idle tap", "busy tap", "top"];

fn config(api: u16, rate: u64) -> String {
    format!(
        r#"
agent {{ api = "127.0.0.1:{api}" }}
source "demo" "busy" {{
  rate = {rate}
  kind = "log"
}}
source "demo" "quiet" {{
  rate = 1
  kind = "log"
}}
sink "blackhole" "out" {{
  inputs = ["busy", "quiet"]
}}
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What is attached during one mode; stopped when dropped.
enum Attached {
    Nothing,
    Tap(Child),
    Top(String),
}

impl Drop for Attached {
    fn drop(&mut self) {
        match self {
            Attached::Nothing => {}
            Attached::Tap(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Attached::Top(session) => {
                let _ = Command::new("tmux").args(["kill-session", "-t", session]).status();
            }
        }
    }
}

fn attach(mode: &str, sonde: &str, api: &str) -> Attached {
    let tap = |component: &str| {
        Command::new(sonde)
            .args(["tap", component, "--api", api])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sonde tap starts")
    };
    match mode {
        "idle tap" => Attached::Tap(tap("quiet")),
        "busy tap" => Attached::Tap(tap("busy")),
        "top" => {
            let session = format!("sonde-bench-top-{}", std::process::id());
            let status = Command::new("tmux")
                .args(["new-session", "-d", "-x", "160", "-y", "50", "-s", &session])
                .arg(format!("{sonde} top --api {api}"))
                .status()
                .expect("tmux is installed");
            assert!(status.success(), "tmux could not start top");
            Attached::Top(session)
        }
        _ => Attached::Nothing,
    }
}

fn main() {
    let out = std::path::PathBuf::from(arg("--out", "target/bench"));
    let rounds: usize = arg("--rounds", "5").parse().unwrap();
    let seconds: f64 = arg("--seconds", "5").parse().unwrap();
    let rate: u64 = arg("--rate", "100000").parse().unwrap();
    let sonde = env!("CARGO_BIN_EXE_sonde");
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("127.0.0.1:{api_port}");
    let path = dir.path().join("operate.hcl");
    std::fs::write(&path, config(api_port, rate)).unwrap();
    let agent = Measured::spawn(
        Command::new(sonde)
            .args(["run", "--log-level", "warn", "--config"])
            .arg(&path)
            .stdout(Stdio::null()),
    )
    .expect("sonde run starts");
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(&api).is_ok()
    });
    assert!(up, "the agent did not come up");
    std::thread::sleep(Duration::from_secs(1));

    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for round in 0..rounds {
        for k in 0..MODES.len() {
            let m = (round + k) % MODES.len();
            let attached = attach(MODES[m], sonde, &api);
            // Connected and settled before the window opens.
            std::thread::sleep(Duration::from_millis(1000));
            let start = agent.read();
            std::thread::sleep(Duration::from_secs_f64(seconds));
            let (percent, _) = start.percent_until(&agent.read());
            drop(attached);
            cpu[m].push(percent);
            eprintln!("round {round}: {:<16} {percent:6.2} % of a core", MODES[m]);
        }
    }
    agent.stop("-TERM");

    let mut table = format!(
        "The agent's CPU with a demo source at {rate} events/s into a blackhole, \
         {rounds} rounds of {seconds} s per mode, interleaved (min / median / max; \
         \"× nothing\" is the median of per-round ratios).\n\n\
         | attached | agent CPU, % of a core | × nothing | extra, % of a core |\n|---|---|---|---|\n"
    );
    let mut figures = Vec::new();
    for (m, mode) in MODES.iter().enumerate() {
        let (min, median, max) = spread(&cpu[m]);
        let figure = if m == 0 {
            Figure::new(format!("agent CPU, {mode}"), "% of a core", &cpu[m])
        } else {
            let mut f = Figure::against(format!("agent CPU, {mode}"), "% of a core", &cpu[m], &cpu[0]);
            // CPU shares on a shared machine move too much to gate on.
            f.gated = false;
            f
        };
        let extra: Vec<f64> = cpu[m].iter().zip(&cpu[0]).map(|(v, b)| v - b).collect();
        let ratio = figure.ratio_to_baseline.map_or("—".to_string(), |r| format!("{r:.3}"));
        let extra = if m == 0 {
            "—".to_string()
        } else {
            format!("{:+.2}", spread(&extra).1)
        };
        table.push_str(&format!(
            "| {mode} | {min:.2} / {median:.2} / {max:.2} | {ratio} | {extra} |\n"
        ));
        figures.push(figure);
    }
    table.push_str(
        "\nAn idle tap costs the pipeline one relaxed atomic load per batch until a batch comes; \
         a busy one a `try_send` per batch in the pipeline and, in the API task, the JSON of what \
         it writes (at most `--rate` events/s). `top` polls `/stats` once a second.\n",
    );
    print!("{table}");
    common::write_report(
        &out,
        "operate",
        &table,
        &figures,
        serde_json::json!({ "rate": rate, "rounds": rounds, "seconds": seconds, "cpu_percent": cpu }),
    );
}
