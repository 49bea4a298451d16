//! `cargo xtask bench connections`: what the `connections` source costs on
//! a loopback connect storm, and what it costs to turn its records into
//! events.
//!
//! The workload: 2 threads connect to a local listener [`CONNECTS`] / 2
//! times each (the connection reset at close: no TIME_WAIT), a third
//! accepts. Runs alternate: no programs (baseline), the source with every
//! connect and accept reported, and the source with a policy that leaves
//! every one of them out in the kernel (`exclude_cidr = 127.0.0.0/8`),
//! [`REPETITIONS`] times each. Reported: the storm's wall time each way,
//! the kernel's ns per program run (`BPF_ENABLE_STATS`) and per connect
//! (every program that ran, over the connects), events lost (ring buffer
//! full), and the user-space CPU per event of the collector (record → log
//! record with the process and its ancestry). Needs root, kernel 5.8+.

mod common;

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::{Context, Result};
use common::Figure;
use sonde_ebpf::stats;
use sonde_sources::clock::Clock;
use sonde_sources::connections::bpf::CN_STAT_RING_FULL;
use sonde_sources::connections::{drain, Collector, ConnectionsSourceConfig, Match};

const REPETITIONS: usize = 5;
/// Connects per run, all threads.
const CONNECTS: usize = 20_000;
const THREADS: usize = 2;

/// A connect closed by a reset (SO_LINGER 0): no TIME_WAIT piles up.
fn connect_and_reset(to: std::net::SocketAddr) {
    let stream = TcpStream::connect(to).expect("connect");
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a linger struct of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// The connect storm; its wall time in seconds. The acceptor takes what
/// arrives until the connectors are done (a connection reset before its
/// accept may never be returned by accept(), so it does not count them).
fn storm(listener: &TcpListener) -> f64 {
    let to = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let done = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| loop {
            match listener.accept() {
                Ok(conn) => drop(conn),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                Err(e) => panic!("accept: {e}"),
            }
        });
        let connectors: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(move || {
                    for _ in 0..CONNECTS / THREADS {
                        connect_and_reset(to);
                    }
                })
            })
            .collect();
        for connector in connectors {
            connector.join().expect("connector");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    started.elapsed().as_secs_f64()
}

/// This thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct On {
    wall: f64,
    ebpf_per_connect: f64,
    runs: Vec<(String, f64)>,
    lost: u64,
    events: usize,
    user_ns_per_event: f64,
}

fn run_on(listener: &TcpListener, config: &ConnectionsSourceConfig) -> Result<On> {
    let mut collector = Collector::load_with_labels(config, "bench".into(), &[]).context("connections loads")?;
    let mut ring = collector.programs_mut().take_events().context("ring")?;
    // The storm's records outgrow the 1 MiB ring: a thread drains it as the
    // agent's loop would, the records are turned into events afterwards.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (wall, records) = std::thread::scope(|scope| {
        let drainer = scope.spawn(|| {
            let mut records = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                records.extend(drain(&mut ring));
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            records.extend(drain(&mut ring));
            records
        });
        let wall = storm(listener);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (wall, drainer.join().expect("drainer"))
    });
    let clock = Clock::now();
    let cpu = thread_cpu_ns();
    for record in &records {
        std::hint::black_box(collector.record(record, &clock));
    }
    let user_ns = (thread_cpu_ns() - cpu) as f64;
    let programs = collector.programs_mut();
    let lost = programs.stats()?.get(CN_STAT_RING_FULL);
    let mut total_ns = 0.0;
    let mut runs = Vec::new();
    for program in programs.program_stats() {
        total_ns += program.run_time_ns as f64;
        if program.run_count > 0 {
            runs.push((
                program.name.clone(),
                program.run_time_ns as f64 / program.run_count as f64,
            ));
        }
    }
    Ok(On {
        wall,
        ebpf_per_connect: total_ns / CONNECTS as f64,
        runs,
        lost,
        events: records.len(),
        user_ns_per_event: if records.is_empty() {
            0.0
        } else {
            user_ns / records.len() as f64
        },
    })
}

fn main() -> Result<()> {
    let out = std::path::PathBuf::from(common::arg("--out", "target/bench"));
    let _stats = stats::enable().context("cannot enable BPF run-time statistics (kernel 5.8+)")?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let reported = ConnectionsSourceConfig {
        include_self: true,
        ..ConnectionsSourceConfig::default()
    };
    let filtered = ConnectionsSourceConfig {
        matching: Match {
            exclude_cidr: vec!["127.0.0.0/8".into()],
            ..Match::default()
        },
        include_self: true,
        ..ConnectionsSourceConfig::default()
    };
    storm(&listener);
    let mut off = Vec::new();
    let (mut on, mut out_of_policy) = (Vec::new(), Vec::new());
    for rep in 0..REPETITIONS {
        off.push(storm(&listener));
        on.push(run_on(&listener, &reported)?);
        out_of_policy.push(run_on(&listener, &filtered)?);
        eprintln!(
            "rep {}: {:.3} s without, {:.3} s reported ({} events, {} lost), {:.3} s filtered out",
            rep + 1,
            off[rep],
            on[rep].wall,
            on[rep].events,
            on[rep].lost,
            out_of_policy[rep].wall
        );
    }
    let walls = |runs: &[On]| runs.iter().map(|r| r.wall).collect::<Vec<f64>>();
    let per_run = |runs: &[On], name: &str| {
        runs.iter()
            .filter_map(|r| r.runs.iter().find(|(n, _)| n == name).map(|(_, ns)| *ns))
            .collect::<Vec<f64>>()
    };
    let rate = |walls: &[f64]| walls.iter().map(|w| CONNECTS as f64 / w).collect::<Vec<f64>>();
    let (on_wall, filtered_wall) = (walls(&on), walls(&out_of_policy));
    let added = |with: &[f64]| {
        with.iter()
            .zip(&off)
            .map(|(a, b)| (a / b - 1.0) * 100.0)
            .collect::<Vec<f64>>()
    };
    let figures = vec![
        Figure::new("connect storm, no programs", "connects/s", &rate(&off)),
        Figure::new(
            "connect storm, every connect and accept reported",
            "connects/s",
            &rate(&on_wall),
        ),
        Figure::new(
            "connect storm, all filtered out (exclude_cidr)",
            "connects/s",
            &rate(&filtered_wall),
        ),
        Figure::new("added wall time, reported", "%", &added(&on_wall)),
        Figure::new("added wall time, filtered out", "%", &added(&filtered_wall)),
        Figure::new(
            "eBPF per connect+accept, reported",
            "ns",
            &on.iter().map(|r| r.ebpf_per_connect).collect::<Vec<_>>(),
        ),
        Figure::new(
            "eBPF per connect+accept, filtered out",
            "ns",
            &out_of_policy.iter().map(|r| r.ebpf_per_connect).collect::<Vec<_>>(),
        ),
        Figure::new("enter_connect", "ns/run", &per_run(&on, "enter_connect")),
        Figure::new("exit_connect (reported)", "ns/run", &per_run(&on, "exit_connect")),
        Figure::new("exit_accept4 (reported)", "ns/run", &per_run(&on, "exit_accept4")),
        Figure::new(
            "set_state (every TCP state change)",
            "ns/run",
            &per_run(&on, "set_state"),
        ),
        Figure::new(
            "exit_connect (filtered out)",
            "ns/run",
            &per_run(&out_of_policy, "exit_connect"),
        ),
        Figure::new(
            "user-space CPU per event (record with ancestry)",
            "ns",
            &on.iter().map(|r| r.user_ns_per_event).collect::<Vec<_>>(),
        ),
        Figure::new(
            "events reported per run",
            "events",
            &on.iter().map(|r| r.events as f64).collect::<Vec<_>>(),
        ),
        Figure::new(
            "events lost (ring buffer full)",
            "events",
            &on.iter().map(|r| r.lost as f64).collect::<Vec<_>>(),
        ),
    ];
    let mut markdown = format!(
        "### connections: cost on a loopback connect storm\n\n{REPETITIONS} interleaved runs of {CONNECTS} \
         connects ({THREADS} threads, reset at close) and their accepts, without the source, with every \
         connect and accept reported, and with a policy that filters all of them out in the kernel. \
         User-space CPU per event: turning one record into its log record (process, exec id, ancestry).\n\n\
         | figure | min | median | max |\n|---|---:|---:|---:|\n"
    );
    for f in &figures {
        let _ = writeln!(
            markdown,
            "| {} ({}) | {:.1} | {:.1} | {:.1} |",
            f.name, f.unit, f.min, f.median, f.max
        );
    }
    common::write_report(&out, "connections", &markdown, &figures, serde_json::json!({}));
    println!("{markdown}");
    Ok(())
}
