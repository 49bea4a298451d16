//! Taps: copies of the batches leaving a component, for `sonde tap` and
//! the graph page, that never slow the pipeline.
//!
//! Every source and transform's [`OutputSlot`](super::OutputSlot) holds the
//! [`TapPoint`] of its component id. With nobody tapping, [`TapPoint::offer`]
//! is one relaxed atomic load. A [`Subscription`] gets each batch through a
//! bounded channel with `try_send`: a reader that falls behind loses batches
//! of its own, counted ([`Subscription::lost`]), and the producer never
//! waits. A batch is shared (an atomic increment), not copied.
//!
//! Tap points are kept by id ([`Taps`]) across reloads, so a tap follows a
//! component that a reload rebuilds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::event::{EventBatch, EventKind, SharedStr};

/// Batches a subscription holds before it starts losing them: enough for a
/// reader that is busy for a moment, small enough that a stuck one holds
/// little memory (batches are shared with the pipeline, not copied).
pub const TAP_CHANNEL_BATCHES: usize = 64;

/// A batch as a reader gets it: which component it left, and the events.
pub type Tapped = (SharedStr, EventBatch);

/// One reader, of one or several tap points.
#[derive(Debug)]
struct Subscriber {
    sender: mpsc::Sender<Tapped>,
    lost: AtomicU64,
}

/// Where the batches of one component can be tapped.
#[derive(Debug, Default)]
pub struct TapPoint {
    /// The component's id.
    id: SharedStr,
    /// Whether `offer` has anything to do: a subscriber, or profiles to keep.
    active: AtomicBool,
    subscribers: ArcSwap<Vec<Arc<Subscriber>>>,
    /// Set for sources that emit profiles: the newest batch with a profile
    /// is kept (for the graph page's flame graph). Profiles come once per
    /// interval, so this costs a lock per interval.
    keep_profiles: AtomicBool,
    latest_profiles: Mutex<Option<EventBatch>>,
}

impl TapPoint {
    /// Offers a batch that left the component to its readers; never waits.
    #[inline]
    pub fn offer(&self, batch: &EventBatch) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        self.offer_slow(batch);
    }

    #[cold]
    fn offer_slow(&self, batch: &EventBatch) {
        for subscriber in self.subscribers.load().iter() {
            if let Err(mpsc::error::TrySendError::Full((_, lost))) =
                subscriber.sender.try_send((self.id.clone(), batch.clone()))
            {
                subscriber.lost.fetch_add(lost.len() as u64, Ordering::Relaxed);
            }
        }
        if self.keep_profiles.load(Ordering::Relaxed) && batch.iter().any(|e| e.kind() == EventKind::Profile) {
            *self.latest_profiles.lock().unwrap_or_else(|e| e.into_inner()) = Some(batch.clone());
        }
    }

    /// Keeps the newest batch holding a profile from now on.
    pub fn keep_profiles(&self) {
        self.keep_profiles.store(true, Ordering::Relaxed);
        self.update_active();
    }

    /// The newest batch with a profile, if profiles are kept and one came.
    pub fn latest_profiles(&self) -> Option<EventBatch> {
        self.latest_profiles.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether profiles are kept here (a source that emits them).
    pub fn keeps_profiles(&self) -> bool {
        self.keep_profiles.load(Ordering::Relaxed)
    }

    fn update_active(&self) {
        let active = self.keep_profiles.load(Ordering::Relaxed) || !self.subscribers.load().is_empty();
        self.active.store(active, Ordering::Relaxed);
    }

    /// The point of component `id`.
    pub fn new(id: SharedStr) -> Self {
        TapPoint {
            id,
            ..TapPoint::default()
        }
    }

    /// The component's id.
    pub fn id(&self) -> &SharedStr {
        &self.id
    }

    fn add(&self, subscriber: &Arc<Subscriber>) {
        self.subscribers.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(subscriber.clone());
            list
        });
        self.update_active();
    }

    fn unsubscribe(&self, subscriber: &Arc<Subscriber>) {
        self.subscribers.rcu(|list| {
            list.iter()
                .filter(|s| !Arc::ptr_eq(s, subscriber))
                .cloned()
                .collect::<Vec<_>>()
        });
        self.update_active();
    }

    /// Number of readers now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load().len()
    }
}

/// A reader's end of a tap of one or more points: batches in the order
/// each point sent them, and how many events it lost. Dropping it stops
/// the tap.
#[derive(Debug)]
pub struct Subscription {
    points: Vec<Arc<TapPoint>>,
    subscriber: Arc<Subscriber>,
    receiver: mpsc::Receiver<Tapped>,
}

impl Subscription {
    /// Taps `points`, losing batches past `capacity` waiting ones.
    pub fn new(points: Vec<Arc<TapPoint>>, capacity: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let subscriber = Arc::new(Subscriber {
            sender,
            lost: AtomicU64::new(0),
        });
        for point in &points {
            point.add(&subscriber);
        }
        Subscription {
            points,
            subscriber,
            receiver,
        }
    }

    /// The next batch (waits; never ends while subscribed).
    pub async fn recv(&mut self) -> Option<Tapped> {
        self.receiver.recv().await
    }

    /// The next batch if one is there.
    pub fn try_recv(&mut self) -> Option<Tapped> {
        self.receiver.try_recv().ok()
    }

    /// Events lost so far because this reader had fallen behind.
    pub fn lost(&self) -> u64 {
        self.subscriber.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for point in &self.points {
            point.unsubscribe(&self.subscriber);
        }
    }
}

/// Every tap point, by component id; shared by the topology and the API.
#[derive(Clone, Debug, Default)]
pub struct Taps {
    points: Arc<Mutex<HashMap<SharedStr, Arc<TapPoint>>>>,
}

impl Taps {
    /// The tap point of component `id`, made on first use. Points are never
    /// removed: a component id that comes back after a reload keeps its
    /// readers.
    pub fn point(&self, id: &SharedStr) -> Arc<TapPoint> {
        self.points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_insert_with(|| Arc::new(TapPoint::new(id.clone())))
            .clone()
    }

    /// The point of `id` if one was made.
    pub fn get(&self, id: &str) -> Option<Arc<TapPoint>> {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Metric;

    fn batch(n: usize) -> EventBatch {
        (0..n).map(|i| Metric::gauge("x", i as f64).into()).collect()
    }

    #[test]
    fn a_slow_reader_loses_its_own_batches_and_counts_them() {
        let point = Arc::new(TapPoint::new("p".into()));
        point.offer(&batch(3)); // nobody listens: nothing to do
        let mut sub = Subscription::new(vec![point.clone()], 2);
        for _ in 0..5 {
            point.offer(&batch(10));
        }
        assert_eq!(sub.lost(), 30, "3 batches of 10 did not fit in 2");
        assert_eq!(sub.try_recv().map(|(id, b)| (id, b.len())), Some(("p".into(), 10)));
        assert_eq!(sub.try_recv().map(|(_, b)| b.len()), Some(10));
        assert!(sub.try_recv().is_none());
        drop(sub);
        assert_eq!(point.subscribers(), 0);
        assert!(!point.active.load(Ordering::Relaxed));
    }

    #[test]
    fn points_outlive_reloads_by_id() {
        let taps = Taps::default();
        let a = taps.point(&"a".into());
        let _sub = Subscription::new(vec![a], 1);
        assert_eq!(taps.point(&"a".into()).subscribers(), 1);
        assert!(taps.get("b").is_none());
    }
}
