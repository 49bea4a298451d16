//! What the `protocols` source costs database and DNS traffic at a fixed
//! rate, `cargo xtask bench databases` (issue #17): PostgreSQL (pgbench
//! `-S -M prepared`, paced by its own `-R`), Redis (`GET`s from paced
//! connections) and DNS (A queries to dnsmasq from paced UDP sockets), at
//! about 1k and 10k requests/s each, every server private on loopback.
//! Agent off and on take turns, `--rounds` rounds of `--seconds` each.
//!
//! Per request: the eBPF run time of every program the agent loaded
//! (`BPF_ENABLE_STATS`, on only during the agent's runs) per side (client
//! and server are both on this node, both traced); the agent's CPU (its
//! own cgroup: every thread, user + system) as % of one core; whether
//! every request became its two spans (the blackhole's count beside the
//! client's) and what the kernel side and the engine lost. MySQL is left
//! out: no Debian client paces it.
//!
//! Needs root, PostgreSQL, redis-server and dnsmasq. Writes
//! `databases.md` and `databases.json`.

#[path = "../common/mod.rs"]
mod common;

#[path = "../protocols/agent.rs"]
#[allow(dead_code)] // nginx's start is the protocols bench's
mod agent;

mod load;

/// The test suite's private servers.
#[path = "../../tests/common/servers.rs"]
#[allow(dead_code)] // MariaDB and the counters are the tests'
mod instances;

/// A free loopback port (what the servers' module asks of its parent).
fn free_port() -> u16 {
    common::web::free_port().expect("a free port")
}

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use agent::{Agent, Report, COUNTERS_INTERVAL};
use common::web::TempDir;
use common::{arg, spread, Figure};
use instances::{Dnsmasq, Postgres, Redis, REDIS_PASSWORD};
use load::Done;

/// The protocols measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Postgres,
    Redis,
    Dns,
}

/// One protocol at one rate.
#[derive(Clone, Copy, Debug)]
struct Workload {
    label: &'static str,
    protocol: Protocol,
    rate: f64,
    connections: u32,
}

const WORKLOADS: [Workload; 6] = [
    Workload {
        label: "PostgreSQL, 1k/s",
        protocol: Protocol::Postgres,
        rate: 1_000.0,
        connections: 2,
    },
    Workload {
        label: "PostgreSQL, 10k/s",
        protocol: Protocol::Postgres,
        rate: 10_000.0,
        connections: 8,
    },
    Workload {
        label: "Redis, 1k/s",
        protocol: Protocol::Redis,
        rate: 1_000.0,
        connections: 2,
    },
    Workload {
        label: "Redis, 10k/s",
        protocol: Protocol::Redis,
        rate: 10_000.0,
        connections: 8,
    },
    Workload {
        label: "DNS, 1k/s",
        protocol: Protocol::Dns,
        rate: 1_000.0,
        connections: 2,
    },
    Workload {
        label: "DNS, 10k/s",
        protocol: Protocol::Dns,
        rate: 10_000.0,
        connections: 8,
    },
];

struct Servers {
    postgres: Postgres,
    redis: Redis,
    dns: Dnsmasq,
}

impl Servers {
    fn start() -> Result<Servers> {
        let postgres = Postgres::start();
        let init = postgres.pgbench().args(["-i", "-s", "1", "-q", "postgres"]).output()?;
        if !init.status.success() {
            bail!("pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
        }
        Ok(Servers {
            postgres,
            redis: Redis::start(),
            dns: Dnsmasq::start_with("127.0.0.1", free_port(), false),
        })
    }

    /// Runs one workload; what its clients counted.
    fn run(&self, w: Workload, seconds: u32) -> Result<Done> {
        match w.protocol {
            Protocol::Redis => load::redis(self.redis.port, REDIS_PASSWORD, w.connections, w.rate, seconds),
            Protocol::Dns => load::dns(self.dns.address, w.connections, w.rate, seconds),
            Protocol::Postgres => {
                let output = self
                    .postgres
                    .pgbench()
                    .args(["-n", "-S", "-M", "prepared", "-j", "2"])
                    .args(["-c", &w.connections.to_string(), "-R", &w.rate.to_string()])
                    .args(["-T", &seconds.to_string(), "postgres"])
                    .output()?;
                let text = String::from_utf8_lossy(&output.stdout);
                let processed = text
                    .lines()
                    .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
                    .and_then(|v| v.split('/').next()?.trim().parse::<f64>().ok())
                    .with_context(|| format!("pgbench's count: {text}"))?;
                Ok(Done {
                    requests: processed,
                    seconds: f64::from(seconds),
                })
            }
        }
    }
}

/// The agent's side of one run.
#[derive(Clone, Debug, Default)]
struct OnRun {
    bpf_ns: f64,
    cpu_ns: f64,
    wall_ns: f64,
    report: Report,
    /// The agent's programs' run time per second with no request made
    /// (other processes' system calls), measured before the round.
    background_ns_per_s: f64,
    /// By program name: (run time ns, runs).
    programs: BTreeMap<String, (f64, f64)>,
}

#[derive(Default)]
struct Results {
    rounds: usize,
    seconds: u32,
    off: BTreeMap<usize, Vec<Done>>,
    on: BTreeMap<usize, Vec<Done>>,
    agent: BTreeMap<usize, Vec<OnRun>>,
}

fn main() -> Result<()> {
    let out = std::path::PathBuf::from(arg("--out", "target/bench"));
    let rounds: usize = arg("--rounds", "3").parse()?;
    let seconds: u32 = arg("--seconds", "5").parse()?;
    let sonde = Path::new(env!("CARGO_BIN_EXE_sonde"));
    let dir = TempDir::new("sonde-bench-databases")?;
    let servers = Servers::start()?;
    let mut results = Results {
        rounds,
        seconds,
        ..Results::default()
    };
    for round in 0..rounds {
        for on in [round % 2 == 1, round % 2 == 0] {
            if on {
                run_on(&mut results, sonde, dir.path(), &servers, round)?;
                continue;
            }
            for (w, workload) in WORKLOADS.iter().enumerate() {
                let done = servers.run(*workload, seconds)?;
                eprintln!(
                    "round {}: off {:<20} {:>7.0} req/s",
                    round + 1,
                    workload.label,
                    done.requests / done.seconds
                );
                results.off.entry(w).or_default().push(done);
            }
        }
    }
    let (markdown, figures) = render(&results);
    println!("{markdown}");
    common::write_report(&out, "databases", &markdown, &figures, details(&results));
    Ok(())
}

fn run_on(results: &mut Results, sonde: &Path, dir: &Path, servers: &Servers, round: usize) -> Result<()> {
    let source = format!(
        "protocols = [\"postgresql\", \"redis\", \"dns\"]\n  dns_ports = [{}]",
        servers.dns.address.port()
    );
    let port = servers.redis.port;
    let agent = Agent::start_with(sonde, dir, &source, || {
        load::RedisClient::connect(port, REDIS_PASSWORD)?.get()
    })?;
    let background_ns_per_s = {
        let stats = sonde_ebpf::stats::enable()?;
        let start = agent.process.read();
        std::thread::sleep(Duration::from_secs(2));
        let end = agent.process.read();
        drop(stats);
        (end.bpf_ns - start.bpf_ns) as f64 / end.at.unwrap().duration_since(start.at.unwrap()).as_secs_f64()
    };
    for (w, workload) in WORKLOADS.iter().enumerate() {
        std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
        let before = agent.report()?;
        let stats = sonde_ebpf::stats::enable()?;
        let (start, programs_start) = (agent.process.read(), agent.process.program_stats());
        let done = servers.run(*workload, results.seconds)?;
        let (end, programs_end) = (agent.process.read(), agent.process.program_stats());
        drop(stats);
        let programs = common::process::program_deltas(&programs_start, programs_end);
        std::thread::sleep(COUNTERS_INTERVAL + Duration::from_millis(500));
        let after = agent.report()?;
        let on = OnRun {
            bpf_ns: (end.bpf_ns - start.bpf_ns) as f64,
            cpu_ns: (end.cpu_ns - start.cpu_ns) as f64,
            wall_ns: end.at.unwrap().duration_since(start.at.unwrap()).as_nanos() as f64,
            report: before.until(&after),
            background_ns_per_s,
            programs,
        };
        eprintln!(
            "round {}: on  {:<20} {:>7.0} req/s; eBPF {:.0} ns/req/side, agent {:.2} % CPU, {} of {} spans, {} lost",
            round + 1,
            workload.label,
            done.requests / done.seconds,
            on.bpf_ns / done.requests.max(1.0) / 2.0,
            on.cpu_ns / on.wall_ns * 100.0,
            on.report.spans,
            2.0 * done.requests,
            on.report.lost_events,
        );
        results.on.entry(w).or_default().push(done);
        results.agent.entry(w).or_default().push(on);
    }
    agent.stop();
    Ok(())
}

fn render(results: &Results) -> (String, Vec<Figure>) {
    let mut md = String::new();
    let mut figures = Vec::new();
    let _ = writeln!(
        md,
        "Private PostgreSQL (pgbench `-S -M prepared -R`), Redis (paced `GET`s) and dnsmasq (paced A \
         queries) on loopback; client and server both traced. {} rounds of {} s, agent off and on in \
         turn. eBPF ns per request per side (client and server calls each), the agent's CPU as % of \
         one core, spans delivered of 2 per request.\n",
        results.rounds, results.seconds
    );
    let _ = writeln!(
        md,
        "| workload | req/s off | req/s on | eBPF ns/request/side | less the idle background | agent CPU % | spans delivered / expected | kernel lost | engine dropped |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let rate = |runs: &[Done]| runs.iter().map(|d| d.requests / d.seconds).collect::<Vec<f64>>();
        let (off, on) = (rate(&results.off[&w]), rate(&results.on[&w]));
        let agent = &results.agent[&w];
        let bpf: Vec<f64> = agent
            .iter()
            .zip(&results.on[&w])
            .map(|(a, d)| a.bpf_ns / d.requests.max(1.0) / 2.0)
            .collect();
        let net: Vec<f64> = agent
            .iter()
            .zip(&results.on[&w])
            .map(|(a, d)| (a.bpf_ns - a.background_ns_per_s * a.wall_ns / 1e9).max(0.0) / d.requests.max(1.0) / 2.0)
            .collect();
        let cpu: Vec<f64> = agent.iter().map(|a| a.cpu_ns / a.wall_ns * 100.0).collect();
        let spans: f64 = agent.iter().map(|a| a.report.spans).sum();
        let expected: f64 = results.on[&w].iter().map(|d| 2.0 * d.requests).sum();
        let lost: f64 = agent.iter().map(|a| a.report.lost_events + a.report.map_full).sum();
        let dropped: f64 = agent.iter().map(|a| a.report.dropped.values().sum::<f64>()).sum();
        let fmt = |v: &[f64], digits: usize| {
            let (min, median, max) = spread(v);
            format!("{median:.digits$} ({min:.digits$}–{max:.digits$})")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {spans:.0} / {expected:.0} | {lost:.0} | {dropped:.0} |",
            workload.label,
            fmt(&off, 0),
            fmt(&on, 0),
            fmt(&bpf, 0),
            fmt(&net, 0),
            fmt(&cpu, 2),
        );
        figures.push(Figure::new(
            format!("eBPF per request per side, {}", workload.label),
            "ns/request",
            &bpf,
        ));
        figures.push(Figure::new(
            format!("agent CPU, {}", workload.label),
            "% of a core",
            &cpu,
        ));
    }
    let _ = writeln!(
        md,
        "\n\"Less the idle background\" takes out each round's eBPF run time per second with no request \
         made (the node's other processes' system calls pass the same tracepoints). Spans expected are \
         2 per request the clients counted; the agent's start-up probes and pgbench's own set-up queries \
         add a few.\n\nPer program at 10k/s (median over rounds):\n\n| workload | program | ns/run | runs/request |\n|---|---|---|---|"
    );
    for (w, workload) in WORKLOADS.iter().enumerate().filter(|(_, w)| w.rate >= 10_000.0) {
        let agent = &results.agent[&w];
        let names: std::collections::BTreeSet<&String> = agent.iter().flat_map(|a| a.programs.keys()).collect();
        for name in names {
            let per_run: Vec<f64> = agent
                .iter()
                .filter_map(|a| a.programs.get(name))
                .map(|(ns, runs)| ns / runs.max(1.0))
                .collect();
            let per_request: Vec<f64> = agent
                .iter()
                .zip(&results.on[&w])
                .filter_map(|(a, d)| a.programs.get(name).map(|(_, runs)| runs / d.requests.max(1.0)))
                .collect();
            let runs = spread(&per_request).1;
            if runs >= 0.01 {
                let _ = writeln!(
                    md,
                    "| {} | `{name}` | {:.0} | {runs:.2} |",
                    workload.label,
                    spread(&per_run).1
                );
            }
        }
    }
    (md, figures)
}

fn details(results: &Results) -> serde_json::Value {
    let workloads: Vec<serde_json::Value> = WORKLOADS
        .iter()
        .enumerate()
        .map(|(w, workload)| {
            json!({
                "workload": workload.label,
                "off_requests": results.off[&w].iter().map(|d| d.requests).collect::<Vec<_>>(),
                "on_requests": results.on[&w].iter().map(|d| d.requests).collect::<Vec<_>>(),
                "spans": results.agent[&w].iter().map(|a| a.report.spans).collect::<Vec<_>>(),
                "dropped": results.agent[&w].iter().map(|a| a.report.dropped.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "rounds": results.rounds, "seconds": results.seconds, "workloads": workloads })
}
