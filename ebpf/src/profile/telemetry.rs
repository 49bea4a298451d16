//! The `sonde_ebpf_*` counters of one running `profile` source: what the
//! program lost, exported from its running totals.

use metrics::Label;

use super::{ProfileStats, MAP_COUNTS, MAP_STACKS, OBJECT};
use crate::telemetry::{self, KernelCounter};

/// The loss counters of one `profile` source.
#[derive(Debug)]
pub struct ProfileTelemetry {
    user_collisions: KernelCounter,
    kernel_collisions: KernelCounter,
    stack_map_full: KernelCounter,
    counts_full: KernelCounter,
    notify_lost: KernelCounter,
    spilled: KernelCounter,
    map_read_failed: metrics::Counter,
}

impl ProfileTelemetry {
    /// Registers the counters with the component's `labels`.
    pub fn new(labels: &[Label]) -> Self {
        let labels = telemetry::with_label(labels, "object", OBJECT);
        let lost =
            |reason: &str| KernelCounter::new(telemetry::LOST_EVENTS, telemetry::with_label(&labels, "reason", reason));
        // Both sets share one name: they take turns.
        let stacks = MAP_STACKS[0].trim_end_matches("_0");
        let counts = MAP_COUNTS[0].trim_end_matches("_0");
        ProfileTelemetry {
            user_collisions: lost("user_stack_collision"),
            kernel_collisions: lost("kernel_stack_collision"),
            stack_map_full: KernelCounter::new(telemetry::MAP_FULL, telemetry::with_label(&labels, "map", stacks)),
            counts_full: KernelCounter::new(telemetry::MAP_FULL, telemetry::with_label(&labels, "map", counts)),
            notify_lost: lost("new_pid_notification"),
            spilled: KernelCounter::new(telemetry::STACK_SPILLS, labels.clone()),
            map_read_failed: metrics::counter!(
                telemetry::FAILED_READS,
                telemetry::with_label(&labels, "what", "map:counts")
            ),
        }
    }

    /// Exports the program's running totals.
    pub fn observe(&mut self, stats: &ProfileStats) {
        self.user_collisions.observe(stats.user_collisions);
        self.kernel_collisions.observe(stats.kernel_collisions);
        self.stack_map_full.observe(stats.stack_map_full);
        self.counts_full.observe(stats.counts_full);
        self.notify_lost.observe(stats.notify_lost);
        self.spilled.observe(stats.spilled);
    }

    /// Counts a failed read of a map by user space.
    pub fn map_read_failed(&self) {
        self.map_read_failed.increment(1);
    }
}
