//! sonde-sinks: every sink type, one module (or folder) each.
//!
//! Adding a sink: a folder here (`mod.rs`, `config.rs`, `service.rs`, …) and
//! one line in [`register`].

pub mod blackhole;
pub mod console;
pub mod file;
pub mod otlp;
pub mod pprof;
pub mod prometheus;
pub mod pyroscope;

use sonde_core::Registry;

/// Registers every sink type.
pub fn register(registry: &mut Registry) {
    registry.sink::<blackhole::BlackholeSinkConfig>("blackhole");
    registry.sink::<console::ConsoleSinkConfig>("console");
    registry.sink::<file::FileSinkConfig>("file");
    registry.sink::<otlp::OtlpSinkConfig>("otlp");
    registry.sink::<prometheus::PrometheusSinkConfig>("prometheus");
    registry.sink::<pyroscope::PyroscopeSinkConfig>("pyroscope");
}
