//! `transform "pod_enrich"` options and build.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::topology::component_metrics::labels;
use sonde_core::{BoxError, Transform, TransformConfig, TransformContext};
use tokio_util::sync::CancellationToken;
use tower::util::BoxService;

use super::cache::ProcessCache;
use super::enrich::{EnrichMetrics, Enricher, PodEnrich};
use super::pods::{Selection, SharedIndex};
use super::procfs::ProcReader;
use super::watch::{ClientSource, Watch};

/// Default proc filesystem root.
pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// Default bound of the process cache, in processes.
pub const DEFAULT_MAX_PROCESSES: usize = 16_384;
/// Default interval between checks that a cached pid is still the same process.
pub const DEFAULT_PID_RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Default wait for the first pod list before enriching.
pub const DEFAULT_INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Counter: process cache hits.
pub const CACHE_HITS: &str = "sonde_pod_enrich_cache_hits_total";
/// Counter: process cache misses (reads of /proc).
pub const CACHE_MISSES: &str = "sonde_pod_enrich_cache_misses_total";
/// Counter: process cache evictions.
pub const CACHE_EVICTIONS: &str = "sonde_pod_enrich_cache_evictions_total";
/// Counter: cached pids found to belong to a new process.
pub const PID_REUSED: &str = "sonde_pod_enrich_pid_reused_total";
/// Counter: events from a pod container the pod index did not know.
pub const POD_MISSES: &str = "sonde_pod_enrich_pod_misses_total";
/// Counter: failed calls to the API server (each retried).
pub const WATCH_ERRORS: &str = "sonde_pod_enrich_watch_errors_total";
/// Gauge: pods of this node in the index.
pub const PODS: &str = "sonde_pod_enrich_pods";

fn default_proc_root() -> PathBuf {
    PathBuf::from(DEFAULT_PROC_ROOT)
}
const fn default_max_processes() -> usize {
    DEFAULT_MAX_PROCESSES
}
const fn default_pid_recheck_interval() -> Duration {
    DEFAULT_PID_RECHECK_INTERVAL
}
const fn default_initial_sync_timeout() -> Duration {
    DEFAULT_INITIAL_SYNC_TIMEOUT
}

/// Whether to use the Kubernetes API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KubernetesMode {
    /// Use it when a configuration is found (in-cluster service account,
    /// `kubeconfig`, `KUBECONFIG`, `~/.kube/config`); otherwise add only
    /// process and container attributes.
    #[default]
    Auto,
    /// Fail to start without a Kubernetes configuration.
    Required,
    /// Never: process and container attributes only.
    Disabled,
}

/// Adds process, container and Kubernetes pod attributes to every event
/// that carries a `process.pid` (or a `container.id`).
///
/// pid → `/proc/PID/cgroup` → container id and pod UID (containerd, CRI-O,
/// Docker; systemd and cgroupfs drivers; cgroup v1 and v2) → the pod, from
/// a watch of this node's pods on the API server. Adds
/// `process.executable.name`, `process.executable.path`, `cgroup.path`,
/// `container.id`, `container.runtime.name`, `k8s.namespace.name`,
/// `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name`, `k8s.node.name`,
/// the owner (`k8s.deployment.name`, `k8s.daemonset.name`, …) and the
/// listed labels and annotations. Attributes an event already has are
/// kept. Without Kubernetes, the process and container attributes are
/// still added. Needs CAP_SYS_PTRACE to read the executable path of
/// processes of other users.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodEnrichTransformConfig {
    /// This node's name: only its pods are watched (field selector
    /// `spec.nodeName`), and it is added as `k8s.node.name` (off
    /// Kubernetes only when given here). Set it from the downward API
    /// (`env("NODE_NAME")`). Default (or empty): the agent's node name
    /// (`agent { node_name }`, `NODE_NAME`, else the host name).
    #[serde(default)]
    pub node_name: Option<String>,
    /// Root of the host's proc filesystem: `/host/proc` when the host's
    /// /proc is mounted there in a pod. Default `/proc`.
    #[serde(default = "default_proc_root")]
    #[schemars(with = "String")]
    pub proc_root: PathBuf,
    /// `auto` (default): use the API server when a configuration is found;
    /// `required`: fail without one; `disabled`: never.
    #[serde(default)]
    pub kubernetes: KubernetesMode,
    /// A kubeconfig file to reach the API server with. Default: the pod's
    /// service account in a cluster, else `KUBECONFIG`, else `~/.kube/config`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub kubeconfig: Option<PathBuf>,
    /// Pod labels to add, as `k8s.pod.label.<name>`. Only those listed:
    /// every distinct value is a new series downstream. Default: none.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Pod annotations to add, as `k8s.pod.annotation.<name>`. Default: none.
    #[serde(default)]
    pub annotations: Vec<String>,
    /// Most processes remembered; beyond it the least recently used one
    /// is forgotten (and read again from /proc if it shows up). About
    /// 300 bytes each. Default 16384.
    #[serde(default = "default_max_processes")]
    pub max_processes: usize,
    /// How often a cached process is checked to still be the one with that
    /// pid (one read of `/proc/PID/stat`), so a reused pid is noticed.
    /// Shorter is safer, longer is cheaper. Default `1s`.
    #[serde(default = "default_pid_recheck_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub pid_recheck_interval: Duration,
    /// How long the first batch waits for the first pod list, so a starting
    /// agent does not emit events without pod attributes. Default `10s`.
    #[serde(default = "default_initial_sync_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub initial_sync_timeout: Duration,
}

impl PodEnrichTransformConfig {
    fn client_source(&self) -> ClientSource {
        match &self.kubeconfig {
            Some(path) => ClientSource::Kubeconfig(path.clone()),
            None => ClientSource::Infer,
        }
    }
}

/// Why `pod_enrich` could not start.
#[derive(Debug, thiserror::Error)]
pub enum PodEnrichError {
    /// `kubernetes = "required"` without a configuration.
    #[error("kubernetes = \"required\" but no configuration was found (no in-cluster service account, no kubeconfig)")]
    NoKubernetes,
    /// The configured kubeconfig does not exist.
    #[error("kubeconfig {0} does not exist")]
    MissingKubeconfig(PathBuf),
    /// The proc root is not a directory.
    #[error("proc_root {0} is not a directory")]
    ProcRoot(PathBuf),
}

impl sonde_core::registry::TransformType for PodEnrichTransformConfig {
    const NAME: &'static str = "pod_enrich";
}

impl TransformConfig for PodEnrichTransformConfig {
    fn capabilities(&self) -> CapabilitySet {
        // /proc/PID/exe of processes of other users (or with more
        // capabilities than the agent keeps) needs ptrace-read access.
        CapabilitySet::of(&[Capability::SYS_PTRACE])
    }

    fn build(&self, cx: &TransformContext) -> Result<Transform, BoxError> {
        if !self.proc_root.is_dir() {
            return Err(PodEnrichError::ProcRoot(self.proc_root.clone()).into());
        }
        let source = self.client_source();
        if let ClientSource::Kubeconfig(path) = &source {
            if !path.exists() {
                return Err(PodEnrichError::MissingKubeconfig(path.clone()).into());
            }
        }
        let kubernetes = match self.kubernetes {
            KubernetesMode::Disabled => false,
            KubernetesMode::Auto => source.available(),
            KubernetesMode::Required if source.available() => true,
            KubernetesMode::Required => return Err(PodEnrichError::NoKubernetes.into()),
        };
        let node = (self.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| cx.global.node_name.to_string());
        let labels = labels(&cx.info);
        let metrics = EnrichMetrics {
            hits: metrics::counter!(CACHE_HITS, labels.clone()),
            misses: metrics::counter!(CACHE_MISSES, labels.clone()),
            evictions: metrics::counter!(CACHE_EVICTIONS, labels.clone()),
            reused: metrics::counter!(PID_REUSED, labels.clone()),
            pod_misses: metrics::counter!(POD_MISSES, labels.clone()),
        };
        let stop = CancellationToken::new();
        let synced = CancellationToken::new();
        let index = if kubernetes {
            let index = Arc::new(SharedIndex::default());
            let watch = Watch {
                source,
                node: node.clone(),
                index: index.clone(),
                selection: Selection::new(&self.labels, &self.annotations),
                synced: synced.clone(),
                stop: stop.clone(),
                errors: metrics::counter!(WATCH_ERRORS, labels.clone()),
                pods: metrics::gauge!(PODS, labels),
            };
            tokio::spawn(watch.run());
            tracing::info!(component = %cx.info, %node, "pod_enrich: watching this node's pods");
            Some(index)
        } else {
            synced.cancel();
            tracing::info!(component = %cx.info, "pod_enrich: no Kubernetes, adding process and container attributes only");
            None
        };
        let cache = ProcessCache::new(
            ProcReader::new(&self.proc_root),
            self.max_processes,
            self.pid_recheck_interval,
        );
        // `k8s.node.name` on a Kubernetes node, or when given: off
        // Kubernetes the host name is no Kubernetes node's name.
        let given = self.node_name.as_ref().is_some_and(|n| !n.is_empty());
        let node = (kubernetes || given).then(|| node.into());
        let enricher = Enricher::new(cache, index, node, metrics);
        Ok(BoxService::new(PodEnrich::new(
            enricher,
            synced,
            self.initial_sync_timeout,
            stop,
        )))
    }
}
