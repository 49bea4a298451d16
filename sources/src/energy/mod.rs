//! `source "energy"`: node energy, and each process' share of it.
//!
//! **Node energy**, per component, from the best meter the node has:
//!
//! - RAPL through powercap (`<sysfs_root>/class/powercap/intel-rapl:*`):
//!   components `package`, `core`, `uncore`, `dram`, `psys` (summed over
//!   sockets; the counters' wraparound at `max_energy_range_uj` is
//!   handled), `source = "rapl"`. Note that `package` includes `core` and
//!   `uncore`, and `psys` (when present) the whole platform: do not add
//!   components up;
//! - otherwise a power model (most cloud VMs): component `cpu`, watts per
//!   CPU linear in `/proc/stat` utilisation between `idle_watts_per_cpu`
//!   and `max_watts_per_cpu` (Cloud Carbon Footprint's method and
//!   defaults, see [`model`]), `source = "model"`;
//! - NVIDIA GPUs through NVML, when `libnvidia-ml` and a device are present
//!   (loaded at run time: nodes without it run the same binary), component
//!   `gpu`, `source = "nvml"`.
//!
//! **Per process**: an eBPF program on `sched:sched_switch`
//! (`bpf/energy.bpf.c`) adds up on-CPU nanoseconds per process (tgid)
//! and cgroup in the kernel. Each round forces a switch on every CPU, reads
//! those totals, and splits each component's energy among processes in
//! proportion to their on-CPU time in the interval, idle energy included
//! (the rule and why: [`ledger`]); the processes' energy adds up to the
//! node's. Exited processes get their last share, then are deleted from the
//! map.
//!
//! | metric (Prometheus name) | kind | unit | attributes |
//! |---|---|---|---|
//! | `sonde.process.energy` (`sonde_process_energy_joules_total`) | counter | J | `process.pid`, `process.executable.name`, `cgroup.id`, `sonde.energy.component`, `sonde.energy.source` |
//! | `sonde.node.energy` (`sonde_node_energy_joules_total`) | counter | J | `sonde.energy.component`, `sonde.energy.source` |
//! | `sonde.node.idle_energy` (`sonde_node_idle_energy_joules_total`) | counter | J | same |
//! | `sonde.node.power` (`sonde_node_power_watts`) | gauge | W | same |
//!
//! all with the node name; `pod_enrich` adds container and pod attributes
//! from the pid. Counters are running totals since the source started
//! (cumulative); a process' series is emitted in the rounds it ran. GPU
//! energy is reported for the node only (no per-process GPU attribution).
//!
//! Minimum kernel 5.5 with BTF; needs CAP_BPF and CAP_PERFMON (or
//! CAP_SYS_ADMIN), and root or CAP_DAC_READ_SEARCH to read RAPL.

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
mod error;
pub mod ledger;
mod meter;
pub mod model;
mod nvml;
pub mod rapl;
#[cfg(test)]
mod tests;

pub use collect::{Collector, COMPONENT, NODE_ENERGY, NODE_IDLE_ENERGY, NODE_POWER, PROCESS_ENERGY, SOURCE};
pub use config::{EnergySourceConfig, DEFAULT_INTERVAL, DEFAULT_PROCFS_ROOT, DEFAULT_SYSFS_ROOT};
pub use error::EnergyError;
pub use ledger::{Ledger, Process, Round};
pub use meter::{ComponentEnergy, Meters, PowerSource, GPU_COMPONENT, MODEL_COMPONENT};
