//! `source "net_flows"` against the real kernel (needs root): loopback
//! transfers of known sizes between this test and a peer process, checked
//! byte for byte against what the two processes wrote and read.
//!
//! The peer is this test binary run again with `SONDE_TEST_PEER` set (see
//! [`peer_process`]), so each end of a connection has its own pid.
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event, Log, Value};
use sonde_ebpf::testing::{bpf_available_or_skip, run_check, tcp_info, TCP_STATE_CLOSE};
use sonde_sources::net_flows::bpf::ClosedFlows;
use sonde_sources::net_flows::{
    Collector, NetFlowsSourceConfig, Reason, BYTES_RECEIVED, BYTES_SENT, DESTINATION_PORT, DIRECTION, FINAL, FLOW_ID,
    FLOW_LOG, PACKETS_RECEIVED, PACKETS_SENT, REASON, RETRANSMITS, RTT_US, SOURCE_PORT, TRANSPORT,
};

const PEER_ENV: &str = "SONDE_TEST_PEER";
const PORT_MARKER: &str = "peer port: ";
/// Bytes the client sends, and the server answers.
const UP: usize = 1_234_567;
const DOWN: usize = 89_012;

/// The kernel matrix's check, on this kernel: bytes, packets and pids of loopback TCP and UDP flows are exact.
#[test]
fn the_kernel_check_passes() {
    run_check(
        "net_flows::the_kernel_check_passes",
        sonde_sources::net_flows::conformance::check,
    );
}

/// Not a test: the peer's body, run with `--ignored --exact` (so it is
/// listed as ignored, not passed). As the peer (`SONDE_TEST_PEER=server`)
/// it listens on a loopback port, prints it, reads `UP` bytes, answers
/// `DOWN` bytes, then waits for the client to close before it closes.
#[test]
#[ignore = "the body of the peer process, not a test"]
fn peer_process() {
    if std::env::var(PEER_ENV).as_deref() != Ok("server") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // On its own line: the test harness may have printed part of one.
    println!("\n{PORT_MARKER}{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (mut s, _) = listener.accept().unwrap();
    let mut up = vec![0u8; UP];
    s.read_exact(&mut up).unwrap();
    s.write_all(&vec![3u8; DOWN]).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// Starts the peer; returns it and the port it listens on.
fn start_peer() -> (Child, u16) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "peer_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(PEER_ENV, "server")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = lines
        .find_map(|l| l.ok()?.strip_prefix(PORT_MARKER)?.trim().parse::<u16>().ok())
        .expect("the peer prints its port");
    // Keep reading: the peer's harness fails if its stdout closes.
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

fn load(test: &str, config: &NetFlowsSourceConfig) -> Option<(Collector, ClosedFlows)> {
    if !bpf_available_or_skip(test) {
        return None;
    }
    Some(Collector::load(config, "test-node".into(), &[]).expect("net_flows loads"))
}

fn logs(events: Vec<Event>) -> Vec<Log> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Log(log) if log.name.as_str() == FLOW_LOG => Some(*log),
            _ => None,
        })
        .collect()
}

fn field(log: &Log, key: &str) -> Value {
    log.fields
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("no field {key} in {log:?}"))
}

fn int(log: &Log, key: &str) -> i64 {
    field(log, key).as_int().unwrap()
}

/// Polls until `done` holds for the records gathered, or 10 s pass.
fn gather(collector: &mut Collector, closed: &mut ClosedFlows, done: impl Fn(&[Log]) -> bool) -> Vec<Log> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    while !done(&all) && Instant::now() < deadline {
        all.extend(logs(collector.poll(closed, Reason::ActiveTimeout)));
        std::thread::sleep(Duration::from_millis(20));
    }
    all
}

#[test]
fn a_loopback_transfer_has_exact_bytes_direction_and_pids_after_close() {
    let test = "a_loopback_transfer_has_exact_bytes_direction_and_pids_after_close";
    let config = NetFlowsSourceConfig {
        udp: false,
        ..NetFlowsSourceConfig::default()
    };
    let Some((mut collector, mut closed)) = load(test, &config) else {
        return;
    };
    let (mut peer, port) = start_peer();
    // The connecting thread has a name of its own, as `dig`'s
    // `isc-net-0000`: records name the process, not the thread.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_NAME, c"flow-worker".as_ptr()) }, 0);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = i64::from(c.local_addr().unwrap().port());
    c.write_all(&vec![1u8; UP]).unwrap();
    let mut down = vec![0u8; DOWN];
    c.read_exact(&mut down).unwrap();
    // Open: no final record yet for this connection.
    let ours = |l: &Log| int(l, DESTINATION_PORT) == i64::from(port) && int(l, SOURCE_PORT) == client_port;
    let early = logs(collector.poll(&mut closed, Reason::ActiveTimeout));
    assert!(
        !early.iter().any(|l| ours(l) && field(l, FINAL) == Value::Bool(true)),
        "a final record before the close: {early:?}"
    );
    let closed_at = sonde_core::event::Timestamp::now();
    // Close from this end but keep the socket: when the peer's FIN comes
    // the kernel closes it (FIN_WAIT2 → TIME_WAIT: TCP_CLOSE here), the
    // moment the final record is taken, and its TCP_INFO counters stop.
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(peer.wait().unwrap().success(), "the peer failed");
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
    drop(c);

    let records = gather(&mut collector, &mut closed, |all| {
        all.iter()
            .filter(|l| ours(l) && field(l, FINAL) == Value::Bool(true))
            .count()
            == 2
    });
    let finals: Vec<&Log> = records
        .iter()
        .filter(|l| ours(l) && field(l, FINAL) == Value::Bool(true))
        .collect();
    assert_eq!(finals.len(), 2, "one final record per end: {records:?}");
    let end = |direction: &str| {
        *finals
            .iter()
            .find(|l| field(l, DIRECTION).as_str() == Some(direction))
            .unwrap_or_else(|| panic!("no {direction} record in {finals:?}"))
    };
    let (client, server) = (end("client"), end("server"));
    for log in [client, server] {
        assert_eq!(field(log, TRANSPORT), Value::from("tcp"));
        assert_eq!(field(log, REASON), Value::from("closed"));
        assert!(log.timestamp >= closed_at, "the record comes after the close");
        // No interim record was due (30 s active timeout): the final one has it all.
        assert_eq!(
            records
                .iter()
                .filter(|l| field(l, FLOW_ID) == field(log, FLOW_ID))
                .count(),
            1
        );
    }
    assert_eq!(int(client, BYTES_SENT), UP as i64, "client → server bytes, exact");
    assert_eq!(int(client, BYTES_RECEIVED), DOWN as i64, "server → client bytes, exact");
    assert_eq!(int(server, BYTES_SENT), DOWN as i64);
    assert_eq!(int(server, BYTES_RECEIVED), UP as i64);
    // Packets, retransmits and RTT as the client socket's TCP_INFO says,
    // read once the kernel had closed it.
    eprintln!(
        "client: segs out {} in {}, retransmits {}, rtt {} us; record {client:?}",
        info.tcpi_segs_out, info.tcpi_segs_in, info.tcpi_total_retrans, info.tcpi_rtt
    );
    assert_eq!(
        int(client, PACKETS_SENT),
        i64::from(info.tcpi_segs_out),
        "segments sent"
    );
    assert_eq!(
        int(client, PACKETS_RECEIVED),
        i64::from(info.tcpi_segs_in),
        "segments received"
    );
    assert_eq!(int(client, RETRANSMITS), i64::from(info.tcpi_total_retrans));
    assert!(info.tcpi_rtt > 0, "the kernel sampled an RTT");
    assert_eq!(int(client, RTT_US), i64::from(info.tcpi_rtt), "smoothed RTT, µs");
    // On loopback every segment one end sends, the other receives; but
    // the SYN-ACK went out of the listener's request socket, not the
    // accepted one (whose segs_in starts at 1, for the SYN).
    assert_eq!(int(server, PACKETS_RECEIVED), i64::from(info.tcpi_segs_out));
    assert_eq!(int(server, PACKETS_SENT), i64::from(info.tcpi_segs_in) - 1);
    assert_eq!(client.attributes.get(keys::PID), Some(&Value::from(std::process::id())));
    assert_eq!(server.attributes.get(keys::PID), Some(&Value::from(peer.id())));
    assert_ne!(client.attributes.get(keys::PID), server.attributes.get(keys::PID));
    assert!(client.attributes.get(keys::CGROUP_ID).is_some());
    let process_name = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(
        client.attributes.get(keys::COMM),
        Some(&Value::from(process_name.trim_end().to_string())),
        "the process' name, not its thread's (`flow-worker`)"
    );
}

#[test]
fn a_long_lived_connection_gets_interim_records_that_sum_to_the_totals() {
    let test = "a_long_lived_connection_gets_interim_records_that_sum_to_the_totals";
    let config = NetFlowsSourceConfig {
        active_timeout: Duration::from_millis(300),
        udp: false,
        ..NetFlowsSourceConfig::default()
    };
    let Some((mut collector, mut closed)) = load(test, &config) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    const ROUNDS: usize = 12;
    const CHUNK: usize = 10_000;
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..ROUNDS {
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf[..CHUNK / 10]).unwrap();
        }
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = i64::from(c.local_addr().unwrap().port());
    let mut records = Vec::new();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        c.write_all(&[9u8; CHUNK]).unwrap();
        let mut back = [0u8; CHUNK / 10];
        c.read_exact(&mut back).unwrap();
        // About 1.8 s in all: five or six active timeouts.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(50));
            records.extend(logs(collector.poll(&mut closed, Reason::ActiveTimeout)));
        }
    }
    let lived = started.elapsed();
    drop(c);
    server.join().unwrap();
    let ours = |l: &Log| int(l, DESTINATION_PORT) == i64::from(port) && int(l, SOURCE_PORT) == client_port;
    records.extend(gather(&mut collector, &mut closed, |all| {
        all.iter()
            .filter(|l| ours(l) && field(l, FINAL) == Value::Bool(true))
            .count()
            == 2
    }));
    for direction in ["client", "server"] {
        let flow: Vec<&Log> = records
            .iter()
            .filter(|l| ours(l) && field(l, DIRECTION).as_str() == Some(direction))
            .collect();
        let interim = flow
            .iter()
            .filter(|l| field(l, REASON) == Value::from("active_timeout"))
            .count();
        // One per 300 ms at most; at least half that on a busy machine.
        let most = (lived.as_millis() / 300) as usize;
        eprintln!("{direction}: {} records, {interim} interim over {lived:?}", flow.len());
        assert!(
            interim >= most / 2 && interim <= most,
            "{direction}: {interim} interim records over {lived:?} at a 300 ms active timeout"
        );
        for pair in flow.windows(2) {
            let gap = pair[1].timestamp.as_nanos() - pair[0].timestamp.as_nanos();
            assert!(
                gap >= 300_000_000 || field(pair[1], FINAL) == Value::Bool(true),
                "{direction}: records {gap} ns apart"
            );
        }
        assert_eq!(flow.last().map(|l| field(l, FINAL)), Some(Value::Bool(true)));
        assert!(flow.iter().all(|l| field(l, FLOW_ID) == field(flow[0], FLOW_ID)));
        let sum = |key: &str| flow.iter().map(|l| int(l, key)).sum::<i64>();
        let (up, down) = ((ROUNDS * CHUNK) as i64, (ROUNDS * CHUNK / 10) as i64);
        let (sent, received) = if direction == "client" { (up, down) } else { (down, up) };
        assert_eq!(sum(BYTES_SENT), sent, "{direction}: records sum to the bytes sent");
        assert_eq!(
            sum(BYTES_RECEIVED),
            received,
            "{direction}: records sum to the bytes received"
        );
    }
}

#[test]
fn udp_flows_count_datagrams_each_way_and_end_when_idle() {
    let test = "udp_flows_count_datagrams_each_way_and_end_when_idle";
    let config = NetFlowsSourceConfig {
        idle_timeout: Duration::from_millis(300),
        ..NetFlowsSourceConfig::default()
    };
    let Some((mut collector, mut closed)) = load(test, &config) else {
        return;
    };
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_port, b_port) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
    const DATAGRAMS: usize = 25;
    const SIZE: usize = 700;
    let mut buf = [0u8; 2048];
    for _ in 0..DATAGRAMS {
        a.send_to(&[5u8; SIZE], ("127.0.0.1", b_port)).unwrap();
        b.recv_from(&mut buf).unwrap();
    }
    b.send_to(&[6u8; 33], ("127.0.0.1", a_port)).unwrap();
    a.recv_from(&mut buf).unwrap();
    let records = gather(&mut collector, &mut closed, |all| {
        all.iter()
            .filter(|l| field(l, REASON) == Value::from("idle_timeout"))
            .filter(|l| [a_port, b_port].contains(&(int(l, SOURCE_PORT) as u16)))
            .count()
            >= 2
    });
    let end = |direction: &str| {
        records
            .iter()
            .find(|l| {
                field(l, TRANSPORT) == Value::from("udp")
                    && int(l, SOURCE_PORT) == i64::from(a_port)
                    && int(l, DESTINATION_PORT) == i64::from(b_port)
                    && field(l, DIRECTION).as_str() == Some(direction)
            })
            .unwrap_or_else(|| panic!("no {direction} UDP record in {records:?}"))
    };
    let (sender, receiver) = (end("client"), end("server"));
    assert_eq!(int(sender, BYTES_SENT), (DATAGRAMS * SIZE) as i64);
    assert_eq!(int(sender, PACKETS_SENT), DATAGRAMS as i64);
    assert_eq!((int(sender, BYTES_RECEIVED), int(sender, PACKETS_RECEIVED)), (33, 1));
    assert_eq!(int(receiver, BYTES_RECEIVED), (DATAGRAMS * SIZE) as i64);
    assert_eq!((int(receiver, BYTES_SENT), int(receiver, PACKETS_SENT)), (33, 1));
    for log in [sender, receiver] {
        assert_eq!(field(log, FINAL), Value::Bool(true));
        assert_eq!(log.attributes.get(keys::PID), Some(&Value::from(std::process::id())));
    }
}

/// A UDP socket that went quiet (UDP has no close: its process may even
/// be gone) gets no interim records of 0 bytes every `active_timeout`
/// until its idle timeout; only the records that carry its datagrams.
/// Before the fix: one empty record per active timeout.
#[test]
fn a_quiet_udp_flow_gets_no_empty_interim_records() {
    let test = "a_quiet_udp_flow_gets_no_empty_interim_records";
    let config = NetFlowsSourceConfig {
        active_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(30),
        ..NetFlowsSourceConfig::default()
    };
    let Some((mut collector, mut closed)) = load(test, &config) else {
        return;
    };
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_port, b_port) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        a.send_to(&[7u8; 100], ("127.0.0.1", b_port)).unwrap();
        b.recv_from(&mut buf).unwrap();
    }
    // Quiet for seven active timeouts.
    let mut records = Vec::new();
    let quiet_until = Instant::now() + Duration::from_millis(1400);
    while Instant::now() < quiet_until {
        records.extend(logs(collector.poll(&mut closed, Reason::ActiveTimeout)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let ours: Vec<&Log> = records
        .iter()
        .filter(|l| {
            field(l, TRANSPORT) == Value::from("udp")
                && int(l, SOURCE_PORT) == i64::from(a_port)
                && int(l, DESTINATION_PORT) == i64::from(b_port)
        })
        .collect();
    let empty = ours
        .iter()
        .filter(|l| int(l, BYTES_SENT) == 0 && int(l, BYTES_RECEIVED) == 0)
        .count();
    let sent: i64 = ours
        .iter()
        .filter(|l| field(l, DIRECTION).as_str() == Some("client"))
        .map(|l| int(l, BYTES_SENT))
        .sum();
    eprintln!("{} records of the flow, {empty} empty", ours.len());
    assert_eq!(sent, 1000, "the interim records carry every byte: {ours:?}");
    assert_eq!(empty, 0, "empty interim records: {ours:?}");
    drop((a, b));
}

/// Runs `sonde` with `config` while `workload` runs, stops it with SIGTERM,
/// and returns the JSON events it printed.
fn run_sonde(config: &str, workload: impl FnOnce()) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.hcl");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(["--log-level", "warn", "run", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stdout on another thread (a full pipe would stall sonde).
    let stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    // The first event means every source was built: the programs are attached.
    let first = line_rx.recv_timeout(Duration::from_secs(60)).expect("sonde emits");
    workload();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sonde did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().unwrap();
    assert!(status.success(), "sonde failed: {status}");
    std::iter::once(first)
        .chain(line_rx.try_iter())
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

#[test]
fn sonde_run_emits_flow_records_the_service_map_and_loss_counters() {
    if !bpf_available_or_skip("sonde_run_emits_flow_records_the_service_map_and_loss_counters") {
        return;
    }
    // Listening before sonde starts: its owner must come from /proc.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = r#"
agent {
  api       = null
  node_name = "test-node"
}
source "net_flows" "flows" {
  active_timeout = "1s"
  interval       = "300ms"
}
source "tcp" "tcp" {
  interval = "300ms"
}
source "internal_metrics" "agent" {
  interval = "300ms"
}
sink "console" "out" {
  inputs   = ["flows", "tcp", "agent"]
  encoding = "json"
}
"#;
    let events = run_sonde(config, move || {
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut up = vec![0u8; UP];
            s.read_exact(&mut up).unwrap();
            s.write_all(&vec![3u8; DOWN]).unwrap();
        });
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(&vec![1u8; UP]).unwrap();
        let mut down = vec![0u8; DOWN];
        c.read_exact(&mut down).unwrap();
        drop(c);
        server.join().unwrap();
    });
    let records: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "log" && e["name"] == FLOW_LOG)
        .filter(|e| e["fields"][DESTINATION_PORT] == port)
        .collect();
    let sent = |direction: &str| -> i64 {
        records
            .iter()
            .filter(|e| e["fields"][DIRECTION] == direction)
            .filter_map(|e| e["fields"][BYTES_SENT].as_i64())
            .sum()
    };
    assert_eq!(sent("client"), UP as i64, "records: {records:#?}");
    assert_eq!(sent("server"), DOWN as i64, "records: {records:#?}");
    assert!(records
        .iter()
        .all(|e| e["attributes"]["process.pid"] == std::process::id()));
    let accepted = events
        .iter()
        .filter(|e| e["name"] == sonde_sources::tcp::OPENS && e["attributes"]["server.port"] == port)
        .filter(|e| e["attributes"]["sonde.tcp.role"] == "server")
        .filter(|e| e["attributes"]["process.pid"] == std::process::id())
        .filter_map(|e| e["value"]["value"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(
        accepted, 1.0,
        "the tcp source counts the accepted connection for its process"
    );
    let map_bytes = |io: &str| {
        events
            .iter()
            .filter(|e| e["name"] == sonde_sources::net_flows::BYTES)
            .filter(|e| e["attributes"]["server.port"] == port && e["attributes"]["network.io.direction"] == io)
            .filter(|e| e["attributes"]["sonde.flow.direction"] == "client")
            .filter_map(|e| e["value"]["value"].as_f64())
            .fold(0.0, f64::max)
    };
    assert_eq!(map_bytes("transmit"), UP as f64, "service map, client → server");
    assert_eq!(map_bytes("receive"), DOWN as f64, "service map, server → client");
    // Exported, and nothing lost: the maps are far from full and the ring
    // buffer is drained every 100 ms.
    let counter = |name: &str, key: &str, value: &str| {
        events
            .iter()
            .filter(|e| {
                e["name"] == name && e["attributes"]["component_id"] == "flows" && e["attributes"][key] == value
            })
            .map(|e| e["value"]["value"].as_f64().unwrap_or(f64::NAN))
            .next_back()
    };
    assert_eq!(
        counter("sonde.ebpf.map_evictions", "map", "flow_tcp"),
        Some(0.0),
        "evictions are exported, and none happened"
    );
    assert_eq!(
        counter("sonde.ebpf.lost_events", "reason", "ringbuf_full"),
        Some(0.0),
        "ring buffer losses are exported, and none happened"
    );
}

/// A transfer under packet loss (a BPF dropper of the test's own drops 5 %
/// of the segments with payload for the server's port): the client's
/// record has the retransmits, packets and RTT of its TCP_INFO, exactly.
#[test]
fn retransmits_under_injected_loss_equal_tcp_info() {
    let test = "retransmits_under_injected_loss_equal_tcp_info";
    let config = NetFlowsSourceConfig {
        udp: false,
        ..NetFlowsSourceConfig::default()
    };
    let Some((mut collector, mut closed)) = load(test, &config) else {
        return;
    };
    const BYTES: usize = 8 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let loss = match sonde_ebpf::loss::LossInjector::attach(port, 5.0) {
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
    let client_port = i64::from(c.local_addr().unwrap().port());
    for chunk in vec![7u8; BYTES].chunks(64 << 10) {
        c.write_all(chunk).unwrap();
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        server.join().unwrap(),
        BYTES,
        "TCP delivered everything despite the loss"
    );
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
    drop((c, loss));
    let ours = |l: &Log| {
        int(l, DESTINATION_PORT) == i64::from(port)
            && int(l, SOURCE_PORT) == client_port
            && field(l, DIRECTION).as_str() == Some("client")
            && field(l, FINAL) == Value::Bool(true)
    };
    let records = gather(&mut collector, &mut closed, |all| all.iter().any(ours));
    let client = records.iter().find(|l| ours(l)).expect("the client's final record");
    eprintln!(
        "dropped {dropped} of {seen} segments; TCP_INFO: retransmits {}, segs out {} in {}, rtt {} us; {client:?}",
        info.tcpi_total_retrans, info.tcpi_segs_out, info.tcpi_segs_in, info.tcpi_rtt
    );
    assert!(
        dropped > 0 && info.tcpi_total_retrans > 0,
        "the loss made the client retransmit"
    );
    assert_eq!(
        int(client, RETRANSMITS),
        i64::from(info.tcpi_total_retrans),
        "retransmits"
    );
    assert_eq!(
        int(client, PACKETS_SENT),
        i64::from(info.tcpi_segs_out),
        "segments sent"
    );
    assert_eq!(
        int(client, PACKETS_RECEIVED),
        i64::from(info.tcpi_segs_in),
        "segments received"
    );
    assert_eq!(int(client, RTT_US), i64::from(info.tcpi_rtt), "smoothed RTT, µs");
    assert_eq!(
        int(client, BYTES_SENT),
        BYTES as i64,
        "payload bytes, each retransmitted byte once"
    );
}
