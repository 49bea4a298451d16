//! [`Profile`]: stack samples of one process over a time range.

use std::sync::Arc;

use serde::Serialize;

use super::{Attributes, SharedStr, Timestamp};

/// Where a frame's code lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    /// Kernel code.
    Kernel,
    /// Native user-space code (ELF).
    Native,
    /// JIT-compiled code, named through a perf map.
    Jit,
    /// Could not be symbolized.
    Unknown,
    /// A CPython frame (a code object: function, file and line), walked
    /// from the interpreter's own frame chain.
    Python,
}

/// One symbolized stack frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Frame {
    /// Function name (demangled), or the address in hex when unknown.
    pub function: SharedStr,
    /// The binary or module that holds it (`libc.so.6`, `[kernel]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<SharedStr>,
    /// Source file, when debug info has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<SharedStr>,
    /// Source line, when debug info has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Instruction address (file offset for user code).
    pub address: u64,
    /// Kernel, native, JIT or unknown.
    pub kind: FrameKind,
}

/// One distinct stack and how often it was sampled.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StackSample {
    /// Frames, innermost (leaf) first. Shared: the same stack repeats across
    /// intervals, and symbolization caches hand out the same `Arc`.
    pub frames: Arc<[Frame]>,
    /// Number of samples with this stack.
    pub count: u64,
}

/// Stack samples of one process (or one cgroup, or the kernel) over a time range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    /// What a sample measures (`cpu`, `off_cpu`).
    pub sample_type: SharedStr,
    /// Unit of one sample's weight × period (`nanoseconds`).
    pub sample_unit: SharedStr,
    /// Time between samples, in `sample_unit` (10 101 010 ns at 99 Hz).
    pub period: u64,
    /// Start of the sampled range.
    pub start: Timestamp,
    /// End of the sampled range.
    pub end: Timestamp,
    /// Distinct stacks with their counts.
    pub samples: Vec<StackSample>,
    /// The process (pid, comm, exe) and where it runs.
    pub attributes: Attributes,
}

impl Profile {
    /// Total number of samples.
    pub fn total_samples(&self) -> u64 {
        self.samples.iter().map(|s| s.count).sum()
    }
}
