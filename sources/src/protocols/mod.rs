//! `protocols`: requests seen from the syscalls that move socket data (and
//! from TLS libraries), turned into spans, RED metrics and a service graph.
//!
//! ```text
//!  kernel                                   user space
//!  syscalls:sys_enter/exit_{read,write,…} ┐
//!  SSL_read/SSL_write uprobes (plaintext) ├─ ring buffer ─▶ capture ─▶ engine ─▶ spans, metrics
//!  accept/connect/close, process exit     ┘   (records)     (model)   (reassembly, HTTP/1.x,
//!                                                                      routes, redaction, context)
//! ```
//!
//! - `bpf/`: the programs and their loader; the kernel copies a
//!   connection's bytes only once they look like an enabled protocol.
//! - [`capture`]: records → [`model`] (connections, chunks by position).
//! - [`engine`]: reassembly, protocol parsers, spans and metrics (no BPF:
//!   tested and fuzzed with synthetic chunks).
//! - [`tls`]: finds `libssl` (and static OpenSSL) in processes' maps, and
//!   Go executables that use `crypto/tls` ([`gotls`]).
//! - [`listeners`]: listening ports, for the role of connections found
//!   mid-stream.

pub mod bpf;
pub mod capture;
pub mod collect;
pub mod config;
pub mod conformance;
pub mod engine;
pub mod gotls;
pub mod listeners;
pub mod model;
pub mod run;
pub mod telemetry;
pub mod tls;

pub use config::ProtocolsSourceConfig;
