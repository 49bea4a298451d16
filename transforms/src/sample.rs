//! `transform "sample"`: keeps a fraction of events, by key, with a
//! per-key rate limit, never dropping what must be seen (errors).
//!
//! The decision for a key is a pure function of the key: the key's
//! attribute values are hashed with xxh3 and a fixed seed, and the event
//! is kept when the hash falls below `rate × 2⁶⁴`. Every event of a flow
//! (`key = ["process.pid", "remote_addr"]`) is kept or dropped together,
//! every agent on every node decides the same way, and so does the next
//! run: xxh3 is specified, unlike std's hashers.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::{Event, EventBatch, EventKind, EventKinds, Severity, SpanStatus, Value};
use sonde_core::topology::component_metrics::labels;
use sonde_core::{function_transform, BoxError, FunctionTransform, Transform, TransformConfig, TransformContext};

use crate::filter::KindName;

/// Fixed seed of the key hash: changing it changes every decision.
pub const HASH_SEED: u64 = 0x736f_6e64_6500_0001;
/// Default fraction of events kept.
pub const DEFAULT_RATE: f64 = 1.0;
/// Default bound on the keys the rate limiter tracks.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Counter: events sampled away, by `reason` (`rate`, `rate_limit`).
pub const SAMPLED_OUT: &str = "sonde_sample_dropped_events_total";
/// Counter: events kept because a never-sample condition matched.
pub const ALWAYS_KEPT: &str = "sonde_sample_always_kept_events_total";

const fn default_rate() -> f64 {
    DEFAULT_RATE
}
const fn default_true() -> bool {
    true
}
const fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}
fn default_kinds() -> Vec<KindName> {
    vec![KindName::Log, KindName::Span]
}

/// Keeps a fraction of events, deciding by a key so whole flows are kept
/// or dropped together, optionally limiting each key to a rate; errors and
/// listed attribute values are never sampled away. Metrics and profiles
/// pass through unless `kinds` lists them.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleTransformConfig {
    /// Fraction of keys (or, without `key`, of events) kept, from 0 to 1
    /// (0 keeps only errors and `always_keep`). Default 1 (keep all; only
    /// `max_per_second` limits).
    #[serde(default = "default_rate", with = "sonde_core::config::fraction")]
    #[schemars(with = "sonde_core::config::Fraction")]
    pub rate: f64,
    /// Attributes (or log/span fields) whose values make the key, e.g.
    /// `["process.pid", "remote_addr"]`. Events with the same values get
    /// the same decision, in every run and on every node. Default: none
    /// (each event decided at random).
    #[serde(default)]
    pub key: Vec<String>,
    /// Most events kept per second per key (a token bucket holding one
    /// second's worth, so bursts up to this size pass). Default: no limit.
    #[serde(default)]
    pub max_per_second: Option<f64>,
    /// Most keys the rate limiter tracks; past it, idle keys are forgotten
    /// (a forgotten key starts with a full bucket). Default 100000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Event kinds sampled; others pass through. Default `["log", "span"]`.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<KindName>,
    /// Never drop errors: logs of severity `error`, spans with an error
    /// status. Default `true`.
    #[serde(default = "default_true")]
    pub keep_errors: bool,
    /// Never drop events whose attribute (or field) has one of the listed
    /// values, e.g. `{ "http.response.status_code" = ["500", "503"] }`.
    /// Default: none.
    #[serde(default)]
    pub always_keep: BTreeMap<String, Vec<String>>,
}

impl sonde_core::registry::TransformType for SampleTransformConfig {
    const NAME: &'static str = "sample";
}

impl TransformConfig for SampleTransformConfig {
    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        if let Some(limit) = self.max_per_second {
            check.that(
                limit > 0.0 && limit.is_finite(),
                "max_per_second",
                format_args!("must be a positive number, not {limit}"),
            );
        }
        check.finish()
    }

    fn build(&self, cx: &TransformContext) -> Result<Transform, BoxError> {
        let mut sampler = Sampler::new(self);
        let labels = labels(&cx.info);
        let with_reason = |reason: &'static str| {
            let mut l = labels.clone();
            l.push(metrics::Label::new("reason", reason));
            metrics::counter!(SAMPLED_OUT, l)
        };
        sampler.metrics = Some(SampleMetrics {
            rate: with_reason("rate"),
            rate_limit: with_reason("rate_limit"),
            always_kept: metrics::counter!(ALWAYS_KEPT, labels.clone()),
        });
        Ok(function_transform(sampler))
    }
}

/// What happened to one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not a sampled kind, or chosen by the key.
    Keep,
    /// A never-sample condition matched.
    KeepAlways,
    /// Not chosen by `rate`.
    DropRate,
    /// Chosen, but its key was over `max_per_second`.
    DropRateLimit,
}

#[derive(Clone, Debug)]
struct SampleMetrics {
    rate: metrics::Counter,
    rate_limit: metrics::Counter,
    always_kept: metrics::Counter,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The compiled sampler.
#[derive(Debug)]
pub struct Sampler {
    /// Kept when the key hash is below this; `None`: keep every key.
    threshold: Option<u64>,
    key: Vec<String>,
    max_per_second: Option<f64>,
    max_keys: usize,
    buckets: HashMap<u64, Bucket>,
    kinds: EventKinds,
    keep_errors: bool,
    always_keep: Vec<(String, Vec<String>)>,
    rng: fastrand::Rng,
    buffer: Vec<u8>,
    decisions: Vec<bool>,
    metrics: Option<SampleMetrics>,
}

impl Sampler {
    /// Compiles `config`, which the config loader has validated
    /// ([`TransformConfig::validate`]).
    pub fn new(config: &SampleTransformConfig) -> Self {
        Sampler {
            // rate × 2⁶⁴, saturating; 1 keeps everything.
            threshold: (config.rate < 1.0).then_some((config.rate * 18_446_744_073_709_551_616.0) as u64),
            key: config.key.clone(),
            max_per_second: config.max_per_second,
            max_keys: config.max_keys.max(1),
            buckets: HashMap::new(),
            kinds: config.kinds.iter().map(|k| EventKind::from(*k)).collect(),
            keep_errors: config.keep_errors,
            always_keep: config.always_keep.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            rng: fastrand::Rng::new(),
            buffer: Vec::with_capacity(64),
            decisions: Vec::new(),
            metrics: None,
        }
    }

    /// The stable hash of `event`'s key; random when there is no key.
    pub fn key_hash(&mut self, event: &Event) -> u64 {
        if self.key.is_empty() {
            return self.rng.u64(..);
        }
        self.buffer.clear();
        for name in &self.key {
            match lookup(event, name) {
                None => self.buffer.push(0),
                Some(Value::Str(s)) => {
                    self.buffer.push(1);
                    self.buffer.extend_from_slice(s.as_bytes());
                }
                Some(Value::Int(i)) => {
                    self.buffer.push(2);
                    self.buffer.extend_from_slice(&i.to_le_bytes());
                }
                Some(Value::Float(f)) => {
                    self.buffer.push(3);
                    self.buffer.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                Some(Value::Bool(b)) => self.buffer.extend_from_slice(&[4, u8::from(*b)]),
            }
            // Separator: ("ab", "c") and ("a", "bc") differ.
            self.buffer.push(0xff);
        }
        xxhash_rust::xxh3::xxh3_64_with_seed(&self.buffer, HASH_SEED)
    }

    /// Decides for one event, `now` being the batch's time.
    pub fn decide(&mut self, event: &Event, now: Instant) -> Decision {
        if !self.kinds.contains(event.kind()) {
            return Decision::Keep;
        }
        if self.must_keep(event) {
            return Decision::KeepAlways;
        }
        let hash = self.key_hash(event);
        if self.threshold.is_some_and(|t| hash >= t) {
            return Decision::DropRate;
        }
        let Some(limit) = self.max_per_second else {
            return Decision::Keep;
        };
        if self.buckets.len() >= self.max_keys && !self.buckets.contains_key(&hash) {
            // Idle for a second: its bucket is full again, as if new.
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < 1.0);
            if self.buckets.len() >= self.max_keys {
                self.buckets.clear();
            }
        }
        let bucket = self.buckets.entry(hash).or_insert(Bucket {
            tokens: limit,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit).min(limit);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Keep
        } else {
            Decision::DropRateLimit
        }
    }

    fn must_keep(&self, event: &Event) -> bool {
        if self.keep_errors {
            let error = match event {
                Event::Log(l) => l.severity >= Severity::Error,
                Event::Span(s) => matches!(s.status, SpanStatus::Error { .. }),
                _ => false,
            };
            if error {
                return true;
            }
        }
        self.always_keep
            .iter()
            .any(|(name, values)| lookup(event, name).is_some_and(|v| values.iter().any(|want| v.matches_text(want))))
    }
}

/// An attribute, else a log's or span's field.
fn lookup<'a>(event: &'a Event, name: &str) -> Option<&'a Value> {
    event.attributes().get(name).or_else(|| match event {
        Event::Log(l) => l.fields.get(name),
        Event::Span(s) => s.fields.get(name),
        _ => None,
    })
}

impl FunctionTransform for Sampler {
    fn transform(&mut self, batch: &mut EventBatch) {
        let now = Instant::now();
        let mut decisions = std::mem::take(&mut self.decisions);
        decisions.clear();
        let (mut rate, mut limit, mut always) = (0u64, 0u64, 0u64);
        for event in batch.iter() {
            let decision = self.decide(event, now);
            match decision {
                Decision::DropRate => rate += 1,
                Decision::DropRateLimit => limit += 1,
                Decision::KeepAlways => always += 1,
                Decision::Keep => {}
            }
            decisions.push(matches!(decision, Decision::Keep | Decision::KeepAlways));
        }
        // Nothing dropped: leave a shared batch unshared.
        if rate + limit > 0 {
            let mut keep = decisions.iter();
            batch.events_mut().retain(|_| *keep.next().unwrap_or(&true));
        }
        if let Some(m) = &self.metrics {
            m.rate.increment(rate);
            m.rate_limit.increment(limit);
            m.always_kept.increment(always);
        }
        self.decisions = decisions;
    }
}

#[cfg(test)]
mod tests;
