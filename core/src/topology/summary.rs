//! The account `sonde run` gives when it stops: per component, what it
//! passed on or delivered and what it dropped, by reason, read from the
//! agent's own counters (so it agrees with `/metrics` to the event).

use std::collections::BTreeMap;
use std::fmt;

use super::component_metrics::{DropReason, DROPPED_EVENTS, SENT_EVENTS};
use crate::telemetry::{InternalMetric, InternalValue};

/// What one component did over the agent's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentAccount {
    /// `source`, `transform` or `sink`.
    pub kind: String,
    /// Its type.
    pub type_name: String,
    /// Its id.
    pub id: String,
    /// Events passed on (sources, transforms) or delivered (sinks).
    pub sent: u64,
    /// Events dropped, by reason (only reasons with drops).
    pub dropped: BTreeMap<String, u64>,
}

impl ComponentAccount {
    /// Events it dropped, every reason together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Events a sink had accepted and then lost: those dropped for an
    /// error or by a stop that could not wait.
    pub fn lost(&self) -> u64 {
        [DropReason::Error, DropReason::Shutdown]
            .iter()
            .map(|r| self.dropped.get(r.as_str()).copied().unwrap_or(0))
            .sum()
    }
}

impl fmt::Display for ComponentAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.kind == "sink" { "delivered" } else { "passed on" };
        write!(
            f,
            "{} \"{}\" \"{}\": {verb} {}",
            self.kind, self.type_name, self.id, self.sent
        )?;
        if !self.dropped.is_empty() {
            let reasons: Vec<String> = self.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            write!(f, ", dropped {} ({})", self.dropped_total(), reasons.join(", "))?;
        }
        Ok(())
    }
}

/// Every component's account, in kind then id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// One per component that ever ran.
    pub components: Vec<ComponentAccount>,
}

impl Summary {
    /// The account in `snapshot` (the agent's metrics).
    pub fn from_metrics(snapshot: &[InternalMetric]) -> Self {
        let mut by_component: BTreeMap<(String, String, String), ComponentAccount> = BTreeMap::new();
        for metric in snapshot {
            let InternalValue::Counter(value) = metric.value else {
                continue;
            };
            if metric.name != SENT_EVENTS && metric.name != DROPPED_EVENTS {
                continue;
            }
            let label = |key: &str| {
                metric
                    .labels
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let (kind, type_name, id) = (label("component_kind"), label("component_type"), label("component_id"));
            let account = by_component
                .entry((kind_order(&kind), id.clone(), type_name.clone()))
                .or_insert_with(|| ComponentAccount {
                    kind,
                    type_name,
                    id,
                    ..ComponentAccount::default()
                });
            if metric.name == SENT_EVENTS {
                account.sent += value;
            } else if value > 0 {
                *account.dropped.entry(label("reason")).or_default() += value;
            }
        }
        Summary {
            components: by_component.into_values().collect(),
        }
    }

    /// Events dropped anywhere, for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.components.iter().map(ComponentAccount::dropped_total).sum()
    }

    /// Events accepted by a sink and lost (see [`ComponentAccount::lost`]).
    pub fn lost(&self) -> u64 {
        self.components.iter().map(ComponentAccount::lost).sum()
    }

    /// Logs one line per component (an error for one that dropped events).
    pub fn log(&self) {
        for account in &self.components {
            if account.dropped.is_empty() {
                tracing::info!("{account}");
            } else {
                tracing::error!("{account}");
            }
        }
    }
}

/// Sources first, then transforms, then sinks: the order events flow.
fn kind_order(kind: &str) -> String {
    match kind {
        "source" => "0",
        "transform" => "1",
        _ => "2",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(name: &str, kind: &str, id: &str, reason: Option<&str>, value: u64) -> InternalMetric {
        let mut labels = vec![
            ("component_kind".to_string(), kind.to_string()),
            ("component_id".to_string(), id.to_string()),
            ("component_type".to_string(), "t".to_string()),
        ];
        if let Some(reason) = reason {
            labels.push(("reason".to_string(), reason.to_string()));
        }
        InternalMetric {
            name: name.to_string(),
            labels,
            description: None,
            value: InternalValue::Counter(value),
        }
    }

    #[test]
    fn accounts_sum_the_counters_by_component_and_reason() {
        let snapshot = vec![
            counter(SENT_EVENTS, "sink", "out", None, 70),
            counter(DROPPED_EVENTS, "sink", "out", Some("error"), 20),
            counter(DROPPED_EVENTS, "sink", "out", Some("shutdown"), 7),
            counter(DROPPED_EVENTS, "sink", "out", Some("buffer_full"), 3),
            counter(DROPPED_EVENTS, "sink", "out", Some("unsupported_kind"), 0),
            counter(SENT_EVENTS, "source", "gen", None, 100),
        ];
        let summary = Summary::from_metrics(&snapshot);
        assert_eq!(summary.components.len(), 2);
        assert_eq!(summary.components[0].to_string(), "source \"t\" \"gen\": passed on 100");
        assert_eq!(
            summary.components[1].to_string(),
            "sink \"t\" \"out\": delivered 70, dropped 30 (buffer_full 3, error 20, shutdown 7)"
        );
        assert_eq!(summary.dropped_total(), 30);
        // A full drop_newest buffer is the configured behaviour, not a loss.
        assert_eq!(summary.lost(), 27);
    }
}
