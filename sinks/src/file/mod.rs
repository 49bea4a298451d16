//! `sink "file"`: events as JSON lines in a file, rotated by size.
//!
//! Each line is one event: `kind`, `timestamp` (RFC 3339, UTC, ns),
//! `attributes`, and the kind's own fields (a metric's `name` and `value`,
//! a log's `fields` …). Lines are written whole per batch, so a reader
//! tailing the file never sees half an event.

mod config;
mod writer;

pub use config::{FileSinkConfig, DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES};
pub use writer::RotatingFile;

#[cfg(test)]
mod tests;
