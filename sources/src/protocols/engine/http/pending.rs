//! A request waiting for its response, and what it holds.

use sonde_core::event::Timestamp;

use super::super::trace_context::Context;
use super::head::{Request, Response};

/// Bytes counted for a waiting request besides its strings and body.
const PENDING_OVERHEAD: usize = 256;

/// A request on its way, and its response once its head is seen.
#[derive(Debug)]
pub struct Pending {
    /// The head.
    pub request: Request,
    /// Its first byte.
    pub start: Timestamp,
    /// The thread that moved it.
    pub tid: u32,
    /// Its span's ids.
    pub context: Context,
    /// Its span's parent, from trace context.
    pub parent: Option<[u8; 8]>,
    /// Its body ended.
    pub request_done: bool,
    /// Its body's bytes.
    pub request_body_size: u64,
    /// Its body's kept prefix.
    pub request_body: Option<Vec<u8>>,
    /// The response's head, once seen.
    pub response: Option<Response>,
}

impl Pending {
    /// Bytes held: kept strings and body, plus bookkeeping.
    pub fn memory(&self) -> usize {
        let r = &self.request;
        let headers: usize = r.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let strings = r.method.len() + r.path.len() + r.query.as_ref().map_or(0, String::len);
        let response = self
            .response
            .as_ref()
            .map_or(0, |r| r.headers.iter().map(|(n, v)| n.len() + v.len()).sum());
        PENDING_OVERHEAD + headers + strings + response + self.request_body.as_ref().map_or(0, Vec::len)
    }
}
