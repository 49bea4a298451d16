//! The options the core reads from a sink block beside the type's own:
//! `buffer { }` (its input queue), `request { }` (timeouts, retries,
//! concurrency, rate) and `batch { }` (merging queued batches).
//!
//! They live with the component traits, not with the config loader,
//! because [`SinkConfig::default_batch`](super::SinkConfig::default_batch)
//! returns a [`BatchConfig`] and the topology reads them all; the loader
//! only parses them (and re-exports them as `config::BufferConfig` etc.).

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::edge::WhenFull;

/// Default capacity of a component's input buffer, in events.
pub const DEFAULT_BUFFER_MAX_EVENTS: usize = 10_000;

/// Where a sink's buffer keeps its events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    /// In memory (default): lost when the agent stops.
    #[default]
    Memory,
    /// In segment files under `agent { data_dir }`, one folder per sink id:
    /// kept across crashes and restarts, delivered at least once.
    Disk,
}

/// Default `max_size` of a disk buffer: 256 MiB.
pub const DEFAULT_BUFFER_MAX_SIZE: u64 = 256 * 1024 * 1024;
/// The smallest `max_size` of a disk buffer: 1 MiB (eight segments of 128 KiB).
pub const MIN_BUFFER_MAX_SIZE: u64 = 1024 * 1024;

/// The `buffer { }` block of a sink: its input queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(try_from = "RawBufferConfig")]
pub struct BufferConfig {
    /// `memory` or `disk`.
    pub kind: BufferType,
    /// Capacity in events (memory buffers).
    pub max_events: usize,
    /// Capacity in bytes of segment files (disk buffers).
    pub max_size: u64,
    /// What happens when it is full.
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            kind: BufferType::Memory,
            max_events: DEFAULT_BUFFER_MAX_EVENTS,
            max_size: DEFAULT_BUFFER_MAX_SIZE,
            when_full: WhenFull::Block,
        }
    }
}

/// The `buffer { }` block as written, checked into a [`BufferConfig`].
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBufferConfig {
    /// `memory` (default) or `disk`: segment files under
    /// `agent { data_dir }`, kept across crashes and restarts.
    #[serde(default, rename = "type")]
    kind: BufferType,
    /// Capacity in events (memory buffers). A batch larger than this is
    /// still admitted alone. Default 10000.
    #[serde(default)]
    max_events: Option<usize>,
    /// Capacity in bytes of segment files (disk buffers), like `256MiB`,
    /// `1GiB` or `500MB`; at least `1MiB`. Default `256MiB`.
    #[serde(default, deserialize_with = "byte_size::deserialize_opt")]
    #[schemars(with = "Option<String>")]
    max_size: Option<u64>,
    /// `block` (default) or `drop_newest`.
    #[serde(default)]
    when_full: WhenFull,
}

impl TryFrom<RawBufferConfig> for BufferConfig {
    type Error = String;

    fn try_from(raw: RawBufferConfig) -> Result<Self, String> {
        match raw.kind {
            BufferType::Memory if raw.max_size.is_some() => Err(
                "`max_size` is the size of a disk buffer (`type = \"disk\"`); a memory buffer counts `max_events`"
                    .into(),
            ),
            BufferType::Disk if raw.max_events.is_some() => {
                Err("`max_events` is the capacity of a memory buffer; a disk buffer is sized by `max_size`".into())
            }
            _ => Ok(BufferConfig {
                kind: raw.kind,
                max_events: raw.max_events.unwrap_or(DEFAULT_BUFFER_MAX_EVENTS),
                max_size: raw.max_size.unwrap_or(DEFAULT_BUFFER_MAX_SIZE),
                when_full: raw.when_full,
            }),
        }
    }
}

/// Sizes in bytes written as text: `256MiB`, `1GiB`, `500MB`, `4096`.
pub mod byte_size {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    use super::MIN_BUFFER_MAX_SIZE;

    const UNITS: [(&str, u64); 9] = [
        ("B", 1),
        ("KB", 1000),
        ("MB", 1000 * 1000),
        ("GB", 1000 * 1000 * 1000),
        ("TB", 1000 * 1000 * 1000 * 1000),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
    ];

    /// Parses a size of at least [`MIN_BUFFER_MAX_SIZE`].
    pub fn parse(text: &str) -> Result<u64, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let unit = unit.trim();
        let units = || UNITS.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ");
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size; write it like `256MiB`, `1GiB` or `500MB`"))?;
        let scale = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, s)| *s)
                .ok_or_else(|| format!("`{text}`: unknown unit `{unit}` (use one of {})", units()))?
        };
        let bytes = number * scale as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("`{text}` is too large"));
        }
        let bytes = bytes as u64;
        if bytes < MIN_BUFFER_MAX_SIZE {
            return Err(format!("must be at least 1MiB, not {text}"));
        }
        Ok(bytes)
    }

    /// Reads an optional size (text, or a number of bytes).
    pub fn deserialize_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Size {
            Bytes(u64),
            Text(String),
        }
        match Size::deserialize(deserializer)? {
            Size::Bytes(bytes) => parse(&bytes.to_string()).map(Some).map_err(D::Error::custom),
            Size::Text(text) => parse(&text).map(Some).map_err(D::Error::custom),
        }
    }
}

/// Default time one sink request may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default first retry delay.
pub const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Default longest retry delay.
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);

const fn default_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
const fn default_concurrency() -> usize {
    1
}
const fn default_initial_backoff() -> Duration {
    DEFAULT_RETRY_INITIAL_BACKOFF
}
const fn default_max_backoff() -> Duration {
    DEFAULT_RETRY_MAX_BACKOFF
}

/// The shortest `request { timeout, retry_initial_backoff,
/// retry_max_backoff }`: below it a failing backend is retried in a busy
/// loop (a zero backoff retried at once, forever).
pub const MIN_REQUEST_DELAY: Duration = Duration::from_millis(10);

/// `#[serde(with = "request_delay")]` for the `request` block's durations:
/// humantime text of at least [`MIN_REQUEST_DELAY`].
pub mod request_delay {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    use super::MIN_REQUEST_DELAY;

    /// Parses humantime text of at least [`MIN_REQUEST_DELAY`].
    pub fn parse(text: &str) -> Result<Duration, String> {
        let duration = humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration ({e}); write it like `10s`, `500ms` or `1m`"))?;
        if duration < MIN_REQUEST_DELAY {
            return Err(format!(
                "must be at least {} (shorter retries a failing backend in a busy loop), not {text}",
                humantime::format_duration(MIN_REQUEST_DELAY)
            ));
        }
        Ok(duration)
    }

    /// Reads humantime text of at least [`MIN_REQUEST_DELAY`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    /// Writes humantime text.
    pub fn serialize<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(duration, serializer)
    }
}

/// The `request { }` block of a sink: how batches are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Time one attempt may take before it fails as retriable. At least
    /// `10ms`. Default `30s`.
    #[serde(default = "default_timeout", with = "request_delay")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Batches in flight at once. 1 (default) keeps them in order.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Most batches sent per second; 0 (default) means no limit.
    #[serde(default)]
    pub rate_limit_per_second: u64,
    /// Attempts per batch before it is dropped and counted; 0 (default)
    /// retries retriable errors until the agent stops (what is still
    /// waiting then is dropped and counted as `shutdown`).
    #[serde(default)]
    pub retry_max_attempts: u32,
    /// Delay before the first retry; doubles each attempt (with jitter).
    /// At least `10ms`. Default `500ms`.
    #[serde(default = "default_initial_backoff", with = "request_delay")]
    #[schemars(with = "String")]
    pub retry_initial_backoff: Duration,
    /// Longest delay between retries. At least `10ms`. Default `30s`.
    #[serde(default = "default_max_backoff", with = "request_delay")]
    #[schemars(with = "String")]
    pub retry_max_backoff: Duration,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            timeout: DEFAULT_REQUEST_TIMEOUT,
            concurrency: 1,
            rate_limit_per_second: 0,
            retry_max_attempts: 0,
            retry_initial_backoff: DEFAULT_RETRY_INITIAL_BACKOFF,
            retry_max_backoff: DEFAULT_RETRY_MAX_BACKOFF,
        }
    }
}

/// Default most events merged into one sink call.
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 1000;
/// Default longest wait for a batch to fill.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(1);

const fn default_batch_max_events() -> usize {
    DEFAULT_BATCH_MAX_EVENTS
}
const fn default_batch_timeout() -> Duration {
    DEFAULT_BATCH_TIMEOUT
}

/// The `batch { }` block of a sink: merge queued batches into larger sink
/// calls (fewer, bigger requests to a remote service).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Send once this many events are gathered (a batch arriving whole may
    /// exceed it; capped at the buffer's `max_events`). Default 1000.
    #[serde(default = "default_batch_max_events")]
    pub max_events: usize,
    /// Send what was gathered after this long, full or not. Default `1s`.
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: DEFAULT_BATCH_MAX_EVENTS,
            timeout: DEFAULT_BATCH_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod delay_tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(byte_size::parse("256MiB"), Ok(256 << 20));
        assert_eq!(byte_size::parse("1GiB"), Ok(1 << 30));
        assert_eq!(byte_size::parse("2 MB"), Ok(2_000_000));
        assert!(byte_size::parse("12XB").unwrap_err().contains("unknown unit"));
        assert!(byte_size::parse("lots").unwrap_err().contains("not a size"));
        assert!(byte_size::parse("1KiB").unwrap_err().contains("at least 1MiB"));
    }

    #[test]
    fn request_delays_have_a_floor() {
        assert_eq!(request_delay::parse("10ms"), Ok(Duration::from_millis(10)));
        let error = request_delay::parse("0s").unwrap_err();
        assert!(error.contains("at least 10ms"), "{error}");
    }
}
