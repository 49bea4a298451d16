//! One direction's RESP2/RESP3 stream, decoded incrementally: bytes go in
//! as they come (a frame may span many syscalls), complete top-level
//! [`Frame`]s come out. Values are skipped, not buffered: a bulk string
//! is a length to count down, so a 1 GiB value costs nothing and a hole
//! inside it (bytes not captured) is skipped like the rest. Only a line
//! (a type byte and its header, at most [`MAX_LINE`] bytes kept) and the
//! few argument prefixes a span needs are held.
//!
//! Why not the `redis-protocol` crate: its decoders take one contiguous
//! buffer holding the whole frame (`Ok(None)` until it is complete), so a
//! large value would have to be buffered whole, and a hole inside it —
//! common, the capture keeps a few KiB per syscall — would make the frame
//! undecodable although its length is known.

use sonde_core::event::Timestamp;

use super::frame::{Frame, Kind, MAX_ARG, MAX_ARGS};

/// Bytes of a line kept (headers are short; simple strings, errors and
/// inline commands are cut here).
pub const MAX_LINE: usize = 256;
/// Longest line accepted (Redis's own inline limit is 64 KiB).
const MAX_LINE_LEN: usize = 64 * 1024;
/// Nesting depth accepted.
const MAX_DEPTH: usize = 32;
/// Longest bulk string accepted (Redis's `proto-max-bulk-len` default).
const MAX_BULK: u64 = 512 * 1024 * 1024;
/// Most elements of one aggregate accepted.
const MAX_ELEMENTS: u64 = 1 << 31;

/// Why bytes are not RESP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A byte that starts no RESP type.
    #[error("no RESP type starts with byte {0:#04x}")]
    BadType(u8),
    /// A length or count that is not a number, or out of bounds.
    #[error("bad length or count")]
    BadLength,
    /// A line over the limit, or not ended by CRLF.
    #[error("line too long or badly ended")]
    BadLine,
    /// A bulk string not followed by CRLF.
    #[error("bulk string not ended by CRLF")]
    BadTerminator,
    /// Aggregates nested deeper than the limit.
    #[error("aggregates nested too deep")]
    TooDeep,
    /// An inline command that is not words of printable text.
    #[error("inline command is not text")]
    NotText,
}

/// What a hole did to the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoleOutcome {
    /// Inside a bulk string of known length: skipped, nothing lost.
    Skipped,
    /// Somewhere else: the frame in progress is lost; the decoder waits
    /// for a frame start.
    Lost,
    /// The decoder was already waiting for a frame start.
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Reading a line: a type byte and its header, or an inline command.
    Line,
    /// Counting down a bulk string's payload and its CRLF.
    Bulk { left: u64, keep: Keep },
    /// Lost: waiting for a piece that starts a frame.
    Resync,
}

/// Where a bulk payload's kept prefix goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Nothing,
    Arg,
    Text,
}

#[derive(Clone, Copy, Debug)]
struct Open {
    left: u64,
    attribute: bool,
}

/// The frame being read.
#[derive(Debug)]
struct Building {
    kind: Kind,
    len: Option<u64>,
    args: Vec<Vec<u8>>,
    text: Vec<u8>,
    attribute: bool,
    start: Timestamp,
    tid: u32,
}

/// One direction's decoder.
#[derive(Debug)]
pub struct Decoder {
    mode: Mode,
    line: Vec<u8>,
    line_len: usize,
    stack: Vec<Open>,
    frame: Option<Building>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            mode: Mode::Line,
            line: Vec::new(),
            line_len: 0,
            stack: Vec::new(),
            frame: None,
        }
    }
}

/// Where a piece came from, for the frames it ends.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// When.
    pub at: Timestamp,
    /// Which thread.
    pub tid: u32,
    /// It starts where a syscall's bytes start.
    pub boundary: bool,
}

fn is_type(b: u8) -> bool {
    b"+-:$*%~>|,#(_=!".contains(&b)
}

/// Whether `data` (a piece's start) may start a frame: where a lost
/// decoder picks up again. `inline` allows inline commands.
pub fn starts_frame(data: &[u8], inline: bool) -> bool {
    match data.first() {
        Some(b) if is_type(*b) => data.get(1).is_none_or(|c| *c != b'\r' || matches!(b, b'+' | b'_')),
        Some(b) if inline => b.is_ascii_alphabetic(),
        _ => false,
    }
}

fn number(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn push_bounded(into: &mut Vec<u8>, bytes: &[u8]) {
    // One byte past MAX_ARG is kept: it tells that the text was cut.
    let room = (MAX_ARG + 1).saturating_sub(into.len());
    into.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl Decoder {
    /// Bytes held.
    pub fn memory(&self) -> usize {
        let frame = self
            .frame
            .as_ref()
            .map_or(0, |f| f.text.len() + f.args.iter().map(Vec::len).sum::<usize>());
        self.line.capacity() + self.stack.capacity() * std::mem::size_of::<Open>() + frame
    }

    /// Forgets the frame in progress and waits for a frame start.
    pub fn resync(&mut self) {
        self.mode = Mode::Resync;
        self.line.clear();
        self.line_len = 0;
        self.stack.clear();
        self.frame = None;
    }

    /// `n` bytes were not captured.
    pub fn hole(&mut self, n: u64, at: Timestamp, out: &mut Vec<Frame>) -> HoleOutcome {
        match &mut self.mode {
            Mode::Resync => HoleOutcome::Ignored,
            Mode::Bulk { left, keep } if n <= *left => {
                *left -= n;
                *keep = Keep::Nothing;
                if *left == 0 {
                    self.mode = Mode::Line;
                    self.element(at, out);
                }
                HoleOutcome::Skipped
            }
            _ => {
                self.resync();
                HoleOutcome::Lost
            }
        }
    }

    /// Takes captured bytes; complete frames go to `out`. `inline` allows
    /// inline commands (the request direction, or not known yet).
    pub fn data(
        &mut self,
        mut data: &[u8],
        origin: Origin,
        inline: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), DecodeError> {
        if self.mode == Mode::Resync {
            if !(origin.boundary && starts_frame(data, inline)) {
                return Ok(());
            }
            self.mode = Mode::Line;
        }
        while !data.is_empty() {
            match self.mode {
                Mode::Resync => return Ok(()),
                Mode::Bulk { left, keep } => {
                    let payload_left = left.saturating_sub(2);
                    let take = (data.len() as u64).min(left) as usize;
                    let payload = take.min(payload_left as usize);
                    self.keep(keep, &data[..payload]);
                    for (i, b) in data[payload..take].iter().enumerate() {
                        let want = if left - payload as u64 - i as u64 == 2 {
                            b'\r'
                        } else {
                            b'\n'
                        };
                        if *b != want {
                            return Err(DecodeError::BadTerminator);
                        }
                    }
                    data = &data[take..];
                    let left = left - take as u64;
                    if left == 0 {
                        self.mode = Mode::Line;
                        self.element(origin.at, out);
                    } else {
                        self.mode = Mode::Bulk { left, keep };
                    }
                }
                Mode::Line => {
                    if self.line_len == 0 && self.stack.is_empty() && self.frame.is_none() {
                        self.frame = Some(Building {
                            kind: Kind::Scalar,
                            len: None,
                            args: Vec::new(),
                            text: Vec::new(),
                            attribute: false,
                            start: origin.at,
                            tid: origin.tid,
                        });
                    }
                    let end = data.iter().position(|b| *b == b'\n');
                    let part = &data[..end.map_or(data.len(), |e| e + 1)];
                    let room = MAX_LINE.saturating_sub(self.line.len());
                    self.line.extend_from_slice(&part[..part.len().min(room)]);
                    self.line_len += part.len();
                    data = &data[part.len()..];
                    if self.line_len > MAX_LINE_LEN {
                        return Err(DecodeError::BadLine);
                    }
                    if end.is_some() {
                        self.line_done(origin.at, inline, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn keep(&mut self, keep: Keep, bytes: &[u8]) {
        let Some(frame) = self.frame.as_mut() else { return };
        match keep {
            Keep::Nothing => {}
            Keep::Arg => {
                if let Some(arg) = frame.args.last_mut() {
                    push_bounded(arg, bytes);
                }
            }
            Keep::Text => push_bounded(&mut frame.text, bytes),
        }
    }

    fn line_done(&mut self, at: Timestamp, inline: bool, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        let line = std::mem::take(&mut self.line);
        let whole = self.line_len <= MAX_LINE;
        self.line_len = 0;
        let result = self.interpret(&line, whole, at, inline, out);
        self.line = line;
        self.line.clear();
        result
    }

    fn interpret(
        &mut self,
        line: &[u8],
        whole: bool,
        at: Timestamp,
        inline: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), DecodeError> {
        let top = self.stack.is_empty();
        let first = line.first().copied().unwrap_or(b'\n');
        if top && inline && !is_type(first) {
            return self.inline(line, at, out);
        }
        // A RESP line: `<type><text>\r\n`, the text kept whole for headers.
        let body = match line.strip_suffix(b"\r\n") {
            Some(body) => &body[1.min(body.len())..],
            None if !whole => &line[1..],
            None => return Err(DecodeError::BadLine),
        };
        let header = |body: &[u8]| if whole { number(body) } else { None };
        let set_kind = |decoder: &mut Decoder, kind: Kind| {
            if top {
                if let Some(frame) = decoder.frame.as_mut() {
                    frame.kind = kind;
                }
            }
        };
        match first {
            b'+' | b'-' => {
                let kind = if first == b'+' { Kind::Simple } else { Kind::Error };
                set_kind(self, kind);
                if top {
                    if let Some(frame) = self.frame.as_mut() {
                        push_bounded(&mut frame.text, body);
                    }
                } else if first == b'+' {
                    self.start_arg(body);
                }
                self.element(at, out);
            }
            b':' | b',' | b'#' | b'(' | b'_' => {
                set_kind(self, Kind::Scalar);
                let valid = match first {
                    b':' | b'(' => {
                        let digits = body.strip_prefix(b"-").unwrap_or(body);
                        whole && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
                    }
                    b'#' => body == b"t" || body == b"f",
                    b'_' => body.is_empty(),
                    _ => !body.is_empty() && body.iter().all(|b| b.is_ascii_graphic()),
                };
                if !valid {
                    return Err(DecodeError::BadLength);
                }
                self.element(at, out);
            }
            b'$' | b'=' | b'!' => {
                let n = header(body).ok_or(DecodeError::BadLength)?;
                set_kind(self, if first == b'!' { Kind::Error } else { Kind::Bulk });
                if n == -1 && first == b'$' {
                    self.element(at, out);
                    return Ok(());
                }
                let n = u64::try_from(n).map_err(|_| DecodeError::BadLength)?;
                if n > MAX_BULK {
                    return Err(DecodeError::BadLength);
                }
                let keep = if top && first == b'!' {
                    Keep::Text
                } else if self.start_arg(&[]) {
                    Keep::Arg
                } else {
                    Keep::Nothing
                };
                self.mode = Mode::Bulk { left: n + 2, keep };
            }
            b'*' | b'~' | b'%' | b'>' | b'|' => {
                let n = header(body).ok_or(DecodeError::BadLength)?;
                if n == -1 && first == b'*' {
                    set_kind(self, Kind::Array);
                    self.element(at, out);
                    return Ok(());
                }
                let n = u64::try_from(n).map_err(|_| DecodeError::BadLength)?;
                if n > MAX_ELEMENTS {
                    return Err(DecodeError::BadLength);
                }
                let attribute = first == b'|';
                if top {
                    let kind = match first {
                        b'*' => Kind::Array,
                        b'~' => Kind::Set,
                        b'%' => Kind::Map,
                        _ => Kind::Push,
                    };
                    if let Some(frame) = self.frame.as_mut() {
                        frame.kind = kind;
                        frame.len = Some(n);
                        frame.attribute = attribute;
                    }
                }
                let elements = if matches!(first, b'%' | b'|') { 2 * n } else { n };
                if elements == 0 && attribute {
                    if top {
                        self.frame = None;
                    }
                    return Ok(());
                }
                if elements == 0 {
                    self.element(at, out);
                    return Ok(());
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                self.stack.push(Open {
                    left: elements,
                    attribute,
                });
            }
            other => return Err(DecodeError::BadType(other)),
        }
        Ok(())
    }

    /// A command written as words on one line.
    fn inline(&mut self, line: &[u8], at: Timestamp, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let printable = text.iter().all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t');
        // An HTTP request line is words too: never a Redis command.
        if !printable || text.windows(6).any(|w| w == b" HTTP/") {
            return Err(DecodeError::NotText);
        }
        let words: Vec<Vec<u8>> = text
            .split(|b| *b == b' ' || *b == b'\t')
            .filter(|w| !w.is_empty())
            .take(MAX_ARGS)
            .map(|w| w[..w.len().min(MAX_ARG + 1)].to_vec())
            .collect();
        if words.is_empty() {
            // An empty line: Redis skips it.
            self.frame = None;
            return Ok(());
        }
        if let Some(frame) = self.frame.as_mut() {
            frame.kind = Kind::Inline;
            frame.args = words;
        }
        self.element(at, out);
        Ok(())
    }

    /// Starts keeping a direct element of a top-level aggregate as an
    /// argument, when fewer than [`MAX_ARGS`] are kept; says whether it did.
    fn start_arg(&mut self, bytes: &[u8]) -> bool {
        let direct = self.stack.len() == 1 && !self.stack[0].attribute;
        match self.frame.as_mut() {
            Some(frame) if direct && frame.args.len() < MAX_ARGS => {
                let mut arg = Vec::new();
                push_bounded(&mut arg, bytes);
                frame.args.push(arg);
                true
            }
            _ => false,
        }
    }

    /// An element ended: closes the aggregates it completes, and the frame.
    fn element(&mut self, at: Timestamp, out: &mut Vec<Frame>) {
        loop {
            let Some(open) = self.stack.last_mut() else {
                self.finish(at, out);
                return;
            };
            open.left -= 1;
            if open.left > 0 {
                return;
            }
            let closed = self.stack.pop();
            if closed.is_some_and(|c| c.attribute) {
                // An attribute annotates the next element; it is not one.
                if self.stack.is_empty() {
                    self.frame = None;
                }
                return;
            }
        }
    }

    fn finish(&mut self, at: Timestamp, out: &mut Vec<Frame>) {
        let Some(frame) = self.frame.take() else { return };
        if frame.attribute {
            return;
        }
        let mut text = frame.text;
        text.truncate(MAX_ARG);
        out.push(Frame {
            kind: frame.kind,
            len: frame.len,
            args: frame.args,
            text,
            start: frame.start,
            end: at,
            tid: frame.tid,
        });
    }
}
