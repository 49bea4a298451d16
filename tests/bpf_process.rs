//! `source "process"` against the real kernel (needs root): fork+exec
//! storms paired by exec id and checked against `/proc/stat`, a process
//! whose leader exits before its threads, a long argv, and a process that
//! predates the agent.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sonde_core::event::{keys, Event, Log, Value};
use sonde_ebpf::testing::{bpf_available_or_skip, run_check, skip_or_fail, TestCgroup};
use sonde_sources::process::bpf::{Records, PROC_STAT_CLONES};
use sonde_sources::process::conformance::{collect_until, field, logs, proc_stat_processes};
use sonde_sources::process::events::{
    ANCESTRY, ARGS, ARGS_TRUNCATED, EXEC, EXEC_ID, EXIT, EXIT_CODE, ORIGIN, PARENT_EXEC_ID, PARENT_PID, THREAD_ID,
};
use sonde_sources::process::{Collector, ProcessSourceConfig};

/// The kernel matrix's check, on this kernel.
#[test]
fn execs_and_exits_pair_and_forks_agree_with_proc_stat() {
    run_check(
        "execs_and_exits_pair_and_forks_agree_with_proc_stat",
        sonde_sources::process::conformance::check,
    );
}

fn load(config: &ProcessSourceConfig) -> (Collector, Records) {
    Collector::load(config, "test-node".into(), &[]).expect("process loads")
}

fn int(log: &Log, key: &str) -> Option<i64> {
    log.fields.get(key).and_then(Value::as_int)
}

fn args(log: &Log) -> Vec<String> {
    serde_json::from_str(field(log, ARGS).expect("argv")).expect("argv is a JSON array")
}

fn ancestry(log: &Log) -> Vec<serde_json::Value> {
    serde_json::from_str::<Vec<serde_json::Value>>(field(log, ANCESTRY).expect("ancestry")).unwrap()
}

fn pid_of(log: &Log) -> Option<i64> {
    log.attributes.get(keys::PID).and_then(Value::as_int)
}

/// 2000 fork+exec of `/bin/true` with known arguments, each child moved
/// into a test cgroup before its exec, with the source filtering on that
/// cgroup in the kernel: exactly 2000 exec and 2000 exit events (and
/// nothing else from the busy node), paired by exec id, argv byte-exact,
/// the parent this test binary (read from /proc: it predates the agent);
/// the forks the program saw agree with /proc/stat `processes`.
#[test]
fn two_thousand_execs_in_a_cgroup_pair_exactly() {
    const RUNS: usize = 2000;
    let test = "two_thousand_execs_in_a_cgroup_pair_exactly";
    if !bpf_available_or_skip(test) {
        return;
    }
    let cgroup = match TestCgroup::create(test) {
        Ok(c) => c,
        Err(e) => {
            skip_or_fail(test, &format!("cannot create a cgroup v2 directory: {e}"));
            return;
        }
    };
    let config = ProcessSourceConfig {
        cgroups: vec![cgroup.relative.clone()],
        ..ProcessSourceConfig::default()
    };
    let (mut collector, mut records) = load(&config);
    let procs = cgroup.path.join("cgroup.procs");
    let clones_before = collector.programs().stats().unwrap().get(PROC_STAT_CLONES);
    let kernel_before = proc_stat_processes().unwrap();
    for i in 0..RUNS {
        let procs = procs.clone();
        let mut command = Command::new("/bin/true");
        command.args(["known-arg", &i.to_string(), ""]);
        // SAFETY: only a write(2) to a path prepared before the fork: no
        // allocation, no lock, async-signal-safe.
        unsafe {
            command.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        assert!(command.status().unwrap().success());
    }
    let kernel = proc_stat_processes().unwrap() - kernel_before;
    let clones = collector.programs().stats().unwrap().get(PROC_STAT_CLONES) - clones_before;
    let events = collect_until(&mut collector, &mut records, Duration::from_secs(20), |events| {
        logs(events, EXIT).count() >= RUNS
    });
    // Let stragglers (anything else in the cgroup) arrive, then count all.
    let events = [
        events,
        collect_until(&mut collector, &mut records, Duration::from_millis(300), |_| false),
    ]
    .concat();
    let execs: Vec<&Log> = logs(&events, EXEC).collect();
    let exits: Vec<&Log> = logs(&events, EXIT).collect();
    assert_eq!((execs.len(), exits.len()), (RUNS, RUNS), "only the workload's events");
    let me = i64::from(std::process::id());
    let my_exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let mut by_id: HashMap<&str, &Log> = HashMap::new();
    let mut seen_args = vec![false; RUNS];
    for exec in &execs {
        let argv = args(exec);
        assert_eq!(argv.len(), 4, "{argv:?}");
        assert_eq!(
            (argv[0].as_str(), argv[1].as_str(), argv[3].as_str()),
            ("/bin/true", "known-arg", "")
        );
        seen_args[argv[2].parse::<usize>().unwrap()] = true;
        assert_eq!(field(exec, ARGS_TRUNCATED), None);
        assert_eq!(exec.fields.get(ARGS_TRUNCATED), Some(&Value::Bool(false)));
        assert_eq!(int(exec, PARENT_PID), Some(me));
        let chain = ancestry(exec);
        assert_eq!(chain[0]["pid"], me, "the parent chain starts at this test binary");
        assert_eq!(chain[0]["binary"], my_exe.as_str());
        assert_eq!(chain[0]["origin"], "procfs");
        assert_eq!(field(exec, PARENT_EXEC_ID), chain[0]["exec_id"].as_str());
        assert!(
            exec.attributes
                .get(keys::EXE)
                .and_then(Value::as_str)
                .is_some_and(|p| p.ends_with("/true")),
            "binary {:?}",
            exec.attributes.get(keys::EXE)
        );
        assert!(
            by_id.insert(field(exec, EXEC_ID).unwrap(), exec).is_none(),
            "exec ids are unique"
        );
    }
    assert!(seen_args.iter().all(|s| *s), "every run's argv was seen");
    for exit in &exits {
        let exec = by_id
            .remove(field(exit, EXEC_ID).unwrap())
            .expect("each exit pairs with one exec");
        assert_eq!(pid_of(exit), pid_of(exec));
        assert_eq!(int(exit, EXIT_CODE), Some(0));
    }
    assert!(by_id.is_empty());
    let off = clones.abs_diff(kernel);
    eprintln!("forks seen by the program {clones}, /proc/stat processes delta {kernel}");
    assert!(
        kernel >= RUNS as u64 && off <= 2 + kernel / 100,
        "forks {clones} vs /proc/stat {kernel}"
    );
}

/// Builds a C program with gcc into `dir`; `None` (skipped or failed) without gcc.
fn build_c(test: &str, dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
    let (c, binary) = (dir.join(format!("{name}.c")), dir.join(name));
    std::fs::write(&c, source).unwrap();
    let built = Command::new("gcc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&binary)
        .arg(&c)
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        skip_or_fail(test, "gcc cannot build the test program");
        return None;
    }
    Some(binary)
}

const LEADER_EXITS: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *worker(void *arg) { (void)arg; usleep(300000); exit(7); }
int main(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, worker, 0);
    pthread_exit(0);
}
"#;

/// A thread-group leader that exits (pthread_exit) while its three threads
/// run on; one of them later calls exit(7): one exit event, from a thread
/// other than the leader, with code 7 — not one per thread, and not at the
/// leader's exit.
#[test]
fn a_process_exits_once_at_its_last_thread() {
    let test = "a_process_exits_once_at_its_last_thread";
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(binary) = build_c(test, dir.path(), "leader_exits", LEADER_EXITS) else {
        return;
    };
    let config = ProcessSourceConfig {
        binaries: vec!["leader_exits".to_string()],
        ..ProcessSourceConfig::default()
    };
    let (mut collector, mut records) = load(&config);
    let status = Command::new(&binary).status().unwrap();
    assert_eq!(status.code(), Some(7));
    let events = collect_until(&mut collector, &mut records, Duration::from_secs(5), |e| {
        logs(e, EXIT).count() >= 1
    });
    let events = [
        events,
        collect_until(&mut collector, &mut records, Duration::from_millis(300), |_| false),
    ]
    .concat();
    let execs: Vec<&Log> = logs(&events, EXEC).collect();
    let exits: Vec<&Log> = logs(&events, EXIT).collect();
    assert_eq!((execs.len(), exits.len()), (1, 1), "one exec, one exit");
    let (exec, exit) = (execs[0], exits[0]);
    assert_eq!(field(exit, EXEC_ID), field(exec, EXEC_ID));
    assert_eq!(int(exit, EXIT_CODE), Some(7));
    assert_ne!(
        int(exit, THREAD_ID),
        pid_of(exit),
        "reported at a thread, not the leader"
    );
}

/// An argv of 8 KiB: flagged truncated, and what is kept is exactly its
/// first 4096 bytes (cut inside the fifth argument).
#[test]
fn a_long_argv_keeps_a_byte_exact_prefix() {
    let test = "a_long_argv_keeps_a_byte_exact_prefix";
    if !bpf_available_or_skip(test) {
        return;
    }
    let config = ProcessSourceConfig {
        binaries: vec!["true".to_string()],
        ..ProcessSourceConfig::default()
    };
    let (mut collector, mut records) = load(&config);
    // "/bin/true\0" then 8 arguments of 1000 bytes + NUL: 8018 bytes.
    let long: Vec<String> = (0..8u8)
        .map(|i| (0..1000).map(|j| char::from(b'a' + (i + j as u8 % 7) % 26)).collect())
        .collect();
    let child = Command::new("/bin/true").args(&long).spawn().unwrap();
    let pid = i64::from(child.id());
    assert!(child.wait_with_output().unwrap().status.success());
    let events = collect_until(&mut collector, &mut records, Duration::from_secs(5), |e| {
        logs(e, EXEC).any(|l| pid_of(l) == Some(pid))
    });
    let exec = logs(&events, EXEC)
        .find(|l| pid_of(l) == Some(pid))
        .expect("the exec is reported");
    assert_eq!(exec.fields.get(ARGS_TRUNCATED), Some(&Value::Bool(true)));
    // The first 4096 bytes of argv: 10 + 4 × 1001 = 4014, then 82 bytes
    // of the fifth argument.
    let mut expected = vec!["/bin/true".to_string()];
    expected.extend(long[..4].iter().cloned());
    expected.push(long[4][..82].to_string());
    assert_eq!(args(exec), expected);
}

/// A process started before the agent: its exit carries its status and
/// the exec id read from /proc at start, and it and its ancestry are
/// marked as read from /proc.
#[test]
fn a_process_older_than_the_agent_exits_with_its_status() {
    let test = "a_process_older_than_the_agent_exits_with_its_status";
    if !bpf_available_or_skip(test) {
        return;
    }
    let mut child = Command::new("/bin/sh")
        .args(["-c", "read line; exit 3"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The shell must be running (not about to exec) when the agent starts.
    std::thread::sleep(Duration::from_millis(100));
    let (mut collector, mut records) = load(&ProcessSourceConfig::default());
    let known = collector
        .ancestry()
        .get(pid)
        .cloned()
        .expect("read from /proc at start");
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let events = collect_until(&mut collector, &mut records, Duration::from_secs(5), |e| {
        logs(e, EXIT).any(|l| pid_of(l) == Some(i64::from(pid)))
    });
    let exit = logs(&events, EXIT)
        .find(|l| pid_of(l) == Some(i64::from(pid)))
        .expect("its exit is reported");
    assert_eq!(int(exit, EXIT_CODE), Some(3));
    assert_eq!(field(exit, ORIGIN), Some("procfs"));
    assert_eq!(field(exit, EXEC_ID), Some(known.exec_id.as_str()));
    let chain = ancestry(exit);
    assert_eq!(chain[0]["pid"], std::process::id());
    assert_eq!(chain[0]["origin"], "procfs");
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, Event::Log(l) if l.name.as_str() == EXEC && pid_of(l) == Some(i64::from(pid)))),
        "no exec was invented for it"
    );
}

/// A rate limit of 20 execs per second for a test cgroup and 200 execs
/// there as fast as they go: every exec is either reported or counted as
/// throttled for that cgroup (exactly 200 together), some are throttled,
/// and the exits of throttled execs are dropped too, so execs and exits
/// still pair.
#[test]
fn the_rate_limit_drops_execs_with_their_exits_and_counts_them() {
    const RUNS: usize = 200;
    let test = "the_rate_limit_drops_execs_with_their_exits_and_counts_them";
    if !bpf_available_or_skip(test) {
        return;
    }
    let cgroup = match TestCgroup::create(test) {
        Ok(c) => c,
        Err(e) => {
            skip_or_fail(test, &format!("cannot create a cgroup v2 directory: {e}"));
            return;
        }
    };
    let config = ProcessSourceConfig {
        cgroups: vec![cgroup.relative.clone()],
        rate_limit: 20,
        ..ProcessSourceConfig::default()
    };
    let (mut collector, mut records) = load(&config);
    let procs = cgroup.path.join("cgroup.procs");
    for _ in 0..RUNS {
        let procs = procs.clone();
        let mut command = Command::new("/bin/true");
        // SAFETY: only a write(2) to a path prepared before the fork.
        unsafe {
            command.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        assert!(command.status().unwrap().success());
    }
    let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cgroup.path).unwrap());
    let events = collect_until(&mut collector, &mut records, Duration::from_secs(2), |_| false);
    let (execs, exits) = (logs(&events, EXEC).count(), logs(&events, EXIT).count());
    let throttled: u64 = collector
        .programs()
        .throttled()
        .unwrap()
        .iter()
        .filter(|(c, _)| *c == id)
        .map(|(_, n)| n)
        .sum();
    eprintln!("{execs} execs reported, {throttled} throttled, {exits} exits");
    assert_eq!(execs as u64 + throttled, RUNS as u64, "each exec reported or counted");
    assert!(throttled > 0 && execs >= 20, "the limit acted");
    assert_eq!(exits, execs, "exits of throttled execs are dropped too");
}
