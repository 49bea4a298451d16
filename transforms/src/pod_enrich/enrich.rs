//! The hot path: adds process, container and pod attributes to each event.
//!
//! Per event: one pid lookup in the process cache and, when the pod index
//! has not changed since, the memoised attribute list of the process added
//! by reference (`Attributes::add_shared`: one reference-count increment,
//! the event's own attributes still winning over it). /proc is read only for new pids and at rechecks; the
//! pod index only when it changed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Attributes, EventBatch, SharedStr, Value};
use sonde_core::BoxError;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::Service;

use super::cache::{Counts, ProcessCache};
use super::pods::{Attribute, PodIndex, SharedIndex};
use super::procfs::ProcessInfo;

/// Attribute naming the container runtime (OpenTelemetry `container.runtime.name`).
pub const CONTAINER_RUNTIME: &str = "container.runtime.name";

/// The agent's own metrics about enrichment.
#[derive(Clone, Debug)]
pub struct EnrichMetrics {
    /// Process cache hits.
    pub hits: metrics::Counter,
    /// Process cache misses (a read of /proc).
    pub misses: metrics::Counter,
    /// Process cache evictions.
    pub evictions: metrics::Counter,
    /// Cached pids found to belong to a new process.
    pub reused: metrics::Counter,
    /// Events from a container the pod index does not (yet) know.
    pub pod_misses: metrics::Counter,
}

impl EnrichMetrics {
    /// Handles that count nowhere (tests, benchmarks).
    pub fn noop() -> Self {
        EnrichMetrics {
            hits: metrics::Counter::noop(),
            misses: metrics::Counter::noop(),
            evictions: metrics::Counter::noop(),
            reused: metrics::Counter::noop(),
            pod_misses: metrics::Counter::noop(),
        }
    }

    fn record(&self, counts: Counts, pod_misses: u64) {
        self.hits.increment(counts.hits);
        self.misses.increment(counts.misses);
        self.evictions.increment(counts.evictions);
        self.reused.increment(counts.reused);
        self.pod_misses.increment(pod_misses);
    }
}

/// Enriches batches; usable without tower (benchmarks, tests).
#[derive(Debug)]
pub struct Enricher {
    cache: ProcessCache,
    /// `None`: no Kubernetes, process and container attributes only.
    pods: Option<Arc<SharedIndex>>,
    node: Option<Attribute>,
    metrics: EnrichMetrics,
    /// Stands in for the pod index outside Kubernetes.
    no_pods: PodIndex,
}

impl Enricher {
    /// Enriches from `cache` and, in Kubernetes, `pods`; adds `k8s.node.name = node`.
    pub fn new(
        cache: ProcessCache,
        pods: Option<Arc<SharedIndex>>,
        node: Option<SharedStr>,
        metrics: EnrichMetrics,
    ) -> Self {
        Enricher {
            cache,
            pods,
            node: node.map(|n| (SharedStr::from_static(keys::NODE), Value::Str(n))),
            metrics,
            no_pods: PodIndex::default(),
        }
    }

    /// Adds attributes to every event of `batch`. Attributes an event
    /// already has are left as they are: the source knew better.
    pub fn enrich(&mut self, batch: &mut EventBatch) {
        let now = Instant::now();
        let guard = self.pods.as_ref().map(|p| p.load());
        let index: &PodIndex = guard.as_deref().map_or(&self.no_pods, |i| i);
        let mut pod_misses = 0;
        for event in batch.events_mut() {
            let attributes = event.attributes_mut();
            let pid = attributes.get(keys::PID).and_then(Value::as_int);
            if let Some(pid) = pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0) {
                let entry = self.cache.get(pid, now);
                let attrs = match &entry.resolved {
                    Some((generation, attrs)) if *generation == index.generation => attrs.clone(),
                    _ => {
                        let (attrs, found) = resolve(entry.process.as_deref(), index, self.pods.is_some());
                        pod_misses += u64::from(!found);
                        entry.resolved = Some((index.generation, attrs.clone()));
                        attrs
                    }
                };
                // By reference: one count increment, not a dozen pair copies.
                attributes.add_shared(attrs);
            } else if let Some(id) = attributes.get(keys::CONTAINER_ID).and_then(Value::as_str) {
                // No pid (per-container events): straight to the pod index.
                if let Some(container) = index.containers.get(id) {
                    let container = container.clone();
                    attributes.insert_if_absent(keys::CONTAINER_NAME, container.name);
                    add_all(attributes, &container.pod.attributes);
                } else if self.pods.is_some() {
                    pod_misses += 1;
                }
            }
            if let Some((key, value)) = &self.node {
                attributes.insert_if_absent(key.clone(), value.clone());
            }
        }
        self.metrics.record(self.cache.take_counts(), pod_misses);
    }
}

fn add_all(attributes: &mut Attributes, attrs: &[Attribute]) {
    attributes.reserve(attrs.len() + 1);
    for (key, value) in attrs {
        attributes.insert_if_absent(key.clone(), value.clone());
    }
}

/// The attributes of `process` with what `index` knows of its container
/// and pod; also whether a container in Kubernetes was found in the index.
fn resolve(process: Option<&ProcessInfo>, index: &PodIndex, kubernetes: bool) -> (Arc<[Attribute]>, bool) {
    let Some(process) = process else {
        return (Arc::from(Vec::new()), true);
    };
    let mut out: Vec<Attribute> = Vec::with_capacity(16);
    out.push((keys::COMM.into(), Value::Str(process.stat.comm.clone().into())));
    if let Some(exe) = &process.exe {
        out.push((keys::EXE.into(), Value::Str(exe.into())));
    }
    if !process.cgroup.path.is_empty() {
        out.push((keys::CGROUP_PATH.into(), Value::Str(process.cgroup.path.clone().into())));
    }
    let cgroup = &process.cgroup;
    if let Some(id) = &cgroup.container_id {
        out.push((keys::CONTAINER_ID.into(), Value::Str(id.into())));
    }
    if let Some(runtime) = cgroup.runtime.and_then(|r| r.as_str()) {
        out.push((CONTAINER_RUNTIME.into(), Value::from(runtime)));
    }
    let container = cgroup.container_id.as_ref().and_then(|id| index.containers.get(id));
    let pod = container
        .map(|c| &c.pod)
        .or_else(|| cgroup.pod_uid.as_ref().and_then(|uid| index.pods.get(uid)));
    if let Some(container) = container {
        out.push((keys::CONTAINER_NAME.into(), Value::Str(container.name.clone())));
    }
    match pod {
        Some(pod) => out.extend(pod.attributes.iter().cloned()),
        // The pod UID is in the cgroup path even before the API server
        // told us about the pod.
        None => {
            if let Some(uid) = &cgroup.pod_uid {
                out.push((keys::POD_UID.into(), Value::Str(uid.into())));
            }
        }
    }
    let in_pod = cgroup.pod_uid.is_some();
    let found = !kubernetes || !in_pod || (container.is_some() || cgroup.container_id.is_none()) && pod.is_some();
    (Arc::from(out), found)
}

/// The tower service: waits (at most `initial_sync_timeout`) for the first
/// pod list before the first batch, so a starting agent does not send a
/// burst of events without pod attributes.
pub struct PodEnrich {
    enricher: Enricher,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    // Cancels the watch task when the transform is dropped (its task ends
    // on shutdown or when a reload replaces it).
    _stop: DropGuard,
}

impl PodEnrich {
    /// Wraps `enricher`; `synced` is cancelled by the watch after its first
    /// list; `stop` is cancelled when this service is dropped.
    pub fn new(enricher: Enricher, synced: CancellationToken, timeout: Duration, stop: CancellationToken) -> Self {
        let waiting: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            if tokio::time::timeout(timeout, synced.cancelled()).await.is_err() {
                tracing::warn!(
                    ?timeout,
                    "pod_enrich: pod list not synced yet, enriching without pod attributes"
                );
            }
        });
        PodEnrich {
            enricher,
            waiting: Some(waiting),
            _stop: stop.drop_guard(),
        }
    }
}

impl Service<EventBatch> for PodEnrich {
    type Response = EventBatch;
    type Error = BoxError;
    type Future = std::future::Ready<Result<EventBatch, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if let Some(waiting) = &mut self.waiting {
            std::task::ready!(waiting.as_mut().poll(cx));
            self.waiting = None;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut batch: EventBatch) -> Self::Future {
        self.enricher.enrich(&mut batch);
        std::future::ready(Ok(batch))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;
    use sonde_core::event::{Event, Log};

    use super::*;
    use crate::pod_enrich::pods::Selection;
    use crate::pod_enrich::procfs::ProcReader;

    const ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const UID: &str = "0e5a6b1c-2d3e-4f50-8a9b-0c1d2e3f4a5b";

    fn proc_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("42");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(
            p.join("stat"),
            "42 (nginx) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 1 1\n",
        )
        .unwrap();
        std::fs::write(p.join("cgroup"), format!("0::/kubepods/burstable/pod{UID}/{ID}\n")).unwrap();
        dir
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": UID,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                    "uid": "s", "controller": true}]},
            "status": {"containerStatuses": [{"name": "nginx", "containerID": format!("cri-o://{ID}"),
                "image": "i", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .unwrap()
    }

    fn enricher(root: &std::path::Path, pods: Option<Arc<SharedIndex>>) -> Enricher {
        let cache = ProcessCache::new(ProcReader::new(root), 10, Duration::from_secs(60));
        Enricher::new(cache, pods, Some("node-a".into()), EnrichMetrics::noop())
    }

    fn one(enricher: &mut Enricher, event: Log) -> Attributes {
        let mut batch: EventBatch = vec![Event::from(event)].into();
        enricher.enrich(&mut batch);
        batch.events()[0].attributes().clone()
    }

    fn from_pid(pid: u32) -> Log {
        let mut log = Log::new("x");
        log.attributes.insert(keys::PID, pid);
        log
    }

    fn text<'a>(a: &'a Attributes, key: &str) -> Option<&'a str> {
        a.get(key).and_then(Value::as_str)
    }

    #[test]
    fn without_kubernetes_process_and_container_attributes_are_added() {
        let root = proc_root();
        let mut e = enricher(root.path(), None);
        let a = one(&mut e, from_pid(42));
        assert_eq!(text(&a, keys::COMM), Some("nginx"));
        assert_eq!(text(&a, keys::CONTAINER_ID), Some(ID));
        assert_eq!(text(&a, keys::POD_UID), Some(UID), "from the cgroup path");
        assert_eq!(text(&a, keys::NODE), Some("node-a"));
        assert_eq!(text(&a, keys::POD), None);
    }

    #[test]
    fn pod_index_changes_reach_cached_processes() {
        let root = proc_root();
        let index = Arc::new(SharedIndex::default());
        let mut e = enricher(root.path(), Some(index.clone()));
        assert_eq!(text(&one(&mut e, from_pid(42)), keys::POD), None, "pod not known yet");
        index.publish([&pod()], &Selection::default());
        let a = one(&mut e, from_pid(42));
        assert_eq!(text(&a, keys::POD), Some("web-0"));
        assert_eq!(text(&a, keys::CONTAINER_NAME), Some("nginx"));
        assert_eq!(text(&a, "k8s.statefulset.name"), Some("web"));
        index.publish(std::iter::empty(), &Selection::default());
        assert_eq!(text(&one(&mut e, from_pid(42)), keys::POD), None, "pod deleted");
    }

    #[test]
    fn container_id_events_and_existing_attributes() {
        let root = proc_root();
        let index = Arc::new(SharedIndex::default());
        index.publish([&pod()], &Selection::default());
        let mut e = enricher(root.path(), Some(index));
        let mut log = Log::new("x");
        log.attributes.insert(keys::CONTAINER_ID, ID);
        log.attributes.insert(keys::NODE, "from-source");
        let a = one(&mut e, log);
        assert_eq!(text(&a, keys::CONTAINER_NAME), Some("nginx"));
        assert_eq!(text(&a, keys::NAMESPACE), Some("shop"));
        assert_eq!(text(&a, keys::NODE), Some("from-source"), "the source's value is kept");
    }
}
