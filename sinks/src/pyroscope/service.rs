//! The Pyroscope sink's service: groups a batch's profiles by application
//! name, encodes each group as pprof, posts it, and classifies failures.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use sonde_core::event::{Attributes, BatchId, Event, EventBatch, Profile};
use sonde_core::{BatchSink, BoxError, SinkError};

use super::config::{BasicAuth, PyroscopeSinkConfig};
use crate::pprof;

/// Requests in flight at once within one call.
const CONCURRENCY: usize = 4;
/// Accepted requests remembered, so a retried batch skips them.
const DELIVERED_MEMORY: usize = 4096;
/// The multipart boundary: a fixed string that cannot occur in the
/// headers we write, and is checked against the body.
const BOUNDARY: &str = "sonde-pyroscope-7f3c9a1e5b";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum PyroscopeError {
    /// The server answered with an error status.
    #[error("pyroscope answered {status} for {name}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The application name of the request.
        name: String,
        /// The start of the response body.
        body: String,
    },
    /// The request did not get an answer.
    #[error("cannot reach pyroscope at {url}: {}", crate::causes::causes(source))]
    Transport {
        /// Where.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
}

/// The sink; concurrent batches share the client and the delivered set.
pub struct PyroscopeSink {
    client: reqwest::Client,
    ingest: Url,
    config: PyroscopeSinkConfig,
    delivered: Mutex<Delivered>,
}

/// Digests of requests the server accepted (or refused for good).
#[derive(Default)]
struct Delivered {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Delivered {
    fn insert(&mut self, digest: u64) {
        if self.set.insert(digest) {
            self.order.push_back(digest);
            if self.order.len() > DELIVERED_MEMORY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// One request to send.
struct Request {
    name: String,
    url: Url,
    body: Vec<u8>,
    digest: u64,
}

impl PyroscopeSink {
    /// A sink for `config`; fails on an endpoint that is not an http(s) URL.
    pub fn new(config: &PyroscopeSinkConfig) -> Result<Self, BoxError> {
        let mut base = Url::parse(&config.endpoint).map_err(|e| format!("endpoint `{}`: {e}", config.endpoint))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("endpoint `{}` must be an http:// or https:// URL", config.endpoint).into());
        }
        // `join` replaces the last path segment unless the path ends in '/'.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let ingest = base.join("ingest")?;
        Ok(PyroscopeSink {
            client: reqwest::Client::builder().build()?,
            ingest,
            config: config.clone(),
            delivered: Mutex::new(Delivered::default()),
        })
    }

    /// The batch's requests: one per application name (and sampling
    /// period, which one pprof profile has one of).
    fn requests(&self, batch: &EventBatch) -> Vec<Request> {
        let mut groups: BTreeMap<(String, u64), Vec<&Profile>> = BTreeMap::new();
        for event in batch {
            if let Event::Profile(profile) = event {
                let name = app_name(&self.config, &profile.attributes);
                groups.entry((name, profile.period)).or_default().push(profile);
            }
        }
        groups
            .into_iter()
            .filter_map(|((name, _), profiles)| {
                let from = profiles.iter().map(|p| p.start).min()?;
                let until = profiles.iter().map(|p| p.end).max()?;
                let period = profiles[0].period.max(1);
                let profile = pprof::encode(profiles, pprof::EncodeOptions { sample_labels: false })?;
                let body = multipart(&pprof::gzip(&profile));
                let mut url = self.ingest.clone();
                url.query_pairs_mut()
                    .append_pair("name", &name)
                    .append_pair("from", &(from.as_nanos() / 1_000_000_000).to_string())
                    // Whole seconds, rounded up so the range covers the interval.
                    .append_pair("until", &until.as_nanos().div_ceil(1_000_000_000).to_string())
                    .append_pair("format", "pprof")
                    .append_pair("sampleRate", &(1_000_000_000 / period).to_string())
                    .append_pair("spyName", "sonde");
                let mut hasher = DefaultHasher::new();
                url.as_str().hash(&mut hasher);
                body.hash(&mut hasher);
                Some(Request {
                    name,
                    url,
                    body,
                    digest: hasher.finish(),
                })
            })
            .collect()
    }

    async fn post(&self, request: &Request, batch: Option<BatchId>) -> Result<(), SinkError> {
        let mut builder = self
            .client
            .post(request.url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}"))
                    .expect("a valid header value"),
            )
            .body(request.body.clone());
        if let Some(tenant) = &self.config.tenant_id {
            builder = builder.header("X-Scope-OrgID", tenant);
        }
        // The same on every retry: a receiver can tell a delivery it has.
        if let Some(id) = batch {
            builder = builder.header(BatchId::HEADER, id.to_string());
        }
        if let Some(BasicAuth { username, password }) = &self.config.basic_auth {
            builder = builder.basic_auth(username, Some(password));
        }
        let response = builder.send().await.map_err(|source| {
            SinkError::retriable(PyroscopeError::Transport {
                url: self.ingest.to_string(),
                source,
            })
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        let error = PyroscopeError::Status {
            status,
            name: request.name.clone(),
            body: body.chars().take(200).collect(),
        };
        Err(classify(status, error, retry_after))
    }
}

/// Retriable: 408, 429 and 5xx (the server or a proxy is overloaded or
/// restarting). Permanent: other statuses (a malformed request or name,
/// refused credentials), which would fail again.
pub(super) fn classify(status: StatusCode, error: PyroscopeError, retry_after: Option<Duration>) -> SinkError {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
        SinkError::Retriable {
            source: error.into(),
            retry_after,
        }
    } else {
        SinkError::permanent(error)
    }
}

/// The multipart body: one part, `profile`, holding the gzipped pprof.
fn multipart(profile: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(profile.len() + 256);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(profile);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Pyroscope's label name rules: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// A value with the characters that delimit Pyroscope's names replaced.
fn label_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if matches!(c, '{' | '}' | ',' | '=' | '"') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// `service_name{label=value,…}` for a profile with `attributes`; labels
/// sorted by name.
pub fn app_name(config: &PyroscopeSinkConfig, attributes: &Attributes) -> String {
    let service = config.service_name.clone().unwrap_or_else(|| {
        config
            .service_name_attributes
            .iter()
            .find_map(|key| attributes.get(key).map(|v| v.to_string()))
            .unwrap_or_else(|| "unknown".to_string())
    });
    let labels: BTreeMap<String, String> = attributes
        .iter()
        .filter(|(key, _)| !config.exclude_labels.iter().any(|x| x == key.as_str()))
        .map(|(key, value)| (label_name(key), label_value(&value.to_string())))
        .filter(|(name, _)| name != "service_name")
        .collect();
    let labels: Vec<String> = labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{{{}}}", label_value(&service), labels.join(","))
}

impl BatchSink for PyroscopeSink {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        let requests = self.requests(&batch);
        let pending: Vec<Request> = {
            let delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
            requests
                .into_iter()
                .filter(|r| !delivered.set.contains(&r.digest))
                .collect()
        };
        let id = batch.id();
        let results: Vec<(u64, Result<(), SinkError>)> = futures::stream::iter(pending)
            .map(|request| async move { (request.digest, self.post(&request, id).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut retriable = None;
        let mut permanent = None;
        let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        for (digest, result) in results {
            match result {
                Ok(()) => delivered.insert(digest),
                Err(error @ SinkError::Retriable { .. }) => retriable = Some(error),
                // Would fail again: not resent when the batch is retried
                // for another request's sake.
                Err(error @ (SinkError::Permanent { .. } | SinkError::Rejected { .. })) => {
                    delivered.insert(digest);
                    permanent = Some(error);
                }
            }
        }
        match (retriable, permanent) {
            (Some(error), Some(dropped)) => {
                tracing::error!(error = %dropped, "pyroscope refused a profile for good, dropped");
                Err(error)
            }
            (Some(error), None) | (None, Some(error)) => Err(error),
            (None, None) => Ok(()),
        }
    }
}
