//! `mode = "remote_write"`: each batch becomes one remote-write 1.0 request
//! (protobuf, snappy block compression) POSTed to the endpoint.
//!
//! Samples carry the cumulative value of their series at the event's time,
//! so deltas are added up in the same [`SeriesStore`] the scrape endpoint
//! uses, with the same cardinality guard. That makes a batch's request
//! depend on the store, and adding a batch to the store twice would count
//! its deltas twice: so the request is built once, kept while the core's
//! retry layer tries it again, and recognised by the batch it came from.
//!
//! The sink only classifies failures (5xx and 429 retriable, honouring
//! `Retry-After`; other statuses permanent); backoff is the core's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use prost::Message;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use sonde_core::event::{BatchId, Event, EventBatch};
use sonde_core::{BatchSink, SinkError};

use super::proto::{Label, MetricMetadata, MetricType, Sample, TimeSeries, WriteRequest};
use super::store::{Kind, Refused, SeriesStore, SeriesValue};

/// Requests kept for retries. Each belongs to a batch in flight, and there
/// are at most `request.concurrency` of those; the cap only bounds what a
/// batch abandoned by the retry layer leaves behind.
const MAX_PENDING: usize = 64;
/// Bytes of an error response body quoted in the error.
const MAX_ERROR_BODY: usize = 512;

/// A remote-write request failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// The server answered with an error status.
    #[error("remote write to {endpoint} failed with {status}: {body}")]
    Status {
        /// Where.
        endpoint: Url,
        /// The status.
        status: StatusCode,
        /// The start of the response body.
        body: String,
    },
    /// No answer: connection refused or reset, DNS, TLS.
    #[error("remote write to {endpoint} failed: {}", crate::causes::causes(source))]
    Transport {
        /// Where.
        endpoint: Url,
        /// Why.
        source: reqwest::Error,
    },
}

/// How requests authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    /// None.
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer TOKEN`.
    Bearer(String),
}

/// The remote-write sink.
pub struct RemoteWriter {
    store: Arc<Mutex<SeriesStore>>,
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    auth: Auth,
    pending: Mutex<VecDeque<Pending>>,
}

/// A built request, kept with its batch; the batch's event buffer address
/// identifies it, and holding the batch keeps that address from being reused.
struct Pending {
    batch: EventBatch,
    body: Option<Bytes>,
    /// Events of the batch the store refused (counted there).
    refused: u64,
}

fn same_batch(a: &EventBatch, b: &EventBatch) -> bool {
    std::ptr::eq(a.events().as_ptr(), b.events().as_ptr())
}

impl RemoteWriter {
    /// A writer to `endpoint` adding `headers` (user headers first, so the
    /// protocol's own cannot be overridden) and `auth` to every request.
    pub fn new(
        store: Arc<Mutex<SeriesStore>>,
        client: reqwest::Client,
        endpoint: Url,
        mut headers: HeaderMap,
        auth: Auth,
    ) -> Self {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        headers.insert("X-Prometheus-Remote-Write-Version", HeaderValue::from_static("0.1.0"));
        RemoteWriter {
            store,
            client,
            endpoint,
            headers,
            auth,
            pending: Mutex::new(VecDeque::new()),
        }
    }

    /// The compressed request for `batch`: the kept one when this is a retry.
    fn body_for(&self, batch: &EventBatch) -> (Option<Bytes>, u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = pending.iter().find(|p| same_batch(&p.batch, batch)) {
            return (kept.body.clone(), kept.refused);
        }
        let (request, refused) = {
            let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            let before = store.refused_total();
            let request = build_request(&mut store, batch);
            (request, store.refused_total() - before)
        };
        let body = (!request.timeseries.is_empty()).then(|| encode(&request));
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back(Pending {
            batch: batch.clone(),
            body: body.clone(),
            refused,
        });
        (body, refused)
    }

    fn forget(&self, batch: &EventBatch) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|p| !same_batch(&p.batch, batch));
    }

    async fn post(&self, body: Bytes, batch: Option<BatchId>) -> Result<(), SinkError> {
        let mut headers = self.headers.clone();
        // The same on every retry: a receiver can tell a delivery it has.
        if let Some(value) = batch.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
            headers.insert(BatchId::HEADER, value);
        }
        let request = self.client.post(self.endpoint.clone()).headers(headers).body(body);
        let request = match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let response = request.send().await.map_err(|source| {
            let builder = source.is_builder();
            let error = RemoteWriteError::Transport {
                endpoint: self.endpoint.clone(),
                source,
            };
            if builder {
                SinkError::permanent(error)
            } else {
                SinkError::retriable(error)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let mut body = response.text().await.unwrap_or_default();
        if body.len() > MAX_ERROR_BODY {
            let end = (0..=MAX_ERROR_BODY)
                .rev()
                .find(|i| body.is_char_boundary(*i))
                .unwrap_or(0);
            body.truncate(end);
        }
        let error = RemoteWriteError::Status {
            endpoint: self.endpoint.clone(),
            status,
            body: body.trim().to_string(),
        };
        Err(classify(status, retry_after, error))
    }
}

/// 5xx and 429 are worth retrying (the server is down or busy); any other
/// status will fail the same way again.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, error: RemoteWriteError) -> SinkError {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        SinkError::Retriable {
            source: Box::new(error),
            retry_after,
        }
    } else {
        SinkError::permanent(error)
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

impl BatchSink for RemoteWriter {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        // A retried batch (the same shared batch) gets the same body: its
        // identity is kept across attempts.
        let (body, refused) = self.body_for(&batch);
        let result = match body {
            Some(body) => self.post(body, batch.id()).await,
            None => Ok(()),
        };
        if !matches!(result, Err(SinkError::Retriable { .. })) {
            self.forget(&batch);
        }
        match result {
            // What the cardinality guard (or ordering) refused is a partial
            // failure: counted as dropped, the rest as delivered.
            Ok(()) if refused > 0 => Err(SinkError::rejected(
                refused,
                "refused by the sink's series store (see sonde_prometheus_refused_samples_total)",
            )),
            other => other,
        }
    }
}

/// Snappy block format (not the framed one), as the protocol specifies.
pub fn encode(request: &WriteRequest) -> Bytes {
    let raw = request.encode_to_vec();
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("a protobuf message is far below snappy's 4 GiB limit");
    Bytes::from(compressed)
}

/// Adds `batch` to the store and returns the samples it produced.
///
/// Prometheus refuses a whole request if one sample of a series is not
/// newer than the last one it has, so a series gets at most one sample per
/// timestamp (the latest value wins inside a request) and a sample older
/// than one already sent is left out and counted as refused.
pub fn build_request(store: &mut SeriesStore, batch: &EventBatch) -> WriteRequest {
    let now = store.now_ms();
    store.maybe_sweep(now);
    let mut request = WriteRequest::default();
    // Where each (series, bucket) is in the request. Names and labels are
    // made only when a series first appears in it: a series updated many
    // times in one batch costs one sample per timestamp, nothing more.
    let mut index: HashMap<(u64, usize), usize> = HashMap::new();
    let mut described: HashSet<String> = HashSet::new();
    let mut out_of_order = 0;
    for event in batch {
        let Event::Metric(metric) = event else { continue };
        let timestamp = i64::try_from(metric.timestamp.as_millis()).unwrap_or(i64::MAX);
        let Ok(stored) = store.ingest(metric, now) else {
            continue;
        };
        let series = stored.series;
        let in_request = index.contains_key(&(series.id, 0));
        if timestamp < series.last_sent_ms || (timestamp == series.last_sent_ms && !in_request) {
            out_of_order += 1;
            continue;
        }
        series.last_sent_ms = timestamp;
        let base = stored.name;
        if !described.contains(base) {
            described.insert(base.to_string());
            let (r#type, family) = match stored.kind {
                Kind::Counter => (MetricType::Counter, format!("{base}_total")),
                Kind::Gauge => (MetricType::Gauge, base.to_string()),
                Kind::Histogram => (MetricType::Histogram, base.to_string()),
            };
            request.metadata.push(MetricMetadata {
                r#type: r#type as i32,
                metric_family_name: family,
                help: stored.help.unwrap_or_default().to_string(),
                unit: stored.unit.unwrap_or_default().to_string(),
            });
        }
        let labels = series.labels.as_deref().unwrap_or_default();
        let mut add = |sub: usize, suffix: &str, le: Option<f64>, value: f64| {
            let at = *index.entry((series.id, sub)).or_insert_with(|| {
                request.timeseries.push(TimeSeries {
                    labels: series_labels(&format!("{base}{suffix}"), labels, le),
                    samples: Vec::new(),
                });
                request.timeseries.len() - 1
            });
            let samples = &mut request.timeseries[at].samples;
            match samples.last_mut() {
                Some(last) if last.timestamp == timestamp => last.value = value,
                _ => samples.push(Sample { value, timestamp }),
            }
        };
        match &series.value {
            SeriesValue::Scalar(value) if stored.kind == Kind::Counter => add(0, "_total", None, *value),
            SeriesValue::Scalar(value) => add(0, "", None, *value),
            SeriesValue::Histogram(h) => {
                let mut cumulative = 0;
                for (i, count) in h.counts.iter().enumerate() {
                    cumulative += count;
                    let le = h.bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    add(i, "_bucket", Some(le), cumulative as f64);
                }
                let n = h.counts.len();
                add(n, "_sum", None, h.sum);
                add(n + 1, "_count", None, cumulative as f64);
            }
        }
    }
    if out_of_order > 0 {
        store.refuse(Refused::OutOfOrder, out_of_order);
    }
    request
}

/// `__name__`, the series' labels and `le`, sorted by name as the protocol requires.
fn series_labels(name: &str, labels: &[(Box<str>, Box<str>)], le: Option<f64>) -> Vec<Label> {
    let mut out = Vec::with_capacity(labels.len() + 2);
    out.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    out.extend(labels.iter().map(|(name, value)| Label {
        name: name.to_string(),
        value: value.to_string(),
    }));
    if let Some(le) = le {
        // The same text as the exposition's `le` (`+Inf` for the last bucket).
        let mut value = String::new();
        super::encode::write_float(&mut value, le);
        out.push(Label {
            name: "le".into(),
            value,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
