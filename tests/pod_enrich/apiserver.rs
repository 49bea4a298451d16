//! A Kubernetes API server stand-in on loopback, for the pods of one node.
//!
//! It speaks the wire format kube-apiserver does for `GET /api/v1/pods`:
//! a list is a `PodList` whose `metadata.resourceVersion` the client must
//! watch from; a watch (`?watch=true`) is a chunked stream of
//! `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK", "object": …}` lines; the
//! field selector is required to be the node's; the bearer token from the
//! kubeconfig is checked. What the client asked for is recorded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use tokio::sync::mpsc;

pub const TOKEN: &str = "sonde-test-token";

#[derive(Clone)]
struct Shared {
    node: String,
    pods: Vec<serde_json::Value>,
    resource_version: String,
    watch_events: Arc<Mutex<Option<mpsc::UnboundedReceiver<serde_json::Value>>>>,
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

pub struct ApiServer {
    pub address: SocketAddr,
    events: mpsc::UnboundedSender<serde_json::Value>,
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl ApiServer {
    /// Serves `pods` of `node` at `resource_version`.
    pub async fn start(node: &str, pods: Vec<serde_json::Value>, resource_version: &str) -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Shared {
            node: node.to_string(),
            pods,
            resource_version: resource_version.to_string(),
            watch_events: Arc::new(Mutex::new(Some(receiver))),
            requests: Arc::default(),
        };
        let requests = shared.requests.clone();
        let app = Router::new().route("/api/v1/pods", get(serve_pods)).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        ApiServer {
            address,
            events,
            requests,
        }
    }

    /// Sends a watch event (`MODIFIED`, `DELETED` …) to the open watch.
    pub fn send(&self, kind: &str, object: serde_json::Value) {
        self.events
            .send(serde_json::json!({"type": kind, "object": object}))
            .unwrap();
    }

    /// The query parameters of every request so far.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.requests.lock().unwrap().clone()
    }

    /// Writes a kubeconfig pointing at this server.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: test\n  cluster:\n    server: http://{}\n\
             users:\n- name: test\n  user:\n    token: {TOKEN}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\n",
            self.address
        );
        std::fs::write(path, text).unwrap();
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn serve_pods(
    State(s): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    s.requests.lock().unwrap().push(query.clone());
    let bearer = format!("Bearer {TOKEN}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let wanted = format!("spec.nodeName={}", s.node);
    if query.get("fieldSelector") != Some(&wanted) {
        // The agent must never ask for every pod of the cluster.
        return status(StatusCode::FORBIDDEN, "Forbidden", "field selector must be this node");
    }
    if query.get("watch").map(String::as_str) != Some("true") {
        let list = serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": s.resource_version},
            "items": s.pods,
        });
        return ([("content-type", "application/json")], list.to_string()).into_response();
    }
    if query.get("resourceVersion") != Some(&s.resource_version) {
        return status(StatusCode::GONE, "Expired", "too old resource version");
    }
    let Some(receiver) = s.watch_events.lock().unwrap().take() else {
        // A second watch gets an open stream with nothing on it.
        let idle = futures::stream::pending::<Result<String, std::io::Error>>();
        return ([("content-type", "application/json")], Body::from_stream(idle)).into_response();
    };
    let lines = tokio_stream_from(receiver).map(|event| Ok::<_, std::io::Error>(format!("{event}\n")));
    ([("content-type", "application/json")], Body::from_stream(lines)).into_response()
}

fn tokio_stream_from(
    mut receiver: mpsc::UnboundedReceiver<serde_json::Value>,
) -> impl futures::Stream<Item = serde_json::Value> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A running pod as the API server returns it (list items carry no
/// `kind`/`apiVersion`; watch objects do, see [`with_kind`]).
pub fn pod(node: &str, uid: &str, container_id: &str, resource_version: &str, tier: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "name": "checkout-6f7d9c5b8-qx2lp",
            "generateName": "checkout-6f7d9c5b8-",
            "namespace": "shop",
            "uid": uid,
            "resourceVersion": resource_version,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app": "checkout", "tier": tier, "pod-template-hash": "6f7d9c5b8"},
            "annotations": {"team": "payments", "kubectl.kubernetes.io/restartedAt": "x"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-6f7d9c5b8",
                "uid": "5b1d6c1e-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "server", "image": "shop/checkout:1.2"}],
            "restartPolicy": "Always"
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "hostIP": "10.0.0.5",
            "podIP": "10.244.1.7",
            "containerStatuses": [{
                "name": "server",
                "containerID": format!("containerd://{container_id}"),
                "image": "docker.io/shop/checkout:1.2",
                "imageID": "docker.io/shop/checkout@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2025-01-01T00:00:05Z"}}
            }]
        }
    })
}

/// `object` with the `kind` and `apiVersion` a watch event carries.
pub fn with_kind(mut object: serde_json::Value) -> serde_json::Value {
    object["kind"] = "Pod".into();
    object["apiVersion"] = "v1".into();
    object
}
