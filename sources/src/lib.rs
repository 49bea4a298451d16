//! sonde-sources: every source type, one module each.
//!
//! Adding a source: a folder (or file) here with its config struct and run
//! loop, and one line in [`register`].

pub mod clock;
pub mod connections;
pub mod demo;
pub mod disk_latency;
pub mod energy;
pub mod file_access;
pub mod file_io;
pub mod internal_metrics;
pub mod memory;
pub mod net_flows;
pub mod offcpu;
pub mod process;
pub mod profile;
pub mod protocols;
pub mod runqueue;
pub mod tcp;

use sonde_core::Registry;

/// Registers every source type.
pub fn register(registry: &mut Registry) {
    registry.source::<connections::ConnectionsSourceConfig>();
    registry.source::<demo::DemoSourceConfig>();
    registry.source::<disk_latency::DiskLatencySourceConfig>();
    registry.source::<energy::EnergySourceConfig>();
    registry.source::<file_access::FileAccessSourceConfig>();
    registry.source::<file_io::FileIoSourceConfig>();
    registry.source::<internal_metrics::InternalMetricsSourceConfig>();
    registry.source::<memory::MemorySourceConfig>();
    registry.source::<net_flows::NetFlowsSourceConfig>();
    registry.source::<offcpu::OffcpuSourceConfig>();
    registry.source::<process::ProcessSourceConfig>();
    registry.source::<profile::ProfileSourceConfig>();
    registry.source::<protocols::ProtocolsSourceConfig>();
    registry.source::<runqueue::RunqueueSourceConfig>();
    registry.source::<tcp::TcpSourceConfig>();
}
