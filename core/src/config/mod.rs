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
pub use values::{fraction, http_url, positive_duration, Checks, Fraction, HttpUrl, Invalid, PositiveDuration};
