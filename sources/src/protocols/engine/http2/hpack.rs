//! HPACK header blocks (RFC 7541) decoded one field at a time, with a
//! dynamic table that knows what it does not know.
//!
//! Decoder crates stop at the first index they cannot resolve; a
//! connection joined mid-way (or after a lost header block) is full of
//! them. Here an unresolved dynamic index yields an *unknown* field and
//! decoding goes on, so every later insertion still lands in the table
//! and later references stay right (OBI's `bhpack` fork does the same in
//! Go). Strings' Huffman code is the `httlib-huffman` crate's.
//!
//! Why the table stays right: entries are only ever added at the newest
//! end, so the entries seen since joining are exactly the newest ones of
//! the peer's table, whatever came before; a reference beyond them is an
//! entry from before (unknown), never a different one. Evicting too early
//! only makes more references unknown, evicting too late keeps entries the
//! peer will not reference: neither can give a wrong value. Only a *missed
//! insertion* (a hole in a block) shifts indices: then the table is
//! `Broken` and every dynamic reference is unknown until a size update to
//! zero empties the peer's table too.

use std::collections::VecDeque;

use super::static_table::STATIC;

/// Largest dynamic table kept, whatever the peers allow: bounds memory.
pub const MAX_TABLE: usize = 64 * 1024;
/// The table size a connection starts with (RFC 7540's default).
pub const DEFAULT_TABLE: usize = 4096;
/// What RFC 7541 counts for each entry besides its name and value.
const ENTRY_OVERHEAD: usize = 32;

/// How much of the peer's dynamic table is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Seen from the connection's start: every index resolves.
    Complete,
    /// Joined mid-way: the newest entries are known, older ones are not.
    Partial,
    /// An insertion was missed: no dynamic index can be trusted.
    Broken,
}

/// The block is not HPACK (or refers to an entry a complete table lacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed HPACK header block")]
pub struct Malformed;

/// A dynamic-table entry; `name` is `None` when it was inserted with a
/// reference to an entry that was unknown.
#[derive(Debug)]
struct Entry {
    name: Option<Box<[u8]>>,
    value: Box<[u8]>,
}

impl Entry {
    fn size(&self) -> usize {
        self.name.as_ref().map_or(0, |n| n.len()) + self.value.len() + ENTRY_OVERHEAD
    }
}

/// What receives each decoded field: `(name, value)`, `None` where it
/// could not be resolved.
pub type FieldSink<'a> = dyn FnMut(Option<&[u8]>, Option<&[u8]>) + 'a;

/// One direction's decoder.
#[derive(Debug)]
pub struct Decoder {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
    table: Table,
    name: Vec<u8>,
    value: Vec<u8>,
}

/// What a block gave besides its fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Fields whose name (and so value) could not be resolved.
    pub unknown: u32,
}

/// Where a field's name or value is: resolved after the borrow checker
/// allows (a table entry, the static table, or a scratch buffer).
#[derive(Clone, Copy)]
enum At {
    Static(usize),
    Dynamic(usize),
    Scratch,
    Unknown,
}

impl Decoder {
    /// A decoder for a direction seen from its first byte (`complete`) or
    /// joined mid-way.
    pub fn new(complete: bool) -> Self {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE,
            table: if complete { Table::Complete } else { Table::Partial },
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// What is known of the table.
    pub fn table(&self) -> Table {
        self.table
    }

    /// Bytes held (the table as RFC 7541 counts it, and scratch buffers).
    pub fn memory(&self) -> usize {
        self.size + self.name.capacity() + self.value.capacity()
    }

    /// The receiving peer allows a table this large (SETTINGS): never
    /// shrinks the table (only a size update in a block does), since
    /// keeping entries longer is safe.
    pub fn allow(&mut self, size: usize) {
        self.max = self.max.max(size.min(MAX_TABLE));
    }

    /// A header block (or part of one) was lost: insertions may be missing.
    pub fn lose(&mut self) {
        self.table = Table::Broken;
        self.entries.clear();
        self.size = 0;
    }

    /// Decodes `block`, calling `field(name, value)` for each field; `None`
    /// is a name or value that could not be resolved. On error the fields
    /// already given stand, and the table is `Broken`.
    pub fn decode(&mut self, block: &[u8], field: &mut FieldSink<'_>) -> Result<Decoded, Malformed> {
        let result = self.walk(block, field);
        if result.is_err() {
            self.lose();
        }
        // Scratch stays small between blocks.
        self.name.shrink_to(256);
        self.value.shrink_to(1024);
        result
    }

    fn walk(&mut self, block: &[u8], field: &mut FieldSink<'_>) -> Result<Decoded, Malformed> {
        let mut decoded = Decoded::default();
        let mut at = 0;
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                let place = self.resolve(index)?;
                let (name, value) = match place {
                    At::Unknown => (None, None),
                    place => (self.name_at(place), self.value_at(place)),
                };
                decoded.unknown += u32::from(name.is_none());
                field(name, value);
            } else if first & 0xe0 == 0x20 {
                let size = integer(block, &mut at, 5)?;
                self.resize(size);
            } else {
                let (prefix, index) = if first & 0xc0 == 0x40 { (6, true) } else { (4, false) };
                let name_index = integer(block, &mut at, prefix)?;
                let name = if name_index == 0 {
                    string(block, &mut at, &mut self.name)?;
                    At::Scratch
                } else {
                    self.resolve(name_index)?
                };
                string(block, &mut at, &mut self.value)?;
                let name_bytes = match name {
                    At::Unknown => None,
                    place => self.name_at(place),
                };
                decoded.unknown += u32::from(name_bytes.is_none());
                field(name_bytes, Some(&self.value));
                if index {
                    let entry = Entry {
                        name: name_bytes.map(Box::from),
                        value: Box::from(&self.value[..]),
                    };
                    self.insert(entry);
                }
            }
        }
        Ok(decoded)
    }

    /// Where index `index` points; an error for index 0, or one beyond a
    /// complete table.
    fn resolve(&self, index: usize) -> Result<At, Malformed> {
        match index {
            0 => Err(Malformed),
            i if i <= STATIC.len() => Ok(At::Static(i - 1)),
            i => {
                let i = i - STATIC.len() - 1;
                match self.table {
                    Table::Broken => Ok(At::Unknown),
                    _ if i < self.entries.len() => Ok(At::Dynamic(i)),
                    Table::Partial => Ok(At::Unknown),
                    Table::Complete => Err(Malformed),
                }
            }
        }
    }

    fn name_at(&self, at: At) -> Option<&[u8]> {
        match at {
            At::Static(i) => Some(STATIC[i].0.as_bytes()),
            At::Dynamic(i) => self.entries[i].name.as_deref(),
            At::Scratch => Some(&self.name),
            At::Unknown => None,
        }
    }

    fn value_at(&self, at: At) -> Option<&[u8]> {
        match at {
            At::Static(i) => Some(STATIC[i].1.as_bytes()),
            At::Dynamic(i) => Some(&self.entries[i].value),
            At::Scratch => Some(&self.value),
            At::Unknown => None,
        }
    }

    /// A dynamic table size update: the peer's table shrinks to `size`
    /// (capped here at [`MAX_TABLE`]; evicting early is safe).
    fn resize(&mut self, size: usize) {
        self.max = size.min(MAX_TABLE);
        if size == 0 {
            // The peer's table is empty too: known again from here.
            self.table = match self.table {
                Table::Broken | Table::Partial => Table::Complete,
                known => known,
            };
        }
        self.evict(0);
    }

    fn insert(&mut self, entry: Entry) {
        if self.table == Table::Broken {
            return;
        }
        let size = entry.size();
        if size > self.max {
            // RFC 7541 §4.4: too large an entry empties the table.
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.entries.push_front(entry);
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.entries.pop_back() {
                Some(old) => self.size -= old.size(),
                None => break,
            }
        }
    }
}

/// An HPACK integer with an `n`-bit prefix at `block[*at]` (RFC 7541 §5.1).
fn integer(block: &[u8], at: &mut usize, n: u32) -> Result<usize, Malformed> {
    let mask = (1u32 << n) - 1;
    let first = u32::from(*block.get(*at).ok_or(Malformed)?) & mask;
    *at += 1;
    if first < mask {
        return Ok(first as usize);
    }
    let mut value = mask as usize;
    // Four continuation bytes reach 2^28: more than any length here.
    for shift in (0..28).step_by(7) {
        let byte = *block.get(*at).ok_or(Malformed)?;
        *at += 1;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed)
}

/// An HPACK string at `block[*at]` into `out` (RFC 7541 §5.2).
fn string(block: &[u8], at: &mut usize, out: &mut Vec<u8>) -> Result<(), Malformed> {
    let huffman = block.get(*at).ok_or(Malformed)? & 0x80 != 0;
    let len = integer(block, at, 7)?;
    let end = at.checked_add(len).filter(|e| *e <= block.len()).ok_or(Malformed)?;
    let raw = &block[*at..end];
    *at = end;
    out.clear();
    if huffman {
        httlib_huffman::decode(raw, out, httlib_huffman::DecoderSpeed::FourBits).map_err(|_| Malformed)?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(())
}
