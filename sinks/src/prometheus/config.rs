//! The Prometheus sink's options, and building the sink from them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::BatchConfig;
use sonde_core::config::Invalid;
use sonde_core::event::{Event, EventBatch, EventKinds};
use sonde_core::topology::component_metrics;
use sonde_core::{batch_sink, BatchSink, BoxError, Sink, SinkConfig, SinkContext, SinkError};

use super::naming;
use super::remote_write::{Auth, RemoteWriter};
use super::server;
use super::store::{SeriesStore, StoreConfig};

/// Default scrape address: every interface, Prometheus' registered port
/// for OpenTelemetry-style exporters.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9464";
/// Default time after which a series that stopped changing disappears.
pub const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(300);
/// Default most series held (and exposed or pushed).
pub const DEFAULT_MAX_SERIES: usize = 100_000;

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default address")
}
const fn default_expire_after() -> Duration {
    DEFAULT_EXPIRE_AFTER
}
const fn default_max_series() -> usize {
    DEFAULT_MAX_SERIES
}

/// How metrics reach Prometheus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrometheusMode {
    /// Prometheus scrapes `http://LISTEN/metrics` (default).
    #[default]
    Exporter,
    /// sonde pushes to `endpoint` with the remote-write protocol.
    RemoteWrite,
}

/// HTTP basic authentication for remote write.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password; `env("NAME")` keeps it out of the file.
    pub password: String,
}

/// Exposes metrics for Prometheus to scrape, in the Prometheus text format
/// or OpenMetrics, or pushes them with the remote-write protocol.
///
/// Counters and histograms that arrive as deltas are added up per series;
/// attribute keys become label names (`k8s.pod.name` → `k8s_pod_name`).
/// Samples refused by the cardinality guard are counted in
/// `sonde_prometheus_refused_samples_total{reason}` on the agent API.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSinkConfig {
    /// `exporter` (default): serve `/metrics` on `listen`; `remote_write`:
    /// push to `endpoint`.
    #[serde(default)]
    pub mode: PrometheusMode,
    /// Exporter: address of the scrape endpoint (`/metrics`). Default
    /// `0.0.0.0:9464`; `127.0.0.1:9464` keeps it to this host.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A series not updated for this long disappears from the endpoint (and
    /// stops counting towards `max_series`). Default `5m`.
    #[serde(default = "default_expire_after", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub expire_after: Duration,
    /// Most Prometheus series held; a histogram counts one per bucket plus
    /// `_sum` and `_count`. Samples of new series beyond it are dropped and
    /// counted (`reason="max_series"`); existing series keep updating.
    /// Default 100000.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Only these labels are kept, when set: attribute keys or their
    /// Prometheus names (`k8s.pod.name` or `k8s_pod_name`). Default: all.
    #[serde(default)]
    pub label_allowlist: Option<Vec<String>>,
    /// These labels are removed (attribute keys or Prometheus names), for
    /// high-cardinality attributes such as `process.pid`. Default: none.
    #[serde(default)]
    pub label_denylist: Vec<String>,
    /// Remote write: the receiver's URL, such as
    /// `http://prometheus:9090/api/v1/write`. Required in that mode.
    #[serde(default, with = "sonde_core::config::http_url::option")]
    #[schemars(with = "Option<sonde_core::config::HttpUrl>")]
    pub endpoint: Option<String>,
    /// Remote write: HTTP basic authentication (`username`, `password`).
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Remote write: bearer token sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Remote write: extra request headers (`X-Scope-OrgID` for Mimir or
    /// Cortex tenants). The protocol's own headers cannot be overridden.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Options that contradict each other or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `mode = "remote_write"` without `endpoint`.
    #[error("mode = \"remote_write\" needs `endpoint` (such as \"http://prometheus:9090/api/v1/write\")")]
    MissingEndpoint,
    /// A remote-write option in exporter mode.
    #[error("`{0}` is a remote-write option; set mode = \"remote_write\" or remove it")]
    RemoteWriteOption(&'static str),
    /// Both kinds of authentication.
    #[error("give either `basic_auth` or `bearer_token`, not both")]
    TwoAuths,
    /// The endpoint is not an http(s) URL.
    #[error("`endpoint` {url:?} is not an http:// or https:// URL{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Endpoint {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: Option<String>,
    },
    /// A header name or value that HTTP does not allow.
    #[error("header {name:?} is not a valid HTTP header name and value")]
    Header {
        /// The header name.
        name: String,
    },
    /// `max_series = 0` would refuse everything.
    #[error("max_series must be at least 1")]
    ZeroMaxSeries,
    /// The HTTP client could not be made (TLS roots).
    #[error("cannot create the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl PrometheusSinkConfig {
    fn store_config(&self) -> StoreConfig {
        // Names are compared after sanitising, so users may write the
        // attribute key (`k8s.pod.name`) or the label (`k8s_pod_name`).
        let sanitise = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter_map(|n| naming::label_name(n).map(|l| l.into_owned()))
                .collect()
        };
        StoreConfig {
            max_series: self.max_series,
            expire_after: self.expire_after,
            label_allowlist: self.label_allowlist.as_deref().map(sanitise),
            label_denylist: sanitise(&self.label_denylist),
            keep_label_pairs: self.mode == PrometheusMode::RemoteWrite,
        }
    }

    /// Every option that contradicts another or cannot be used.
    fn check(&self) -> Vec<(&'static str, ConfigError)> {
        let mut found = Vec::new();
        if self.max_series == 0 {
            found.push(("max_series", ConfigError::ZeroMaxSeries));
        }
        match self.mode {
            PrometheusMode::Exporter => {
                let set = [
                    ("endpoint", self.endpoint.is_some()),
                    ("basic_auth", self.basic_auth.is_some()),
                    ("bearer_token", self.bearer_token.is_some()),
                    ("headers", !self.headers.is_empty()),
                ];
                for (name, _) in set.iter().filter(|(_, set)| *set) {
                    found.push((*name, ConfigError::RemoteWriteOption(name)));
                }
            }
            PrometheusMode::RemoteWrite if self.endpoint.is_none() => {
                found.push(("mode", ConfigError::MissingEndpoint));
            }
            PrometheusMode::RemoteWrite => {}
        }
        if self.basic_auth.is_some() && self.bearer_token.is_some() {
            found.push(("bearer_token", ConfigError::TwoAuths));
        }
        for (name, value) in &self.headers {
            if HeaderName::try_from(name.as_str()).is_err() || HeaderValue::try_from(value.as_str()).is_err() {
                found.push(("headers", ConfigError::Header { name: name.clone() }));
            }
        }
        found
    }

    fn remote_writer(&self, store: Arc<Mutex<SeriesStore>>) -> Result<RemoteWriter, ConfigError> {
        let url = self.endpoint.clone().ok_or(ConfigError::MissingEndpoint)?;
        let endpoint = reqwest::Url::parse(&url).map_err(|e| ConfigError::Endpoint {
            url: url.clone(),
            reason: Some(e.to_string()),
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(ConfigError::Endpoint { url, reason: None });
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header = |name: &String| ConfigError::Header { name: name.clone() };
            let key = HeaderName::try_from(name.as_str()).map_err(|_| header(name))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| header(name))?;
            headers.insert(key, value);
        }
        let auth = match (&self.basic_auth, &self.bearer_token) {
            (Some(basic), _) => Auth::Basic {
                username: basic.username.clone(),
                password: basic.password.clone(),
            },
            (None, Some(token)) => Auth::Bearer(token.clone()),
            (None, None) => Auth::None,
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::Client)?;
        Ok(RemoteWriter::new(store, client, endpoint, headers, auth))
    }
}

impl sonde_core::registry::SinkType for PrometheusSinkConfig {
    const NAME: &'static str = "prometheus";
}

impl SinkConfig for PrometheusSinkConfig {
    fn accepts(&self) -> EventKinds {
        EventKinds::METRIC
    }

    fn default_batch(&self) -> Option<BatchConfig> {
        match self.mode {
            // The exporter only updates its store: batching would only delay it.
            PrometheusMode::Exporter => None,
            // One request per second or per 1000 events, not one per
            // source batch (the write-request overhead is per request).
            PrometheusMode::RemoteWrite => Some(BatchConfig::default()),
        }
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let found = self.check();
        if found.is_empty() {
            return Ok(());
        }
        Err(found
            .into_iter()
            .map(|(option, error)| Invalid::new(option, error.to_string()))
            .collect())
    }

    fn build(&self, cx: &SinkContext) -> Result<Sink, BoxError> {
        let labels = component_metrics::labels(&cx.info);
        let destination = match self.mode {
            PrometheusMode::Exporter => format!("listen {}", self.listen),
            PrometheusMode::RemoteWrite => format!("remote_write {}", self.endpoint.as_deref().unwrap_or_default()),
        };
        let store = shared_store(&cx.info.id, destination, self.store_config(), labels);
        match self.mode {
            PrometheusMode::Exporter => {
                let listener = server::bind(self.listen)?;
                server::spawn(listener, store.clone(), cx.info.clone(), cx.shutdown.clone())?;
                Ok(batch_sink(Exporter { store }))
            }
            PrometheusMode::RemoteWrite => Ok(batch_sink(self.remote_writer(store)?)),
        }
    }
}

/// The stores of the running Prometheus sinks, by sink id and where they
/// send (the scrape address, or the remote write endpoint).
type Stores = HashMap<(String, String), Weak<Mutex<SeriesStore>>>;
static STORES: Mutex<Option<Stores>> = Mutex::new(None);

/// The store of sink `id`: the one its predecessor used when a reload
/// rebuilds it with the same labels and destination, so that its counters
/// go on from where they were (Prometheus sees no reset); a new one
/// otherwise.
fn shared_store(
    id: &str,
    destination: String,
    config: StoreConfig,
    labels: Vec<metrics::Label>,
) -> Arc<Mutex<SeriesStore>> {
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    let stores = stores.get_or_insert_with(HashMap::new);
    stores.retain(|_, store| store.strong_count() > 0);
    let key = (id.to_string(), destination);
    if let Some(store) = stores.get(&key).and_then(Weak::upgrade) {
        if store.lock().unwrap_or_else(|e| e.into_inner()).reconfigure(&config) {
            return store;
        }
    }
    let store = Arc::new(Mutex::new(SeriesStore::new(config, labels)));
    stores.insert(key, Arc::downgrade(&store));
    store
}

/// The exporter sink: adds each batch to the store the endpoint serves.
#[derive(Clone)]
pub struct Exporter {
    // Shared with the scrape server.
    store: Arc<Mutex<SeriesStore>>,
}

impl Exporter {
    /// An exporter over `store` (for tests and benchmarks, without a server).
    pub fn new(store: Arc<Mutex<SeriesStore>>) -> Self {
        Exporter { store }
    }
}

impl BatchSink for Exporter {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let now = store.now_ms();
        store.maybe_sweep(now);
        let mut refused = 0;
        for event in &batch {
            if let Event::Metric(metric) = event {
                // Refusals are counted by the store, by reason.
                if store.ingest(metric, now).is_err() {
                    refused += 1;
                }
            }
        }
        // A partial failure: the core counts these as dropped
        // (`reason="rejected"`) and the rest as delivered.
        if refused > 0 {
            return Err(SinkError::rejected(
                refused,
                "refused by the sink's series store (see sonde_prometheus_refused_samples_total)",
            ));
        }
        Ok(())
    }
}
