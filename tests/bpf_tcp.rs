//! `source "tcp"` against the real kernel (needs root): loopback connects
//! to an open and a closed port, and a transfer under packet loss injected
//! by a BPF program of the test's own, checked against the workload's own
//! counts and the kernel's `/proc/net/snmp`.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use sonde_core::event::{keys, Event, MetricValue, Value};
use sonde_ebpf::loss::LossInjector;
use sonde_ebpf::testing::bpf_available_or_skip;
use sonde_sources::tcp::{
    Collector, TcpSourceConfig, CLOSES, CONNECT_DURATION, CONNECT_FAILURES, OPENS, PORT, RESETS_RECEIVED, RESETS_SENT,
    RESULT, RETRANSMITS, ROLE, RTT,
};

/// The loss test compares against a namespace-wide kernel counter: the
/// other tests of this file must not run beside it.
static SERIAL: Mutex<()> = Mutex::new(());

/// One counter or histogram count of the series matching `filter`, summed.
fn total(events: &[Event], name: &str, filter: impl Fn(&sonde_core::event::Attributes) -> bool) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m) if m.name.as_str() == name && filter(&m.attributes) => Some(match &m.value {
                MetricValue::Counter { value } => *value as u64,
                MetricValue::Histogram(h) => {
                    assert_eq!(
                        h.counts.iter().sum::<u64>(),
                        h.count,
                        "{name}: buckets add up to the count"
                    );
                    h.count
                }
                MetricValue::Gauge { value } => *value as u64,
            }),
            _ => None,
        })
        .sum()
}

fn is(attributes: &sonde_core::event::Attributes, key: &str, value: impl Into<Value>) -> bool {
    attributes.get(key) == Some(&value.into())
}

fn ours(a: &sonde_core::event::Attributes) -> bool {
    is(a, keys::PID, std::process::id())
}

/// A local port with nothing listening on it (nor soon after).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn collector(test: &str) -> Option<Collector> {
    if !bpf_available_or_skip(test) {
        return None;
    }
    let config = TcpSourceConfig::default();
    Some(Collector::load(&config, "test-node".into(), &[]).expect("tcp loads"))
}

#[test]
fn every_connect_is_one_latency_observation_and_refusals_count_resets() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut collector) = collector("every_connect_is_one_latency_observation_and_refusals_count_resets") else {
        return;
    };
    const GOOD: u64 = 20;
    const REFUSED: u64 = 7;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = u32::from(listener.local_addr().unwrap().port());
    let server = std::thread::spawn(move || {
        for _ in 0..GOOD {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
    });
    for _ in 0..GOOD {
        let mut c = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
    }
    server.join().unwrap();
    let dead = closed_port();
    for _ in 0..REFUSED {
        let error = TcpStream::connect(("127.0.0.1", dead)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    // Let the last FIN/ACK exchanges finish.
    std::thread::sleep(Duration::from_millis(300));
    let events = collector.collect().unwrap();

    let client = |a: &sonde_core::event::Attributes| ours(a) && is(a, ROLE, "client") && is(a, PORT, port);
    let server = |a: &sonde_core::event::Attributes| ours(a) && is(a, ROLE, "server") && is(a, PORT, port);
    let refused = |a: &sonde_core::event::Attributes| ours(a) && is(a, ROLE, "client") && is(a, PORT, u32::from(dead));
    assert_eq!(total(&events, OPENS, client), GOOD, "client opens");
    assert_eq!(
        total(&events, OPENS, server),
        GOOD,
        "server opens (the listener's process)"
    );
    assert_eq!(total(&events, CLOSES, client), GOOD, "client closes");
    assert_eq!(total(&events, CLOSES, server), GOOD, "server closes");
    assert_eq!(total(&events, RTT, client), GOOD, "one RTT sample per connection");
    // Exactly one latency observation per connect, by outcome.
    assert_eq!(
        total(&events, CONNECT_DURATION, |a| client(a) && is(a, RESULT, "established")),
        GOOD
    );
    assert_eq!(
        total(&events, CONNECT_DURATION, |a| client(a) && is(a, RESULT, "failed")),
        0
    );
    assert_eq!(
        total(&events, CONNECT_DURATION, |a| server(a)),
        0,
        "servers do not connect"
    );
    assert_eq!(
        total(&events, CONNECT_DURATION, |a| refused(a) && is(a, RESULT, "failed")),
        REFUSED
    );
    assert_eq!(
        total(&events, CONNECT_DURATION, |a| refused(a)
            && is(a, RESULT, "established")),
        0
    );
    assert_eq!(total(&events, CONNECT_FAILURES, refused), REFUSED, "failed connects");
    assert_eq!(total(&events, OPENS, refused), 0);
    assert_eq!(total(&events, RESETS_RECEIVED, refused), REFUSED, "resets received");
    // The closed port answered each SYN with a reset; no process owns it.
    let answered = |a: &sonde_core::event::Attributes| {
        is(a, ROLE, "server") && is(a, PORT, u32::from(dead)) && a.get(keys::PID).is_none()
    };
    assert_eq!(total(&events, RESETS_SENT, answered), REFUSED, "resets sent");
    let stats = collector.programs().stats().unwrap();
    assert_eq!(stats.series_full, 0);
    assert_eq!(stats.read_failed, 0);
}

/// `RetransSegs` of `/proc/net/snmp` (this network namespace).
fn retrans_segs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let index = names.split_whitespace().position(|n| n == "RetransSegs").unwrap();
    values.split_whitespace().nth(index).unwrap().parse().unwrap()
}

#[test]
fn retransmits_under_injected_loss_match_proc_net_snmp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "retransmits_under_injected_loss_match_proc_net_snmp";
    let Some(mut collector) = collector(test) else { return };
    const BYTES: usize = 48 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let before_ours = total(&collector.collect().unwrap(), RETRANSMITS, |_| true);
    let before = retrans_segs();
    let received = {
        // Detached when it goes out of scope, also if an assertion fails.
        let loss = match LossInjector::attach(port, 5.0) {
            Ok(loss) => loss,
            Err(error) => {
                sonde_ebpf::testing::skip_or_fail(test, &format!("cannot inject loss: {error}"));
                return;
            }
        };
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut sink = Vec::with_capacity(BYTES);
            s.read_to_end(&mut sink).unwrap();
            sink.len()
        });
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        for chunk in vec![7u8; BYTES].chunks(64 << 10) {
            c.write_all(chunk).unwrap();
        }
        drop(c);
        let received = server.join().unwrap();
        let (dropped, seen) = loss.counts().unwrap();
        eprintln!("injected loss: {dropped} of {seen} segments with payload dropped");
        assert!(dropped > 0, "the injector dropped nothing");
        received
    };
    assert_eq!(received, BYTES, "TCP delivered everything despite the loss");
    std::thread::sleep(Duration::from_millis(300));
    let events = collector.collect().unwrap();
    let after = retrans_segs();
    let kernel = after - before;
    let ours_all = total(&events, RETRANSMITS, |_| true) - before_ours;
    let ours_port = total(&events, RETRANSMITS, |a| is(a, PORT, u32::from(port)));
    eprintln!("RetransSegs delta {kernel}; ours {ours_all} (test port {ours_port})");
    assert!(ours_port > 0, "retransmits of the test's connection are counted");
    assert!(ours_port <= ours_all);
    let tolerance = (kernel as f64 * 0.05).max(1.0);
    assert!(
        (ours_all as f64 - kernel as f64).abs() <= tolerance,
        "ours {ours_all} vs /proc/net/snmp RetransSegs {kernel}: more than 5 % apart"
    );
}
