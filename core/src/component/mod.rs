//! What a component is: a config struct that builds a tower `Service`
//! (transforms, sinks) or a task pushing into one (sources).
//!
//! A component type implements [`SourceConfig`], [`TransformConfig`] or
//! [`SinkConfig`] on its serde config struct and registers it with one line
//! in its crate's `register` function (see [`crate::registry`]).

pub use function::{function_transform, FunctionTransform};
pub use invalid::{Checks, Invalid};
use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tower::util::{BoxCloneService, BoxService};

mod function;
mod invalid;
mod sink_options;

pub use sink_options::{
    byte_size, BatchConfig, BufferConfig, BufferType, RequestConfig, DEFAULT_BATCH_MAX_EVENTS, DEFAULT_BATCH_TIMEOUT,
    DEFAULT_BUFFER_MAX_EVENTS, DEFAULT_BUFFER_MAX_SIZE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_INITIAL_BACKOFF,
    DEFAULT_RETRY_MAX_BACKOFF, MIN_BUFFER_MAX_SIZE,
};

use crate::capability::CapabilitySet;
use crate::edge::Output;
use crate::event::{EventBatch, EventKinds, SharedStr};

/// Any error, boxed: what component services return to the topology.
pub type BoxError = tower::BoxError;

/// A running source: a future that produces until shutdown is signalled.
pub type Source = BoxFuture<'static, Result<(), BoxError>>;

/// A built transform.
pub type Transform = BoxService<EventBatch, EventBatch, BoxError>;

/// A built sink. Clone, because retries and concurrency need to call it again.
pub type Sink = BoxCloneService<EventBatch, (), SinkError>;

/// The three kinds of component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Produces events.
    Source,
    /// Changes, drops or adds events.
    Transform,
    /// Sends events out of the agent.
    Sink,
}

impl ComponentKind {
    /// The block keyword (`source`, `transform`, `sink`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        }
    }

    /// Every kind.
    pub const ALL: [ComponentKind; 3] = [ComponentKind::Source, ComponentKind::Transform, ComponentKind::Sink];
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a component is: used in logs and as metric labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ComponentInfo {
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The id the user gave it.
    pub id: SharedStr,
    /// Its type name (`demo`, `file`).
    pub type_name: &'static str,
}

impl fmt::Display for ComponentInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} \"{}\" \"{}\"", self.kind, self.type_name, self.id)
    }
}

/// Facts about the agent that every component may need.
#[derive(Clone, Debug)]
pub struct GlobalContext {
    /// The node's name (the `agent { node_name }` option, `NODE_NAME`, or the host name).
    pub node_name: SharedStr,
}

/// What a source is given to run.
pub struct SourceContext {
    /// Who it is.
    pub info: ComponentInfo,
    /// Agent-wide facts.
    pub global: GlobalContext,
    /// Where to push batches; `poll_ready` pends while downstream is full.
    pub out: Output,
    /// Cancelled when the source must stop: finish the current batch and return.
    pub shutdown: CancellationToken,
}

impl SourceContext {
    /// Sends `events` (nothing when empty). While the source runs, a
    /// shutdown stuck behind a full pipeline gives up on the batch and
    /// returns `Ok(false)`; once `stopping` (the last batch), it waits for
    /// the pipeline. `Ok(true)`: sent.
    pub async fn send_events(&mut self, events: Vec<crate::event::Event>, stopping: bool) -> Result<bool, BoxError> {
        if events.is_empty() {
            return Ok(true);
        }
        tokio::select! {
            result = self.out.send(EventBatch::new(events)) => result.map(|()| true),
            _ = self.shutdown.cancelled(), if !stopping => Ok(false),
        }
    }
}

/// What a transform is given to build.
pub struct TransformContext {
    /// Who it is.
    pub info: ComponentInfo,
    /// Agent-wide facts.
    pub global: GlobalContext,
}

/// What a sink is given to build.
pub struct SinkContext {
    /// Who it is.
    pub info: ComponentInfo,
    /// Agent-wide facts.
    pub global: GlobalContext,
    /// Stops background tasks (servers): cancelled once the sink's task has
    /// ended and the topology is done with it (a reload removed or rebuilt
    /// it, or the agent stops) — not merely when its inputs end, so a
    /// scrape endpoint serves until the agent stops. A sink whose
    /// destination is gone for good may cancel it itself: its task stops.
    pub shutdown: CancellationToken,
}

/// A source type's config.
pub trait SourceConfig: fmt::Debug + Send + Sync + 'static {
    /// The event kinds it emits.
    fn outputs(&self) -> EventKinds;
    /// The Linux capabilities it needs to be built (load and attach eBPF
    /// programs) and to run; the agent drops every other one once the
    /// pipeline is up (see [`crate::privileges`]). Default: none.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::EMPTY
    }
    /// Checks that no parse-time type expresses (ranges, options that
    /// contradict each other), before anything is built; runtime matters
    /// (files, the network) stay in `build`. Default: none.
    fn validate(&self) -> Result<(), Vec<Invalid>> {
        Ok(())
    }
    /// Builds the running source.
    fn build(&self, cx: SourceContext) -> Result<Source, BoxError>;
}

/// A transform type's config.
pub trait TransformConfig: fmt::Debug + Send + Sync + 'static {
    /// The event kinds it accepts; others are removed before it (and counted).
    fn accepts(&self) -> EventKinds {
        EventKinds::ALL
    }
    /// The kinds it emits when fed `input`.
    fn outputs(&self, input: EventKinds) -> EventKinds {
        input
    }
    /// The Linux capabilities it needs to be built and to run (see
    /// [`SourceConfig::capabilities`]). Default: none.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::EMPTY
    }
    /// Checks that no parse-time type expresses (ranges, options that
    /// contradict each other), before anything is built; runtime matters
    /// (files, the network) stay in `build`. Default: none.
    fn validate(&self) -> Result<(), Vec<Invalid>> {
        Ok(())
    }
    /// Builds the transform service.
    fn build(&self, cx: &TransformContext) -> Result<Transform, BoxError>;
}

/// A sink type's config.
pub trait SinkConfig: fmt::Debug + Send + Sync + 'static {
    /// The event kinds it accepts; others are removed before it (and counted).
    fn accepts(&self) -> EventKinds;
    /// Batching when the user gives no `batch { }` block: `None` (the
    /// default) calls the sink with batches as they arrive; remote sinks
    /// return a size and timeout suited to their protocol.
    fn default_batch(&self) -> Option<BatchConfig> {
        None
    }
    /// The Linux capabilities it needs to be built and to run (see
    /// [`SourceConfig::capabilities`]). Default: none.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::EMPTY
    }
    /// Checks that no parse-time type expresses (ranges, options that
    /// contradict each other), before anything is built; runtime matters
    /// (files, the network) stay in `build`. Default: none.
    fn validate(&self) -> Result<(), Vec<Invalid>> {
        Ok(())
    }
    /// Builds the sink service. Runs inside the tokio runtime, so it may spawn
    /// background tasks (a scrape server), which must end on `cx.shutdown`.
    fn build(&self, cx: &SinkContext) -> Result<Sink, BoxError>;
}

/// How a sink failed, which decides whether the core retries.
///
/// Sinks only classify; backoff, attempts and timeouts live in the core
/// retry layer so that every sink behaves the same.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Temporary (connection refused, HTTP 503/429, gRPC UNAVAILABLE): retried with backoff.
    #[error("{source}")]
    Retriable {
        /// What went wrong.
        source: BoxError,
        /// The server's requested delay (Retry-After), if any.
        retry_after: Option<Duration>,
    },
    /// Will fail again (HTTP 400, malformed data): the batch is dropped and counted.
    #[error("{source}")]
    Permanent {
        /// What went wrong.
        source: BoxError,
    },
    /// The backend accepted the batch but refused `rejected` of its events
    /// (OTLP partial success, Prometheus' cardinality guard): not retried
    /// (they would be refused again); the rest counts as delivered and
    /// these as dropped (`reason="rejected"`), so both counts are exact.
    #[error("{rejected} events rejected: {source}")]
    Rejected {
        /// Events refused.
        rejected: u64,
        /// Why.
        source: BoxError,
    },
}

impl SinkError {
    /// A retriable error.
    pub fn retriable(source: impl Into<BoxError>) -> Self {
        SinkError::Retriable {
            source: source.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        SinkError::Permanent { source: source.into() }
    }

    /// A partial success: `rejected` events refused, the rest delivered.
    pub fn rejected(rejected: u64, source: impl Into<BoxError>) -> Self {
        SinkError::Rejected {
            rejected,
            source: source.into(),
        }
    }
}
