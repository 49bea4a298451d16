//! `tcp`: loopback connects from this process to a listener of its own,
//! and connects to a closed port; the source must count each open, close,
//! refusal and connect-latency observation exactly, with this process' pid.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Attributes, Event, MetricValue, Value};
use sonde_sources::tcp::{
    Collector, TcpSourceConfig, CLOSES, CONNECT_DURATION, CONNECT_FAILURES, OPENS, PORT, RESULT, ROLE,
};

use super::{ensure, Check, CheckError};

pub const CHECK: Check = Check { source: "tcp", run };

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

fn is(a: &Attributes, key: &str, value: impl Into<Value>) -> bool {
    a.get(key) == Some(&value.into())
}

/// What the source got wrong about the workload: `GOOD` connections to
/// `port`, `REFUSED` connects to `dead`, all from this process.
fn mismatches(events: &[Event], port: u16, dead: u16) -> Vec<String> {
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
    ];
    counts
        .iter()
        .filter(|(_, seen, want)| seen != want)
        .map(|(what, seen, want)| format!("{what} {seen} (want {want})"))
        .collect()
}

fn run() -> Result<String, CheckError> {
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
    for _ in 0..GOOD {
        let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(CheckError::workload("connect"))?;
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
        ensure(TcpStream::connect(("127.0.0.1", dead)).is_err(), || {
            format!("a connect to closed port {dead} succeeded")
        })?;
    }
    // The last FIN/ACK exchanges finish after the sockets are dropped, and
    // slowly under emulation: read until the counts are right, or 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let wrong = loop {
        let wrong = mismatches(&collector.collect()?, port, dead);
        if wrong.is_empty() || Instant::now() > deadline {
            break wrong;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure(wrong.is_empty(), || wrong.join(", "))?;
    Ok(format!(
        "{GOOD} connects opened, timed and closed on both ends, {REFUSED} refusals, all exact"
    ))
}
