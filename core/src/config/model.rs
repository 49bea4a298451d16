//! The loaded pipeline: the agent block, every component with its options,
//! and the options the core itself reads (`inputs`, `buffer`, `request`).

use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::diagnostic::Location;
use crate::component::{BatchConfig, BufferConfig, ComponentKind, RequestConfig};
use crate::event::SharedStr;
use crate::registry::AnyConfig;

/// Default address of the agent API.
pub const DEFAULT_API: &str = "127.0.0.1:8686";
/// Default folder of the agent's state (disk buffers).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/sonde";

fn default_data_dir() -> std::path::PathBuf {
    DEFAULT_DATA_DIR.into()
}

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
    /// metrics, `/graph`). `null` turns it off. Default `127.0.0.1:8686`.
    #[serde(default = "default_api")]
    pub api: Option<SocketAddr>,
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
    /// Folder of the agent's state: each sink with `buffer { type = "disk" }`
    /// keeps its buffer in `DATA_DIR/<sink id>/`, so a restarted agent
    /// resumes it. Default `/var/lib/sonde`.
    #[serde(default = "default_data_dir")]
    #[schemars(with = "String")]
    pub data_dir: std::path::PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            api: default_api(),
            node_name: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            data_dir: default_data_dir(),
        }
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
