//! The frames of a stack beside the symbolized ones: markers for stacks
//! that were not stored, and the cut of a user stack whose frame-pointer
//! walk went astray (code built without frame pointers), where runs of
//! unknown frames collapse into one.

use sonde_core::event::{Frame, FrameKind, SharedStr};

use super::bpf::StackRef;
use super::procs::Process;

/// Whether user return address `address` can be one: inside an
/// executable mapping of `process`. Unknown when its mappings were never
/// read (then every frame is unknown anyway, and collapsed into one).
pub(super) fn plausible_return(process: &Process, address: u64) -> bool {
    process.mappings.is_empty() || process.mapping(address).is_some()
}

/// Pushes an unknown user frame, unless the frame before it (from `start`,
/// where the user frames begin) is one: a run of frames that cannot be
/// named reads as one gap, not a tower.
pub(super) fn push_unknown(frames: &mut Vec<Frame>, start: usize, frame: Frame) {
    if frames.len() > start && frames.last().is_some_and(|last| last.kind == FrameKind::Unknown) {
        return;
    }
    frames.push(frame);
}

/// The frame that ends a user stack whose walk went astray.
pub(super) fn unknown_marker() -> Frame {
    named_marker(UNKNOWN_FRAME.to_string())
}

/// The name of [`unknown_marker`]'s frame.
pub const UNKNOWN_FRAME: &str = "[unknown]";

/// The frame standing for a stack that was not stored.
pub(super) fn marker(stack: StackRef, which: &str) -> Option<Frame> {
    let why = match stack {
        StackRef::Id(_) | StackRef::Empty => return None,
        StackRef::Collision => "stack map collision".to_string(),
        StackRef::MapFull => "stack map full".to_string(),
        StackRef::Expired => "stack map reset since".to_string(),
        StackRef::Error(errno) => format!("error {errno}"),
    };
    Some(named_marker(format!("[lost {which} stack: {why}]")))
}

pub(super) fn named_marker(name: String) -> Frame {
    Frame {
        function: SharedStr::from(name),
        module: None,
        file: None,
        line: None,
        address: 0,
        kind: FrameKind::Unknown,
    }
}
