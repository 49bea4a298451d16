//! Pipeline configuration: HCL files → checked [`PipelineConfig`].
//!
//! ```hcl
//! agent { api = "127.0.0.1:8686" }
//! source "demo" "gen" { rate = 100 }
//! sink "file" "out" {
//!   inputs = ["gen"]
//!   path   = "${env("HOME", "/tmp")}/sonde.jsonl"
//! }
//! ```
//!
//! Every mistake is collected in one pass and reported with `file:line:col`
//! and, for a misspelt name, the nearest valid one ([`Diagnostic`]).

mod diagnostic;
mod eval;
pub mod graph;
mod load;
mod model;
mod names;
mod values;

pub use diagnostic::{did_you_mean, ConfigError, Diagnostic, DiagnosticKind, Location, Severity, SourceMap};
pub use load::{load_file, load_str, Loaded};
pub use model::*;

// The sink options are defined with the component traits (a sink type's
// `default_batch` returns one) and the queue policy with the queue; the
// config is where users write them, so they are found here too.
pub use crate::component::{
    BatchConfig, BufferConfig, BufferType, RequestConfig, DEFAULT_BATCH_MAX_EVENTS, DEFAULT_BATCH_TIMEOUT,
    DEFAULT_BUFFER_MAX_EVENTS, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_INITIAL_BACKOFF, DEFAULT_RETRY_MAX_BACKOFF,
};
pub use crate::component::{Checks, Invalid};
pub use crate::edge::WhenFull;
pub use values::{fraction, http_url, interval, positive_duration, Fraction, HttpUrl, PositiveDuration, MIN_INTERVAL};
