//! Which protocol a connection speaks, from the first bytes seen on it,
//! and the session that parses it. One line per protocol.

use super::super::model::Direction;
use super::http::{looks_like_http, HttpSession};
use super::session::Session;
use super::settings::{Protocol, Settings};

/// The first enabled protocol whose start `data` looks like.
pub fn detect(settings: &Settings, data: &[u8]) -> Option<Protocol> {
    settings.protocols.iter().copied().find(|protocol| match protocol {
        Protocol::Http1 => looks_like_http(data),
    })
}

/// A session for `protocol`; `requests` is the direction requests go when
/// the connection's role is known; `in_sync` when both streams are seen
/// from their first byte (a connection opened while the agent ran).
pub fn session(protocol: Protocol, requests: Option<Direction>, in_sync: bool) -> Box<dyn Session> {
    match protocol {
        Protocol::Http1 => Box::new(HttpSession::new(requests, in_sync)),
    }
}
