//! `Transfer-Encoding: chunked` bodies: sizes read with httparse's
//! `parse_chunk_size`, data counted (and skipped across holes, since the
//! size says how long it is), trailers read to the empty line.

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to the empty one.
    Trailer,
}

/// What one call to [`Chunked::feed`] reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every byte used, the body goes on.
    More,
    /// The body ended after that many bytes.
    Done(usize),
    /// Not a chunked body.
    Invalid,
}

/// A chunked body being decoded.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    line: Vec<u8>,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            line: Vec::new(),
        }
    }
}

impl Chunked {
    /// Bytes held (a partial size or trailer line).
    pub fn memory(&self) -> usize {
        self.line.len()
    }

    /// Decodes `data`; hands the body's data bytes to `body`.
    pub fn feed(&mut self, data: &[u8], body: &mut dyn FnMut(&[u8])) -> Step {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            match self.state {
                State::Data(left) => {
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    body(&rest[..n]);
                    used += n;
                    self.state = if left == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data(left - n as u64)
                    };
                }
                State::DataEnd => {
                    match rest[0] {
                        b'\r' => {}
                        b'\n' => self.state = State::Size,
                        _ => return Step::Invalid,
                    }
                    used += 1;
                }
                State::Size | State::Trailer => {
                    let Some(eol) = rest.iter().position(|b| *b == b'\n') else {
                        if self.line.len() + rest.len() > MAX_LINE {
                            return Step::Invalid;
                        }
                        self.line.extend_from_slice(rest);
                        return Step::More;
                    };
                    if self.line.len() + eol > MAX_LINE {
                        return Step::Invalid;
                    }
                    self.line.extend_from_slice(&rest[..=eol]);
                    used += eol + 1;
                    match self.line_done() {
                        Some(true) => return Step::Done(used),
                        Some(false) => {}
                        None => return Step::Invalid,
                    }
                }
            }
        }
        Step::More
    }

    /// A complete line is in `line`: `Some(true)` when the body ended.
    fn line_done(&mut self) -> Option<bool> {
        let line = std::mem::take(&mut self.line);
        match self.state {
            State::Size => match httparse::parse_chunk_size(&line) {
                Ok(httparse::Status::Complete((_, 0))) => self.state = State::Trailer,
                Ok(httparse::Status::Complete((_, size))) => self.state = State::Data(size),
                _ => return None,
            },
            _ => return Some(line == b"\r\n" || line == b"\n"),
        }
        Some(false)
    }

    /// Skips `n` uncaptured bytes; false when they do not lie inside one
    /// chunk's data (the decoder lost its place).
    pub fn hole(&mut self, n: u64) -> bool {
        match self.state {
            State::Data(left) if n <= left => {
                self.state = if n == left {
                    State::DataEnd
                } else {
                    State::Data(left - n)
                };
                true
            }
            _ => false,
        }
    }
}
