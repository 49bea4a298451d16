//! Exec counts per binary and cgroup, bounded: `sonde_process_execs_total`
//! (cumulative since start), and the execs the kernel refused per cgroup,
//! `sonde_process_throttled_total`.

use std::collections::HashMap;

use sonde_core::event::{keys, Attributes, Event, Metric, SharedStr, Timestamp};

/// Counter: execs reported, by `process.executable.path` and `cgroup.id`.
pub const EXECS: &str = "sonde.process.execs";
/// Counter: execs dropped by the rate limit, by `cgroup.id`.
pub const THROTTLED: &str = "sonde.process.throttled";
/// The binary under which series beyond the bound are counted.
pub const OTHER: &str = "other";

/// Exec counts, at most `max_series` (binary, cgroup) series.
#[derive(Debug)]
pub struct ExecCounts {
    counts: HashMap<(SharedStr, u64), u64>,
    max_series: usize,
}

impl ExecCounts {
    /// No counts; at most `max_series` series (one more for [`OTHER`]).
    pub fn new(max_series: usize) -> Self {
        ExecCounts {
            counts: HashMap::new(),
            max_series,
        }
    }

    /// Counts one exec of `binary` in `cgroup`.
    pub fn add(&mut self, binary: &SharedStr, cgroup: u64) {
        let key = (binary.clone(), cgroup);
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
        } else if self.counts.len() < self.max_series {
            self.counts.insert(key, 1);
        } else {
            *self.counts.entry((SharedStr::from_static(OTHER), 0)).or_default() += 1;
        }
    }

    /// Every series as a counter event, and the throttled execs per cgroup.
    pub fn events(&self, throttled: &[(u64, u64)], node: &SharedStr, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.counts.len() + throttled.len());
        for ((binary, cgroup), n) in &self.counts {
            let mut attributes = Attributes::new().with(keys::EXE, binary.clone());
            if *cgroup != 0 {
                attributes.insert(keys::CGROUP_ID, *cgroup);
            }
            out.push(Event::from(
                Metric::counter(EXECS, *n as f64)
                    .with_description("Execs reported, by binary and cgroup.")
                    .with_unit("{exec}")
                    .with_attributes(attributes.with(keys::node(), node.clone()))
                    .with_timestamp(now),
            ));
        }
        for (cgroup, n) in throttled {
            out.push(Event::from(
                Metric::counter(THROTTLED, *n as f64)
                    .with_description("Execs dropped in the kernel by the per-cgroup rate limit.")
                    .with_unit("{exec}")
                    .with_attributes(
                        Attributes::new()
                            .with(keys::CGROUP_ID, *cgroup)
                            .with(keys::node(), node.clone()),
                    )
                    .with_timestamp(now),
            ));
        }
        out
    }
}
