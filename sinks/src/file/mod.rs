//! `sink "file"`: events as JSON lines in a file, rotated by size; or
//! profiles as files of their own, one per interval.
//!
//! `format = "json"` (the default): each line is one event: `kind`,
//! `timestamp` (RFC 3339, UTC, ns), `attributes`, and the kind's own fields
//! (a metric's `name` and `value`, a log's `fields` …). Lines are written
//! whole per batch, so a reader tailing the file never sees half an event;
//! a write that fails part way (a full disk) is cut off before it is
//! retried, and a file deleted or replaced behind the sink is reopened at
//! its path ([`writer`]).
//!
//! `format = "pprof" | "folded" | "flamegraph"`: `path` is a directory;
//! each profiling interval becomes one gzipped pprof file, one folded-stacks
//! file, or one flame graph SVG ([`stacks`]), and the newest is also at a
//! stable name (`flamegraph-latest.svg`).

mod config;
mod profiles;
pub mod stacks;
mod writer;

pub use config::{FileFormat, FileSinkConfig, DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES};
pub use writer::RotatingFile;

#[cfg(test)]
mod tests;
