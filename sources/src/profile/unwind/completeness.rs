//! Stack completeness: per sample, whether its user stack reached the
//! process's entry (`_start`, `__libc_start_main`, `clone3` for threads)
//! or why it stopped, counted in `sonde_profile_stacks_total{outcome}`.
//!
//! Stacks walked in BPF carry their outcome (`UNWIND_OUTCOME_*`): the
//! walker knows it reached the end when the CFI says the return address is
//! undefined, which glibc's `_start` and `clone3` declare. Stacks the
//! kernel walked by frame pointers carry none: they count as `complete`
//! when their outermost frame is named as an entry function, else as
//! `frame_pointers` (most such walks end early in code built without them).

use std::collections::{BTreeMap, HashMap};

use metrics::{Counter, Label};
use sonde_core::event::{Frame, FrameKind};

use crate::profile::bpf::{outcome_name, UNWIND_OUTCOME_COMPLETE, UNWIND_OUTCOME_COUNT, UNWIND_OUTCOME_FRAME_POINTERS};

/// Counter of samples by how their user stack ends (`outcome`).
pub const STACKS: &str = "sonde_profile_stacks_total";
/// The outcome of a stack that reached the process's entry.
pub const COMPLETE: &str = "complete";

/// The outermost functions of a whole user stack (glibc, musl).
pub const ENTRY_FUNCTIONS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "__libc_start_main_impl",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "start_thread",
];

/// The counters, and the totals since creation (tests, the bench).
pub struct Completeness {
    counters: HashMap<&'static str, Counter>,
    totals: BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for Completeness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completeness").field("totals", &self.totals).finish()
    }
}

impl Completeness {
    /// Counters labelled with `labels` (the component) and `outcome`.
    pub fn new(labels: &[Label]) -> Self {
        let counters = (0..UNWIND_OUTCOME_COUNT as u8)
            .map(outcome_name)
            .map(|outcome| {
                let mut labels = labels.to_vec();
                labels.push(Label::new("outcome", outcome));
                (outcome, metrics::counter!(STACKS, labels))
            })
            .collect();
        Completeness {
            counters,
            totals: BTreeMap::new(),
        }
    }

    /// Counts `count` samples whose user stack ended with `outcome`
    /// (`UNWIND_OUTCOME_*`) and symbolized to `frames` (leaf first).
    pub fn observe(&mut self, outcome: u8, frames: &[Frame], count: u64) {
        let name = classify(outcome, frames);
        if let Some(counter) = self.counters.get(name) {
            counter.increment(count);
        }
        *self.totals.entry(name).or_default() += count;
    }

    /// Samples by outcome since creation.
    pub fn totals(&self) -> &BTreeMap<&'static str, u64> {
        &self.totals
    }

    /// The share of samples whose stack is complete (0 without samples).
    pub fn complete_share(&self) -> f64 {
        let all: u64 = self.totals.values().sum();
        if all == 0 {
            return 0.0;
        }
        self.totals.get(COMPLETE).copied().unwrap_or(0) as f64 / all as f64
    }
}

/// The outcome name of one stack.
pub fn classify(outcome: u8, frames: &[Frame]) -> &'static str {
    if u32::from(outcome) != UNWIND_OUTCOME_FRAME_POINTERS {
        return outcome_name(outcome);
    }
    let outermost = frames.iter().rev().find(|f| f.kind != FrameKind::Kernel);
    if outermost.is_some_and(|f| ENTRY_FUNCTIONS.contains(&f.function.as_str())) {
        outcome_name(UNWIND_OUTCOME_COMPLETE as u8)
    } else {
        outcome_name(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_core::event::SharedStr;

    fn frame(name: &str, kind: FrameKind) -> Frame {
        Frame {
            function: SharedStr::from(name.to_string()),
            module: None,
            file: None,
            line: None,
            address: 1,
            kind,
        }
    }

    #[test]
    fn frame_pointer_stacks_are_complete_when_they_end_at_an_entry() {
        let whole = [
            frame("cmp", FrameKind::Native),
            frame("main", FrameKind::Native),
            frame("_start", FrameKind::Native),
        ];
        assert_eq!(classify(0, &whole), "complete");
        let cut = [frame("cmp", FrameKind::Native), frame("[unknown]", FrameKind::Unknown)];
        assert_eq!(classify(0, &cut), "frame_pointers");
        assert_eq!(classify(UNWIND_OUTCOME_COMPLETE as u8, &cut), "complete");
        assert_eq!(classify(5, &whole), "depth_limit");
        let mut c = Completeness::new(&[]);
        c.observe(0, &whole, 3);
        c.observe(0, &cut, 1);
        assert_eq!(c.complete_share(), 0.75);
    }
}
