//! The agent API: `/health`, `/metrics` (the agent's own metrics in the
//! Prometheus text format), `/graph` (the running graph as JSON), `/stats`
//! (every component's counters as JSON, for `sonde top` and the page),
//! `/tap` (events leaving components, as JSON lines, for `sonde tap`),
//! `/flamegraph/ID` (a profile source's newest flame graph) and, at `/`,
//! the graph page.
//!
//! Security: on TCP, a configured bearer token guards everything but
//! `/health` ([`auth`]); the config refuses an address other than loopback
//! without one. The unix socket (`api_socket`) needs no token: its file
//! mode says who may connect.

mod auth;
mod page;
mod stats;
mod tap;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

pub use auth::{ApiToken, TokenError};

use crate::registry::FlameGraphFn;
use crate::telemetry::Telemetry;
use crate::topology::{Failures, GraphNode, Taps};

/// What the API serves.
#[derive(Clone)]
pub struct ApiState {
    /// The running graph, replaced on reload.
    pub graph: Arc<ArcSwap<Vec<GraphNode>>>,
    /// The agent's metrics.
    pub telemetry: &'static Telemetry,
    /// Components that died: `/health` is not ok while there is one.
    pub failures: Failures,
    /// Where `/tap` reads what leaves each component.
    pub taps: Taps,
    /// How `/flamegraph/ID` draws, if the binary said.
    pub flamegraph: Option<FlameGraphFn>,
    /// When the agent started (`/stats`' `uptime_seconds`).
    pub started: Instant,
}

/// The API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The TCP address.
    #[error("cannot listen on {address} for the agent API: {source} (set `agent {{ api = \"HOST:PORT\" }}` to another address, or null to turn it off)")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The unix socket.
    #[error("cannot listen on unix socket {path} for the agent API: {source} (`agent {{ api_socket = … }}`)")]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Binds `address`: done before any component starts, so a port taken by
/// someone else stops the agent before it produced anything.
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, ApiError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ApiError::Listen { address, source })
}

/// Binds the unix socket at `path`, replacing a stale one (a socket file
/// left by an agent that was killed), readable and writable by the
/// agent's user only.
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ApiError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let failed = |source| ApiError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path).map_err(failed)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}

/// The routes; all but `/health` behind `token` when there is one.
fn router(state: ApiState, token: Option<ApiToken>) -> Router {
    let guarded = Router::new()
        .route("/", get(page::index))
        .route("/metrics", get(metrics))
        .route("/graph", get(graph))
        .route("/stats", get(stats::stats))
        .route("/tap", get(tap::tap))
        .route("/flamegraph/{id}", get(page::flamegraph));
    let guarded = match token {
        Some(token) => guarded.route_layer(axum::middleware::from_fn_with_state(token, auth::require)),
        None => guarded,
    };
    guarded.route("/health", get(health)).with_state(state)
}

/// Serves on `listener` until `shutdown`; returns the bound address.
pub fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    token: Option<ApiToken>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ApiError> {
    let bound = listener.local_addr().map_err(|source| ApiError::Listen {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let app = router(state, token);
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%error, "agent API stopped");
        }
    });
    tracing::info!(address = %bound, "agent API listening");
    Ok(bound)
}

/// Serves on the unix socket `listener` (no token) until `shutdown`. The
/// agent removes the socket file when it stops.
pub fn serve_unix(listener: tokio::net::UnixListener, path: &Path, state: ApiState, shutdown: CancellationToken) {
    let app = router(state, None);
    tracing::info!(socket = %path.display(), "agent API listening");
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%error, "agent API (unix socket) stopped");
        }
    });
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
