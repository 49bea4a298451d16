//! `transform "filter"`: keeps (or drops) events by kind, name and attributes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::event::{Event, EventBatch, EventKind, EventKinds};
use sonde_core::{function_transform, BoxError, FunctionTransform, Transform, TransformConfig, TransformContext};

/// What to do with events that match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FilterAction {
    /// Keep matching events, drop the rest (default).
    #[default]
    Keep,
    /// Drop matching events, keep the rest.
    Drop,
}

/// Event kinds as written in configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    /// Metrics.
    Metric,
    /// Logs.
    Log,
    /// Profiles.
    Profile,
    /// Spans.
    Span,
}

impl From<KindName> for EventKind {
    fn from(k: KindName) -> Self {
        match k {
            KindName::Metric => EventKind::Metric,
            KindName::Log => EventKind::Log,
            KindName::Profile => EventKind::Profile,
            KindName::Span => EventKind::Span,
        }
    }
}

/// Keeps or drops events that match every given condition. An event
/// matches when its kind is in `kinds`, its name starts with one of
/// `name_prefixes`, and each of `attributes` equals the given text (numbers
/// compare by value: `"1234"` matches pid 1234). Conditions left out match
/// everything.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterTransformConfig {
    /// `keep` (default) or `drop` the matching events.
    #[serde(default)]
    pub action: FilterAction,
    /// Event kinds that match (`metric`, `log`, `profile`, `span`). Default: all.
    #[serde(default)]
    pub kinds: Option<Vec<KindName>>,
    /// Name prefixes that match (metric, log or span name; a profile's
    /// sample type). Default: any name.
    #[serde(default)]
    pub name_prefixes: Option<Vec<String>>,
    /// Attribute values that must all be equal. Default: none required.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl sonde_core::registry::TransformType for FilterTransformConfig {
    const NAME: &'static str = "filter";
}

impl TransformConfig for FilterTransformConfig {
    fn outputs(&self, input: EventKinds) -> EventKinds {
        match (&self.kinds, self.action) {
            // Keeping only some kinds emits only those.
            (Some(kinds), FilterAction::Keep) if self.name_prefixes.is_none() && self.attributes.is_empty() => {
                input.intersection(kinds.iter().map(|k| EventKind::from(*k)).collect())
            }
            (Some(kinds), FilterAction::Drop) if self.name_prefixes.is_none() && self.attributes.is_empty() => {
                input.difference(kinds.iter().map(|k| EventKind::from(*k)).collect())
            }
            _ => input,
        }
    }

    fn build(&self, _cx: &TransformContext) -> Result<Transform, BoxError> {
        Ok(function_transform(Filter::new(self)))
    }
}

/// The compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    keep_matching: bool,
    kinds: EventKinds,
    name_prefixes: Option<Vec<String>>,
    attributes: Vec<(String, String)>,
}

impl Filter {
    /// Compiles `config`.
    pub fn new(config: &FilterTransformConfig) -> Self {
        Filter {
            keep_matching: config.action == FilterAction::Keep,
            kinds: config
                .kinds
                .as_ref()
                .map_or(EventKinds::ALL, |k| k.iter().map(|k| EventKind::from(*k)).collect()),
            name_prefixes: config.name_prefixes.clone(),
            attributes: config.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// Whether `event` matches every condition.
    pub fn matches(&self, event: &Event) -> bool {
        if !self.kinds.contains(event.kind()) {
            return false;
        }
        if let Some(prefixes) = &self.name_prefixes {
            let name = event.name();
            if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                return false;
            }
        }
        let attributes = event.attributes();
        self.attributes
            .iter()
            .all(|(key, want)| attributes.get(key).is_some_and(|v| v.matches_text(want)))
    }
}

impl FunctionTransform for Filter {
    fn transform(&mut self, batch: &mut EventBatch) {
        // Check first: a batch that passes whole is not copied even if shared.
        if batch.iter().all(|e| self.matches(e) == self.keep_matching) {
            return;
        }
        batch.events_mut().retain(|e| self.matches(e) == self.keep_matching);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_core::event::{Log, Metric};

    fn config(json: serde_json::Value) -> FilterTransformConfig {
        serde_json::from_value(json).unwrap()
    }

    fn batch() -> EventBatch {
        let mut m = Metric::gauge("sonde_disk_x", 1.0);
        m.attributes.insert("process.pid", 1234u32);
        let l = Log::new("net.flow");
        vec![Event::from(m), Event::from(l)].into()
    }

    #[test]
    fn keeps_by_kind_name_and_attribute() {
        let mut f = Filter::new(&config(serde_json::json!({"kinds": ["metric"]})));
        let mut b = batch();
        f.transform(&mut b);
        assert_eq!(b.len(), 1);
        assert_eq!(b.events()[0].kind(), EventKind::Metric);

        let mut f = Filter::new(&config(serde_json::json!({"attributes": {"process.pid": "1234"}})));
        let mut b = batch();
        f.transform(&mut b);
        assert_eq!(b.len(), 1);

        let mut f = Filter::new(&config(
            serde_json::json!({"action": "drop", "name_prefixes": ["net."]}),
        ));
        let mut b = batch();
        f.transform(&mut b);
        assert_eq!(b.events()[0].name(), "sonde_disk_x");
    }

    #[test]
    fn declares_what_it_emits() {
        let c = config(serde_json::json!({"kinds": ["metric"]}));
        assert_eq!(c.outputs(EventKinds::ALL), EventKinds::METRIC);
        let c = config(serde_json::json!({"kinds": ["metric"], "attributes": {"a": "b"}}));
        assert_eq!(c.outputs(EventKinds::ALL), EventKinds::ALL);
    }
}
