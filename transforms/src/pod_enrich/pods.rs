//! The pod index: container id → container name and pod, pod UID → pod,
//! with each pod's attributes computed once, when its watch event arrives.
//!
//! The index is rebuilt whole from the reflector's store on every change
//! and swapped in atomically ([`arc_swap`]). A node runs at most a few
//! hundred pods (kubelet's default limit is 110), so a rebuild is a few
//! microseconds, while the hot path reads a consistent snapshot without
//! locks. Its generation number lets the process cache know when the
//! attributes it memoised may be stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;
use sonde_core::event::{keys, SharedStr, Value};

/// One attribute to add to events.
pub type Attribute = (SharedStr, Value);

/// Which pod labels and annotations become attributes.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// (label name, attribute key) pairs.
    labels: Vec<(String, SharedStr)>,
    /// (annotation name, attribute key) pairs.
    annotations: Vec<(String, SharedStr)>,
}

impl Selection {
    /// Labels become `k8s.pod.label.<name>`, annotations
    /// `k8s.pod.annotation.<name>` (OpenTelemetry semantic conventions).
    pub fn new(labels: &[String], annotations: &[String]) -> Self {
        let keyed = |prefix: &str, names: &[String]| {
            names
                .iter()
                .map(|n| (n.clone(), SharedStr::from(format!("{prefix}{n}"))))
                .collect()
        };
        Selection {
            labels: keyed("k8s.pod.label.", labels),
            annotations: keyed("k8s.pod.annotation.", annotations),
        }
    }
}

/// A pod's attributes, shared by every event from it.
#[derive(Debug, PartialEq)]
pub struct PodMeta {
    /// Namespace, name, UID, owner, selected labels and annotations.
    pub attributes: Vec<Attribute>,
}

/// A container: its name and its pod.
#[derive(Clone, Debug)]
pub struct ContainerMeta {
    /// `k8s.container.name`.
    pub name: SharedStr,
    /// The pod it runs in.
    pub pod: Arc<PodMeta>,
}

/// A snapshot of the pods on this node.
#[derive(Debug, Default)]
pub struct PodIndex {
    /// Bumped on every rebuild.
    pub generation: u64,
    /// By pod UID.
    pub pods: HashMap<String, Arc<PodMeta>>,
    /// By container id (without the `containerd://` scheme).
    pub containers: HashMap<String, ContainerMeta>,
}

impl PodIndex {
    /// Builds the index of `pods`.
    pub fn build<'a>(generation: u64, pods: impl IntoIterator<Item = &'a Pod>, selection: &Selection) -> Self {
        let mut index = PodIndex {
            generation,
            ..PodIndex::default()
        };
        for pod in pods {
            let Some(uid) = pod.metadata.uid.clone() else { continue };
            let meta = Arc::new(pod_meta(pod, selection));
            let status = pod.status.as_ref();
            let statuses = status
                .into_iter()
                .flat_map(|s| {
                    s.container_statuses
                        .iter()
                        .chain(&s.init_container_statuses)
                        .chain(&s.ephemeral_container_statuses)
                })
                .flatten();
            for container in statuses {
                // `containerd://ID`, `cri-o://ID`, `docker://ID`.
                let Some(id) = container.container_id.as_deref() else {
                    continue;
                };
                let id = id.split_once("://").map_or(id, |(_, id)| id);
                index.containers.insert(
                    id.to_string(),
                    ContainerMeta {
                        name: container.name.clone().into(),
                        pod: meta.clone(),
                    },
                );
            }
            index.pods.insert(uid, meta);
        }
        index
    }
}

/// The attributes of `pod`.
fn pod_meta(pod: &Pod, selection: &Selection) -> PodMeta {
    let m = &pod.metadata;
    let mut attributes: Vec<Attribute> = Vec::new();
    let add = |attributes: &mut Vec<Attribute>, key: SharedStr, value: Option<&String>| {
        if let Some(v) = value {
            attributes.push((key, Value::Str(v.into())));
        }
    };
    add(&mut attributes, keys::NAMESPACE.into(), m.namespace.as_ref());
    add(&mut attributes, keys::POD.into(), m.name.as_ref());
    add(&mut attributes, keys::POD_UID.into(), m.uid.as_ref());
    let controller = m.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    if let Some(owner) = controller {
        let labels = m.labels.as_ref();
        for (key, name) in owner_attributes(
            &owner.kind,
            &owner.name,
            labels.and_then(|l| l.get("pod-template-hash")),
        ) {
            attributes.push((SharedStr::from_static(key), Value::Str(name.into())));
        }
    }
    for (name, key) in &selection.labels {
        add(
            &mut attributes,
            key.clone(),
            m.labels.as_ref().and_then(|l| l.get(name)),
        );
    }
    for (name, key) in &selection.annotations {
        add(
            &mut attributes,
            key.clone(),
            m.annotations.as_ref().and_then(|a| a.get(name)),
        );
    }
    PodMeta { attributes }
}

/// The owner attributes of a pod controlled by `kind` `name`.
///
/// A Deployment's pods are owned by a ReplicaSet named
/// `<deployment>-<pod-template-hash>`; the hash is also the pod's
/// `pod-template-hash` label, so the deployment name is recovered without
/// watching ReplicaSets (which the agent's RBAC does not allow).
fn owner_attributes(kind: &str, name: &str, template_hash: Option<&String>) -> Vec<(&'static str, String)> {
    match kind {
        "ReplicaSet" => {
            let mut out = vec![("k8s.replicaset.name", name.to_string())];
            let deployment = template_hash.and_then(|h| name.strip_suffix(h.as_str())?.strip_suffix('-'));
            if let Some(deployment) = deployment {
                out.push(("k8s.deployment.name", deployment.to_string()));
            }
            out
        }
        "DaemonSet" => vec![("k8s.daemonset.name", name.to_string())],
        "StatefulSet" => vec![("k8s.statefulset.name", name.to_string())],
        "Job" => vec![("k8s.job.name", name.to_string())],
        "CronJob" => vec![("k8s.cronjob.name", name.to_string())],
        _ => vec![("k8s.pod.owner.name", name.to_string())],
    }
}

/// Where the watch publishes snapshots and the hot path reads them.
#[derive(Debug)]
pub struct SharedIndex {
    current: ArcSwap<PodIndex>,
    generation: AtomicU64,
}

impl Default for SharedIndex {
    fn default() -> Self {
        SharedIndex {
            current: ArcSwap::from_pointee(PodIndex::default()),
            generation: AtomicU64::new(0),
        }
    }
}

impl SharedIndex {
    /// The current snapshot.
    pub fn load(&self) -> arc_swap::Guard<Arc<PodIndex>> {
        self.current.load()
    }

    /// Replaces the snapshot with the index of `pods`.
    pub fn publish<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>, selection: &Selection) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.current
            .store(Arc::new(PodIndex::build(generation, pods, selection)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-7d4b9c8f6d-x2x9k", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6d", "secret": "no"},
                "annotations": {"team": "a"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d4b9c8f6d", "uid": "rs-1", "controller": true}]
            },
            "status": {
                "containerStatuses": [{"name": "app", "containerID": "containerd://abc", "image": "i",
                    "imageID": "", "ready": true, "restartCount": 0}],
                "initContainerStatuses": [{"name": "init", "containerID": "cri-o://def", "image": "i",
                    "imageID": "", "ready": false, "restartCount": 0}]
            }
        }))
        .unwrap()
    }

    fn get<'a>(meta: &'a PodMeta, key: &str) -> Option<&'a str> {
        meta.attributes
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_str())
    }

    #[test]
    fn indexes_containers_and_selected_labels() {
        let selection = Selection::new(&["app".into()], &["team".into()]);
        let index = PodIndex::build(3, [&pod()], &selection);
        assert_eq!(index.generation, 3);
        let app = &index.containers["abc"];
        assert_eq!(app.name, "app");
        assert_eq!(index.containers["def"].name, "init");
        let meta = &index.pods["u-1"];
        assert!(Arc::ptr_eq(meta, &app.pod));
        assert_eq!(get(meta, keys::POD), Some("web-7d4b9c8f6d-x2x9k"));
        assert_eq!(get(meta, keys::NAMESPACE), Some("shop"));
        assert_eq!(get(meta, "k8s.deployment.name"), Some("web"));
        assert_eq!(get(meta, "k8s.replicaset.name"), Some("web-7d4b9c8f6d"));
        assert_eq!(get(meta, "k8s.pod.label.app"), Some("web"));
        assert_eq!(get(meta, "k8s.pod.annotation.team"), Some("a"));
        assert_eq!(get(meta, "k8s.pod.label.secret"), None, "only listed labels");
    }

    #[test]
    fn owners() {
        assert_eq!(
            owner_attributes("DaemonSet", "ds", None),
            vec![("k8s.daemonset.name", "ds".into())]
        );
        // A ReplicaSet not made by a Deployment has no template hash suffix.
        assert_eq!(
            owner_attributes("ReplicaSet", "rs", Some(&"h".to_string())),
            vec![("k8s.replicaset.name", "rs".into())]
        );
    }
}
