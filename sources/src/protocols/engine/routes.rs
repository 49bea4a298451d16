//! `http.route`: the path with its variable parts replaced, so metrics
//! stay few. In order: the user's templates (`/api/users/{id}`: a `{…}`
//! segment matches any one segment), then a heuristic (numbers, UUIDs and
//! hex hashes become `{id}`; other tokens, meaning segments longer than
//! three characters with a digit or longer than 32 characters, become `*`),
//! then a cap: a service that has produced `max_routes_per_service`
//! distinct routes gets `/*` for any new one.

use std::net::SocketAddr;

use foldhash::{HashMap, HashMapExt, HashSet};

use sonde_core::event::SharedStr;

/// Services whose routes are remembered; beyond it, new services' routes
/// are `/*` (memory stays bounded: services × routes per service).
const MAX_SERVICES: usize = 1024;
/// Segments of a route; deeper paths end in `/*`.
const MAX_SEGMENTS: usize = 16;
/// What a route collapses to beyond the caps.
pub const COLLAPSED: &str = "/*";
/// Paths whose route is remembered; the table is cleared beyond it.
const MAX_CACHED_PATHS: usize = 4096;

/// Whose routes a cap counts: the server's process and port on server
/// spans, the called address on client spans (typed: finding it per span
/// allocates nothing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// A server on this node: its cgroup, process name and local port.
    Server {
        /// The cgroup id.
        cgroup: u64,
        /// The process name.
        comm: SharedStr,
        /// The listening port.
        port: u16,
    },
    /// The address a client called.
    Called(SocketAddr),
    /// A client whose peer is unknown: its process.
    Process(u32),
}

/// One template, split into segments (`None`: a `{…}` placeholder).
#[derive(Debug)]
struct Template {
    text: SharedStr,
    segments: Vec<Option<String>>,
}

/// Templates, and the routes each service produced so far.
#[derive(Debug)]
pub struct Routes {
    templates: Vec<Template>,
    seen: HashMap<Service, HashSet<SharedStr>>,
    /// Path → route (templates and heuristic, before the cap): the same
    /// few paths come again and again.
    by_path: HashMap<Box<str>, SharedStr>,
    cap: usize,
}

impl Routes {
    /// From the user's templates and the per-service cap.
    pub fn new(templates: &[String], cap: usize) -> Self {
        let templates = templates
            .iter()
            .map(|t| Template {
                text: t.clone().into(),
                segments: t
                    .split('/')
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
                    .collect(),
            })
            .collect();
        Routes {
            templates,
            seen: HashMap::new(),
            by_path: HashMap::new(),
            cap,
        }
    }

    /// The route of `path` for `service` (a name for the server: its
    /// process and port, or the address a client called).
    pub fn route(&mut self, service: &Service, path: &str) -> SharedStr {
        let route = match self.by_path.get(path) {
            Some(route) => route.clone(),
            None => {
                let route = self.template(path).unwrap_or_else(|| heuristic(path).into());
                if self.by_path.len() >= MAX_CACHED_PATHS {
                    self.by_path.clear();
                }
                self.by_path.insert(path.into(), route.clone());
                route
            }
        };
        if let Some(routes) = self.seen.get_mut(service) {
            if routes.contains(&route) {
                return route;
            }
            if routes.len() >= self.cap {
                return SharedStr::from_static(COLLAPSED);
            }
            routes.insert(route.clone());
            return route;
        }
        if self.seen.len() >= MAX_SERVICES || self.cap == 0 {
            return SharedStr::from_static(COLLAPSED);
        }
        self.seen
            .insert(service.clone(), std::iter::once(route.clone()).collect());
        route
    }

    fn template(&self, path: &str) -> Option<SharedStr> {
        self.templates.iter().find_map(|t| {
            let mut segments = path.split('/');
            let all = t.segments.iter().all(|want| match (want, segments.next()) {
                (Some(literal), Some(got)) => literal == got,
                (None, Some(got)) => !got.is_empty(),
                (_, None) => false,
            });
            (all && segments.next().is_none()).then(|| t.text.clone())
        })
    }
}

/// The heuristic route of `path`.
pub fn heuristic(path: &str) -> String {
    if !path.starts_with('/') {
        // `*` (OPTIONS), an authority (CONNECT): nothing to template.
        return COLLAPSED.to_owned();
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').skip(1).enumerate() {
        if i == MAX_SEGMENTS {
            out.push_str(COLLAPSED);
            return out;
        }
        out.push('/');
        out.push_str(collapse(segment));
    }
    out
}

fn collapse(segment: &str) -> &str {
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    let hex = segment.bytes().all(|b| b.is_ascii_hexdigit());
    if !segment.is_empty() && digits == segment.len() || is_uuid(segment) || (hex && segment.len() >= 16) {
        "{id}"
    } else if (digits > 0 && segment.len() > 3) || segment.len() > 32 {
        "*"
    } else {
        segment
    }
}

fn is_uuid(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
