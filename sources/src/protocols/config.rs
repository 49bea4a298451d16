//! The `protocols` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::bpf::{PROTO_MAX_CAPTURE, PROTO_MAX_DNS_PORTS};
use super::engine::{self, Protocol, Settings};

/// Smallest `capture_bytes`: a request line and a few headers.
pub const MIN_CAPTURE_BYTES: u32 = 256;
/// Default time between two emissions of the metrics.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Every protocol the source knows: "every request on the node" is what
/// users expect of it without a list (the default grows as protocols are
/// added, as the HTTP-only first version promised).
fn default_protocols() -> Vec<String> {
    Protocol::ALL.iter().map(|p| p.name().to_string()).collect()
}
const fn default_capture_bytes() -> u32 {
    4096
}
fn default_headers() -> Vec<String> {
    vec!["user-agent".to_string(), "content-type".to_string()]
}
const fn default_true() -> bool {
    true
}
const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_max_routes() -> usize {
    100
}
const fn default_max_connections() -> u32 {
    16384
}
const fn default_ring_buffer_bytes() -> u32 {
    8 * 1024 * 1024
}
const fn default_max_buffer_bytes() -> usize {
    64 * 1024
}
const fn default_max_memory_bytes() -> usize {
    64 * 1024 * 1024
}

/// Bodies kept in spans (`http.request.body.content`,
/// `http.response.body.content`): off unless `max_bytes` > 0.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Bodies {
    /// Most bytes of a body kept; 0 keeps none. Default 0.
    #[serde(default)]
    pub max_bytes: usize,
    /// Only bodies of these media types are kept. Default
    /// `["application/json"]`.
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
}

fn default_content_types() -> Vec<String> {
    vec!["application/json".to_string()]
}

fn default_dns_ports() -> Vec<u16> {
    vec![53]
}

const fn default_max_query_length() -> usize {
    2048
}

/// What database spans keep of statements (`db.query.text`).
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    /// Replace literals (strings, numbers, lists of them) with `?`, using
    /// a SQL tokenizer. Literals carry passwords and personal data: turn
    /// this off only where the statements are known to hold none.
    /// Default `true`.
    #[serde(default = "default_true")]
    pub obfuscate: bool,
    /// Characters of a statement kept; longer ones are cut and marked
    /// `sonde.db.query.truncated`. Default 2048.
    #[serde(default = "default_max_query_length")]
    pub max_length: usize,
    /// Keep the first key of a Redis command (`GET user:42`); other
    /// arguments are never kept, nor any of `AUTH`/`HELLO`. Default `true`.
    #[serde(default = "default_true")]
    pub redis_keys: bool,
}

impl Default for Queries {
    fn default() -> Self {
        Queries {
            obfuscate: true,
            max_length: default_max_query_length(),
            redis_keys: true,
        }
    }
}

/// Requests seen from the syscalls that move socket data, and through
/// TLS (OpenSSL/BoringSSL uprobes), with no change to the applications:
/// one span per request (server and client side, OpenTelemetry semantic
/// conventions), RED metrics (`http.server.request.duration`,
/// `http.client.request.duration`, `db.client.operation.duration`,
/// `dns.lookup.duration`) and a service graph. HTTP/1.x, PostgreSQL,
/// MySQL/MariaDB, Redis and DNS. Secrets stay out by default: no bodies,
/// only allow-listed headers, never `Authorization`/`Cookie`/`Set-Cookie`,
/// query values redacted, SQL literals replaced with `?`, Redis arguments
/// beyond the first key dropped.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtocolsSourceConfig {
    /// Protocols to trace: `http` (HTTP/1.x), `http2` (HTTP/2 and gRPC),
    /// `postgresql`, `mysql` (MySQL and MariaDB), `redis`, `dns`. Default:
    /// all of them.
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
    /// Bytes copied per call (per read, write, SSL_read …), 256..16384.
    /// Headers beyond it are not seen; bodies beyond it are skipped by
    /// position. Default 4096.
    #[serde(default = "default_capture_bytes")]
    pub capture_bytes: u32,
    /// Trace only connections whose local or remote port is one of these
    /// (filtered in the kernel). Default: all.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Never trace processes with these names (filtered in the kernel,
    /// the process's name as in `/proc/PID/comm`, at most 15 bytes).
    #[serde(default)]
    pub exclude_comm: Vec<String>,
    /// Bodies to keep (off by default).
    #[serde(default)]
    pub bodies: Bodies,
    /// What database spans keep of statements.
    #[serde(default)]
    pub queries: Queries,
    /// Ports of DNS servers (at most 4): with `dns` enabled, UDP
    /// datagrams and TCP connections to or from them are traced. Default
    /// `[53]`.
    #[serde(default = "default_dns_ports")]
    pub dns_ports: Vec<u16>,
    /// Request and response headers kept as
    /// `http.request.header.<name>`/`http.response.header.<name>`
    /// (`user-agent` as `user_agent.original`). `authorization`,
    /// `proxy-authorization`, `cookie` and `set-cookie` are never kept.
    /// Default `["user-agent", "content-type"]`.
    #[serde(default = "default_headers")]
    pub headers: Vec<String>,
    /// Route templates (`/api/users/{id}`: `{name}` matches one path
    /// segment) giving `http.route`; other paths get a heuristic route
    /// (ids, UUIDs and hashes collapsed).
    #[serde(default)]
    pub routes: Vec<String>,
    /// Most distinct routes per service; beyond it new ones are collapsed,
    /// keeping metric cardinality bounded. Default 100.
    #[serde(default = "default_max_routes")]
    pub max_routes: usize,
    /// Plaintext of TLS connections through OpenSSL/BoringSSL (`libssl`
    /// found in processes' memory maps, attached as it appears). Default
    /// `true`.
    #[serde(default = "default_true")]
    pub tls: bool,
    /// Emit one span per request. Default `true`.
    #[serde(default = "default_true")]
    pub spans: bool,
    /// Emit the RED metrics and the service graph. Default `true`.
    #[serde(default = "default_true")]
    pub metrics: bool,
    /// Time between two emissions of the metrics (cumulative). Default
    /// `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Capacity of the kernel's connection map (an LRU; about 120 bytes
    /// each). Default 16384.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Size of the kernel's ring buffer of captured bytes (a power of two,
    /// at least 64 KiB); records it has no room for are counted as
    /// `ringbuf_full`. Default 8 MiB.
    #[serde(default = "default_ring_buffer_bytes")]
    pub ring_buffer_bytes: u32,
    /// Most unparsed bytes buffered per connection and direction. Default 64 KiB.
    #[serde(default = "default_max_buffer_bytes")]
    pub max_buffer_bytes: usize,
    /// Most bytes buffered by all connections together. Default 64 MiB.
    #[serde(default = "default_max_memory_bytes")]
    pub max_memory_bytes: usize,
}

impl Default for ProtocolsSourceConfig {
    fn default() -> Self {
        ProtocolsSourceConfig {
            protocols: default_protocols(),
            capture_bytes: default_capture_bytes(),
            ports: Vec::new(),
            exclude_comm: Vec::new(),
            bodies: Bodies::default(),
            queries: Queries::default(),
            dns_ports: default_dns_ports(),
            headers: default_headers(),
            routes: Vec::new(),
            max_routes: default_max_routes(),
            tls: true,
            spans: true,
            metrics: true,
            interval: DEFAULT_INTERVAL,
            max_connections: default_max_connections(),
            ring_buffer_bytes: default_ring_buffer_bytes(),
            max_buffer_bytes: default_max_buffer_bytes(),
            max_memory_bytes: default_max_memory_bytes(),
        }
    }
}

impl ProtocolsSourceConfig {
    /// What the protocol engine is told.
    pub fn engine_settings(&self, node: String) -> Settings {
        Settings {
            protocols: self.protocols.iter().filter_map(|p| Protocol::from_name(p)).collect(),
            headers: self.headers.clone(),
            routes: self.routes.clone(),
            max_routes_per_service: self.max_routes,
            bodies: engine::Bodies {
                max_bytes: self.bodies.max_bytes,
                content_types: self.bodies.content_types.clone(),
            },
            queries: engine::Queries {
                obfuscate: self.queries.obfuscate,
                max_length: self.queries.max_length,
                redis_keys: self.queries.redis_keys,
            },
            dns_ports: self.dns_ports.clone(),
            max_connection_bytes: self.max_buffer_bytes,
            max_memory_bytes: self.max_memory_bytes,
            node,
            ..Settings::default()
        }
    }
}

impl SourceType for ProtocolsSourceConfig {
    const NAME: &'static str = "protocols";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 8),
        attach_points: &[
            "tracepoint syscalls:sys_enter/exit_{read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg,recvmmsg,sendmmsg,sendfile64,connect,accept,accept4}",
            "tracepoint syscalls:sys_enter_close",
            "tracepoint sched:sched_process_exit",
            "uprobe/uretprobe SSL_read, SSL_write, SSL_read_ex, SSL_write_ex (libssl, when tls = true)",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for ProtocolsSourceConfig {
    fn outputs(&self) -> EventKinds {
        match (self.spans, self.metrics) {
            (true, true) => EventKinds::SPAN.union(EventKinds::METRIC),
            (true, false) => EventKinds::SPAN,
            _ => EventKinds::METRIC,
        }
    }

    /// CAP_BPF and CAP_PERFMON load and attach the tracepoint and uprobe
    /// programs; CAP_DAC_READ_SEARCH reads tracepoint ids in tracefs;
    /// CAP_SYS_PTRACE reads other processes' /proc/PID/maps to find the
    /// TLS libraries they use. Declared so the agent keeps them after start.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[
            Capability::BPF,
            Capability::PERFMON,
            Capability::DAC_READ_SEARCH,
            Capability::SYS_PTRACE,
        ])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
        for protocol in &self.protocols {
            check.that(
                Protocol::from_name(protocol).is_some(),
                "protocols",
                format_args!("`{protocol}` is not a known protocol (known: {})", known.join(", ")),
            );
        }
        check
            .that(
                !self.protocols.is_empty(),
                "protocols",
                "must name at least one protocol",
            )
            .that(
                (MIN_CAPTURE_BYTES..=PROTO_MAX_CAPTURE).contains(&self.capture_bytes),
                "capture_bytes",
                format_args!("must be between {MIN_CAPTURE_BYTES} and {PROTO_MAX_CAPTURE}"),
            )
            .that(
                self.spans || self.metrics,
                "spans",
                "spans and metrics are both off: nothing to emit",
            )
            .that(self.max_connections > 0, "max_connections", "must be at least 1")
            .that(
                (1..=PROTO_MAX_DNS_PORTS as usize).contains(&self.dns_ports.len()),
                "dns_ports",
                format_args!("must name 1 to {PROTO_MAX_DNS_PORTS} ports"),
            )
            .that(!self.dns_ports.contains(&0), "dns_ports", "port 0 is not a port")
            .that(
                self.queries.max_length >= 16,
                "queries.max_length",
                "must be at least 16",
            )
            .that(
                self.ring_buffer_bytes.is_power_of_two() && self.ring_buffer_bytes >= 64 * 1024,
                "ring_buffer_bytes",
                "must be a power of two, at least 65536",
            )
            .that(
                self.max_buffer_bytes >= self.capture_bytes as usize,
                "max_buffer_bytes",
                "must be at least capture_bytes",
            )
            .that(
                self.max_memory_bytes >= self.max_buffer_bytes,
                "max_memory_bytes",
                "must be at least max_buffer_bytes",
            )
            .that(self.max_routes > 0, "max_routes", "must be at least 1")
            .that(self.ports.len() <= 64, "ports", "at most 64 ports")
            .that(self.exclude_comm.len() <= 64, "exclude_comm", "at most 64 names");
        for name in &self.exclude_comm {
            check.that(
                !name.is_empty() && name.len() <= 15,
                "exclude_comm",
                format_args!("`{name}`: a process name has 1 to 15 bytes"),
            );
        }
        for route in &self.routes {
            check.that(
                route.starts_with('/'),
                "routes",
                format_args!("`{route}` must start with `/`"),
            );
        }
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        // Load and attach now, so a node that cannot run the source fails
        // at startup with the program, attach point and reason.
        let labels = component_metrics::labels(&cx.info);
        let (collector, records) = super::collect::Collector::load(self, cx.global.node_name.to_string(), &labels)?;
        Ok(Box::pin(super::run::run(collector, records, self.clone(), cx)))
    }
}
