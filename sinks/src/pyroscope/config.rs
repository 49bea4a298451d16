//! The Pyroscope sink's options.

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::BatchConfig;
use sonde_core::event::EventKinds;
use sonde_core::{batch_sink, BoxError, Sink, SinkConfig, SinkContext};

use super::service::PyroscopeSink;

/// Attributes tried, in order, for the application name when
/// `service_name` is not set.
pub const DEFAULT_SERVICE_NAME_ATTRIBUTES: &[&str] = &["service.name", "k8s.container.name", "process.executable.name"];
/// Attributes not sent as labels by default: a pid per series would make
/// every process restart a new series.
pub const DEFAULT_EXCLUDE_LABELS: &[&str] = &["process.pid"];
/// Profiles merged into one call: a profiling interval of a busy node.
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 2000;

fn default_service_name_attributes() -> Vec<String> {
    DEFAULT_SERVICE_NAME_ATTRIBUTES.iter().map(|s| s.to_string()).collect()
}
fn default_exclude_labels() -> Vec<String> {
    DEFAULT_EXCLUDE_LABELS.iter().map(|s| s.to_string()).collect()
}

/// HTTP basic authentication.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name (Grafana Cloud: the stack's Profiles user id).
    pub username: String,
    /// Password or API token; use `env("…")` rather than writing it here.
    pub password: String,
}

/// Pushes profiles to Grafana Pyroscope's HTTP ingest API as pprof.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PyroscopeSinkConfig {
    /// Base URL of the Pyroscope server (`http://pyroscope:4040`);
    /// `/ingest` is appended.
    #[serde(with = "sonde_core::config::http_url")]
    #[schemars(with = "sonde_core::config::HttpUrl")]
    pub endpoint: String,
    /// The application name of every profile (`my-service`). Unset (the
    /// default), it comes from the first of `service_name_attributes` that a
    /// profile has, else `unknown`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Attributes that name the application, in order of preference.
    /// Default `["service.name", "k8s.container.name", "process.executable.name"]`.
    #[serde(default = "default_service_name_attributes")]
    pub service_name_attributes: Vec<String>,
    /// Attributes not sent as labels. Every other attribute becomes a label
    /// of the series (`process.executable.name` → `process_executable_name`).
    /// Default `["process.pid"]`.
    #[serde(default = "default_exclude_labels")]
    pub exclude_labels: Vec<String>,
    /// Tenant of a multi-tenant Pyroscope, sent as `X-Scope-OrgID`. Default: none.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// HTTP basic authentication (`basic_auth { username = "…" password = env("…") }`).
    /// Default: none.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
}

impl sonde_core::registry::SinkType for PyroscopeSinkConfig {
    const NAME: &'static str = "pyroscope";
}

impl SinkConfig for PyroscopeSinkConfig {
    fn accepts(&self) -> EventKinds {
        EventKinds::PROFILE
    }

    fn default_batch(&self) -> Option<BatchConfig> {
        // Profiles of one interval arrive together; merging batches lets
        // processes with the same labels share a request.
        Some(BatchConfig {
            max_events: DEFAULT_BATCH_MAX_EVENTS,
            ..BatchConfig::default()
        })
    }

    fn build(&self, _cx: &SinkContext) -> Result<Sink, BoxError> {
        Ok(batch_sink(PyroscopeSink::new(self)?))
    }
}
