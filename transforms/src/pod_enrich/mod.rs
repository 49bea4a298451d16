//! `transform "pod_enrich"`: says which process, container and pod each
//! event came from.
//!
//! - [`cgroup`]: `/proc/PID/cgroup` → container id, runtime, pod UID.
//! - [`procfs`]: reads a process from a (host) proc filesystem.
//! - [`cache`]: the bounded pid cache, safe against pid reuse.
//! - [`pods`]: the pod index (container id → container name and pod).
//! - [`watch`]: the kube reflector that keeps the index current.
//! - [`enrich`]: the hot path and the tower service.
//! - [`config`]: the options and the build.

pub mod cache;
pub mod cgroup;
pub mod config;
pub mod enrich;
pub mod pods;
pub mod procfs;
pub mod watch;

pub use config::{KubernetesMode, PodEnrichTransformConfig};
pub use enrich::{EnrichMetrics, Enricher};
