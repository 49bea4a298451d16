//! pprof: Go's profile format (`profile.proto` of github.com/google/pprof),
//! which Pyroscope, `go tool pprof` and most profiling UIs read.
//!
//! [`proto`] declares the messages with prost derives (no build step, no
//! `protoc`); [`mod@encode`] turns `Profile` events into one pprof profile with
//! a deduplicated string table, and gzips it as pprof files are stored.
//! The tests decode our output with the reference `profile.proto` compiled
//! by `protoc`, so the field numbers here are checked against it.

pub mod encode;
pub mod proto;

pub use encode::{encode, gzip, EncodeOptions};
