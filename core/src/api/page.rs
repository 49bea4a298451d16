//! The graph page (`/`): the running pipeline drawn as SVG from `/graph`,
//! each edge with its live rate and each node with its drops and errors
//! (from `/stats`, polled), and a link to the newest flame graph of each
//! profile source (`/flamegraph/ID`). Plain HTML and JavaScript built into
//! the binary: nothing to build, nothing fetched from elsewhere.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::ApiState;
use crate::event::Event;

/// The page.
const PAGE: &str = include_str!("page.html");

pub(super) async fn index() -> impl IntoResponse {
    (
        // The page shows telemetry: no caching by the browser or a proxy.
        [(header::CACHE_CONTROL, "no-store")],
        Html(PAGE),
    )
}

/// The newest flame graph of profile source `id`, as SVG.
pub(super) async fn flamegraph(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(draw) = state.flamegraph else {
        return (StatusCode::NOT_FOUND, "this binary draws no flame graphs\n").into_response();
    };
    let Some(batch) = state
        .taps
        .get(&id)
        .filter(|t| t.keeps_profiles())
        .and_then(|t| t.latest_profiles())
    else {
        let why = format!("no profile from `{id}` yet (a profile source sends one per interval)\n");
        return (StatusCode::NOT_FOUND, why).into_response();
    };
    // Drawing takes a while for big profiles: off the runtime's threads.
    let drawn = tokio::task::spawn_blocking(move || {
        let profiles: Vec<_> = batch
            .iter()
            .filter_map(|e| match e {
                Event::Profile(p) => Some(&**p),
                _ => None,
            })
            .collect();
        draw(&profiles)
    })
    .await;
    match drawn {
        Ok(Ok(svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot draw: {error}\n")).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot draw: {error}\n")).into_response(),
    }
}
