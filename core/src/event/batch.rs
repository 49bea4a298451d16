//! [`EventBatch`]: the unit that moves between components.

use std::sync::Arc;

use serde::Serialize;

use super::Event;

/// A batch of events, shared copy-on-write.
///
/// Sharing makes the fan-out to several consumers and the retry layer's
/// kept copy an atomic increment instead of a deep clone; a transform that
/// changes events calls [`EventBatch::events_mut`], which copies only when
/// another consumer still holds the same batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct EventBatch {
    events: Arc<Vec<Event>>,
}

impl EventBatch {
    /// A batch of `events`.
    pub fn new(events: Vec<Event>) -> Self {
        EventBatch {
            events: Arc::new(events),
        }
    }

    /// The events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events, mutable; copies them first if the batch is shared.
    pub fn events_mut(&mut self) -> &mut Vec<Event> {
        Arc::make_mut(&mut self.events)
    }

    /// Takes the events out, copying only if the batch is shared.
    pub fn into_events(self) -> Vec<Event> {
        Arc::try_unwrap(self.events).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Iterates over the events.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.events.iter()
    }
}

impl From<Vec<Event>> for EventBatch {
    fn from(events: Vec<Event>) -> Self {
        EventBatch::new(events)
    }
}

impl From<Event> for EventBatch {
    fn from(event: Event) -> Self {
        EventBatch::new(vec![event])
    }
}

impl FromIterator<Event> for EventBatch {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> Self {
        EventBatch::new(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a EventBatch {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Metric;

    #[test]
    fn shared_batches_copy_on_write() {
        let a = EventBatch::new(vec![Metric::gauge("x", 1.0).into()]);
        let mut b = a.clone();
        b.events_mut().clear();
        assert_eq!(a.len(), 1);
        assert!(b.is_empty());
    }
}
