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
///
/// A batch a sink is handed carries its [`BatchId`]: the same on every
/// retry and, behind a disk buffer, on every delivery after a restart.
/// Equality compares the events only.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct EventBatch {
    events: Arc<Vec<Event>>,
    #[serde(skip)]
    id: Option<BatchId>,
}

impl PartialEq for EventBatch {
    fn eq(&self, other: &Self) -> bool {
        self.events == other.events
    }
}

/// Which queued batches a sink call carries, for backends to recognise a
/// delivery they already have (sinks send it as the `Sonde-Batch-Id`
/// header): a run of consecutive batch numbers of one buffer, `first` to
/// `last`, and the buffer's `epoch`, which tells buffers apart (a memory
/// buffer draws one at random each time the sink starts; a disk buffer's
/// numbers live as long as its folder, and its epoch is taken from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchId {
    /// The buffer's epoch.
    pub epoch: u64,
    /// The first batch number.
    pub first: u64,
    /// The last batch number (`first` when the call carries one batch).
    pub last: u64,
}

impl BatchId {
    /// The header backends receive the identity in.
    pub const HEADER: &'static str = "sonde-batch-id";

    /// This identity widened to also cover `next` (of the same epoch).
    pub fn merged(self, next: BatchId) -> BatchId {
        BatchId {
            epoch: self.epoch,
            first: self.first.min(next.first),
            last: self.last.max(next.last),
        }
    }
}

impl std::fmt::Display for BatchId {
    /// `EPOCH:FIRST-LAST`, in hexadecimal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}:{:x}-{:x}", self.epoch, self.first, self.last)
    }
}

impl EventBatch {
    /// A batch of `events`.
    pub fn new(events: Vec<Event>) -> Self {
        EventBatch {
            events: Arc::new(events),
            id: None,
        }
    }

    /// The batch's identity, once a sink's buffer gave it one.
    pub fn id(&self) -> Option<BatchId> {
        self.id
    }

    /// Gives the batch its identity (the core does, before a sink's call).
    pub fn set_id(&mut self, id: Option<BatchId>) {
        self.id = id;
    }

    /// Appends `other`'s events; the identity widens to cover both.
    pub fn append(&mut self, other: EventBatch) {
        self.id = match (self.id, other.id) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            (a, b) => a.or(b),
        };
        if self.events.is_empty() {
            self.events = other.events;
        } else {
            self.events_mut().extend(other.into_events());
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

    #[test]
    fn appended_batches_cover_both_identities() {
        let id = |first, last| BatchId { epoch: 7, first, last };
        let mut batch = EventBatch::new(vec![Event::from(Metric::gauge("a", 1.0))]);
        batch.set_id(Some(id(4, 4)));
        let mut next = EventBatch::new(vec![Event::from(Metric::gauge("a", 2.0))]);
        next.set_id(Some(id(5, 6)));
        batch.append(next);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.id(), Some(id(4, 6)));
        assert_eq!(batch.id().unwrap().to_string(), "0000000000000007:4-6");
        // Equality is the events' alone.
        let mut same = batch.clone();
        same.set_id(None);
        assert_eq!(same, batch);
    }
}
