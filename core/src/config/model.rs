//! The loaded pipeline: the agent block, every component with its options,
//! and the options the core itself reads (`inputs`, `buffer`, `request`).

use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::diagnostic::Location;
use crate::component::ComponentKind;
use crate::event::SharedStr;
use crate::registry::AnyConfig;

/// Default address of the agent API.
pub const DEFAULT_API: &str = "127.0.0.1:8686";
/// Default time to drain in-flight events at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

fn default_api() -> Option<SocketAddr> {
    Some(DEFAULT_API.parse().expect("valid default address"))
}

const fn default_shutdown_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}

/// The `agent { }` block: settings of the agent itself.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Address of the agent API (`/health`, `/metrics` with the agent's own
    /// metrics, `/graph`). `null` turns it off. Default `127.0.0.1:8686`.
    #[serde(default = "default_api")]
    pub api: Option<SocketAddr>,
    /// This node's name, added to events as `k8s.node.name`. Default: the
    /// `NODE_NAME` environment variable, else the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// How long shutdown waits for in-flight events to reach the sinks
    /// before giving up (events still in flight are counted as dropped).
    /// Default `30s`.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_grace: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            api: default_api(),
            node_name: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Default capacity of a component's input buffer, in events.
pub const DEFAULT_BUFFER_MAX_EVENTS: usize = 10_000;

const fn default_buffer_max_events() -> usize {
    DEFAULT_BUFFER_MAX_EVENTS
}

/// What happens when a buffer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Upstream waits (backpressure reaches the sources): nothing is lost in
    /// the pipeline. eBPF sources then count what the kernel could not hand over.
    #[default]
    Block,
    /// The incoming batch is dropped and counted
    /// (`sonde_component_dropped_events_total{reason="buffer_full"}`).
    DropNewest,
}

/// The `buffer { }` block of a sink: its input queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Capacity in events. A batch larger than this is still admitted alone.
    /// Default 10000.
    #[serde(default = "default_buffer_max_events")]
    pub max_events: usize,
    /// `block` (default) or `drop_newest`.
    #[serde(default)]
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_events: DEFAULT_BUFFER_MAX_EVENTS,
            when_full: WhenFull::Block,
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

/// The `request { }` block of a sink: how batches are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Time one attempt may take before it fails as retriable. Default `30s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Batches in flight at once. 1 (default) keeps them in order.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Most batches sent per second; 0 (default) means no limit.
    #[serde(default)]
    pub rate_limit_per_second: u64,
    /// Attempts per batch before it is dropped and counted; 0 (default)
    /// retries retriable errors until shutdown, so an outage loses nothing.
    #[serde(default)]
    pub retry_max_attempts: u32,
    /// Delay before the first retry; doubles each attempt (with jitter).
    /// Default `500ms`.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_initial_backoff: Duration,
    /// Longest delay between retries. Default `30s`.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
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

/// Options the core reads from transform and sink blocks, beside the type's own.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommonOptions {
    /// Ids of the components whose output this one consumes.
    pub inputs: Vec<String>,
    /// Input queue (sinks only).
    #[serde(default)]
    pub buffer: Option<BufferConfig>,
    /// Request handling: timeout, retries, concurrency, rate (sinks only).
    #[serde(default)]
    pub request: Option<RequestConfig>,
    /// Merging of queued batches before each call (sinks only).
    #[serde(default)]
    pub batch: Option<BatchConfig>,
}

/// One input reference, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRef {
    /// The upstream component's id.
    pub id: SharedStr,
    /// Where the reference is in the config.
    pub location: Location,
}

/// One component block, parsed.
#[derive(Debug)]
pub struct ComponentConfig {
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The id.
    pub id: SharedStr,
    /// The registered type name.
    pub type_name: &'static str,
    /// Upstream components (empty for sources).
    pub inputs: Vec<InputRef>,
    /// Input queue settings (sinks; transforms use the defaults).
    pub buffer: BufferConfig,
    /// Request settings (sinks).
    pub request: RequestConfig,
    /// Batching the user asked for (sinks); `None` leaves it to the sink type's default.
    pub batch: Option<BatchConfig>,
    /// The type's own options, deserialized.
    pub options: AnyConfig,
    /// The block's evaluated body as JSON: compared on reload to find what changed.
    pub raw: serde_json::Value,
    /// Where the block starts.
    pub location: Location,
}

impl ComponentConfig {
    /// Whether a reload must rebuild this component: its type or options
    /// changed. A change of `inputs` only rewires.
    pub fn needs_rebuild(&self, other: &ComponentConfig) -> bool {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(map) = v.as_object_mut() {
                map.remove("inputs");
            }
            v
        };
        self.kind != other.kind || self.type_name != other.type_name || strip(&self.raw) != strip(&other.raw)
    }
}

/// A whole pipeline config.
#[derive(Debug, Default)]
pub struct PipelineConfig {
    /// The agent block.
    pub agent: AgentConfig,
    /// Components in file order.
    pub components: Vec<ComponentConfig>,
}

impl PipelineConfig {
    /// The component with `id`.
    pub fn component(&self, id: &str) -> Option<&ComponentConfig> {
        self.components.iter().find(|c| c.id == id)
    }
}
