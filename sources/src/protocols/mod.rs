//! Protocol tracing: requests and responses seen in the bytes that socket
//! syscalls (and TLS libraries) move, turned into spans and RED metrics.
//!
//! `model` is what the capture layer hands over; `engine` reassembles the
//! streams, parses the protocols and produces the events.

pub mod engine;
pub mod model;
