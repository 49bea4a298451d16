//! What the engine is told: which protocols to parse, what to keep of each
//! request (headers, bodies, routes) and how much memory it may hold.

use std::time::Duration;

/// An application protocol the engine can parse. Each one is a module of
/// the engine (its session type) and a line in [`super::infer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.0 and HTTP/1.1.
    Http1,
    /// HTTP/2 (prior knowledge, `Upgrade: h2c`, TLS with ALPN `h2`), and
    /// gRPC on it.
    Http2,
    /// PostgreSQL's frontend/backend protocol v3.
    Postgres,
    /// The MySQL client/server protocol (MySQL and MariaDB).
    Mysql,
    /// Redis RESP2 and RESP3.
    Redis,
    /// DNS over UDP and TCP.
    Dns,
}

impl Protocol {
    /// Every protocol this build parses.
    pub const ALL: &'static [Protocol] = &[
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Postgres,
        Protocol::Mysql,
        Protocol::Redis,
        Protocol::Dns,
    ];

    /// The protocol of a config name (`"http"`): its [`Protocol::name`].
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The `network.protocol.name` of its spans.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http",
            Protocol::Http2 => "http2",
            Protocol::Postgres => "postgresql",
            Protocol::Mysql => "mysql",
            Protocol::Redis => "redis",
            Protocol::Dns => "dns",
        }
    }
}

/// Headers never kept, whatever the allowlist says: they carry credentials.
pub const NEVER_KEPT: &[&str] = &["authorization", "cookie", "set-cookie", "proxy-authorization"];

/// Request and response bodies: off unless `max_bytes > 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bodies {
    /// How many bytes of a body to keep; 0 keeps none.
    pub max_bytes: usize,
    /// Media types whose bodies are kept (`application/json`); parameters
    /// such as `; charset=utf-8` are ignored when matching.
    pub content_types: Vec<String>,
}

impl Default for Bodies {
    fn default() -> Self {
        Bodies {
            max_bytes: 0,
            content_types: vec!["application/json".into()],
        }
    }
}

/// What database spans keep of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queries {
    /// Replace literals (strings, numbers, lists of them) with `?`
    /// before a statement leaves the engine. On by default: literals
    /// carry passwords and personal data.
    pub obfuscate: bool,
    /// Characters of `db.query.text` kept; longer statements are cut and
    /// marked (`sonde.db.query.truncated`).
    pub max_length: usize,
    /// Keep the first key of a Redis command (`db.query.text` is then
    /// `GET user:42`); off keeps only the command name.
    pub redis_keys: bool,
}

impl Default for Queries {
    fn default() -> Self {
        Queries {
            obfuscate: true,
            max_length: 2048,
            redis_keys: true,
        }
    }
}

/// The engine's options.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Protocols to recognise; connections speaking none of them are
    /// ignored after their first bytes.
    pub protocols: Vec<Protocol>,
    /// Header names (any case) kept as `http.request.header.<name>` and
    /// `http.response.header.<name>`; [`NEVER_KEPT`] ones are dropped.
    pub headers: Vec<String>,
    /// Route templates (`/api/users/{id}`), tried in order before the
    /// heuristic.
    pub routes: Vec<String>,
    /// Distinct `http.route` values per service; beyond it, `/*`.
    pub max_routes_per_service: usize,
    /// Bodies to keep.
    pub bodies: Bodies,
    /// What database spans keep of statements.
    pub queries: Queries,
    /// Ports of DNS servers: DNS over TCP is only believed to or from them.
    pub dns_ports: Vec<u16>,
    /// Bytes one connection may buffer (an unfinished head, out-of-order
    /// chunks, a kept body); beyond it the message is dropped and counted.
    pub max_connection_bytes: usize,
    /// Bytes the whole engine may hold; beyond it new bytes and new
    /// connections are dropped and counted.
    pub max_memory_bytes: usize,
    /// Connections without bytes for this long are forgotten, and requests
    /// unanswered for this long are dropped.
    pub idle_timeout: Duration,
    /// Distinct RED and service-graph series kept; points of new series
    /// beyond it are counted, not kept.
    pub max_series: usize,
    /// The node name of every event (`k8s.node.name`, or `host.name` off
    /// Kubernetes: `keys::node()`).
    pub node: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            protocols: vec![Protocol::Http1],
            headers: vec!["user-agent".into(), "content-type".into()],
            routes: Vec::new(),
            max_routes_per_service: 100,
            bodies: Bodies::default(),
            queries: Queries::default(),
            dns_ports: vec![53],
            max_connection_bytes: 64 * 1024,
            max_memory_bytes: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_series: 10_000,
            node: String::new(),
        }
    }
}

impl Settings {
    /// Whether header `name` (in any case) is kept.
    pub fn keeps_header(&self, name: &str) -> bool {
        // The allow-list first: most headers are on neither list.
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
            && !NEVER_KEPT.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Bytes of a body to keep on a connection that keeps `kept` bytes of
    /// bodies already: bodies stay under half the connection's buffer cap.
    pub fn body_bytes_within(&self, kept: usize, content_type: Option<&str>) -> usize {
        let cap = self.max_connection_bytes / 2;
        self.body_bytes(content_type).min(cap.saturating_sub(kept))
    }

    /// How many bytes of a body of `content_type` to keep.
    pub fn body_bytes(&self, content_type: Option<&str>) -> usize {
        let Some(content_type) = content_type else { return 0 };
        let media = content_type.split(';').next().unwrap_or("").trim();
        let wanted = self.bodies.content_types.iter().any(|t| t.eq_ignore_ascii_case(media));
        if wanted {
            self.bodies.max_bytes.min(self.max_connection_bytes / 2)
        } else {
            0
        }
    }
}
