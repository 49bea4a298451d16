//! A decoded header block, keeping only what spans need: pseudo-headers,
//! allow-listed headers (credentials never), content type, gRPC status,
//! trace context; and how many fields could not be decoded.

use super::super::settings::Settings;
use super::super::trace_context::TraceParent;

/// Longest value kept (paths included).
const MAX_VALUE: usize = 256;
/// Fields of one block looked at; beyond, the rest is only decoded (for
/// the dynamic table) and the block counted as truncated.
pub const MAX_FIELDS: usize = 128;

/// One header block's useful fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Head {
    /// `:method`.
    pub method: Option<String>,
    /// `:path` without its query.
    pub path: Option<String>,
    /// The query of `:path`, redacted later.
    pub query: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `:status`.
    pub status: Option<u16>,
    /// `content-type`.
    pub content_type: Option<String>,
    /// `grpc-status`.
    pub grpc_status: Option<u32>,
    /// `traceparent`, when valid.
    pub traceparent: Option<TraceParent>,
    /// Allow-listed headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Fields whose name could not be decoded (joined mid-connection).
    pub unknown: u32,
    /// Fields past [`MAX_FIELDS`].
    pub truncated: bool,
    fields: usize,
}

impl Head {
    /// Whether it carries request pseudo-headers.
    pub fn is_request(&self) -> bool {
        self.method.is_some() || self.path.is_some()
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        let s = |v: &Option<String>| v.as_ref().map_or(0, String::len);
        s(&self.method)
            + s(&self.path)
            + s(&self.query)
            + s(&self.authority)
            + s(&self.content_type)
            + self.headers.iter().map(|(n, v)| n.len() + v.len() + 48).sum::<usize>()
    }

    /// Whether the request is gRPC (`application/grpc`, `+proto` …).
    pub fn is_grpc(&self) -> bool {
        self.content_type.as_deref().is_some_and(|t| {
            t.as_bytes()
                .get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
        })
    }

    /// Takes one decoded field; `None` is what could not be resolved.
    pub fn field(&mut self, name: Option<&[u8]>, value: Option<&[u8]>, settings: &Settings) {
        self.fields += 1;
        if self.fields > MAX_FIELDS {
            self.truncated = true;
            return;
        }
        let (Some(name), Some(value)) = (name, value) else {
            self.unknown += 1;
            return;
        };
        let text = || {
            let mut v = String::from_utf8_lossy(value).into_owned();
            truncate(&mut v);
            v
        };
        match name {
            b":method" => self.method = Some(text()),
            b":path" => {
                let v = String::from_utf8_lossy(value);
                let v = v.split('#').next().unwrap_or("");
                let (path, query) = match v.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (v, None),
                };
                let mut path = path.to_owned();
                truncate(&mut path);
                self.path = Some(path);
                self.query = query.map(|q| q.chars().take(MAX_VALUE).collect());
            }
            b":authority" => self.authority = Some(text()),
            b":status" => self.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()),
            b"content-type" => self.content_type = Some(text()),
            b"grpc-status" => self.grpc_status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()),
            b"traceparent" => self.traceparent = std::str::from_utf8(value).ok().and_then(TraceParent::parse),
            _ => {}
        }
        if name.first() != Some(&b':') {
            if let Ok(name) = std::str::from_utf8(name) {
                if settings.keeps_header(name) {
                    self.headers.push((name.to_ascii_lowercase(), text()));
                }
            }
        }
    }
}

fn truncate(value: &mut String) {
    if value.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
}
