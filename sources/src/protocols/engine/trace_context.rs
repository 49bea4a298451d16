//! Passive W3C trace context: `traceparent` read from requests (a small
//! hand parser: the format is four fixed-width hex fields), and server
//! spans "active" on the thread that read their request, so client calls
//! that thread makes before it writes the response become their children.
//!
//! Where this cannot work: runtimes that hand a request from one thread
//! to another (async executors, thread pools that read on one thread and
//! call out on another) break the thread rule; their client spans start
//! new traces. Event loops serving several requests at once on one thread
//! (nginx, Node.js) make a client call the child of the request that
//! thread read last, which may be the wrong one. No header is ever written
//! into the traffic.

use foldhash::HashMap;

/// A span's place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The span.
    pub span_id: [u8; 8],
}

/// A parsed `traceparent` header (version 00 format; later versions are
/// read the same way, as the specification asks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The caller's trace.
    pub trace_id: [u8; 16],
    /// The caller's span: the parent of the span that received it.
    pub parent_id: [u8; 8],
}

impl TraceParent {
    /// `00-<32 hex>-<16 hex>-<2 hex>`; `None` when malformed or all-zero.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") || flags.len() != 2 || hex::<1>(flags).is_none() {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = hex::<16>(trace)?;
        let parent_id = hex::<8>(parent)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, parent_id })
    }
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// A random, non-zero trace id (drawn over the whole range and redrawn
/// on zero: a `1..` range costs a 128-bit division per id).
pub fn random_trace_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A random, non-zero span id.
pub fn random_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// Most threads with an active server span at once; beyond it, new server
/// spans are not made active (their client calls start new traces).
const MAX_ACTIVE: usize = 65_536;

/// Server spans between request read and response write, by (pid, tid).
#[derive(Debug, Default)]
pub struct ActiveSpans {
    by_thread: HashMap<(u32, u32), Context>,
}

impl ActiveSpans {
    /// `context` is now active on the thread.
    pub fn enter(&mut self, pid: u32, tid: u32, context: Context) {
        if self.by_thread.len() < MAX_ACTIVE || self.by_thread.contains_key(&(pid, tid)) {
            self.by_thread.insert((pid, tid), context);
        }
    }

    /// The ids of a request's span: a `traceparent` it carries continues
    /// its trace; a client request made by a thread serving a request is
    /// that server span's child; otherwise a new trace. A server span
    /// becomes active on its thread. Returns the ids and the parent.
    pub fn begin(
        &mut self,
        pid: u32,
        tid: u32,
        traceparent: Option<TraceParent>,
        server: bool,
    ) -> (Context, Option<[u8; 8]>) {
        let inherited = match (traceparent, server) {
            (Some(tp), _) => Some((tp.trace_id, tp.parent_id)),
            (None, false) => self.current(pid, tid).map(|c| (c.trace_id, c.span_id)),
            (None, true) => None,
        };
        let context = Context {
            trace_id: inherited.map_or_else(random_trace_id, |(trace, _)| trace),
            span_id: random_span_id(),
        };
        if server {
            self.enter(pid, tid, context);
        }
        (context, inherited.map(|(_, parent)| parent))
    }

    /// The span active on the thread.
    pub fn current(&self, pid: u32, tid: u32) -> Option<Context> {
        self.by_thread.get(&(pid, tid)).copied()
    }

    /// The span's response is written: it is no longer active.
    pub fn leave(&mut self, pid: u32, tid: u32, span_id: [u8; 8]) {
        if self.current(pid, tid).is_some_and(|c| c.span_id == span_id) {
            self.by_thread.remove(&(pid, tid));
        }
    }

    /// Threads with an active span.
    pub fn len(&self) -> usize {
        self.by_thread.len()
    }

    /// Whether none is active.
    pub fn is_empty(&self) -> bool {
        self.by_thread.is_empty()
    }
}
