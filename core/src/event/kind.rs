//! [`EventKind`] and [`EventKinds`]: the four kinds of event, and sets of
//! them as one byte, which is how components declare what they accept and
//! emit and how the config checks that connected components agree.

use std::fmt;

use serde::Serialize;

/// The four kinds of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// [`Metric`](super::Metric).
    Metric,
    /// [`Log`](super::Log).
    Log,
    /// [`Profile`](super::Profile).
    Profile,
    /// [`Span`](super::Span).
    Span,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 4] = [EventKind::Metric, EventKind::Log, EventKind::Profile, EventKind::Span];

    /// The lowercase name used in configs (`kinds = ["metric"]`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Metric => "metric",
            EventKind::Log => "log",
            EventKind::Profile => "profile",
            EventKind::Span => "span",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of event kinds: what a component accepts or emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventKinds(u8);

impl EventKinds {
    /// No kind.
    pub const NONE: EventKinds = EventKinds(0);
    /// Every kind.
    pub const ALL: EventKinds = EventKinds(0b1111);
    /// Metrics only.
    pub const METRIC: EventKinds = EventKinds(EventKind::Metric.bit());
    /// Logs only.
    pub const LOG: EventKinds = EventKinds(EventKind::Log.bit());
    /// Profiles only.
    pub const PROFILE: EventKinds = EventKinds(EventKind::Profile.bit());
    /// Spans only.
    pub const SPAN: EventKinds = EventKinds(EventKind::Span.bit());

    /// The union of two sets.
    pub const fn union(self, other: EventKinds) -> EventKinds {
        EventKinds(self.0 | other.0)
    }

    /// The kinds in both sets.
    pub const fn intersection(self, other: EventKinds) -> EventKinds {
        EventKinds(self.0 & other.0)
    }

    /// The kinds in `self` that are not in `other`.
    pub const fn difference(self, other: EventKinds) -> EventKinds {
        EventKinds(self.0 & !other.0)
    }

    /// Whether the set holds `kind`.
    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds, in [`EventKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl From<EventKind> for EventKinds {
    fn from(kind: EventKind) -> Self {
        EventKinds(kind.bit())
    }
}

impl FromIterator<EventKind> for EventKinds {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> Self {
        iter.into_iter().fold(EventKinds::NONE, |set, k| set.union(k.into()))
    }
}

impl fmt::Display for EventKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(EventKind::as_str).collect();
        if names.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

impl Serialize for EventKinds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_sets() {
        let set = EventKinds::METRIC.union(EventKinds::LOG);
        assert!(set.contains(EventKind::Log));
        assert!(!set.contains(EventKind::Profile));
        assert_eq!(set.difference(EventKinds::METRIC), EventKinds::LOG);
        assert_eq!(set.to_string(), "metric, log");
        assert_eq!(EventKinds::ALL.iter().count(), 4);
    }
}
