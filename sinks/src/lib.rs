//! sonde-sinks: every sink type, one module (or folder) each.
//!
//! Adding a sink: a folder here (`mod.rs`, `config.rs`, `service.rs`, …) and
//! one line in [`register`].

pub mod blackhole;
pub mod causes;
pub mod console;
pub mod file;
pub mod otlp;
pub mod pprof;
pub mod prometheus;
pub mod pyroscope;

use sonde_core::Registry;

/// Registers every sink type.
pub fn register(registry: &mut Registry) {
    registry.set_flamegraph(file::stacks::flamegraph_of);
    registry.sink::<blackhole::BlackholeSinkConfig>();
    registry.sink::<console::ConsoleSinkConfig>();
    registry.sink::<file::FileSinkConfig>();
    registry.sink::<otlp::OtlpSinkConfig>();
    registry.sink::<prometheus::PrometheusSinkConfig>();
    registry.sink::<pyroscope::PyroscopeSinkConfig>();
}
