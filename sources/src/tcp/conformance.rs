//! The kernel check of `tcp` (the kernel matrix and `tests/bpf_tcp.rs`
//! run it): loopback connects from this process to a listener of its own,
//! and connects to a closed port; the source must count each open, close,
//! RTT sample, refusal, reset and connect-latency observation exactly,
//! with this process' pid, and lose nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Attributes, Event, MetricValue, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::bpf::{TCP_STAT_READ_FAILED, TCP_STAT_SERIES_FULL};
use super::{
    Collector, TcpSourceConfig, CLOSES, CONNECTIONS, CONNECT_DURATION, CONNECT_FAILURES, OPENS, PORT, RESETS_RECEIVED,
    RESETS_SENT, RESULT, ROLE, RTT, STATE,
};

const GOOD: u64 = 8;
const REFUSED: u64 = 3;

/// The counter or histogram count of `name`, summed over matching series.
fn total(events: &[Event], name: &str, filter: impl Fn(&Attributes) -> bool) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m) if m.name.as_str() == name && filter(&m.attributes) => Some(match &m.value {
                MetricValue::Counter { value } | MetricValue::Gauge { value } => *value as u64,
                MetricValue::Histogram(h) => h.count,
            }),
            _ => None,
        })
        .sum()
}

/// The histogram sum of `name` (seconds), over matching series.
fn sum(events: &[Event], name: &str, filter: impl Fn(&Attributes) -> bool) -> f64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m) if m.name.as_str() == name && filter(&m.attributes) => match &m.value {
                MetricValue::Histogram(h) => Some(h.sum),
                _ => None,
            },
            _ => None,
        })
        .sum()
}

fn is(a: &Attributes, key: &str, value: impl Into<Value>) -> bool {
    a.get(key) == Some(&value.into())
}

/// What the source got wrong about the workload: `GOOD` connections to
/// `port`, `REFUSED` connects to `dead`, all from this process.
fn mismatches(events: &[Event], port: u16, dead: u16, sockless_resets: bool) -> Vec<String> {
    let pid = std::process::id();
    let role = |r: &'static str, p: u16| {
        move |a: &Attributes| is(a, keys::PID, pid) && is(a, ROLE, r) && is(a, PORT, u32::from(p))
    };
    let counts = [
        ("client opens", total(events, OPENS, role("client", port)), GOOD),
        ("server opens", total(events, OPENS, role("server", port)), GOOD),
        ("client closes", total(events, CLOSES, role("client", port)), GOOD),
        ("server closes", total(events, CLOSES, role("server", port)), GOOD),
        (
            "established connects",
            total(events, CONNECT_DURATION, |a| {
                role("client", port)(a) && is(a, RESULT, "established")
            }),
            GOOD,
        ),
        (
            "failed connects",
            total(events, CONNECT_DURATION, |a| {
                role("client", dead)(a) && is(a, RESULT, "failed")
            }),
            REFUSED,
        ),
        (
            "connect failures",
            total(events, CONNECT_FAILURES, role("client", dead)),
            REFUSED,
        ),
        ("RTT samples", total(events, RTT, role("client", port)), GOOD),
        (
            "failed connects to the open port",
            total(events, CONNECT_DURATION, |a| {
                role("client", port)(a) && is(a, RESULT, "failed")
            }),
            0,
        ),
        (
            "server connects",
            total(events, CONNECT_DURATION, role("server", port)),
            0,
        ),
        (
            "opens to the closed port",
            total(events, OPENS, role("client", dead)),
            0,
        ),
        (
            "resets received",
            total(events, RESETS_RECEIVED, role("client", dead)),
            REFUSED,
        ),
        // The closed port answered each SYN with a reset; no process owns
        // it. Kernels before 6.10 do not trace those resets at all.
        (
            "resets sent",
            total(events, RESETS_SENT, |a| {
                is(a, ROLE, "server") && is(a, PORT, u32::from(dead)) && a.get(keys::PID).is_none()
            }),
            if sockless_resets { REFUSED } else { 0 },
        ),
    ];
    let wrong_counts = counts
        .iter()
        .filter(|(_, seen, want)| seen != want)
        .map(|(what, seen, want)| format!("{what} {seen} (want {want})"));
    // Every histogram's buckets add up to its count.
    let wrong_buckets = events.iter().filter_map(|e| match e {
        Event::Metric(m) => match &m.value {
            MetricValue::Histogram(h) if h.counts.iter().sum::<u64>() != h.count => Some(format!(
                "{} buckets hold {} observations, its count says {}",
                m.name.as_str(),
                h.counts.iter().sum::<u64>(),
                h.count
            )),
            _ => None,
        },
        _ => None,
    });
    wrong_counts.chain(wrong_buckets).collect()
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let mut collector = Collector::load(&TcpSourceConfig::default(), "conformance".into(), &[])?;
    let io = CheckError::workload("loopback TCP");
    let listener = TcpListener::bind("127.0.0.1:0").map_err(CheckError::workload("listen"))?;
    let port = listener.local_addr().map_err(CheckError::workload("listen"))?.port();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        for _ in 0..GOOD {
            let (mut s, _) = listener.accept()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    // The wall time of each connect() call: the kernel's connect latency
    // (SYN sent to established, or to the refusal) lies inside it.
    let mut wall = [Duration::ZERO; 2];
    for _ in 0..GOOD {
        let start = Instant::now();
        let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(CheckError::workload("connect"))?;
        wall[0] += start.elapsed();
        c.write_all(b"ping").map_err(CheckError::workload("write"))?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).map_err(CheckError::workload("read"))?;
    }
    server
        .join()
        .map_err(|_| CheckError::Implausible("the server thread panicked".to_string()))?
        .map_err(io)?;
    // A port nothing listens on: bound, then closed.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(CheckError::workload("find a closed port"))?
        .port();
    for _ in 0..REFUSED {
        let start = Instant::now();
        let refused = TcpStream::connect(("127.0.0.1", dead)).is_err();
        wall[1] += start.elapsed();
        ensure(refused, || format!("a connect to closed port {dead} succeeded"))?;
    }
    // The last FIN/ACK exchanges finish after the sockets are dropped, and
    // slowly under emulation: read until the counts are right, or 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (wrong, events) = loop {
        let sockless_resets = collector.programs().sockless_resets();
        let events = collector.collect()?;
        let wrong = mismatches(&events, port, dead, sockless_resets);
        if wrong.is_empty() || Instant::now() > deadline {
            break (wrong, events);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure(wrong.is_empty(), || wrong.join(", "))?;
    // The connect latencies: not zero, and each inside its connect() call.
    let pid = std::process::id();
    for (what, p, result, wall) in [
        ("established", port, "established", wall[0]),
        ("refused", dead, "failed", wall[1]),
    ] {
        let seconds = sum(&events, CONNECT_DURATION, |a| {
            is(a, keys::PID, pid) && is(a, ROLE, "client") && is(a, PORT, u32::from(p)) && is(a, RESULT, result)
        });
        ensure(seconds > 0.0 && seconds <= wall.as_secs_f64(), || {
            format!(
                "{what} connects: latency sum {:.1} µs, their connect() calls took {:.1} µs",
                seconds * 1e6,
                wall.as_secs_f64() * 1e6
            )
        })?;
    }
    let stats = collector.programs().stats()?;
    let (full, failed) = (stats.get(TCP_STAT_SERIES_FULL), stats.get(TCP_STAT_READ_FAILED));
    ensure(full == 0 && failed == 0, || {
        format!("series map full {full} times, {failed} failed reads")
    })?;
    let states = check_states(&mut collector)?;
    Ok(format!(
        "{GOOD} connects opened, timed, RTT-sampled and closed on both ends, {REFUSED} refusals and resets, \
         {states}, all exact"
    ))
}

/// Connections the states check opens, and how many of them the server closes.
const HELD: usize = 6;
const HALF_CLOSED: usize = 2;

/// Sockets by state: `HELD` loopback connections of this process, of which
/// the accepting end closes `HALF_CLOSED` (their connecting end then sits
/// in CLOSE_WAIT, the accepting end in FIN_WAIT2).
fn check_states(collector: &mut Collector) -> Result<String, CheckError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(CheckError::workload("listen"))?;
    let port = listener.local_addr().map_err(CheckError::workload("listen"))?.port();
    let mut clients = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..HELD {
        clients.push(TcpStream::connect(("127.0.0.1", port)).map_err(CheckError::workload("connect"))?);
        accepted.push(listener.accept().map_err(CheckError::workload("accept"))?.0);
    }
    accepted.truncate(HELD - HALF_CLOSED);
    let pid = std::process::id();
    // Orphaned FIN_WAIT2 sockets are timewait mini-sockets: no process.
    let gauge = |events: &[Event], role: &'static str, state: &'static str| {
        total(events, CONNECTIONS, |a| {
            (state == "fin_wait_2" || is(a, keys::PID, pid))
                && is(a, ROLE, role)
                && is(a, PORT, u32::from(port))
                && is(a, STATE, state)
        })
    };
    let open = (HELD - HALF_CLOSED) as u64;
    let want = [
        ("server", "listen", 1),
        ("client", "established", open),
        ("server", "established", open),
        ("client", "close_wait", HALF_CLOSED as u64),
        ("server", "fin_wait_2", HALF_CLOSED as u64),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    let wrong = loop {
        let events = collector.collect()?;
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|(role, state, n)| {
                let seen = gauge(&events, role, state);
                (seen != *n).then(|| format!("{role} {state} {seen} (want {n})"))
            })
            .collect();
        if wrong.is_empty() || Instant::now() > deadline {
            break wrong;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop((clients, accepted, listener));
    ensure(wrong.is_empty(), || format!("sockets by state: {}", wrong.join(", ")))?;
    Ok(format!(
        "{HELD} held connections by state ({HALF_CLOSED} in CLOSE_WAIT)"
    ))
}
