//! The loaded pipeline: the agent block, every component with its options,
//! and the options the core itself reads (`inputs`, `buffer`, `request`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::diagnostic::Location;
use crate::component::{BatchConfig, BufferConfig, ComponentKind, RequestConfig};
use crate::event::SharedStr;
use crate::registry::AnyConfig;

/// Default address of the agent API.
pub const DEFAULT_API: &str = "127.0.0.1:8686";
/// Default time to drain in-flight events at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

fn default_api() -> Option<SocketAddr> {
    Some(DEFAULT_API.parse().expect("valid default address"))
}

const fn default_shutdown_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}

/// The `agent { }` block: settings of the agent itself.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Address of the agent API (`/health`, `/metrics` with the agent's own
    /// metrics, `/graph`, `/stats`, `/tap`, and the graph page at `/`).
    /// `null` turns it off. Default `127.0.0.1:8686`. On an address other
    /// than loopback the API shows telemetry to the network, so it then
    /// needs `api_token_file` or `api_token_env`.
    #[serde(default = "default_api")]
    pub api: Option<SocketAddr>,
    /// A file holding the API's bearer token (surrounding whitespace is
    /// ignored; a Kubernetes Secret mounted as a file). When a token is set,
    /// every request but `/health` must carry `Authorization: Bearer TOKEN`
    /// (or `?token=TOKEN`, for a browser). Read once at start.
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// The environment variable holding the API's bearer token, instead of
    /// a file (`SONDE_API_TOKEN`; `sonde tap` and `sonde top` read the same
    /// variable).
    #[serde(default)]
    pub api_token_env: Option<String>,
    /// A unix socket that also serves the API, without a token: who may
    /// open it is decided by its file mode (0600, the agent's user). For
    /// `sonde tap --api unix:PATH` and `sonde top` on the node. Default: none.
    #[serde(default)]
    pub api_socket: Option<PathBuf>,
    /// This node's name, added to events as `k8s.node.name`. Default: the
    /// `NODE_NAME` environment variable, else the host name, which off
    /// Kubernetes (no `KUBERNETES_SERVICE_HOST`) is added as `host.name`
    /// instead.
    #[serde(default)]
    pub node_name: Option<String>,
    /// How long shutdown waits for in-flight events to reach the sinks
    /// before giving up (events still in flight are counted as dropped).
    /// Default `30s`.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_grace: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            api: default_api(),
            api_token_file: None,
            api_token_env: None,
            api_socket: None,
            node_name: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl AgentConfig {
    /// What is wrong with the block beyond its types: the option and why,
    /// with a hint. An API reachable from the network without a token
    /// would hand every event to whoever asks.
    pub fn problems(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut problems = Vec::new();
        let has_token = self.api_token_file.is_some() || self.api_token_env.is_some();
        if let Some(address) = self.api {
            if !address.ip().is_loopback() && !has_token {
                problems.push((
                    "api",
                    format!("the agent API on {address} is reachable from other hosts and has no token"),
                    "set `api_token_file` or `api_token_env` (tap and the graph page show telemetry), or listen on 127.0.0.1",
                ));
            }
        }
        if self.api_token_file.is_some() && self.api_token_env.is_some() {
            problems.push((
                "api_token_env",
                "`api_token_file` and `api_token_env` are both set".to_string(),
                "keep one of them",
            ));
        }
        if self.api_token_env.as_deref().is_some_and(str::is_empty) {
            problems.push((
                "api_token_env",
                "the variable name is empty".to_string(),
                "name a variable, e.g. \"SONDE_API_TOKEN\"",
            ));
        }
        problems
    }
}

/// Options the core reads from transform and sink blocks, beside the type's own.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommonOptions {
    /// Ids of the components whose output this one consumes.
    pub inputs: Vec<String>,
    /// Input queue (sinks only).
    #[serde(default)]
    pub buffer: Option<BufferConfig>,
    /// Request handling: timeout, retries, concurrency, rate (sinks only).
    #[serde(default)]
    pub request: Option<RequestConfig>,
    /// Merging of queued batches before each call (sinks only).
    #[serde(default)]
    pub batch: Option<BatchConfig>,
}

/// One input reference, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRef {
    /// The upstream component's id.
    pub id: SharedStr,
    /// Where the reference is in the config.
    pub location: Location,
}

/// One component block, parsed.
#[derive(Debug)]
pub struct ComponentConfig {
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The id.
    pub id: SharedStr,
    /// The registered type name.
    pub type_name: &'static str,
    /// Upstream components (empty for sources).
    pub inputs: Vec<InputRef>,
    /// Input queue settings (sinks; transforms use the defaults).
    pub buffer: BufferConfig,
    /// Request settings (sinks).
    pub request: RequestConfig,
    /// Batching the user asked for (sinks); `None` leaves it to the sink type's default.
    pub batch: Option<BatchConfig>,
    /// The type's own options, deserialized.
    pub options: AnyConfig,
    /// The block's evaluated body as JSON: compared on reload to find what changed.
    pub raw: serde_json::Value,
    /// Where the block starts.
    pub location: Location,
}

impl ComponentConfig {
    /// Whether a reload must rebuild this component: its type or options
    /// changed. A change of `inputs` only rewires.
    pub fn needs_rebuild(&self, other: &ComponentConfig) -> bool {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(map) = v.as_object_mut() {
                map.remove("inputs");
            }
            v
        };
        self.kind != other.kind || self.type_name != other.type_name || strip(&self.raw) != strip(&other.raw)
    }
}

/// A whole pipeline config.
#[derive(Debug, Default)]
pub struct PipelineConfig {
    /// The agent block.
    pub agent: AgentConfig,
    /// Components in file order.
    pub components: Vec<ComponentConfig>,
}

impl PipelineConfig {
    /// The component with `id`.
    pub fn component(&self, id: &str) -> Option<&ComponentConfig> {
        self.components.iter().find(|c| c.id == id)
    }
}
