//! [`DiskBuffer`]: the synchronous heart of a disk buffer: segment files,
//! the reader's position, acknowledgements and the state file. The async
//! side ([`super::queue`]) wraps it in a lock; the model-based test drives
//! it directly, crashing it by dropping it at any point.
//!
//! A folder holds `NNNNNNNNNNNNNNNNNNNN.seg` segment files (records, see
//! [`super::record`], appended in id order) and `state`: where the first
//! unacknowledged record starts and the id below which records were
//! already handed to the sink. Segments wholly acknowledged are deleted.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::codec;
use super::metrics::BufferMetrics;
use super::record::{find_header, Header, HEADER_LEN, MAX_PAYLOAD};
use crate::event::EventBatch;

/// The name of the state file in a buffer's folder.
pub const STATE_FILE: &str = "state";
const STATE_MAGIC: [u8; 4] = *b"SDS1";
const STATE_LEN: usize = 40;
/// Events of recently written batches kept in memory, so a reader that
/// keeps up takes them without reading and decoding them back.
const CACHE_EVENTS: u64 = 64 * 1024;

/// The smallest segment, so that tiny buffers still hold whole batches.
pub const MIN_SEGMENT: u64 = 64 * 1024;
/// The largest segment.
pub const MAX_SEGMENT: u64 = 128 * 1024 * 1024;

/// The size of one segment of a buffer of `max_size` bytes: an eighth, so
/// that space comes back in steps of an eighth as segments are acknowledged.
pub fn segment_size(max_size: u64) -> u64 {
    (max_size / 8).clamp(MIN_SEGMENT, MAX_SEGMENT)
}

/// A segment file's name.
pub fn segment_name(num: u64) -> String {
    format!("{num:020}.seg")
}

/// Why a buffer cannot take a batch, or cannot open.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// `max_size` is reached: the caller waits for acknowledgements or drops.
    #[error("the buffer is full ({bytes} of {max_size} bytes)")]
    Full {
        /// Bytes of segment files.
        bytes: u64,
        /// The configured limit.
        max_size: u64,
    },
    /// A batch too large for one record.
    #[error("a batch of {0} bytes is larger than a record may be")]
    TooLarge(usize),
    /// The file system refused (no space left, read-only, permissions).
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl BufferError {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BufferError + 'a {
        move |source| BufferError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A place in the buffer: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The segment's number.
    pub segment: u64,
    /// The byte offset.
    pub offset: u64,
}

/// What the state file says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Where the first unacknowledged record starts.
    pub acked: Position,
    /// Records with a lower id were handed to the sink before.
    pub dispatched: u64,
    /// The id of the next record written: ids are never reused, even when
    /// the last record's header is damaged.
    pub next_id: u64,
}

impl State {
    fn to_bytes(self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        out[0..4].copy_from_slice(&STATE_MAGIC);
        out[4..12].copy_from_slice(&self.acked.segment.to_le_bytes());
        out[12..20].copy_from_slice(&self.acked.offset.to_le_bytes());
        out[20..28].copy_from_slice(&self.dispatched.to_le_bytes());
        out[28..36].copy_from_slice(&self.next_id.to_le_bytes());
        let crc = crc32fast::hash(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a state file's bytes; `None` when damaged.
    pub fn parse(bytes: &[u8]) -> Option<State> {
        let bytes = bytes.get(..STATE_LEN)?;
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        (bytes[0..4] == STATE_MAGIC
            && u32::from_le_bytes(bytes[36..40].try_into().expect("4 bytes")) == crc32fast::hash(&bytes[..36]))
        .then(|| State {
            acked: Position {
                segment: u64_at(4),
                offset: u64_at(12),
            },
            dispatched: u64_at(20),
            next_id: u64_at(28),
        })
    }
}

/// What the buffer counted; also in its metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events found unacknowledged when the buffer was opened.
    pub recovered_events: u64,
    /// Events written.
    pub written_events: u64,
    /// Events acknowledged (delivered, or dropped and counted by the sink).
    pub acked_events: u64,
    /// Events handed to the sink again after a restart (they may arrive twice).
    pub redelivered_events: u64,
    /// Damaged records skipped.
    pub corrupted_records: u64,
    /// Events of damaged records whose header said how many.
    pub corrupted_events: u64,
    /// Bytes skipped as damaged.
    pub corrupted_bytes: u64,
}

/// A segment file.
#[derive(Debug)]
struct Segment {
    num: u64,
    /// Bytes written (and readable) so far.
    len: u64,
}

/// One record as the reader hands it out.
#[derive(Debug)]
pub struct ReadRecord {
    /// Acknowledge with this.
    pub ticket: u64,
    /// The record's id: the batch's identity, the same on every delivery.
    pub id: u64,
    /// The events.
    pub batch: EventBatch,
}

/// An unacknowledged stretch of the buffer, in reading order.
#[derive(Debug)]
struct Pending {
    end: Position,
    events: u64,
    acked: bool,
}

/// A batch written and still in memory.
#[derive(Debug)]
struct Cached {
    at: Position,
    len: u64,
    id: u64,
    batch: EventBatch,
}

/// A batch encoded as a record, its header not yet filled in: encoding
/// happens before the buffer's lock is taken.
#[derive(Debug)]
pub struct Encoded {
    bytes: Vec<u8>,
    events: u32,
}

impl Encoded {
    /// Encodes `batch`.
    pub fn new(batch: &EventBatch) -> Encoded {
        let mut bytes = Vec::with_capacity(HEADER_LEN + 64 * batch.len());
        bytes.resize(HEADER_LEN, 0);
        codec::encode(batch, &mut bytes);
        Encoded {
            bytes,
            events: batch.len() as u32,
        }
    }

    /// The record's length on disk.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether it holds no bytes (never: a record has a header).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// One sink's disk buffer.
#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    max_size: u64,
    segment_size: u64,
    /// Live segments, oldest first; the last is being written.
    segments: VecDeque<Segment>,
    writer: File,
    state_file: File,
    next_id: u64,
    read: Position,
    read_file: Option<(u64, File)>,
    next_ticket: u64,
    pending: BTreeMap<u64, Pending>,
    state: State,
    /// Records with a lower id were handed out in an earlier run.
    redeliver_below: u64,
    cache: VecDeque<Cached>,
    cache_events: u64,
    bytes: u64,
    unacked_events: u64,
    unread_events: u64,
    stats: Stats,
    metrics: BufferMetrics,
    /// Files written since the last sync.
    to_sync: Vec<File>,
    writer_dirty: bool,
    state_dirty: bool,
    dir_dirty: bool,
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir`, holding at most `max_size`
    /// bytes of segment files, and recovers what an earlier run left.
    pub fn open(dir: &Path, max_size: u64, metrics: BufferMetrics) -> Result<DiskBuffer, BufferError> {
        Self::open_with_segments(dir, max_size, segment_size(max_size), metrics)
    }

    /// [`open`](Self::open) with segments of `segment_size` bytes (tests
    /// use small ones, to cross segments often).
    pub fn open_with_segments(
        dir: &Path,
        max_size: u64,
        segment_size: u64,
        metrics: BufferMetrics,
    ) -> Result<DiskBuffer, BufferError> {
        std::fs::create_dir_all(dir).map_err(BufferError::io("create", dir))?;
        let mut nums = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(BufferError::io("list", dir))? {
            let entry = entry.map_err(BufferError::io("list", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(num) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
                nums.push(num);
            }
        }
        nums.sort_unstable();
        let state_path = dir.join(STATE_FILE);
        let state_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&state_path)
            .map_err(BufferError::io("open", &state_path))?;
        let mut raw = [0u8; STATE_LEN];
        let saved = read_exact_at(&state_file, &mut raw, 0)
            .ok()
            .and_then(|()| State::parse(&raw));
        let mut state = saved.unwrap_or_default();
        if saved.is_none() && !nums.is_empty() {
            // No (or a damaged) state: deliver everything there is again
            // rather than lose any of it.
            tracing::warn!(dir = %dir.display(), "disk buffer state missing or damaged: delivering every record again");
            state.acked = Position::default();
            state.dispatched = u64::MAX;
        }
        let mut segments = VecDeque::new();
        for num in nums {
            let path = dir.join(segment_name(num));
            if num < state.acked.segment {
                std::fs::remove_file(&path).map_err(BufferError::io("remove", &path))?;
                continue;
            }
            let len = std::fs::metadata(&path).map_err(BufferError::io("stat", &path))?.len();
            segments.push_back(Segment { num, len });
        }
        // The acknowledged position must be in a live segment.
        match segments.front() {
            Some(first) if first.num != state.acked.segment => {
                state.acked = Position {
                    segment: first.num,
                    offset: 0,
                }
            }
            None => state.acked = Position::default(),
            _ => {}
        }
        let mut buffer = DiskBuffer {
            dir: dir.to_path_buf(),
            max_size,
            segment_size,
            segments,
            // Replaced below, once the segment to write is known.
            writer: state_file.try_clone().map_err(BufferError::io("open", &state_path))?,
            state_file,
            next_id: 0,
            read: state.acked,
            read_file: None,
            next_ticket: 0,
            pending: BTreeMap::new(),
            redeliver_below: state.dispatched,
            state,
            cache: VecDeque::new(),
            cache_events: 0,
            bytes: 0,
            unacked_events: 0,
            unread_events: 0,
            stats: Stats::default(),
            metrics,
            to_sync: Vec::new(),
            writer_dirty: false,
            state_dirty: true,
            dir_dirty: true,
        };
        buffer.recover()?;
        if buffer.redeliver_below == u64::MAX {
            // Without a state, every record found may have been delivered.
            buffer.redeliver_below = buffer.next_id;
            buffer.state.dispatched = buffer.next_id;
        }
        // Writing always starts a new segment: never after a torn tail.
        let num = buffer.segments.back().map_or(buffer.state.acked.segment, |s| s.num + 1);
        buffer.writer = buffer.create_segment(num)?;
        if buffer.segments.len() == 1 {
            buffer.state.acked = Position {
                segment: num,
                offset: 0,
            };
            buffer.read = buffer.state.acked;
        }
        buffer.state.next_id = buffer.next_id;
        buffer.persist_state();
        buffer.reclaim();
        buffer.update_gauges();
        Ok(buffer)
    }

    /// Counts what the segments hold from the acknowledged position on,
    /// and finds the next id, reading headers only (payloads are checked
    /// when read).
    fn recover(&mut self) -> Result<(), BufferError> {
        let mut max_id = None;
        for segment in &self.segments {
            let path = self.dir.join(segment_name(segment.num));
            let bytes = std::fs::read(&path).map_err(BufferError::io("read", &path))?;
            let mut at = if segment.num == self.state.acked.segment {
                self.state.acked.offset as usize
            } else {
                0
            };
            while at < bytes.len() {
                match Header::parse(&bytes[at..]) {
                    Some(header) if at as u64 + header.record_len() <= bytes.len() as u64 => {
                        self.unacked_events += u64::from(header.events);
                        max_id = max_id.max(Some(header.id));
                        at += header.record_len() as usize;
                    }
                    _ => match find_header(&bytes, at + 1) {
                        Some(next) => at = next,
                        None => break,
                    },
                }
            }
            self.bytes += segment.len;
        }
        let dispatched = if self.redeliver_below == u64::MAX {
            0
        } else {
            self.redeliver_below
        };
        self.next_id = max_id.map_or(0, |id| id + 1).max(dispatched).max(self.state.next_id);
        self.unread_events = self.unacked_events;
        self.stats.recovered_events = self.unacked_events;
        self.metrics.recovered_events.increment(self.unacked_events);
        Ok(())
    }

    fn create_segment(&mut self, num: u64) -> Result<File, BufferError> {
        let path = self.dir.join(segment_name(num));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(BufferError::io("create", &path))?;
        self.segments.push_back(Segment { num, len: 0 });
        self.dir_dirty = true;
        Ok(file)
    }

    /// Appends `record`, whose events are `batch` (kept in memory for a
    /// reader that keeps up). Its id is returned. The record is written with
    /// one `write` and is in the kernel's hands when this returns, so a
    /// killed agent keeps it; it reaches the disk at the next [`sync`](Self::take_sync).
    pub fn append(&mut self, record: &mut Encoded, batch: &EventBatch) -> Result<u64, BufferError> {
        let payload_len = record.bytes.len() - HEADER_LEN;
        if payload_len > MAX_PAYLOAD as usize {
            return Err(BufferError::TooLarge(payload_len));
        }
        let len = record.len();
        // An empty buffer takes a batch larger than the whole buffer
        // rather than never.
        if self.bytes + len > self.max_size && self.unacked_records() {
            return Err(BufferError::Full {
                bytes: self.bytes,
                max_size: self.max_size,
            });
        }
        let current = self.segments.back().expect("a segment is always being written");
        if current.len > 0 && current.len + len > self.segment_size {
            let num = current.num + 1;
            if self.writer_dirty {
                let closed = self.writer.try_clone().map_err(BufferError::io("sync", &self.dir))?;
                self.to_sync.push(closed);
                self.writer_dirty = false;
            }
            self.writer = self.create_segment(num)?;
            self.reclaim();
        }
        let id = self.next_id;
        let header = Header::of(id, record.events, &record.bytes[HEADER_LEN..]);
        record.bytes[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        let current = self.segments.back_mut().expect("a segment is always being written");
        let at = Position {
            segment: current.num,
            offset: current.len,
        };
        if let Err(source) = self.writer.write_all_at(&record.bytes, current.len) {
            // Take back what part of the record was written (a full disk
            // takes some): the next record must start where this one did.
            let _ = self.writer.set_len(current.len);
            return Err(BufferError::Io {
                action: "write",
                path: self.dir.join(segment_name(current.num)),
                source,
            });
        }
        current.len += len;
        self.bytes += len;
        self.next_id += 1;
        self.state.next_id = self.next_id;
        self.persist_state();
        self.writer_dirty = true;
        let events = u64::from(record.events);
        self.unacked_events += events;
        self.unread_events += events;
        self.stats.written_events += events;
        self.metrics.written_events.increment(events);
        if self.cache_events + events <= CACHE_EVENTS {
            self.cache_events += events;
            self.cache.push_back(Cached {
                at,
                len,
                id,
                batch: batch.clone(),
            });
        }
        self.update_gauges();
        Ok(id)
    }

    fn unacked_records(&self) -> bool {
        let end = self.segments.back().map_or(Position::default(), |s| Position {
            segment: s.num,
            offset: s.len,
        });
        self.state.acked < end
    }

    /// Whether every record written has been handed out.
    pub fn is_drained(&self) -> bool {
        let last = self.segments.back().expect("a segment is always being written");
        self.read.segment == last.num && self.read.offset >= last.len
    }

    /// The next record, or `None` when every record written was handed out.
    /// Damaged records on the way are skipped and counted.
    pub fn read_next(&mut self) -> Option<ReadRecord> {
        loop {
            let segment = self.segments.iter().find(|s| s.num >= self.read.segment)?;
            let (num, len) = (segment.num, segment.len);
            let last = self.segments.back().map(|s| s.num) == Some(num);
            if num != self.read.segment {
                self.read = Position {
                    segment: num,
                    offset: 0,
                };
            }
            if self.read.offset >= len {
                if last {
                    return None;
                }
                self.read = Position {
                    segment: num + 1,
                    offset: 0,
                };
                continue;
            }
            while self.cache.front().is_some_and(|c| c.at < self.read) {
                let stale = self.cache.pop_front().expect("checked");
                self.cache_events -= stale.batch.len() as u64;
            }
            if self.cache.front().is_some_and(|c| c.at == self.read) {
                let cached = self.cache.pop_front().expect("checked");
                let events = cached.batch.len() as u64;
                self.cache_events -= events;
                self.read.offset += cached.len;
                return Some(self.hand_out(cached.id, cached.batch, events));
            }
            match self.read_from_disk(num, len) {
                Ok(Some(record)) => return Some(record),
                Ok(None) => continue,
                Err(error) => {
                    // The file cannot be read (removed under us, an I/O
                    // error): skip the rest of the segment, counted.
                    tracing::error!(dir = %self.dir.display(), %error, "disk buffer segment unreadable, skipping it");
                    let skipped = len - self.read.offset;
                    self.damaged(skipped, 0);
                    self.read.offset = len;
                }
            }
        }
    }

    fn hand_out(&mut self, id: u64, batch: EventBatch, events: u64) -> ReadRecord {
        self.unread_events -= events;
        if id < self.redeliver_below {
            self.stats.redelivered_events += events;
            self.metrics.redelivered_events.increment(events);
        }
        if id >= self.state.dispatched {
            self.state.dispatched = id + 1;
            self.persist_state();
        }
        let ticket = self.track(events, false);
        self.update_gauges();
        ReadRecord { ticket, id, batch }
    }

    /// Registers the stretch the reader just passed (ending at `self.read`).
    fn track(&mut self, events: u64, acked: bool) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            Pending {
                end: self.read,
                events,
                acked,
            },
        );
        ticket
    }

    /// Counts `bytes` skipped as damaged (the reader has not moved yet).
    fn damaged(&mut self, bytes: u64, events: u64) {
        self.stats.corrupted_records += 1;
        self.stats.corrupted_bytes += bytes;
        self.stats.corrupted_events += events;
        self.metrics.corrupted_records.increment(1);
        self.metrics.corrupted_events.increment(events);
        tracing::error!(
            dir = %self.dir.display(),
            segment = self.read.segment,
            offset = self.read.offset,
            bytes,
            events,
            "damaged record in the disk buffer skipped"
        );
    }

    /// Skips to `to` (in the current segment) past damage; the stretch is
    /// acknowledged as soon as what precedes it is.
    fn skip_damage(&mut self, to: u64, events: u64) {
        self.damaged(to - self.read.offset, events);
        self.unacked_events -= events.min(self.unacked_events);
        self.unread_events -= events.min(self.unread_events);
        self.read.offset = to;
        self.track(0, true);
        self.advance_acked();
    }

    fn read_from_disk(&mut self, num: u64, len: u64) -> io::Result<Option<ReadRecord>> {
        if self.read_file.as_ref().is_none_or(|(n, _)| *n != num) {
            let file = File::open(self.dir.join(segment_name(num)))?;
            self.read_file = Some((num, file));
        }
        let file = &self.read_file.as_ref().expect("opened above").1;
        let at = self.read.offset;
        let mut head = [0u8; HEADER_LEN];
        let header = if at + HEADER_LEN as u64 <= len {
            read_exact_at(file, &mut head, at)?;
            Header::parse(&head).filter(|h| at + h.record_len() <= len)
        } else {
            None
        };
        let Some(header) = header else {
            // A damaged header: find the next record by its magic.
            let mut rest = vec![0u8; (len - at) as usize];
            read_exact_at(file, &mut rest, at)?;
            let to = find_header(&rest, 1).map_or(len, |next| at + next as u64);
            self.skip_damage(to, 0);
            return Ok(None);
        };
        let mut payload = vec![0u8; header.payload_len as usize];
        read_exact_at(file, &mut payload, at + HEADER_LEN as u64)?;
        let events = u64::from(header.events);
        if !header.matches(&payload) {
            self.skip_damage(at + header.record_len(), events);
            return Ok(None);
        }
        match codec::decode(&payload) {
            Ok(batch) => {
                self.read.offset += header.record_len();
                Ok(Some(self.hand_out(header.id, batch, events)))
            }
            Err(error) => {
                tracing::error!(dir = %self.dir.display(), %error, "disk buffer record does not decode");
                self.skip_damage(at + header.record_len(), events);
                Ok(None)
            }
        }
    }

    /// Acknowledges a record handed out: it was delivered (or dropped and
    /// counted by the sink) and may be forgotten. Out of order is fine; the
    /// state moves past a record once every earlier one is acknowledged.
    pub fn ack(&mut self, ticket: u64) {
        if let Some(pending) = self.pending.get_mut(&ticket) {
            pending.acked = true;
        }
        self.advance_acked();
    }

    fn advance_acked(&mut self) {
        let mut moved = false;
        while let Some(entry) = self.pending.first_entry() {
            if !entry.get().acked {
                break;
            }
            let pending = entry.remove();
            self.state.acked = pending.end;
            self.unacked_events -= pending.events.min(self.unacked_events);
            self.stats.acked_events += pending.events;
            self.metrics.acked_events.increment(pending.events);
            moved = true;
        }
        if moved {
            self.persist_state();
            self.reclaim();
            self.update_gauges();
        }
    }

    /// Deletes the segments wholly acknowledged (never the one being written).
    fn reclaim(&mut self) {
        while self.segments.len() > 1 {
            let front = &self.segments[0];
            let done = front.num < self.state.acked.segment
                || (front.num == self.state.acked.segment && self.state.acked.offset >= front.len);
            if !done {
                break;
            }
            let front = self.segments.pop_front().expect("checked");
            let path = self.dir.join(segment_name(front.num));
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove an acknowledged disk buffer segment");
            }
            self.bytes -= front.len;
            self.dir_dirty = true;
            if self.read_file.as_ref().is_some_and(|(n, _)| *n == front.num) {
                self.read_file = None;
            }
            let next = self.segments[0].num;
            if self.state.acked.segment <= front.num {
                self.state.acked = Position {
                    segment: next,
                    offset: 0,
                };
                self.persist_state();
            }
        }
    }

    /// Writes the state file (one `pwrite`, kept by a killed agent).
    fn persist_state(&mut self) {
        if let Err(error) = self.state_file.write_all_at(&self.state.to_bytes(), 0) {
            tracing::error!(dir = %self.dir.display(), %error, "cannot write the disk buffer state");
        }
        self.state_dirty = true;
    }

    /// The files written since the last call, to `sync_data` outside the
    /// buffer's lock (see the module's fsync policy): closed segments, the
    /// one being written, the state file and the folder.
    pub fn take_sync(&mut self) -> Vec<File> {
        let mut files = std::mem::take(&mut self.to_sync);
        let mut add = |file: &File| {
            if let Ok(dup) = file.try_clone() {
                files.push(dup);
            }
        };
        if std::mem::take(&mut self.writer_dirty) {
            add(&self.writer);
        }
        if std::mem::take(&mut self.state_dirty) {
            add(&self.state_file);
        }
        if std::mem::take(&mut self.dir_dirty) {
            if let Ok(dir) = File::open(&self.dir) {
                files.push(dir);
            }
        }
        files
    }

    fn update_gauges(&self) {
        self.metrics.events.set(self.unacked_events as f64);
        self.metrics.bytes.set(self.bytes as f64);
    }

    /// Events written and not yet acknowledged (including those handed out).
    pub fn unacked_events(&self) -> u64 {
        self.unacked_events
    }

    /// Events written and not yet handed out.
    pub fn unread_events(&self) -> u64 {
        self.unread_events
    }

    /// Bytes of segment files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The limit on [`bytes`](Self::bytes).
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Changes the limit (a reload); segments keep their size.
    pub fn set_max_size(&mut self, max_size: u64) {
        self.max_size = max_size;
        self.metrics.max_bytes.set(max_size as f64);
    }

    /// What it counted so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
