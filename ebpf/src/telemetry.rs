//! The agent's own metrics about its eBPF programs: what the kernel side
//! lost, found full, or failed to read, and what user space failed to read.
//! Never silent: each program counts these in a per-CPU stats array
//! ([`StatsArray`]), and each source describes, in one table of
//! [`KernelStat`]s, which slot becomes which counter; [`LossCounters`]
//! exports them (`metrics` crate, so they show on the agent's `/metrics`
//! with the component's labels).

use aya::maps::{MapData, PerCpuArray};
use metrics::{Counter, Label};

use crate::error::{LoadError, ReadError};
use crate::loader::Object;

/// Events the kernel side saw but could not use, by `reason`
/// (`no_start`: a completion whose start was not seen;
/// `user_stack_collision`, `kernel_stack_collision`: a sampled stack whose
/// slots in the stack map and in the spill map held others;
/// `new_pid_notification`: a new process not
/// announced).
pub const LOST_EVENTS: &str = "sonde_ebpf_lost_events_total";
/// Which component (and object) loaded each of the agent's programs: a
/// gauge of 1 per program, labelled `program_id` (the kernel's id), for
/// `sonde top` to name the component beside each program.
pub const PROGRAM_INFO: &str = "sonde_ebpf_program_info";
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

/// Where a counter's running total comes from in a stats array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Total {
    /// One slot.
    Slot(u32),
    /// One slot minus the sum of others: an LRU map's inserts minus its
    /// deletes and its live entries are its evictions. Live entries are
    /// not in the array: the source counts them and appends them as extra
    /// slots ([`StatTotals::push`]). Read racily, so it is never allowed to
    /// step back.
    Difference(u32, &'static [u32]),
}

/// One `sonde_ebpf_*` counter of a source: the metric, the label that
/// tells it from the source's others, and where its total comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelStat {
    /// [`LOST_EVENTS`], [`MAP_FULL`], [`MAP_EVICTIONS`], [`STACK_SPILLS`] or [`FAILED_READS`].
    pub metric: &'static str,
    /// `("reason", "no_start")`, `("map", "disk_hists")` …; none when the metric alone says it.
    pub label: Option<(&'static str, &'static str)>,
    /// Where the total is.
    pub total: Total,
}

impl KernelStat {
    /// Events lost for `reason`, counted in `slot`.
    pub const fn lost(slot: u32, reason: &'static str) -> Self {
        KernelStat {
            metric: LOST_EVENTS,
            label: Some(("reason", reason)),
            total: Total::Slot(slot),
        }
    }

    /// Inserts refused by full map `map`, counted in `slot`.
    pub const fn map_full(slot: u32, map: &'static str) -> Self {
        KernelStat {
            metric: MAP_FULL,
            label: Some(("map", map)),
            total: Total::Slot(slot),
        }
    }

    /// Entries LRU map `map` evicted: its inserts minus the slots of
    /// `gone` (its deletes, its live entries …).
    pub const fn evictions(inserts: u32, gone: &'static [u32], map: &'static str) -> Self {
        KernelStat {
            metric: MAP_EVICTIONS,
            label: Some(("map", map)),
            total: Total::Difference(inserts, gone),
        }
    }

    /// Kernel memory the programs failed to copy (`what`: `kernel:<field>`), counted in `slot`.
    pub const fn failed_read(slot: u32, what: &'static str) -> Self {
        KernelStat {
            metric: FAILED_READS,
            label: Some(("what", what)),
            total: Total::Slot(slot),
        }
    }

    /// Stacks kept in a spill map, counted in `slot`.
    pub const fn spills(slot: u32) -> Self {
        KernelStat {
            metric: STACK_SPILLS,
            label: None,
            total: Total::Slot(slot),
        }
    }
}

/// A program's stats array, summed over CPUs: running totals since load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatTotals(Vec<u64>);

impl StatTotals {
    /// Totals from slot values (tests, or arrays read another way).
    pub fn from_slots(slots: Vec<u64>) -> Self {
        StatTotals(slots)
    }

    /// Appends an extra slot (a count user space made, such as an LRU
    /// map's live entries); returns its index.
    pub fn push(&mut self, value: u64) -> u32 {
        self.0.push(value);
        (self.0.len() - 1) as u32
    }

    /// The total of slot `slot` (0 for a slot the array does not have).
    pub fn get(&self, slot: u32) -> u64 {
        self.0.get(slot as usize).copied().unwrap_or(0)
    }

    /// The value of `total`.
    pub fn of(&self, total: Total) -> u64 {
        match total {
            Total::Slot(slot) => self.get(slot),
            Total::Difference(slot, gone) => gone
                .iter()
                .fold(self.get(slot), |left, &other| left.saturating_sub(self.get(other))),
        }
    }
}

/// The per-CPU stats array of a loaded object (`__u64` per slot per CPU):
/// what its programs lost, found full or failed to read.
pub struct StatsArray {
    object: &'static str,
    name: &'static str,
    slots: u32,
    map: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for StatsArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsArray")
            .field("object", &self.object)
            .field("map", &self.name)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl StatsArray {
    /// Takes map `name`, of `slots` slots, out of `object`.
    pub fn take(object: &mut Object, name: &'static str, slots: u32) -> Result<Self, LoadError> {
        Ok(StatsArray {
            object: object.name(),
            name,
            slots,
            map: object.take_map(name)?,
        })
    }

    /// Every slot's total, summed over CPUs.
    pub fn read(&self) -> Result<StatTotals, ReadError> {
        (0..self.slots)
            .map(|slot| {
                self.map
                    .get(&slot, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(ReadError::of(self.object, self.name))
            })
            .collect::<Result<Vec<u64>, ReadError>>()
            .map(StatTotals)
    }
}

/// The `sonde_ebpf_*` counters of one running source, from its table.
#[derive(Debug)]
pub struct LossCounters {
    counters: Vec<(Total, KernelCounter, u64)>,
    map_read_failed: Counter,
}

/// Names the component of the programs this process holds that no
/// component has claimed yet ([`PROGRAM_INFO`]). A source registers its
/// counters right after loading its object, and components are built one
/// at a time, so the unclaimed programs are the ones it just loaded.
fn claim_programs(labels: &[Label]) {
    static CLAIMED: std::sync::Mutex<std::collections::BTreeSet<u32>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let held = match held_program_ids() {
        Ok(held) => held,
        Err(error) => {
            tracing::debug!(%error, "cannot list this process' eBPF programs");
            return;
        }
    };
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    for id in held {
        if claimed.insert(id) {
            metrics::gauge!(PROGRAM_INFO, with_label(labels, "program_id", id.to_string())).set(1.0);
        }
    }
}

/// The ids of the eBPF programs this process' file descriptors hold.
fn held_program_ids() -> std::io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo")? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    Ok(ids)
}

impl LossCounters {
    /// Registers the counters of `table` for object `object` with the
    /// component's `labels`; failed reads of its maps by user space count
    /// as `what="map:<read_what>"`.
    pub fn new(labels: &[Label], object: &'static str, table: &[KernelStat], read_what: &str) -> Self {
        let labels = with_label(labels, "object", object);
        let counters = table
            .iter()
            .map(|stat| {
                let labels = match stat.label {
                    Some((key, value)) => with_label(&labels, key, value),
                    None => labels.clone(),
                };
                (stat.total, KernelCounter::new(stat.metric, labels), 0)
            })
            .collect();
        claim_programs(&labels);
        LossCounters {
            counters,
            map_read_failed: metrics::counter!(FAILED_READS, with_label(&labels, "what", format!("map:{read_what}"))),
        }
    }

    /// Exports the programs' running totals.
    pub fn observe(&mut self, totals: &StatTotals) {
        for (total, counter, seen) in &mut self.counters {
            let value = match total {
                Total::Slot(_) => totals.of(*total),
                // Derived from racing reads: never let it step back.
                Total::Difference(..) => (*seen).max(totals.of(*total)),
            };
            *seen = value;
            counter.observe(value);
        }
    }

    /// Counts a failed read of a map by user space.
    pub fn map_read_failed(&self) {
        self.map_read_failed.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// A metrics recorder that keeps every counter registered with it: what
    /// the agent's exporter would see.
    #[derive(Default)]
    struct Recording {
        counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    }

    impl Recording {
        /// `name{k="v",…}` of a key, labels sorted.
        fn id(key: &metrics::Key) -> String {
            let mut labels: Vec<String> = key.labels().map(|l| format!("{}={:?}", l.key(), l.value())).collect();
            labels.sort();
            format!("{}{{{}}}", key.name(), labels.join(","))
        }

        /// The value exported for `id`; `None` if never registered.
        fn counter(&self, id: &str) -> Option<u64> {
            self.counters.lock().unwrap().get(id).map(|c| c.load(Ordering::Relaxed))
        }
    }

    impl metrics::Recorder for Recording {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> Counter {
            let counter = Arc::clone(self.counters.lock().unwrap().entry(Self::id(key)).or_default());
            Counter::from_arc(counter)
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn follows_the_kernel_total() {
        let exported = Arc::new(AtomicU64::new(0));
        let mut c = KernelCounter {
            counter: Counter::from_arc(Arc::clone(&exported)),
            last: 0,
        };
        c.observe(5);
        c.observe(7);
        assert_eq!(exported.load(Ordering::Relaxed), 7, "the kernel's total");
        // A total below the last one: the program was reloaded and counts
        // from 0 again; the exported counter goes on from 7.
        c.observe(2);
        assert_eq!(exported.load(Ordering::Relaxed), 9);
        c.observe(2);
        assert_eq!(exported.load(Ordering::Relaxed), 9, "no increase, nothing added");
    }

    #[test]
    fn loss_counters_export_each_slot_under_its_labels() {
        let recording = Recording::default();
        let table = [KernelStat::evictions(0, &[1], "flows"), KernelStat::lost(2, "no_start")];
        let labels = [Label::new("component_id", "disk")];
        let mut counters =
            metrics::with_local_recorder(&recording, || LossCounters::new(&labels, "test", &table, "flows"));
        counters.observe(&StatTotals::from_slots(vec![10, 4, 1]));
        counters.observe(&StatTotals::from_slots(vec![12, 5, 3]));
        counters.map_read_failed();
        let evictions = r#"sonde_ebpf_map_evictions_total{component_id="disk",map="flows",object="test"}"#;
        let lost = r#"sonde_ebpf_lost_events_total{component_id="disk",object="test",reason="no_start"}"#;
        let failed = r#"sonde_ebpf_failed_reads_total{component_id="disk",object="test",what="map:flows"}"#;
        assert_eq!(
            (
                recording.counter(evictions),
                recording.counter(lost),
                recording.counter(failed)
            ),
            (Some(7), Some(3), Some(1)),
            "exported: {:?}",
            recording.counters.lock().unwrap().keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn totals_of_slots_and_differences() {
        let totals = StatTotals::from_slots(vec![5, 9, 4]);
        assert_eq!(totals.of(Total::Slot(1)), 9);
        assert_eq!(totals.of(Total::Difference(1, &[2])), 5);
        assert_eq!(totals.of(Total::Difference(1, &[2, 0])), 0);
        assert_eq!(totals.of(Total::Difference(2, &[1])), 0, "never negative");
        let mut totals = totals;
        assert_eq!(totals.push(3), 3);
        assert_eq!(totals.of(Total::Difference(1, &[3])), 6);
        assert_eq!(totals.get(7), 0, "a slot the array lacks");
    }

    #[test]
    fn a_difference_never_steps_back() {
        let table = [KernelStat::evictions(0, &[1], "flows"), KernelStat::lost(2, "no_start")];
        let mut counters = LossCounters::new(&[], "test", &table, "flows");
        counters.observe(&StatTotals::from_slots(vec![10, 4, 1]));
        counters.observe(&StatTotals::from_slots(vec![11, 7, 1]));
        assert_eq!(counters.counters[0].2, 6, "a racy read below the last one is ignored");
        assert_eq!(counters.counters[1].2, 1);
    }
}
