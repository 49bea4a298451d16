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
use std::time::{Duration, Instant};

use sonde_core::event::{Event, MetricValue, Value};
use sonde_ebpf::loss::LossInjector;
use sonde_ebpf::testing::{bpf_available_or_skip, run_check, tcp_info, TCP_STATE_CLOSE};
use sonde_sources::tcp::{Collector, TcpSourceConfig, DROPS, DROP_REASON, PORT, RETRANSMITS, ROLE};

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

fn collector(test: &str) -> Option<Collector> {
    if !bpf_available_or_skip(test) {
        return None;
    }
    let config = TcpSourceConfig::default();
    Some(Collector::load(&config, "test-node".into(), &[]).expect("tcp loads"))
}

/// The kernel matrix's check, on this kernel: opens, closes, RTT samples,
/// connect latencies, refusals and resets of loopback connections, exact.
#[test]
fn every_connect_is_one_latency_observation_and_refusals_count_resets() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_check(
        "every_connect_is_one_latency_observation_and_refusals_count_resets",
        sonde_sources::tcp::conformance::check,
    );
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
    let (received, client_retrans) = {
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
        // Close from this end but keep the socket: once the server's FIN
        // comes back the kernel has closed it, and its TCP_INFO counters
        // are final.
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let received = server.join().unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let info = loop {
            let info = tcp_info(&c).unwrap();
            if info.tcpi_state == TCP_STATE_CLOSE {
                break info;
            }
            assert!(
                Instant::now() < deadline,
                "the client socket never closed: state {}",
                info.tcpi_state
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let (dropped, seen) = loss.counts().unwrap();
        eprintln!("injected loss: {dropped} of {seen} segments with payload dropped");
        assert!(dropped > 0, "the injector dropped nothing");
        (received, info.tcpi_total_retrans)
    };
    assert_eq!(received, BYTES, "TCP delivered everything despite the loss");
    assert!(client_retrans > 0, "the loss made the client retransmit");
    let client = |a: &sonde_core::event::Attributes| is(a, PORT, u32::from(port)) && is(a, ROLE, "client");
    // The last retransmits may be counted a little after the close: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = collector.collect().unwrap();
        if total(&events, RETRANSMITS, client) == u64::from(client_retrans) || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let after = retrans_segs();
    let kernel = after - before;
    let ours_all = total(&events, RETRANSMITS, |_| true) - before_ours;
    let ours_client = total(&events, RETRANSMITS, client);
    let ours_port = total(&events, RETRANSMITS, |a| is(a, PORT, u32::from(port)));
    eprintln!(
        "RetransSegs delta {kernel}; ours {ours_all} (test port {ours_port}, its client {ours_client}); \
         the client's tcpi_total_retrans {client_retrans}"
    );
    assert_eq!(
        ours_client,
        u64::from(client_retrans),
        "the client's retransmits vs its TCP_INFO tcpi_total_retrans"
    );
    assert!(ours_port <= ours_all);
    let tolerance = (kernel as f64 * 0.05).max(1.0);
    assert!(
        (ours_all as f64 - kernel as f64).abs() <= tolerance,
        "ours {ours_all} vs /proc/net/snmp RetransSegs {kernel}: more than 5 % apart"
    );
}

/// Connects to a closed port: the kernel answers each SYN with a reset and
/// drops the SYN with reason `NO_SOCKET` (kernels 5.17+, where `kfree_skb`
/// has a reason). The source counts at least those drops under that name
/// (the host may drop others meanwhile).
#[test]
fn syns_to_a_closed_port_are_drops_for_no_socket() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "syns_to_a_closed_port_are_drops_for_no_socket";
    let Some(mut collector) = collector(test) else { return };
    if !collector.programs().drop_reasons() {
        eprintln!("{test}: this kernel's kfree_skb has no drop reason (before 5.17): not counted");
        return;
    }
    const REFUSED: u64 = 20;
    let no_socket = |events: &[Event]| total(events, DROPS, |a| is(a, DROP_REASON, "NO_SOCKET"));
    let before = no_socket(&collector.collect().unwrap());
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for _ in 0..REFUSED {
        let error = TcpStream::connect(("127.0.0.1", dead)).expect_err("nothing listens");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let dropped = loop {
        let dropped = no_socket(&collector.collect().unwrap()) - before;
        if dropped >= REFUSED || Instant::now() > deadline {
            break dropped;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("NO_SOCKET drops: {dropped} during {REFUSED} refused connects");
    assert!(
        dropped >= REFUSED,
        "{dropped} NO_SOCKET drops for {REFUSED} SYNs to a closed port"
    );
}

/// Sockets of `ss -tanH state STATE` whose local or remote port is `port`.
fn ss_count(state: &str, port: u16) -> u64 {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let out = std::process::Command::new("ss")
        .args(["-tanH", "state", state, &filter])
        .output()
        .expect("ss runs");
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64
}

/// 50 loopback connections, 25 opened before the source loaded (seeded by
/// iter/tcp and /proc) and 25 after (followed from their transitions); the
/// accepting end closes 10 of each, so 20 connecting ends sit in
/// CLOSE_WAIT. The gauges equal `ss` exactly, and every socket is this
/// process'.
#[test]
fn states_equal_ss_for_sockets_older_and_newer_than_the_source() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "states_equal_ss_for_sockets_older_and_newer_than_the_source";
    if !bpf_available_or_skip(test) {
        return;
    }
    use sonde_sources::tcp::{CONNECTIONS, ROLE, STATE};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut clients = Vec::new();
    let mut accepted = Vec::new();
    let open = |n: usize, clients: &mut Vec<TcpStream>, accepted: &mut Vec<TcpStream>| {
        for _ in 0..n {
            clients.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
            accepted.push(listener.accept().unwrap().0);
        }
    };
    open(25, &mut clients, &mut accepted);
    let mut collector = Collector::load(&TcpSourceConfig::default(), "test-node".into(), &[]).expect("tcp loads");
    assert!(
        collector.programs().seeded(),
        "iter/tcp seeds the older sockets on this kernel"
    );
    open(25, &mut clients, &mut accepted);
    // The peer closes 10 older and 10 newer connections.
    // (Indexes 15..25 are older; after removing them, 30..40 are newer.)
    drop(accepted.drain(15..25).collect::<Vec<_>>());
    drop(accepted.drain(30..40).collect::<Vec<_>>());
    let pid = std::process::id();
    let gauge = |events: &[Event], state: &str, mine: bool| {
        total(events, CONNECTIONS, |a| {
            is(a, PORT, u32::from(port))
                && is(a, STATE, state.to_string())
                && (!mine || is(a, sonde_core::event::keys::PID, pid))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = collector.collect().unwrap();
        let ours = [
            ("established", gauge(&events, "established", false)),
            ("close-wait", gauge(&events, "close_wait", false)),
            ("fin-wait-2", gauge(&events, "fin_wait_2", false)),
            ("listening", gauge(&events, "listen", false)),
        ];
        let theirs = ours.map(|(state, _)| (state, ss_count(state, port)));
        let mine = [gauge(&events, "established", true), gauge(&events, "close_wait", true)];
        let client_close_wait = total(&events, CONNECTIONS, |a| {
            is(a, PORT, u32::from(port)) && is(a, STATE, "close_wait") && is(a, ROLE, "client")
        });
        eprintln!("ours {ours:?}; ss {theirs:?}; this pid's established/close_wait {mine:?}");
        if ours == theirs && theirs[1].1 == 20 {
            assert_eq!(theirs[0].1, 60, "30 open connections, both ends");
            assert_eq!(mine, [60, 20], "every socket belongs to this process");
            assert_eq!(client_close_wait, 20, "CLOSE_WAIT is the connecting end");
            break;
        }
        assert!(Instant::now() < deadline, "gauges never matched ss");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop((clients, accepted));
}
