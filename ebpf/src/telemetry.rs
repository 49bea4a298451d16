//! The agent's own metrics about its eBPF programs: what the kernel side
//! lost, found full, or failed to read, and what user space failed to read.
//! Never silent: each program counts these in a per-CPU array, and the
//! loader of each source exports them here (`metrics` crate, so they show
//! on the agent's `/metrics` with the component's labels).

use metrics::{Counter, Label};

/// Events the kernel side saw but could not use, by `reason`
/// (`no_start`: a completion whose start was not seen;
/// `user_stack_collision`, `kernel_stack_collision`: a sampled stack whose
/// slots in the stack map and in the spill map held others;
/// `new_pid_notification`: a new process not
/// announced).
pub const LOST_EVENTS: &str = "sonde_ebpf_lost_events_total";
/// Inserts a full map rejected, by `map`.
pub const MAP_FULL: &str = "sonde_ebpf_map_full_total";
/// Entries an LRU map evicted to make room (tracking lost for them), by `map`.
pub const MAP_EVICTIONS: &str = "sonde_ebpf_map_evictions_total";
/// Sampled stacks kept in a spill map because their slot in the stack map
/// held another stack: none lost, but a steady rate says `max_stacks` is
/// small for the node.
pub const STACK_SPILLS: &str = "sonde_ebpf_stack_spills_total";
/// Failed reads, by `what`: kernel memory the programs could not copy
/// (`kernel:<field>`), or maps user space could not read (`map:<name>`).
pub const FAILED_READS: &str = "sonde_ebpf_failed_reads_total";

/// `labels` plus one more.
pub fn with_label(labels: &[Label], key: &'static str, value: impl Into<String>) -> Vec<Label> {
    let mut labels = labels.to_vec();
    labels.push(Label::new(key, value.into()));
    labels
}

/// A counter that follows a running total kept in the kernel: each
/// [`KernelCounter::observe`] adds the increase since the previous one.
#[derive(Debug)]
pub struct KernelCounter {
    counter: Counter,
    last: u64,
}

impl KernelCounter {
    /// Registers counter `name` with `labels`.
    pub fn new(name: &'static str, labels: Vec<Label>) -> Self {
        KernelCounter {
            counter: metrics::counter!(name, labels),
            last: 0,
        }
    }

    /// Takes the kernel's current total.
    pub fn observe(&mut self, total: u64) {
        // A total below the last one means the program was reloaded.
        let increase = total.checked_sub(self.last).unwrap_or(total);
        if increase > 0 {
            self.counter.increment(increase);
        }
        self.last = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_kernel_total() {
        let mut c = KernelCounter {
            counter: Counter::noop(),
            last: 0,
        };
        c.observe(5);
        c.observe(7);
        assert_eq!(c.last, 7);
        c.observe(2);
        assert_eq!(c.last, 2);
    }
}
