//! `/tap`: the events leaving (or entering) components, as JSON lines in
//! the file sink's format, for `sonde tap`.
//!
//! `GET /tap?component=ID[&component=ID…][&direction=outputs|inputs]
//! [&kind=metric…][&limit=N][&rate=EVENTS_PER_S]`
//!
//! The pipeline hands each batch over with `try_send` ([`Subscription`]):
//! a reader that cannot keep up loses batches of its own and the pipeline
//! never waits. Past `rate` events a second the stream is sampled (an even
//! spread of each batch). Both are reported in the stream, on lines of
//! their own: `{"sonde_tap":{"lost":N,"sampled_out":M}}`, at most once a
//! second when they change, and at the end. The inputs of a component are
//! the outputs of the components it reads, of the kinds it accepts.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use tokio::time::Instant;

use super::ApiState;
use crate::component::ComponentKind;
use crate::event::{EventBatch, EventKind, EventKinds, SharedStr};
use crate::topology::{GraphNode, Subscription, TAP_CHANNEL_BATCHES};

/// Events a second a tap writes before it samples, unless `rate` says.
pub const DEFAULT_TAP_RATE: u64 = 10_000;
/// With nothing to write for this long, a tap writes an empty line, so
/// that a reader that went away is noticed and its tap removed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often a change of the lost and sampled counts is reported.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// A parsed `/tap` request.
#[derive(Debug)]
struct TapRequest {
    components: Vec<String>,
    inputs: bool,
    kinds: EventKinds,
    limit: Option<u64>,
    rate: u64,
}

fn bad(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn parse(uri: &Uri) -> Result<TapRequest, String> {
    let mut request = TapRequest {
        components: Vec::new(),
        inputs: false,
        kinds: EventKinds::NONE,
        limit: None,
        rate: DEFAULT_TAP_RATE,
    };
    for (key, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match &*key {
            "component" => request.components.push(value.into_owned()),
            "direction" => {
                request.inputs = match &*value {
                    "outputs" => false,
                    "inputs" => true,
                    other => return Err(format!("direction `{other}`: outputs or inputs")),
                }
            }
            "kind" => {
                for name in value.split(',').filter(|n| !n.is_empty()) {
                    let kind = EventKind::ALL
                        .into_iter()
                        .find(|k| k.as_str() == name)
                        .ok_or_else(|| format!("kind `{name}`: metric, log, profile or span"))?;
                    request.kinds = request.kinds.union(kind.into());
                }
            }
            "limit" => request.limit = Some(value.parse().map_err(|_| format!("limit `{value}`: a count"))?),
            "rate" => {
                request.rate = value
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| format!("rate `{value}`: events per second, at least 1"))?
            }
            "token" => {}
            other => return Err(format!("unknown parameter `{other}`")),
        }
    }
    if request.components.is_empty() {
        return Err("name at least one component: /tap?component=ID".to_string());
    }
    if request.kinds.is_empty() {
        request.kinds = EventKinds::ALL;
    }
    Ok(request)
}

/// The producers to tap for `request`, with the kinds wanted from each.
fn producers(
    request: &TapRequest,
    graph: &[GraphNode],
) -> Result<HashMap<SharedStr, EventKinds>, (StatusCode, String)> {
    let mut wanted: HashMap<SharedStr, EventKinds> = HashMap::new();
    for id in &request.components {
        let Some(node) = graph.iter().find(|n| &*n.id == id) else {
            let hint = match crate::config::did_you_mean(id, graph.iter().map(|n| &*n.id)) {
                Some(best) => format!("; did you mean `{best}`?"),
                None => {
                    let ids: Vec<&str> = graph.iter().map(|n| &*n.id).collect();
                    format!("; running: {}", ids.join(", "))
                }
            };
            return Err((StatusCode::NOT_FOUND, format!("no component `{id}` is running{hint}")));
        };
        if request.inputs {
            if node.kind == ComponentKind::Source {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("`{id}` is a source: it has no inputs (tap its outputs)"),
                ));
            }
            for input in &node.inputs {
                let kinds = request.kinds.intersection(node.accepts);
                let entry = wanted.entry(input.clone()).or_default();
                *entry = entry.union(kinds);
            }
        } else {
            if node.kind == ComponentKind::Sink {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("`{id}` is a sink: it has no outputs (tap its inputs)"),
                ));
            }
            let entry = wanted.entry(node.id.clone()).or_default();
            *entry = entry.union(request.kinds);
        }
    }
    Ok(wanted)
}

pub(super) async fn tap(State(state): State<ApiState>, uri: Uri) -> Response {
    let request = match parse(&uri) {
        Ok(request) => request,
        Err(message) => return bad(StatusCode::BAD_REQUEST, message),
    };
    let wanted = match producers(&request, &state.graph.load()) {
        Ok(wanted) => wanted,
        Err((status, message)) => return bad(status, message),
    };
    let points = wanted.keys().map(|id| state.taps.point(id)).collect();
    let tap = Tap {
        subscription: Subscription::new(points, TAP_CHANNEL_BATCHES),
        wanted,
        left: request.limit.unwrap_or(u64::MAX),
        rate: request.rate,
        tokens: request.rate as f64,
        refilled: Instant::now(),
        sampled_out: 0,
        reported: (0, 0),
        last_notice: Instant::now(),
        finished: false,
    };
    tracing::info!(components = ?request.components, inputs = request.inputs, "tap started");
    let stream = futures::stream::unfold(tap, |mut tap| async move {
        let chunk = tap.next_chunk().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), tap))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One running tap.
struct Tap {
    subscription: Subscription,
    wanted: HashMap<SharedStr, EventKinds>,
    /// Events still to write (`limit`).
    left: u64,
    rate: u64,
    /// The token bucket of the sampling: events that may go out now.
    tokens: f64,
    refilled: Instant,
    sampled_out: u64,
    /// (lost, sampled_out) as last reported.
    reported: (u64, u64),
    last_notice: Instant,
    finished: bool,
}

impl Tap {
    /// The next piece of the response: event lines, a notice, a heartbeat;
    /// `None` when the limit was reached.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        loop {
            let next = tokio::time::timeout(HEARTBEAT, self.subscription.recv()).await;
            let idle = next.is_err();
            let mut out = Vec::new();
            if let Ok(Some((from, batch))) = next {
                let kinds = self.wanted.get(&from).copied().unwrap_or(EventKinds::ALL);
                self.write(&batch, kinds, &mut out);
            }
            if self.left == 0 {
                self.finished = true;
                self.notice(&mut out, true);
                return Some(Bytes::from(out));
            }
            self.notice(&mut out, false);
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            if idle {
                return Some(Bytes::from_static(b"\n"));
            }
        }
    }

    /// Writes the events of `batch` of `kinds`, sampled to the rate.
    fn write(&mut self, batch: &EventBatch, kinds: EventKinds, out: &mut Vec<u8>) {
        let now = Instant::now();
        let rate = self.rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        let events: Vec<_> = batch.iter().filter(|e| kinds.contains(e.kind())).collect();
        let n = events.len();
        let keep = (self.tokens.floor() as usize).min(n);
        // An even spread: event i is kept when it crosses a multiple of n/keep.
        for (i, event) in events.into_iter().enumerate() {
            let kept = keep == n || (keep > 0 && (i * keep) / n != ((i + 1) * keep) / n);
            if !kept {
                self.sampled_out += 1;
                continue;
            }
            if self.left == 0 {
                break;
            }
            if serde_json::to_writer(&mut *out, event).is_ok() {
                out.push(b'\n');
                self.left -= 1;
                self.tokens -= 1.0;
            }
        }
    }

    /// A line with the lost and sampled-out counts, when they changed (at
    /// most once a second) or at the end.
    fn notice(&mut self, out: &mut Vec<u8>, last: bool) {
        let now = (self.subscription.lost(), self.sampled_out);
        let due = now != self.reported && self.last_notice.elapsed() >= NOTICE_EVERY;
        if !(due || (last && now != (0, 0))) {
            return;
        }
        self.reported = now;
        self.last_notice = Instant::now();
        let line = serde_json::json!({ "sonde_tap": { "lost": now.0, "sampled_out": now.1 } });
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let uri: Uri = "/tap?component=a&component=b&direction=inputs&kind=metric,log&limit=5"
            .parse()
            .unwrap();
        let r = parse(&uri).unwrap();
        assert_eq!(r.components, ["a", "b"]);
        assert!(r.inputs);
        assert_eq!(r.kinds, EventKinds::METRIC.union(EventKinds::LOG));
        assert_eq!(r.limit, Some(5));
        assert!(parse(&"/tap".parse().unwrap()).is_err());
        assert!(parse(&"/tap?component=a&kind=trace".parse().unwrap()).is_err());
    }
}
