//! The watch of this node's pods: a kube reflector over
//! `GET /api/v1/pods?fieldSelector=spec.nodeName=NODE` (list, then watch
//! from the list's resourceVersion, relisting when the server says the
//! version is too old), publishing a new [`PodIndex`](super::pods::PodIndex)
//! on every change.
//!
//! Only this node's pods are asked for: on a 5000-pod cluster the agent
//! holds and receives updates for ~100 pods, not 5000, and the RBAC it
//! needs is get/list/watch on pods, nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, Config};
use tokio_util::sync::CancellationToken;

use super::pods::{Selection, SharedIndex};

/// Why the agent could not talk to the API server.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig file could not be read or parsed.
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No in-cluster service account and no kubeconfig.
    #[error("no Kubernetes configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot create the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Where the client's configuration comes from.
#[derive(Clone, Debug)]
pub enum ClientSource {
    /// In-cluster service account, else `KUBECONFIG` or `~/.kube/config`.
    Infer,
    /// This kubeconfig file.
    Kubeconfig(PathBuf),
}

impl ClientSource {
    /// Whether a configuration can be found at all, without connecting:
    /// used to choose between Kubernetes and plain-host mode at build time.
    pub fn available(&self) -> bool {
        match self {
            ClientSource::Kubeconfig(path) => path.exists(),
            ClientSource::Infer => {
                std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
                    || std::env::var_os("KUBECONFIG").is_some()
                    || std::env::var_os("HOME").is_some_and(|h| Path::new(&h).join(".kube/config").exists())
            }
        }
    }

    /// Builds the client.
    pub async fn client(&self) -> Result<Client, KubeError> {
        let config = match self {
            ClientSource::Infer => Config::infer().await?,
            ClientSource::Kubeconfig(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|source| KubeError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| KubeError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?
            }
        };
        Ok(Client::try_from(config)?)
    }
}

/// What the watch task needs.
pub struct Watch {
    /// How to reach the API server.
    pub source: ClientSource,
    /// This node's name (the field selector).
    pub node: String,
    /// Where snapshots go.
    pub index: Arc<SharedIndex>,
    /// Which labels and annotations to keep.
    pub selection: Selection,
    /// Cancelled once the first full list is in the index.
    pub synced: CancellationToken,
    /// Cancelled when the transform is dropped.
    pub stop: CancellationToken,
    /// Counts watch errors (each is retried with backoff).
    pub errors: metrics::Counter,
    /// Pods in the index.
    pub pods: metrics::Gauge,
}

impl Watch {
    /// Watches until `stop`. Errors are logged, counted and retried with
    /// kube's default backoff (exponential, up to ~30s): the API server
    /// being away only delays pod attributes, it never stops the pipeline.
    pub async fn run(self) {
        let client = loop {
            match self.source.client().await {
                Ok(client) => break client,
                Err(error) => {
                    self.errors.increment(1);
                    tracing::warn!(%error, "pod_enrich: no Kubernetes client yet, retrying in 10s");
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                    }
                }
            }
        };
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let (reader, writer) = reflector::store();
        let stream = reflector(writer, watcher(api, config)).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                _ = self.stop.cancelled() => break,
                event = stream.next() => event,
            };
            match event {
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => self.publish(&reader),
                Some(Ok(watcher::Event::InitDone)) => {
                    self.publish(&reader);
                    if !self.synced.is_cancelled() {
                        tracing::info!(node = %self.node, pods = reader.len(), "pod_enrich: pod list synced");
                        self.synced.cancel();
                    }
                }
                // The store only changes at InitDone: nothing to publish yet.
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => {}
                Some(Err(error)) => {
                    self.errors.increment(1);
                    tracing::warn!(%error, "pod_enrich: pod watch failed, retrying");
                }
                None => break,
            }
        }
        tracing::debug!("pod_enrich: pod watch stopped");
    }

    fn publish(&self, reader: &reflector::Store<Pod>) {
        let pods = reader.state();
        self.pods.set(pods.len() as f64);
        self.index.publish(pods.iter().map(AsRef::as_ref), &self.selection);
    }
}
