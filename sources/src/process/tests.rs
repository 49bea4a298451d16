//! Unit tests of the conversion and the ancestry cache; the kernel side
//! is tested for real in `tests/bpf_process.rs`.

use std::path::Path;

use sonde_core::event::{keys, Value};

use super::ancestry::{Ancestry, Identity, Origin, Reported};
use super::events::{ancestry_json, process_log, Status, EXEC, EXEC_ID, PARENT_EXEC_ID};
use super::metrics::{ExecCounts, EXECS, OTHER};
use super::*;

fn reported(pid: u32, key_ns: u64, parent: Identity, binary: &str) -> Reported {
    Reported {
        id: Identity {
            pid,
            key_ns,
            start_ns: key_ns,
        },
        parent,
        binary: binary.to_string().into(),
        name: binary.rsplit('/').next().unwrap_or_default().to_string().into(),
        cgroup_id: 7,
    }
}

#[test]
fn exec_ids_tell_pid_reuse_and_re_execs_apart() {
    let mut cache = Ancestry::new("n".into(), 100, Path::new("/nonexistent"));
    let none = Identity::default();
    let a = cache.exec(&reported(4000, 10_000_000_000, none, "/bin/sh"));
    let b = cache.exec(&reported(4000, 20_000_000_000, none, "/bin/ls"));
    assert_ne!(a.exec_id, b.exec_id, "a second exec of the same pid");
    assert_eq!(a.exec_id.as_str(), "n:10000000000:4000");
    let gone = cache.exit(&reported(4000, 20_000_000_000, none, ""));
    assert_eq!(gone.exec_id, b.exec_id, "the exit pairs with the latest image");
    assert!(cache.get(4000).is_none());
    let reused = cache.exec(&reported(4000, 30_000_000_000, none, "/bin/true"));
    assert_ne!(reused.exec_id, b.exec_id);
}

#[test]
fn children_carry_their_chain_after_parents_exit() {
    let mut cache = Ancestry::new("n".into(), 100, Path::new("/nonexistent"));
    let root = cache.exec(&reported(10, 1_000, Identity::default(), "/sbin/init"));
    let parent_id = |p: &super::ancestry::Process| Identity {
        pid: p.pid,
        key_ns: p.key_ns,
        start_ns: p.start_ns,
    };
    let shell = cache.exec(&reported(20, 2_000, parent_id(&root), "/bin/sh"));
    let child = cache.exec(&reported(30, 3_000, parent_id(&shell), "/bin/true"));
    cache.exit(&reported(20, 2_000, parent_id(&root), ""));
    let names: Vec<&str> = child.ancestors().map(|p| p.binary.as_str()).collect();
    assert_eq!(names, ["/bin/sh", "/sbin/init"]);
    let json: serde_json::Value = serde_json::from_str(&ancestry_json(&child, 1)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "bounded by depth");
    assert_eq!(json[0]["exec_id"], shell.exec_id.as_str());
    let log = process_log(
        EXEC,
        &child,
        8,
        &"n".into(),
        sonde_core::event::Timestamp::from_nanos(1),
    );
    assert_eq!(log.fields.get(PARENT_EXEC_ID), Some(&Value::Str(shell.exec_id.clone())));
    assert_eq!(log.fields.get(EXEC_ID), Some(&Value::Str(child.exec_id.clone())));
    assert_eq!(log.attributes.get(keys::PID), Some(&Value::Int(30)));
    assert_eq!(log.attributes.get(keys::CGROUP_ID), Some(&Value::Int(7)));
}

#[test]
fn an_exit_never_seen_is_a_fork_of_its_parent_or_unknown() {
    let mut cache = Ancestry::new("n".into(), 100, Path::new("/nonexistent"));
    let shell = cache.exec(&reported(20, 2_000, Identity::default(), "/bin/sh"));
    let parent = Identity {
        pid: 20,
        key_ns: 2_000,
        start_ns: 2_000,
    };
    let sub = cache.exit(&reported(21, 2_500, parent, ""));
    assert_eq!((sub.origin, sub.binary.as_str()), (Origin::Fork, "/bin/sh"));
    assert_eq!(sub.parent.as_ref().unwrap().exec_id, shell.exec_id);
    let unknown = cache.exit(&reported(22, 0, Identity::default(), ""));
    assert_eq!(unknown.origin, Origin::Unknown);
}

#[test]
fn the_cache_is_bounded_and_counts_what_it_left_out() {
    let mut cache = Ancestry::new("n".into(), 2, Path::new("/nonexistent"));
    for pid in 1..=3 {
        cache.exec(&reported(pid, u64::from(pid), Identity::default(), "/bin/x"));
    }
    assert_eq!((cache.len(), cache.counts().full), (2, 1));
}

#[test]
fn bootstrap_reads_this_process_and_its_parents() {
    let mut cache = Ancestry::new("n".into(), 100_000, Path::new("/proc"));
    assert!(cache.bootstrap() > 1);
    let me = cache.get(std::process::id()).expect("this process is read");
    assert_eq!(me.origin, Origin::Procfs);
    assert!(me.parent.is_some(), "its parent is linked");
}

#[test]
fn wait_statuses_decode() {
    assert_eq!(Status::from_wait(3 << 8), Status::Exited(3));
    assert_eq!(Status::from_wait(9), Status::Killed { signal: 9, core: false });
    assert_eq!(Status::from_wait(0x80 | 11), Status::Killed { signal: 11, core: true });
}

#[test]
fn exec_series_are_bounded() {
    let mut counts = ExecCounts::new(2);
    for binary in ["/a", "/b", "/c", "/d", "/a"] {
        counts.add(&binary.to_string().into(), 1);
    }
    let events = counts.events(&[], &"n".into(), sonde_core::event::Timestamp::from_nanos(1));
    assert_eq!(events.len(), 3, "two series and `other`");
    let other = events
        .iter()
        .find_map(|e| match e {
            sonde_core::event::Event::Metric(m)
                if m.name.as_str() == EXECS && m.attributes.get(keys::EXE).and_then(Value::as_str) == Some(OTHER) =>
            {
                Some(m.value.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(other, sonde_core::event::MetricValue::Counter { value: 2.0 });
}

#[test]
fn config_defaults_and_checks() {
    let config: ProcessSourceConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.ancestry_depth, DEFAULT_ANCESTRY_DEPTH);
    assert!(!config.fork && config.metrics);
    assert!(serde_json::from_str::<ProcessSourceConfig>(r#"{"forks": true}"#).is_err());
    let bad = ProcessSourceConfig {
        ancestry_depth: 0,
        max_args_bytes: 5000,
        ring_buffer_bytes: 1000,
        ..ProcessSourceConfig::default()
    };
    let invalid = sonde_core::SourceConfig::validate(&bad).unwrap_err();
    let options: Vec<&str> = invalid.iter().map(|i| i.option).collect();
    assert_eq!(options, ["ancestry_depth", "max_args_bytes", "ring_buffer_bytes"]);
}
