//! `source "connections"` against the real kernel (needs root): the
//! kernel matrix's check, then workloads run by a child in a network
//! namespace of its own (so `/proc/net/snmp` counts its connections and
//! nothing else) and a cgroup of its own (so the source's cgroup filter
//! leaves out the rest of the busy node): loopback connects and accepts
//! over IPv4 and IPv6 agree with `ActiveOpens`/`PassiveOpens`, carry the
//! child's pid, the `process` source's exec id and a parent chain naming
//! this test binary; CIDR, port and protocol filters drop in the kernel and
//! count exactly what they dropped.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event, Log, Value};
use sonde_ebpf::testing::{bpf_available_or_skip, run_check, skip_or_fail, TestCgroup};
use sonde_sources::clock::Clock;
use sonde_sources::connections::bpf::{
    CnEvent, CN_ACCEPT, CN_CONNECT, CN_LISTEN, CN_STAT_DEDUPLICATED, CN_STAT_FILTERED_CIDR, CN_STAT_FILTERED_PORT,
    CN_STAT_FILTERED_PROTOCOL, CN_STAT_THROTTLED,
};
use sonde_sources::connections::{
    drain, Collector, ConnectionsSourceConfig, Match, DESTINATION_PORT, NETWORK_TYPE, SOURCE_PORT, TRANSPORT,
};
use sonde_sources::process::conformance::{collect_until, logs};
use sonde_sources::process::events::{ANCESTRY, EXEC, EXEC_ID};
use sonde_sources::process::ProcessSourceConfig;

/// The kernel matrix's check, on this kernel.
#[test]
fn loopback_connects_accepts_and_listeners_are_reported() {
    let _one = ONE_AT_A_TIME.lock();
    run_check(
        "loopback_connects_accepts_and_listeners_are_reported",
        sonde_sources::connections::conformance::check,
    );
}

/// The tests share the published process registry and the node's
/// listeners: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `script` (Python, with `args`) in a new network namespace with
/// its loopback up, moved into `cgroup` before its exec. The script prints
/// one line when done, then waits for its stdin to close (so that it is
/// alive while the test reads its events).
fn spawn(cgroup: &TestCgroup, script: &str, args: &[String]) -> Child {
    let procs = cgroup.path.join("cgroup.procs");
    let mut command = Command::new("unshare");
    command
        .args([
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec /usr/bin/python3 -c \"$0\" \"$@\"",
            script,
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: only a write(2) to a path prepared before the fork.
    unsafe {
        command.pre_exec(move || std::fs::write(&procs, b"0"));
    }
    command.spawn().expect("unshare and python3")
}

/// The child's line, once it is done.
fn done_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

fn finish(mut child: Child) {
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// The events waiting, after a short settle.
fn events_of(ring: &mut sonde_ebpf::aya::maps::RingBuf<sonde_ebpf::aya::maps::MapData>, pid: u32) -> Vec<CnEvent> {
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        out.extend(drain(ring).into_iter().filter(|e| e.pid == pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

fn int(log: &Log, key: &str) -> Option<i64> {
    log.fields.get(key).and_then(Value::as_int)
}

fn text<'a>(log: &'a Log, key: &str) -> Option<&'a str> {
    log.fields.get(key).and_then(Value::as_str)
}

const STORM: &str = r#"
import socket, sys
n = int(sys.argv[1])
def snmp():
    rows = [l.split() for l in open('/proc/net/snmp') if l.startswith('Tcp:')]
    tcp = dict(zip(rows[0][1:], rows[1][1:]))
    return int(tcp['ActiveOpens']), int(tcp['PassiveOpens'])
a0, p0 = snmp()
for family, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(128)
    port = server.getsockname()[1]
    for _ in range(n // 2):
        client = socket.socket(family, socket.SOCK_STREAM)
        client.connect((host, port))
        conn, _ = server.accept()
        conn.close()
        client.close()
    server.close()
a1, p1 = snmp()
print(a1 - a0, p1 - p0, flush=True)
sys.stdin.read()
"#;

/// N loopback connects (half IPv4, half IPv6 to `::1`) and their accepts,
/// by a child in its own network namespace and cgroup: exactly N connect
/// and N accept events with its pid, equal to its namespace's
/// `ActiveOpens` and `PassiveOpens` deltas; connects and accepts pair by
/// port; every event carries the exec id the `process` source gave the
/// child's exec, and a parent chain whose first member is this test binary.
#[test]
fn loopback_connects_agree_with_snmp_and_carry_the_process_ancestry() {
    const N: usize = 200;
    let test = "loopback_connects_agree_with_snmp_and_carry_the_process_ancestry";
    if !bpf_available_or_skip(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock();
    let cgroup = match TestCgroup::create(test) {
        Ok(c) => c,
        Err(e) => {
            skip_or_fail(test, &format!("cannot create a cgroup v2 directory: {e}"));
            return;
        }
    };
    // The process source, as in an agent with both: it names the child.
    let (mut processes, mut records) = sonde_sources::process::Collector::load(
        &ProcessSourceConfig {
            cgroups: vec![cgroup.relative.clone()],
            ..ProcessSourceConfig::default()
        },
        "test-node".into(),
        &[],
    )
    .expect("process loads");
    let config = ConnectionsSourceConfig {
        matching: Match {
            cgroup: vec![cgroup.relative.clone()],
            ..Match::default()
        },
        ..ConnectionsSourceConfig::default()
    };
    let mut collector = Collector::load_with_labels(&config, "test-node".into(), &[]).expect("connections loads");
    let mut ring = collector.programs_mut().take_events().unwrap();

    let mut child = spawn(&cgroup, STORM, &[N.to_string()]);
    let pid = child.id();
    let line = done_line(&mut child);
    let deltas: Vec<usize> = line.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(deltas.len(), 2, "the child's snmp deltas: {line:?}");
    let execs = collect_until(&mut processes, &mut records, Duration::from_secs(10), |events| {
        logs(events, EXEC).any(|l| {
            l.attributes.get(keys::PID).and_then(Value::as_int) == Some(i64::from(pid))
                && l.attributes.get(keys::COMM).and_then(Value::as_str) == Some("python3")
        })
    });
    let exec_id = logs(&execs, EXEC)
        .filter(|l| l.attributes.get(keys::PID).and_then(Value::as_int) == Some(i64::from(pid)))
        .last()
        .and_then(|l| text(l, EXEC_ID).map(str::to_string))
        .expect("the process source saw the child's exec");
    let events = events_of(&mut ring, pid);
    let clock = Clock::now();
    let logs_of: Vec<Log> = events
        .iter()
        .map(|e| match collector.record(e, &clock) {
            Event::Log(log) => *log,
            other => panic!("not a log: {other:?}"),
        })
        .collect();
    finish(child);

    let connects: Vec<&CnEvent> = events.iter().filter(|e| e.kind == CN_CONNECT).collect();
    let accepts: Vec<&CnEvent> = events.iter().filter(|e| e.kind == CN_ACCEPT).collect();
    assert_eq!(connects.len(), N, "connect events");
    assert_eq!(accepts.len(), N, "accept events");
    assert_eq!(
        (deltas[0], deltas[1]),
        (N, N),
        "ActiveOpens and PassiveOpens deltas of the child's namespace"
    );
    assert_eq!(
        events.iter().filter(|e| e.kind == CN_LISTEN).count(),
        2,
        "two listeners"
    );
    assert_eq!(connects.iter().filter(|e| e.is_ipv6()).count(), N / 2, "IPv6 connects");
    let mut from: Vec<u16> = connects.iter().map(|e| e.local_port).collect();
    let mut peers: Vec<u16> = accepts.iter().map(|e| e.remote_port).collect();
    from.sort_unstable();
    peers.sort_unstable();
    assert_eq!(from, peers, "each accept's peer is a connect's local port");

    let me = std::env::current_exe().unwrap().display().to_string();
    for log in &logs_of {
        assert_eq!(
            log.attributes.get(keys::PID).and_then(Value::as_int),
            Some(i64::from(pid))
        );
        assert_eq!(
            text(log, EXEC_ID),
            Some(exec_id.as_str()),
            "the process source's exec id: {log:?}"
        );
        let chain: Vec<serde_json::Value> = serde_json::from_str(text(log, ANCESTRY).unwrap()).unwrap();
        assert_eq!(
            chain.first().and_then(|p| p["binary"].as_str()),
            Some(me.as_str()),
            "parent: {chain:?}"
        );
        assert_eq!(text(log, TRANSPORT), Some("tcp"));
    }
    let v6 = logs_of
        .iter()
        .filter(|l| l.name.as_str() == "network.connect" && text(l, NETWORK_TYPE) == Some("ipv6"))
        .count();
    assert_eq!(v6, N / 2, "network.type = ipv6 on the IPv6 connects");
    assert!(logs_of
        .iter()
        .filter(|l| l.name.as_str() == "network.connect")
        .all(|l| int(l, SOURCE_PORT).unwrap_or(0) > 0 && int(l, DESTINATION_PORT).unwrap_or(0) > 0));
}

const FILTERED: &str = r#"
import socket, sys
k = int(sys.argv[1])
server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
server.bind(('::', 18080))
server.listen(1024)
other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
other.bind(('0.0.0.0', 18081))
other.listen(1024)
kept = []
for host, port, family in (('127.0.0.1', 18080, socket.AF_INET), ('127.0.0.2', 18080, socket.AF_INET),
                           ('::1', 18080, socket.AF_INET6), ('127.0.0.1', 18081, socket.AF_INET)):
    for _ in range(k):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.connect((host, port))
        kept.append(c)
    for _ in range(k):
        (server if port == 18080 else other).accept()[0].close()
for _ in range(k):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(('127.0.0.1', 18080))
    u.close()
print('done', flush=True)
sys.stdin.read()
"#;

/// With `cidr = ["127.0.0.0/8"]`, `exclude_cidr = ["127.0.0.2"]` and
/// `port = [18080]`, connects only, TCP and UDP: of K connects each to
/// 127.0.0.1:18080 (reported), 127.0.0.2:18080 and [::1]:18080 (outside
/// the CIDRs), 127.0.0.1:18081 (another port), and K UDP connects to
/// 127.0.0.1:18080 (reported, `udp`), exactly 2K events arrive and the
/// kernel counts exactly 2K dropped by CIDR and K by port (the cgroup
/// filter keeps the node's other connections out of those counts).
#[test]
fn cidr_and_port_filters_drop_in_the_kernel_and_count_exactly() {
    const K: usize = 40;
    let test = "cidr_and_port_filters_drop_in_the_kernel_and_count_exactly";
    if !bpf_available_or_skip(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock();
    let cgroup = match TestCgroup::create(test) {
        Ok(c) => c,
        Err(e) => {
            skip_or_fail(test, &format!("cannot create a cgroup v2 directory: {e}"));
            return;
        }
    };
    let config = ConnectionsSourceConfig {
        directions: vec!["connect".into()],
        protocols: vec!["tcp".into(), "udp".into()],
        matching: Match {
            cidr: vec!["127.0.0.0/8".into()],
            exclude_cidr: vec!["127.0.0.2".into()],
            port: vec![18080],
            cgroup: vec![cgroup.relative.clone()],
            ..Match::default()
        },
        ..ConnectionsSourceConfig::default()
    };
    let mut collector = Collector::load_with_labels(&config, "test-node".into(), &[]).expect("connections loads");
    let mut ring = collector.programs_mut().take_events().unwrap();
    let stat = |c: &mut Collector, slot| c.programs_mut().stats().unwrap().get(slot);
    let before =
        [CN_STAT_FILTERED_CIDR, CN_STAT_FILTERED_PORT, CN_STAT_FILTERED_PROTOCOL].map(|s| stat(&mut collector, s));

    let mut child = spawn(&cgroup, FILTERED, &[K.to_string()]);
    let pid = child.id();
    assert_eq!(done_line(&mut child).trim(), "done");
    let events = events_of(&mut ring, pid);
    let after =
        [CN_STAT_FILTERED_CIDR, CN_STAT_FILTERED_PORT, CN_STAT_FILTERED_PROTOCOL].map(|s| stat(&mut collector, s));
    let clock = Clock::now();
    let transports: Vec<String> = events
        .iter()
        .map(|e| match collector.record(e, &clock) {
            Event::Log(log) => text(&log, TRANSPORT).unwrap_or("").to_string(),
            _ => String::new(),
        })
        .collect();
    finish(child);

    assert_eq!(events.len(), 2 * K, "reported: {events:?}");
    assert!(events
        .iter()
        .all(|e| e.remote_port == 18080 && e.remote_addr[..4] == [127, 0, 0, 1]));
    assert_eq!(transports.iter().filter(|t| *t == "udp").count(), K, "UDP connects");
    assert_eq!(after[0] - before[0], 2 * K as u64, "dropped by CIDR");
    assert_eq!(after[1] - before[1], K as u64, "dropped by port");
    assert_eq!(after[2] - before[2], 0, "dropped by protocol");
}

/// Runs the STORM child (N connects and accepts: half to one IPv4 port,
/// half to one IPv6 port, all by one process) in its own cgroup under
/// `config` (filtered to that cgroup); its reported events and the deltas
/// of the kernel's `slots`, with the child's wall time.
fn storm_with(
    test: &str,
    n: usize,
    config: ConnectionsSourceConfig,
    slots: [u32; 2],
) -> Option<(Vec<CnEvent>, [u64; 2], Duration)> {
    if !bpf_available_or_skip(test) {
        return None;
    }
    let _one = ONE_AT_A_TIME.lock();
    let cgroup = match TestCgroup::create(test) {
        Ok(c) => c,
        Err(e) => {
            skip_or_fail(test, &format!("cannot create a cgroup v2 directory: {e}"));
            return None;
        }
    };
    let config = ConnectionsSourceConfig {
        matching: Match {
            cgroup: vec![cgroup.relative.clone()],
            ..Match::default()
        },
        ..config
    };
    let mut collector = Collector::load_with_labels(&config, "test-node".into(), &[]).expect("connections loads");
    let mut ring = collector.programs_mut().take_events().unwrap();
    let stat = |c: &mut Collector, slot| c.programs_mut().stats().unwrap().get(slot);
    let before = slots.map(|s| stat(&mut collector, s));
    let started = Instant::now();
    let mut child = spawn(&cgroup, STORM, &[n.to_string()]);
    let pid = child.id();
    done_line(&mut child);
    let wall = started.elapsed();
    let events = events_of(&mut ring, pid);
    let after = slots.map(|s| stat(&mut collector, s));
    finish(child);
    Some((events, [after[0] - before[0], after[1] - before[1]], wall))
}

/// With a dedup window longer than the run, one process making N connects
/// to two peers (and accepting them) is reported once per peer and
/// direction: 2 connects and 2 accepts; the other 2N − 4 are counted as
/// deduplicated, exactly, and none throttled.
#[test]
fn the_dedup_window_reports_each_peer_once_and_counts_the_rest() {
    const N: usize = 100;
    let config = ConnectionsSourceConfig {
        directions: vec!["connect".into(), "accept".into()],
        dedup_window: Duration::from_secs(60),
        ..ConnectionsSourceConfig::default()
    };
    let test = "the_dedup_window_reports_each_peer_once_and_counts_the_rest";
    let Some((events, [deduplicated, throttled], _)) =
        storm_with(test, N, config, [CN_STAT_DEDUPLICATED, CN_STAT_THROTTLED])
    else {
        return;
    };
    let kinds = |kind| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!((kinds(CN_CONNECT), kinds(CN_ACCEPT)), (2, 2), "{events:?}");
    let families: std::collections::BTreeSet<u16> = events.iter().map(|e| e.family).collect();
    assert_eq!(families.len(), 2, "one of each per family: {events:?}");
    assert_eq!(deduplicated, 2 * N as u64 - 4, "deduplicated");
    assert_eq!(throttled, 0);
}

/// With `rate_limit = 10`, a burst of N connects and N accepts from one
/// cgroup: each event is reported or counted as throttled, exactly; within
/// one second of the burst's start, 10 are reported.
#[test]
fn the_rate_limit_throttles_a_cgroup_and_counts_exactly() {
    const N: usize = 100;
    const LIMIT: u32 = 10;
    let config = ConnectionsSourceConfig {
        directions: vec!["connect".into(), "accept".into()],
        rate_limit: LIMIT,
        ..ConnectionsSourceConfig::default()
    };
    let test = "the_rate_limit_throttles_a_cgroup_and_counts_exactly";
    let Some((events, [throttled, deduplicated], wall)) =
        storm_with(test, N, config, [CN_STAT_THROTTLED, CN_STAT_DEDUPLICATED])
    else {
        return;
    };
    eprintln!("{} reported, {throttled} throttled in {wall:?}", events.len());
    assert_eq!(
        events.len() as u64 + throttled,
        2 * N as u64,
        "each event reported or throttled"
    );
    assert_eq!(deduplicated, 0);
    // The child's run includes starting Python: the burst itself is shorter.
    let windows = wall.as_secs() as usize + 1;
    assert!(
        (LIMIT as usize..=LIMIT as usize * windows).contains(&events.len()),
        "{} reported in {windows} one-second window(s)",
        events.len()
    );
}
