//! The agent API: `/health`, `/metrics` (the agent's own metrics in the
//! Prometheus text format), `/graph` (the running graph as JSON).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Telemetry;
use crate::topology::{Failures, GraphNode};

/// What the API serves.
#[derive(Clone)]
pub struct ApiState {
    /// The running graph, replaced on reload.
    pub graph: Arc<ArcSwap<Vec<GraphNode>>>,
    /// The agent's metrics.
    pub telemetry: &'static Telemetry,
    /// Components that died: `/health` is not ok while there is one.
    pub failures: Failures,
}

/// The API could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for the agent API: {source} (set `agent {{ api = \"HOST:PORT\" }}` to another address, or null to turn it off)")]
pub struct ApiError {
    /// The address.
    pub address: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds `address`: done before any component starts, so a port taken by
/// someone else stops the agent before it produced anything.
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, ApiError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ApiError { address, source })
}

/// Serves on `listener` until `shutdown`; returns the bound address.
pub fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ApiError> {
    let bound = listener.local_addr().map_err(|source| ApiError {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/graph", get(graph))
        .with_state(state);
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%error, "agent API stopped");
        }
    });
    tracing::info!(address = %bound, "agent API listening");
    Ok(bound)
}

/// `{"status":"ok"}`, or 503 and `{"status":"failed","failed":[…]}` once a
/// component has died.
async fn health(State(state): State<ApiState>) -> impl IntoResponse {
    let failed = state.failures.list();
    if failed.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({ "status": "ok" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "failed", "failed": failed })),
        )
    }
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.telemetry.render_prometheus(),
    )
}

async fn graph(State(state): State<ApiState>) -> impl IntoResponse {
    Json(serde_json::json!({ "components": &**state.graph.load() }))
}
