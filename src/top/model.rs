//! What `sonde top` shows, computed from two polls of the agent's
//! `/stats` (rates are the difference over the time between them), with
//! its sorting and filtering.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;

/// `/stats`, as the agent sends it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Stats {
    /// The agent's pid (for its eBPF programs).
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_seconds: f64,
    /// Every running component.
    pub components: Vec<ComponentStats>,
    /// The eBPF sources' own counters.
    #[serde(default)]
    pub ebpf: Vec<EbpfStat>,
}

/// One component's counters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComponentStats {
    /// Its id.
    pub id: String,
    /// source, transform, sink.
    pub kind: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Events it took in.
    pub received_events: u64,
    /// Events it passed on or delivered.
    pub sent_events: u64,
    /// Dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Failed calls.
    pub errors: u64,
    /// Events in its input buffer.
    pub buffer_events: u64,
    /// Its buffer's size.
    pub buffer_max: Option<u64>,
}

/// One eBPF counter.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EbpfStat {
    /// The source.
    pub component_id: String,
    /// The counter (`sonde_ebpf_lost_events_total` …).
    pub name: String,
    /// Its labels (other than the component's).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: u64,
}

/// Which component loaded each eBPF program (by kernel id), from the
/// agent's `sonde_ebpf_program_info`.
pub fn program_owners(stats: &Stats) -> std::collections::HashMap<u32, String> {
    stats
        .ebpf
        .iter()
        .filter(|e| e.name == "sonde_ebpf_program_info")
        .filter_map(|e| Some((e.labels.get("program_id")?.parse().ok()?, e.component_id.clone())))
        .collect()
}

/// A poll and when it was taken.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When.
    pub at: Instant,
    /// What.
    pub stats: Stats,
}

/// One line of the components table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Type.
    pub type_name: String,
    /// Events in a second (None until two polls).
    pub in_rate: Option<f64>,
    /// Events out a second.
    pub out_rate: Option<f64>,
    /// Events out in all.
    pub sent: u64,
    /// Dropped in all, and by reason.
    pub dropped: u64,
    /// `reason n, …`.
    pub dropped_why: String,
    /// Errors in all.
    pub errors: u64,
    /// Buffer fill, 0..=1.
    pub buffer_fill: Option<f64>,
    /// `n/max`.
    pub buffer: String,
    /// What the kernel side lost (eBPF sources): lost events and full maps.
    pub kernel_lost: u64,
}

/// The columns `s` cycles through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Config order.
    Pipeline,
    /// Events out a second.
    OutRate,
    /// Events in a second.
    InRate,
    /// Drops.
    Dropped,
    /// Errors.
    Errors,
    /// Buffer fill.
    Buffer,
    /// Id.
    Id,
}

impl SortBy {
    /// The next one.
    pub fn next(self) -> Self {
        match self {
            SortBy::Pipeline => SortBy::OutRate,
            SortBy::OutRate => SortBy::InRate,
            SortBy::InRate => SortBy::Dropped,
            SortBy::Dropped => SortBy::Errors,
            SortBy::Errors => SortBy::Buffer,
            SortBy::Buffer => SortBy::Id,
            SortBy::Id => SortBy::Pipeline,
        }
    }

    /// Its name in the header.
    pub fn name(self) -> &'static str {
        match self {
            SortBy::Pipeline => "pipeline order",
            SortBy::OutRate => "out/s",
            SortBy::InRate => "in/s",
            SortBy::Dropped => "dropped",
            SortBy::Errors => "errors",
            SortBy::Buffer => "buffer",
            SortBy::Id => "id",
        }
    }
}

fn rate(now: u64, before: Option<u64>, seconds: f64) -> Option<f64> {
    let before = before?;
    (seconds > 0.0).then(|| now.saturating_sub(before) as f64 / seconds)
}

/// The rows of `now`, with rates against `before`.
pub fn rows(now: &Sample, before: Option<&Sample>) -> Vec<Row> {
    let seconds = before.map(|b| now.at.duration_since(b.at).as_secs_f64()).unwrap_or(0.0);
    now.stats
        .components
        .iter()
        .map(|c| {
            let old = before.and_then(|b| b.stats.components.iter().find(|o| o.id == c.id));
            let dropped = c.dropped.values().sum();
            let kernel_lost = now
                .stats
                .ebpf
                .iter()
                .filter(|e| e.component_id == c.id)
                .filter(|e| e.name.contains("lost") || e.name.contains("map_full"))
                .map(|e| e.value)
                .sum();
            Row {
                id: c.id.clone(),
                kind: c.kind.clone(),
                type_name: c.type_name.clone(),
                in_rate: (c.kind != "source")
                    .then(|| rate(c.received_events, old.map(|o| o.received_events), seconds))
                    .flatten(),
                out_rate: rate(c.sent_events, old.map(|o| o.sent_events), seconds),
                sent: c.sent_events,
                dropped,
                dropped_why: c
                    .dropped
                    .iter()
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                errors: c.errors,
                buffer_fill: c
                    .buffer_max
                    .filter(|m| *m > 0)
                    .map(|m| c.buffer_events as f64 / m as f64),
                buffer: c
                    .buffer_max
                    .map(|m| format!("{}/{m}", c.buffer_events))
                    .unwrap_or_default(),
                kernel_lost,
            }
        })
        .collect()
}

/// Keeps the rows whose id or type contains `filter`, sorted by `by`
/// (largest first but for ids and pipeline order), reversed on `reverse`.
pub fn arrange(mut rows: Vec<Row>, by: SortBy, reverse: bool, filter: &str) -> Vec<Row> {
    if !filter.is_empty() {
        rows.retain(|r| r.id.contains(filter) || r.type_name.contains(filter) || r.kind.contains(filter));
    }
    let key = |r: &Row| -> f64 {
        match by {
            SortBy::OutRate => r.out_rate.unwrap_or(0.0),
            SortBy::InRate => r.in_rate.unwrap_or(0.0),
            SortBy::Dropped => r.dropped as f64,
            SortBy::Errors => r.errors as f64,
            SortBy::Buffer => r.buffer_fill.unwrap_or(0.0),
            SortBy::Pipeline | SortBy::Id => 0.0,
        }
    };
    match by {
        SortBy::Pipeline => {}
        SortBy::Id => rows.sort_by(|a, b| a.id.cmp(&b.id)),
        _ => rows.sort_by(|a, b| key(b).total_cmp(&key(a))),
    }
    if reverse {
        rows.reverse();
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, sent: u64) -> Sample {
        Sample {
            at,
            stats: Stats {
                components: vec![
                    ComponentStats {
                        id: "gen".into(),
                        kind: "source".into(),
                        sent_events: sent,
                        ..ComponentStats::default()
                    },
                    ComponentStats {
                        id: "out".into(),
                        kind: "sink".into(),
                        received_events: sent,
                        errors: 2,
                        buffer_events: 5,
                        buffer_max: Some(10),
                        ..ComponentStats::default()
                    },
                ],
                ..Stats::default()
            },
        }
    }

    #[test]
    fn rates_come_from_two_polls() {
        let t0 = Instant::now();
        let before = sample(t0, 100);
        let now = sample(t0 + std::time::Duration::from_secs(2), 300);
        let rows = rows(&now, Some(&before));
        assert_eq!(rows[0].out_rate, Some(100.0));
        assert_eq!(rows[0].in_rate, None, "a source takes nothing in");
        assert_eq!(rows[1].in_rate, Some(100.0));
        assert_eq!(rows[1].buffer_fill, Some(0.5));
        let sorted = arrange(rows.clone(), SortBy::Errors, false, "");
        assert_eq!(sorted[0].id, "out");
        assert_eq!(arrange(rows, SortBy::Pipeline, false, "ge").len(), 1);
    }
}
