//! The agent API: `/health`, `/metrics` (the agent's own metrics in the
//! Prometheus text format), `/graph` (the running graph as JSON).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Telemetry;
use crate::topology::GraphNode;

/// What the API serves.
#[derive(Clone)]
pub struct ApiState {
    /// The running graph, replaced on reload.
    pub graph: Arc<ArcSwap<Vec<GraphNode>>>,
    /// The agent's metrics.
    pub telemetry: &'static Telemetry,
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

/// Binds `address` and serves until `shutdown`; returns the bound address.
pub async fn serve(address: SocketAddr, state: ApiState, shutdown: CancellationToken) -> Result<SocketAddr, ApiError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ApiError { address, source })?;
    let bound = listener.local_addr().map_err(|source| ApiError { address, source })?;
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

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
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
