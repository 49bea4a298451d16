//! Events ↔ bytes, for the disk buffer: a compact, versioned binary form of
//! an [`EventBatch`].
//!
//! Hand-written rather than a serde format: events serialize for humans
//! (JSON with hex ids, tagged enums) and have no `Deserialize`, and the
//! disk buffer must write and read a million events a second on one core.
//! The strings of a batch come from a small set (metric names, attribute
//! keys, pod names), so each batch carries a string table and events refer
//! to it by index: decoding allocates each distinct string once per batch
//! and shares it (`SharedStr` is reference-counted), as the source did.
//!
//! Layout (little endian): `u32` string count, each string as `u32` length
//! and UTF-8 bytes; `u32` event count; the events. A string field is a
//! `u32` table index, `u32::MAX` for an absent optional one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::event::{
    Attributes, Event, EventBatch, Frame, FrameKind, Histogram, Log, Metric, MetricValue, Profile, Severity, SharedStr,
    Span, SpanKind, SpanStatus, StackSample, Temporality, Timestamp, Value,
};

/// Why bytes are not a batch. The record's checksum matched, so this is a
/// bug or a buffer written by an incompatible version, never a torn write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside a field.
    #[error("record payload ends early (at byte {0})")]
    Truncated(usize),
    /// A tag byte names no variant.
    #[error("unknown {what} tag {tag} at byte {at}")]
    Tag {
        /// The enum being read.
        what: &'static str,
        /// The byte found.
        tag: u8,
        /// Where.
        at: usize,
    },
    /// A string index past the table.
    #[error("string index {0} past the record's table")]
    StringIndex(u32),
    /// A table string is not UTF-8.
    #[error("a string of the record is not UTF-8")]
    Utf8,
    /// Bytes left after the last event.
    #[error("{0} bytes after the last event")]
    Trailing(usize),
}

/// Hashes a string's address and length: the same `SharedStr` (or static)
/// is found again without hashing its bytes. Equal texts at different
/// addresses get two entries, which only costs a few bytes.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Encodes `batch` into `out` (appended).
pub fn encode(batch: &EventBatch, out: &mut Vec<u8>) {
    let mut encoder = Encoder::default();
    for event in batch.iter() {
        encoder.event(event);
    }
    out.extend_from_slice(&(encoder.strings.len() as u32).to_le_bytes());
    for s in &encoder.strings {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    out.extend_from_slice(&encoder.body);
}

#[derive(Default)]
struct Encoder<'a> {
    strings: Vec<&'a str>,
    index: HashMap<(usize, usize), u32, BuildHasherDefault<AddressHasher>>,
    body: Vec<u8>,
}

impl<'a> Encoder<'a> {
    fn u8(&mut self, v: u8) {
        self.body.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.body.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.body.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    fn str(&mut self, s: &'a str) {
        let key = (s.as_ptr() as usize, s.len());
        let next = self.strings.len() as u32;
        let index = *self.index.entry(key).or_insert(next);
        if index == next {
            self.strings.push(s);
        }
        self.u32(index);
    }
    fn opt_str(&mut self, s: &'a Option<SharedStr>) {
        match s {
            Some(s) => self.str(s),
            None => self.u32(u32::MAX),
        }
    }
    fn attributes(&mut self, attributes: &'a Attributes) {
        self.u32(attributes.len() as u32);
        for (key, value) in attributes.iter() {
            self.str(key);
            match value {
                Value::Str(s) => {
                    self.u8(0);
                    self.str(s);
                }
                Value::Int(i) => {
                    self.u8(1);
                    self.u64(*i as u64);
                }
                Value::Float(f) => {
                    self.u8(2);
                    self.f64(*f);
                }
                Value::Bool(b) => {
                    self.u8(3);
                    self.u8(u8::from(*b));
                }
            }
        }
    }

    fn event(&mut self, event: &'a Event) {
        match event {
            Event::Metric(m) => {
                self.u8(0);
                self.metric(m);
            }
            Event::Log(l) => {
                self.u8(1);
                self.str(&l.name);
                self.u8(l.severity as u8);
                self.opt_str(&l.message);
                self.attributes(&l.fields);
                self.attributes(&l.attributes);
                self.u64(l.timestamp.as_nanos());
            }
            Event::Profile(p) => {
                self.u8(2);
                self.profile(p);
            }
            Event::Span(s) => {
                self.u8(3);
                self.span(s);
            }
        }
    }

    fn metric(&mut self, m: &'a Metric) {
        self.str(&m.name);
        self.opt_str(&m.description);
        self.opt_str(&m.unit);
        match &m.value {
            MetricValue::Counter { value } => {
                self.u8(0);
                self.f64(*value);
            }
            MetricValue::Gauge { value } => {
                self.u8(1);
                self.f64(*value);
            }
            MetricValue::Histogram(h) => {
                self.u8(2);
                self.u32(h.bounds.len() as u32);
                for b in h.bounds.iter() {
                    self.f64(*b);
                }
                self.u32(h.counts.len() as u32);
                for c in &h.counts {
                    self.u64(*c);
                }
                self.f64(h.sum);
                self.u64(h.count);
            }
        }
        self.u8(match m.temporality {
            Temporality::Delta => 0,
            Temporality::Cumulative => 1,
        });
        self.attributes(&m.attributes);
        self.u64(m.timestamp.as_nanos());
    }

    fn profile(&mut self, p: &'a Profile) {
        self.str(&p.sample_type);
        self.str(&p.sample_unit);
        self.u64(p.period);
        self.u64(p.start.as_nanos());
        self.u64(p.end.as_nanos());
        self.u32(p.samples.len() as u32);
        for sample in &p.samples {
            self.u32(sample.frames.len() as u32);
            for frame in sample.frames.iter() {
                self.str(&frame.function);
                self.opt_str(&frame.module);
                self.opt_str(&frame.file);
                match frame.line {
                    Some(line) => {
                        self.u8(1);
                        self.u32(line);
                    }
                    None => self.u8(0),
                }
                self.u64(frame.address);
                self.u8(match frame.kind {
                    FrameKind::Kernel => 0,
                    FrameKind::Native => 1,
                    FrameKind::Jit => 2,
                    FrameKind::Unknown => 3,
                    FrameKind::Python => 4,
                });
            }
            self.u64(sample.count);
        }
        self.attributes(&p.attributes);
    }

    fn span(&mut self, s: &'a Span) {
        self.body.extend_from_slice(&s.trace_id);
        self.body.extend_from_slice(&s.span_id);
        match &s.parent_span_id {
            Some(parent) => {
                self.u8(1);
                self.body.extend_from_slice(parent);
            }
            None => self.u8(0),
        }
        self.str(&s.name);
        self.u8(match s.kind {
            SpanKind::Client => 0,
            SpanKind::Server => 1,
            SpanKind::Internal => 2,
        });
        self.u64(s.start.as_nanos());
        self.u64(s.end.as_nanos());
        match &s.status {
            SpanStatus::Unset => self.u8(0),
            SpanStatus::Ok => self.u8(1),
            SpanStatus::Error { message } => {
                self.u8(2);
                self.str(message);
            }
        }
        self.attributes(&s.fields);
        self.attributes(&s.attributes);
    }
}

/// Decodes a batch encoded by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<EventBatch, DecodeError> {
    let mut d = Decoder {
        bytes,
        at: 0,
        strings: Vec::new(),
    };
    let count = d.u32()? as usize;
    // Capacity from the data, bounded by what the bytes could hold.
    d.strings.reserve(count.min(bytes.len() / 4));
    for _ in 0..count {
        let len = d.u32()? as usize;
        let raw = d.take(len)?;
        let text = std::str::from_utf8(raw).map_err(|_| DecodeError::Utf8)?;
        d.strings.push(SharedStr::from(Arc::<str>::from(text)));
    }
    let events = d.u32()? as usize;
    let mut out = Vec::with_capacity(events.min(bytes.len()));
    for _ in 0..events {
        out.push(d.event()?);
    }
    if d.at != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - d.at));
    }
    Ok(EventBatch::new(out))
}

struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
    strings: Vec<SharedStr>,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(DecodeError::Truncated(self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }
    fn timestamp(&mut self) -> Result<Timestamp, DecodeError> {
        Ok(Timestamp::from_nanos(self.u64()?))
    }
    fn tag(&mut self, what: &'static str, max: u8) -> Result<u8, DecodeError> {
        let at = self.at;
        let tag = self.u8()?;
        if tag > max {
            return Err(DecodeError::Tag { what, tag, at });
        }
        Ok(tag)
    }
    fn str(&mut self) -> Result<SharedStr, DecodeError> {
        let index = self.u32()?;
        self.strings
            .get(index as usize)
            .cloned()
            .ok_or(DecodeError::StringIndex(index))
    }
    fn opt_str(&mut self) -> Result<Option<SharedStr>, DecodeError> {
        let index = self.u32()?;
        if index == u32::MAX {
            return Ok(None);
        }
        self.strings
            .get(index as usize)
            .cloned()
            .map(Some)
            .ok_or(DecodeError::StringIndex(index))
    }
    /// A count of items of at least `min_size` bytes each, bounded by what
    /// is left (so a wrong count cannot make a huge allocation).
    fn count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.bytes.len() - self.at {
            return Err(DecodeError::Truncated(self.at));
        }
        Ok(n)
    }
    fn attributes(&mut self) -> Result<Attributes, DecodeError> {
        let n = self.count(5)?;
        let mut attributes = Attributes::new();
        attributes.reserve(n);
        for _ in 0..n {
            let key = self.str()?;
            let value = match self.tag("attribute value", 3)? {
                0 => Value::Str(self.str()?),
                1 => Value::Int(self.u64()? as i64),
                2 => Value::Float(self.f64()?),
                _ => Value::Bool(self.u8()? != 0),
            };
            attributes.insert(key, value);
        }
        Ok(attributes)
    }

    fn event(&mut self) -> Result<Event, DecodeError> {
        Ok(match self.tag("event", 3)? {
            0 => Event::Metric(self.metric()?),
            1 => {
                let name = self.str()?;
                let severity = match self.tag("severity", 3)? {
                    0 => Severity::Debug,
                    1 => Severity::Info,
                    2 => Severity::Warn,
                    _ => Severity::Error,
                };
                let message = self.opt_str()?;
                let fields = self.attributes()?;
                let attributes = self.attributes()?;
                let timestamp = self.timestamp()?;
                Event::Log(Box::new(Log {
                    name,
                    severity,
                    message,
                    fields,
                    attributes,
                    timestamp,
                }))
            }
            2 => Event::Profile(Box::new(self.profile()?)),
            _ => Event::Span(Box::new(self.span()?)),
        })
    }

    fn metric(&mut self) -> Result<Metric, DecodeError> {
        let name = self.str()?;
        let description = self.opt_str()?;
        let unit = self.opt_str()?;
        let value = match self.tag("metric value", 2)? {
            0 => MetricValue::Counter { value: self.f64()? },
            1 => MetricValue::Gauge { value: self.f64()? },
            _ => {
                let n = self.count(8)?;
                let bounds = (0..n).map(|_| self.f64()).collect::<Result<Arc<[f64]>, _>>()?;
                let n = self.count(8)?;
                let counts = (0..n).map(|_| self.u64()).collect::<Result<Vec<u64>, _>>()?;
                let sum = self.f64()?;
                let count = self.u64()?;
                MetricValue::Histogram(Box::new(Histogram {
                    bounds,
                    counts,
                    sum,
                    count,
                }))
            }
        };
        let temporality = match self.tag("temporality", 1)? {
            0 => Temporality::Delta,
            _ => Temporality::Cumulative,
        };
        let attributes = self.attributes()?;
        let timestamp = self.timestamp()?;
        Ok(Metric {
            name,
            description,
            unit,
            value,
            temporality,
            attributes,
            timestamp,
        })
    }

    fn profile(&mut self) -> Result<Profile, DecodeError> {
        let sample_type = self.str()?;
        let sample_unit = self.str()?;
        let period = self.u64()?;
        let start = self.timestamp()?;
        let end = self.timestamp()?;
        let n = self.count(4)?;
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let frames = self.count(22)?;
            let mut stack = Vec::with_capacity(frames);
            for _ in 0..frames {
                let function = self.str()?;
                let module = self.opt_str()?;
                let file = self.opt_str()?;
                let line = match self.tag("line", 1)? {
                    0 => None,
                    _ => Some(self.u32()?),
                };
                let address = self.u64()?;
                let kind = match self.tag("frame kind", 4)? {
                    0 => FrameKind::Kernel,
                    1 => FrameKind::Native,
                    2 => FrameKind::Jit,
                    4 => FrameKind::Python,
                    _ => FrameKind::Unknown,
                };
                stack.push(Frame {
                    function,
                    module,
                    file,
                    line,
                    address,
                    kind,
                });
            }
            let count = self.u64()?;
            samples.push(StackSample {
                frames: stack.into(),
                count,
            });
        }
        let attributes = self.attributes()?;
        Ok(Profile {
            sample_type,
            sample_unit,
            period,
            start,
            end,
            samples,
            attributes,
        })
    }

    fn span(&mut self) -> Result<Span, DecodeError> {
        let trace_id = self.array::<16>()?;
        let span_id = self.array::<8>()?;
        let parent_span_id = match self.tag("parent span", 1)? {
            0 => None,
            _ => Some(self.array::<8>()?),
        };
        let name = self.str()?;
        let kind = match self.tag("span kind", 2)? {
            0 => SpanKind::Client,
            1 => SpanKind::Server,
            _ => SpanKind::Internal,
        };
        let start = self.timestamp()?;
        let end = self.timestamp()?;
        let status = match self.tag("span status", 2)? {
            0 => SpanStatus::Unset,
            1 => SpanStatus::Ok,
            _ => SpanStatus::Error { message: self.str()? },
        };
        let fields = self.attributes()?;
        let attributes = self.attributes()?;
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start,
            end,
            status,
            fields,
            attributes,
        })
    }
}
