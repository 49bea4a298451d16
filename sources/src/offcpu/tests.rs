//! Unit tests of the conversion and the options; the kernel side is
//! tested for real in `tests/bpf_offcpu.rs`.

use sonde_core::SourceConfig;

use super::bpf::{sample_every, Drained, OffcpuKey, OffcpuValue, OFFCPU_STATE_SLEEPING, STACK_SET_BIT};
use super::collect::group;
use super::*;
use crate::profile::bpf::StackRef;

#[test]
fn probability_becomes_one_in_n() {
    assert_eq!(sample_every(0.0), 0);
    assert_eq!(sample_every(1.0), 1);
    assert_eq!(sample_every(0.1), 10);
    assert_eq!(sample_every(0.01), 100);
    assert_eq!(sample_every(0.3), 3);
}

#[test]
fn times_are_scaled_to_microsecond_units() {
    // 20 sampled sleeps of 10 ms at p = 0.1 stand for 2 s: 2,000,000 µs.
    assert_eq!(scaled_units(200_000_000, 10.0), 2_000_000);
    assert_eq!(scaled_units(400, 1.0), 0);
    assert_eq!(scaled_units(1_600, 1.0), 2);
}

#[test]
fn counts_group_by_process_and_state() {
    let key = |pid, state, user: i32| OffcpuKey {
        pid,
        state,
        user_stack_id: user,
        kernel_stack_id: -14,
        comm: *b"sleeper\0\0\0\0\0\0\0\0\0",
        ..OffcpuKey::default()
    };
    let value = |ns| OffcpuValue { total_ns: ns, count: 1 };
    let drained = Drained {
        counts: vec![
            (key(7, OFFCPU_STATE_SLEEPING, 3), value(10)),
            (key(7, OFFCPU_STATE_SLEEPING, 3), value(5)),
            (key(7, 2, 3 | STACK_SET_BIT as i32), value(1)),
            (key(8, OFFCPU_STATE_SLEEPING, -116), value(2)),
        ],
        stacks: Default::default(),
    };
    let groups = group(&drained);
    assert_eq!(groups.len(), 3);
    let sleeping = &groups[&(7, OFFCPU_STATE_SLEEPING)];
    assert_eq!(sleeping.comm, "sleeper");
    assert_eq!(sleeping.stacks[&(StackRef::Id(3), StackRef::Empty)], 15);
    let expired = &groups[&(8, OFFCPU_STATE_SLEEPING)];
    assert_eq!(expired.stacks[&(StackRef::Expired, StackRef::Empty)], 2);
}

#[test]
fn options_are_checked_by_name() {
    let config: OffcpuSourceConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.probability, DEFAULT_PROBABILITY);
    assert_eq!(config.options().sample_every, 100);
    assert!(serde_json::from_str::<OffcpuSourceConfig>(r#"{"p": 1}"#).is_err());
    let bad = OffcpuSourceConfig {
        probability: 1.5,
        max_stacks: 1,
        ..OffcpuSourceConfig::default()
    };
    let named: Vec<&str> = bad.validate().unwrap_err().iter().map(|e| e.option).collect();
    assert_eq!(named, ["probability", "max_stacks"]);
}

#[test]
fn the_tracing_frames_are_cut_from_the_leaf() {
    use sonde_core::event::{Frame, FrameKind};
    let frame = |name: &'static str, kind| Frame {
        function: name.into(),
        module: None,
        file: None,
        line: None,
        address: 0,
        kind,
    };
    let frames: std::sync::Arc<[Frame]> = vec![
        frame("bpf_prog_2c83c0c778ba2564_offcpu_switch_btf", FrameKind::Kernel),
        frame("bpf_trace_run4", FrameKind::Kernel),
        frame("__schedule", FrameKind::Kernel),
        frame("main", FrameKind::Native),
    ]
    .into();
    let cut = super::collect::without_tracing_frames(frames);
    assert_eq!(cut.len(), 2);
    assert_eq!(cut[0].function.as_str(), "__schedule");
}
