//! Request and response heads, parsed by `httparse` into owned values that
//! keep only what spans need: allow-listed headers, trace context, framing.
//! Text is kept as [`SharedStr`]: short values (most methods, paths,
//! header values) inline, with no allocation, and put on spans as they are.

use std::mem::MaybeUninit;

use sonde_core::event::SharedStr;

use super::super::settings::Settings;
use super::super::trace_context::TraceParent;

/// Headers one head may have; more is a parse error (and counted).
const MAX_HEADERS: usize = 96;
/// Longest header value kept in a span.
const MAX_VALUE: usize = 256;

/// Methods RFC 9110 and RFC 5789 define; others are reported as `_OTHER`.
pub const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Which start line a direction carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /path HTTP/1.1`.
    Request,
    /// `HTTP/1.1 200 OK`.
    Response,
}

/// How a message's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response read until the connection closes.
    UntilClose,
}

/// A request head.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The method as sent.
    pub method: SharedStr,
    /// The path, without query.
    pub path: SharedStr,
    /// The raw query (after `?`), redacted later.
    pub query: Option<String>,
    /// HTTP/1.x's minor version.
    pub minor: u8,
    /// Allow-listed headers, lowercase names.
    pub headers: Vec<(SharedStr, SharedStr)>,
    /// `Content-Type`, for body capture.
    pub content_type: Option<SharedStr>,
    /// The W3C `traceparent`, when valid.
    pub traceparent: Option<TraceParent>,
    /// How the body ends.
    pub body: BodyLength,
    /// `Upgrade` asked for (the response decides).
    pub upgrade: bool,
    /// The upgrade asked for is to `h2c` (HTTP/2 in clear text).
    pub h2c: bool,
}

/// A response head.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// HTTP/1.x's minor version.
    pub minor: u8,
    /// Allow-listed headers, lowercase names.
    pub headers: Vec<(SharedStr, SharedStr)>,
    /// `Content-Type`, for body capture.
    pub content_type: Option<SharedStr>,
    /// How the body ends, before the request method and status are considered.
    pub body: BodyLength,
}

/// A parsed head.
#[derive(Clone, Debug, PartialEq)]
pub enum Head {
    /// From the client.
    Request(Request),
    /// From the server.
    Response(Response),
}

/// What parsing a buffer gave.
#[derive(Debug)]
pub enum Parsed {
    /// More bytes needed.
    Partial,
    /// A head of that many bytes.
    Complete(Head, usize),
    /// Not HTTP/1.x.
    Invalid,
}

/// Parses the head at the start of `buf`. The header array is left
/// uninitialised (httparse writes what it uses): filling 96 empty headers
/// per head cost more than parsing a small one.
pub fn parse(buf: &[u8], kind: Kind, settings: &Settings) -> Parsed {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    match kind {
        Kind::Request => {
            let mut request = httparse::Request::new(&mut []);
            match request.parse_with_uninit_headers(buf, &mut headers) {
                Ok(httparse::Status::Complete(n)) => match request_head(&request, settings) {
                    Some(head) => Parsed::Complete(Head::Request(head), n),
                    None => Parsed::Invalid,
                },
                Ok(httparse::Status::Partial) => Parsed::Partial,
                Err(_) => Parsed::Invalid,
            }
        }
        Kind::Response => {
            let mut response = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut headers)
            {
                Ok(httparse::Status::Complete(n)) => match response_head(&response, settings) {
                    Some(head) => Parsed::Complete(Head::Response(head), n),
                    None => Parsed::Invalid,
                },
                Ok(httparse::Status::Partial) => Parsed::Partial,
                Err(_) => Parsed::Invalid,
            }
        }
    }
}

/// What the headers say, beyond the allow-listed ones.
struct Fields {
    kept: Vec<(SharedStr, SharedStr)>,
    content_type: Option<SharedStr>,
    traceparent: Option<TraceParent>,
    length: Option<u64>,
    chunked: bool,
    other_coding: bool,
    upgrade: bool,
    h2c: bool,
}

fn fields(headers: &[httparse::Header<'_>], settings: &Settings) -> Option<Fields> {
    let mut f = Fields {
        kept: Vec::new(),
        content_type: None,
        traceparent: None,
        length: None,
        chunked: false,
        other_coding: false,
        upgrade: false,
        h2c: false,
    };
    for header in headers {
        // Compared without case, after the length (one comparison at most);
        // the value is decoded only for the headers read or kept.
        let name = header.name;
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        let value = || String::from_utf8_lossy(header.value.trim_ascii());
        match name.len() {
            14 if is("content-length") => {
                let length: u64 = value().trim().parse().ok()?;
                if f.length.is_some_and(|l| l != length) {
                    return None;
                }
                f.length = Some(length);
            }
            17 if is("transfer-encoding") => {
                let value = value();
                let last = value.trim().rsplit(',').next().unwrap_or("").trim();
                f.chunked = last.eq_ignore_ascii_case("chunked");
                f.other_coding = !f.chunked;
            }
            12 if is("content-type") => f.content_type = Some(SharedStr::copied(value().trim())),
            11 if is("traceparent") => f.traceparent = TraceParent::parse(value().trim()),
            7 if is("upgrade") => {
                f.upgrade = true;
                f.h2c = value().trim().split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c"));
            }
            _ => {}
        }
        if settings.keeps_header(name) {
            let value = value();
            let value = value.trim();
            f.kept
                .push((lowercase(name), SharedStr::copied(truncated(value, MAX_VALUE))));
        }
    }
    Some(f)
}

fn request_head(request: &httparse::Request<'_, '_>, settings: &Settings) -> Option<Request> {
    let f = fields(request.headers, settings)?;
    let (path, query) = split_target(request.path?);
    let body = match (f.chunked, f.other_coding, f.length) {
        (true, _, _) => BodyLength::Chunked,
        (false, true, _) => return None,
        (false, false, Some(length)) => BodyLength::Length(length),
        (false, false, None) => BodyLength::None,
    };
    Some(Request {
        method: method(request.method?),
        path,
        query,
        minor: request.version?,
        headers: f.kept,
        content_type: f.content_type,
        traceparent: f.traceparent,
        body,
        upgrade: f.upgrade,
        h2c: f.h2c,
    })
}

fn response_head(response: &httparse::Response<'_, '_>, settings: &Settings) -> Option<Response> {
    let f = fields(response.headers, settings)?;
    let body = match (f.chunked, f.other_coding, f.length) {
        (true, _, _) => BodyLength::Chunked,
        (false, true, _) => BodyLength::UntilClose,
        (false, false, Some(length)) => BodyLength::Length(length),
        (false, false, None) => BodyLength::UntilClose,
    };
    Some(Response {
        status: response.code?,
        minor: response.version?,
        headers: f.kept,
        content_type: f.content_type,
        body,
    })
}

/// `/a/b?x=1` → (`/a/b`, `x=1`); an absolute target (a proxy's
/// `http://host/a`) loses its scheme and authority; a fragment is dropped.
fn split_target(target: &str) -> (SharedStr, Option<String>) {
    let target = target.split('#').next().unwrap_or("");
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    match target.split_once('?') {
        Some((path, query)) => (SharedStr::copied(path), Some(query.to_owned())),
        None => (SharedStr::copied(target), None),
    }
}

/// A known method as static text (no copy), another as sent.
fn method(sent: &str) -> SharedStr {
    match KNOWN_METHODS.iter().find(|m| **m == sent) {
        Some(known) => SharedStr::from_static(known),
        None => SharedStr::copied(sent),
    }
}

/// A header name in lowercase, copied once (inline when short).
fn lowercase(name: &str) -> SharedStr {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        SharedStr::from(name.to_ascii_lowercase())
    } else {
        SharedStr::copied(name)
    }
}

/// `value` cut to at most `max` bytes, on a character boundary.
fn truncated(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}
