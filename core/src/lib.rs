//! sonde-core: the pipeline every sonde component plugs into.
//!
//! - [`event`]: what travels — metrics, logs, profiles, spans, in batches.
//! - [`edge`]: the queues between components and the outputs that feed them.
//! - [`capability`]: Linux capabilities, as the components declare them.
//! - [`component`]: what a source, transform and sink are (tower services).
//! - [`registry`]: component types by name.
//! - [`batch_sink`]: the one tower `Service` of every sink ([`BatchSink`]).
//! - [`polling`]: the loop of sources that read their state every interval.
//! - [`config`]: HCL files → a checked pipeline, with `file:line:col` errors.
//! - [`topology`]: the running graph — queues, layers, reload, drain.
//! - [`telemetry`], [`api`]: the agent's own metrics and HTTP API.
//! - [`agent`]: the whole life of `sonde run`.
//! - [`privileges`]: keeping only the capabilities the components need.
//! - `testing` (tests, and the `test-util` feature): mock components.
//!
//! `core` knows no concrete component; the `sonde` binary registers them.
//!
//! The modules form layers, each using only those below it: `event`,
//! `capability`, `memory`, `telemetry` → `edge` → `component` → `registry`,
//! `batch_sink`, `polling` → `config` → `privileges` → `topology` → `api` → `agent`. The test
//! `core/tests/layers.rs` checks it.
// `deny`, not `forbid`: privileges::thread must call capset in every
// thread (a signal handler); nothing else may use unsafe.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod batch_sink;
pub mod buffer;
pub mod capability;
pub mod component;
pub mod config;
pub mod edge;
pub mod event;
pub mod memory;
pub mod polling;
pub mod privileges;
pub mod registry;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topology;

pub use batch_sink::{batch_sink, BatchSink};
pub use component::{
    function_transform, BoxError, ComponentInfo, ComponentKind, FunctionTransform, GlobalContext, Sink, SinkConfig,
    SinkContext, SinkError, Source, SourceConfig, SourceContext, Transform, TransformConfig, TransformContext,
};
pub use event::{Event, EventBatch, EventKind, EventKinds};
pub use registry::Registry;
/// The token that stops components (their contexts' `shutdown`) and a
/// topology's drain ([`topology::Topology::shutdown`]).
pub use tokio_util::sync::CancellationToken;
