//! Mock components and helpers for tests of the pipeline: built into core's
//! own tests, and into other crates' tests with the `test-util` feature.
//!
//! - source `"sequence"`: `count` events numbered from 0, in batches;
//! - transform `"pass"`: hands batches on unchanged;
//! - sink `"record"`: records the sequence numbers it receives, by sink id
//!   (read them with [`recorded`]), optionally slowly or logs only;
//! - sink `"flaky"`: fails its first calls, retriably or not, then records.
//!
//! Recordings are kept per sink id in one process-wide map, because sinks
//! are built from HCL and cannot be handed a handle: give every test sink
//! an id of its own.
//!
//! ```ignore
//! let registry = sonde_core::testing::registry();
//! let loaded = sonde_core::config::load_str("t.hcl", pipeline, &registry)?;
//! let topology = Topology::start(loaded.config, sonde_core::testing::global())?;
//! sonde_core::testing::run_to_end(&topology, Duration::from_secs(30)).await;
//! ```

// Test code: a poisoned lock or an event without a sequence number is a
// broken test, and a panic (not an error to handle) is the report it needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tower::util::BoxService;

use crate::batch_sink::{batch_sink, BatchSink};
use crate::component::{
    BoxError, GlobalContext, Sink, SinkConfig, SinkContext, SinkError, Source, SourceConfig, SourceContext, Transform,
    TransformConfig, TransformContext,
};
use crate::event::{Event, EventBatch, EventKinds, Log, Metric, MetricValue, Value};
use crate::registry::Registry;
use crate::telemetry::{self, InternalValue};
use crate::topology::Topology;

/// The log field, and the gauge value, that carry an event's sequence number.
pub const SEQUENCE: &str = "sequence";

/// A registry with the mock components of this module.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}

/// Adds the mock components of this module to `registry`.
pub fn register(registry: &mut Registry) {
    registry.source::<SequenceSourceConfig>();
    registry.transform::<PassTransformConfig>();
    registry.sink::<RecordSinkConfig>();
    registry.sink::<FlakySinkConfig>();
}

/// The agent-wide context tests run with (node name `test-node`).
pub fn global() -> GlobalContext {
    GlobalContext {
        node_name: "test-node".into(),
    }
}

/// The sequence number of an event made by the `sequence` source (or the
/// `demo` source of `sonde-sources`, which numbers events the same way).
pub fn sequence(event: &Event) -> u64 {
    sequence_of(event).unwrap_or_else(|| panic!("event has no sequence number: {event:?}"))
}

/// What the `record` sink records of an event that carries no sequence
/// number (an eBPF source's): the event is still counted.
pub const NO_SEQUENCE: u64 = u64::MAX;

/// The sequence number of an event, if it carries one.
pub fn sequence_of(event: &Event) -> Option<u64> {
    match event {
        Event::Log(log) => log.fields.get(SEQUENCE).and_then(Value::as_int).map(|s| s as u64),
        Event::Metric(metric) => match metric.value {
            MetricValue::Gauge { value } => Some(value as u64),
            _ => None,
        },
        _ => None,
    }
}

/// What the `record` or `flaky` sink with `id` has received so far.
pub fn recorded(id: &str) -> Vec<u64> {
    recordings()
        .lock()
        .unwrap()
        .get(id)
        .map(|log| log.lock().unwrap().clone())
        .unwrap_or_default()
}

/// The size of each call the `record` sink with `id` has received so far,
/// in order: what the sink itself saw, independent of the core's counters.
pub fn recorded_calls(id: &str) -> Vec<usize> {
    calls().lock().unwrap().get(id).cloned().unwrap_or_default()
}

type Recording = Arc<Mutex<Vec<u64>>>;

fn calls() -> &'static Mutex<HashMap<String, Vec<usize>>> {
    static CALLS: OnceLock<Mutex<HashMap<String, Vec<usize>>>> = OnceLock::new();
    CALLS.get_or_init(Default::default)
}

fn recordings() -> &'static Mutex<HashMap<String, Recording>> {
    static RECORDINGS: OnceLock<Mutex<HashMap<String, Recording>>> = OnceLock::new();
    RECORDINGS.get_or_init(Default::default)
}

fn recording(id: &str) -> Recording {
    recordings().lock().unwrap().entry(id.to_owned()).or_default().clone()
}

/// Waits until every component of `topology` has finished on its own (all
/// sources ended and their events were delivered), woken only by the
/// topology's task-ended notifications as the agent is; then shuts it down
/// and says how the shutdown ended. Panics after `timeout`.
pub async fn run_to_end(topology: Topology, timeout: Duration) -> crate::topology::Stopped {
    let task_ended = topology.task_ended();
    tokio::time::timeout(timeout, async {
        while !topology.is_finished() {
            task_ended.notified().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pipeline did not finish within {timeout:?}"));
    topology
        .shutdown(Duration::from_secs(5), tokio_util::sync::CancellationToken::new())
        .await
}

/// The sum of the agent's counter `name` for `component_id` (and `reason`,
/// when given), from the in-process metrics store.
pub fn counter(name: &str, component_id: &str, reason: Option<&str>) -> u64 {
    telemetry::install()
        .snapshot()
        .into_iter()
        .filter(|m| m.name == name)
        .filter(|m| m.labels.iter().any(|(k, v)| k == "component_id" && v == component_id))
        .filter(|m| reason.is_none_or(|r| m.labels.iter().any(|(k, v)| k == "reason" && v == r)))
        .map(|m| match m.value {
            InternalValue::Counter(c) => c,
            _ => 0,
        })
        .sum()
}

/// Which kind of event the `sequence` source makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SequenceKind {
    /// Gauges whose value is the sequence number.
    #[default]
    Metric,
    /// Logs with a `sequence` field.
    Log,
}

const fn default_count() -> u64 {
    100
}
const fn default_batch_size() -> usize {
    10
}

/// `source "sequence"`: `count` events numbered from 0, as fast as the
/// pipeline takes them, then ends.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceSourceConfig {
    /// Events in all. Default 100.
    #[serde(default = "default_count")]
    pub count: u64,
    /// Events per batch. Default 10.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `metric` (default) or `log`.
    #[serde(default)]
    pub kind: SequenceKind,
    /// When set, building fails with this message (to test failed builds).
    #[serde(default)]
    pub fail_build: Option<String>,
    /// When set, the source panics once it has sent this many events (to
    /// test a component that dies).
    #[serde(default)]
    pub panic_after: Option<u64>,
}

impl SourceConfig for SequenceSourceConfig {
    fn outputs(&self) -> EventKinds {
        match self.kind {
            SequenceKind::Metric => EventKinds::METRIC,
            SequenceKind::Log => EventKinds::LOG,
        }
    }

    fn build(&self, mut cx: SourceContext) -> Result<Source, BoxError> {
        if let Some(message) = &self.fail_build {
            return Err(message.clone().into());
        }
        let config = self.clone();
        let batch_size = config.batch_size.max(1) as u64;
        Ok(Box::pin(async move {
            let mut next = 0;
            while next < config.count {
                if config.panic_after.is_some_and(|after| next >= after) {
                    panic!("sequence source told to panic after {next} events");
                }
                let end = (next + batch_size).min(config.count);
                let events = (next..end).map(|s| sequence_event(config.kind, s)).collect();
                next = end;
                tokio::select! {
                    result = cx.out.send(EventBatch::new(events)) => result?,
                    _ = cx.shutdown.cancelled() => break,
                }
            }
            Ok(())
        }))
    }
}

fn sequence_event(kind: SequenceKind, sequence: u64) -> Event {
    match kind {
        SequenceKind::Metric => Metric::gauge("sonde_test_sequence", sequence as f64).into(),
        SequenceKind::Log => {
            let mut log = Log::new("sonde.test");
            log.fields.insert(SEQUENCE, Value::from(sequence));
            log.into()
        }
    }
}

/// `transform "pass"`: hands every batch on unchanged.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PassTransformConfig {}

impl TransformConfig for PassTransformConfig {
    fn build(&self, _: &TransformContext) -> Result<Transform, BoxError> {
        Ok(BoxService::new(tower::service_fn(|batch: EventBatch| async move {
            Ok::<_, BoxError>(batch)
        })))
    }
}

/// `sink "record"`: records the sequence numbers it receives (see [`recorded`]).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSinkConfig {
    /// Time each call takes, in milliseconds (a slow sink). Default 0.
    #[serde(default)]
    pub delay_ms: u64,
    /// Accept logs only (metrics are removed before it and counted).
    #[serde(default)]
    pub logs_only: bool,
    /// When set, the sink panics on the call that would take it past this
    /// many events (to test a sink that dies).
    #[serde(default)]
    pub panic_after: Option<u64>,
    /// When set, events whose sequence number is a multiple of it are
    /// refused as a backend's partial success would ([`SinkError::Rejected`]);
    /// the rest is recorded.
    #[serde(default)]
    pub reject_every: Option<u64>,
}

impl SinkConfig for RecordSinkConfig {
    fn accepts(&self) -> EventKinds {
        if self.logs_only {
            EventKinds::LOG
        } else {
            EventKinds::ALL
        }
    }

    fn build(&self, cx: &SinkContext) -> Result<Sink, BoxError> {
        Ok(batch_sink(RecordSink {
            id: cx.info.id.to_string(),
            log: recording(&cx.info.id),
            delay: Duration::from_millis(self.delay_ms),
            panic_after: self.panic_after,
            reject_every: self.reject_every,
        }))
    }
}

struct RecordSink {
    id: String,
    log: Recording,
    delay: Duration,
    panic_after: Option<u64>,
    reject_every: Option<u64>,
}

impl BatchSink for RecordSink {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        calls()
            .lock()
            .unwrap()
            .entry(self.id.clone())
            .or_default()
            .push(batch.len());
        let mut log = self.log.lock().unwrap();
        if let Some(after) = self.panic_after {
            if log.len() as u64 + batch.len() as u64 > after {
                drop(log);
                panic!("record sink told to panic after {after} events");
            }
        }
        let Some(every) = self.reject_every.filter(|e| *e > 0) else {
            log.extend(batch.iter().map(record_of));
            return Ok(());
        };
        let before = log.len();
        log.extend(batch.iter().map(record_of).filter(|s| s % every != 0));
        let rejected = batch.len() - (log.len() - before);
        if rejected > 0 {
            return Err(SinkError::rejected(rejected as u64, "every multiple refused"));
        }
        Ok(())
    }
}

/// What the `record` sink keeps of an event: its sequence number, or
/// [`NO_SEQUENCE`].
fn record_of(event: &Event) -> u64 {
    sequence_of(event).unwrap_or(NO_SEQUENCE)
}

/// `sink "flaky"`: fails its first `fail_first` calls, then records like
/// `record`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakySinkConfig {
    /// Calls that fail before the first success.
    pub fail_first: u32,
    /// Whether they fail permanently (the batch is dropped) or retriably.
    #[serde(default)]
    pub permanent: bool,
}

impl SinkConfig for FlakySinkConfig {
    fn accepts(&self) -> EventKinds {
        EventKinds::ALL
    }

    fn build(&self, cx: &SinkContext) -> Result<Sink, BoxError> {
        Ok(batch_sink(FlakySink {
            calls: Mutex::default(),
            fail_first: self.fail_first,
            permanent: self.permanent,
            log: recording(&cx.info.id),
        }))
    }
}

struct FlakySink {
    /// One count for every call, whichever clone of the service makes it.
    calls: Mutex<u32>,
    fail_first: u32,
    permanent: bool,
    log: Recording,
}

impl BatchSink for FlakySink {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        let failing = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls <= self.fail_first
        };
        if failing {
            return Err(if self.permanent {
                SinkError::permanent("400 bad request")
            } else {
                SinkError::retriable("503 unavailable")
            });
        }
        self.log.lock().unwrap().extend(batch.iter().map(sequence));
        Ok(())
    }
}

impl crate::registry::SourceType for SequenceSourceConfig {
    const NAME: &'static str = "sequence";
}

impl crate::registry::TransformType for PassTransformConfig {
    const NAME: &'static str = "pass";
}

impl crate::registry::SinkType for RecordSinkConfig {
    const NAME: &'static str = "record";
}

impl crate::registry::SinkType for FlakySinkConfig {
    const NAME: &'static str = "flaky";
}
