//! One record of a segment file: a 32-byte header and the encoded batch.
//!
//! ```text
//! 0  magic "SDR1"     4 bytes   finds the next record after damage
//! 4  payload length   u32
//! 8  record id        u64       the batch's identity, kept across restarts
//! 16 events           u32       how many events the payload holds
//! 20 payload crc32    u32
//! 24 reserved         u32       zero
//! 28 header crc32     u32       of bytes 0..28
//! ```
//!
//! Two checksums, so that a damaged payload under an intact header is
//! still counted exactly (the header says how many events were lost) and
//! skipped by its length; a damaged header is skipped by scanning for the
//! next magic whose header checksum holds.

/// The first bytes of every record.
pub const MAGIC: [u8; 4] = *b"SDR1";
/// Bytes of a header.
pub const HEADER_LEN: usize = 32;
/// The largest payload a record may have (a batch beyond it is refused):
/// a larger length in a header is damage, not data.
pub const MAX_PAYLOAD: u32 = 1 << 30;

/// A record's header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes of the payload after the header.
    pub payload_len: u32,
    /// The record's id.
    pub id: u64,
    /// Events in the payload.
    pub events: u32,
    /// crc32 of the payload.
    pub payload_crc: u32,
}

impl Header {
    /// The header of `payload`.
    pub fn of(id: u64, events: u32, payload: &[u8]) -> Header {
        Header {
            payload_len: payload.len() as u32,
            id,
            events,
            payload_crc: crc32fast::hash(payload),
        }
    }

    /// The record's whole length on disk.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// The 32 bytes on disk.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        out[8..16].copy_from_slice(&self.id.to_le_bytes());
        out[16..20].copy_from_slice(&self.events.to_le_bytes());
        out[20..24].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header; `None` unless the magic and the header checksum hold
    /// and the length is plausible.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        if bytes[0..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        if u32_at(28) != crc32fast::hash(&bytes[..28]) {
            return None;
        }
        let header = Header {
            payload_len: u32_at(4),
            id: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            events: u32_at(16),
            payload_crc: u32_at(20),
        };
        (header.payload_len <= MAX_PAYLOAD).then_some(header)
    }

    /// Whether `payload` is this header's.
    pub fn matches(&self, payload: &[u8]) -> bool {
        payload.len() == self.payload_len as usize && crc32fast::hash(payload) == self.payload_crc
    }
}

/// The offset in `bytes` of the first valid header at or after `from`.
pub fn find_header(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + HEADER_LEN <= bytes.len() {
        let next = bytes[at..].windows(4).position(|w| w == MAGIC)? + at;
        if Header::parse(&bytes[next..]).is_some() {
            return Some(next);
        }
        at = next + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let header = Header::of(7, 3, b"payload");
        let mut bytes = header.to_bytes();
        assert_eq!(Header::parse(&bytes), Some(header));
        assert!(header.matches(b"payload"));
        assert!(!header.matches(b"paylaod"));
        bytes[10] ^= 1;
        assert_eq!(Header::parse(&bytes), None);
    }

    #[test]
    fn scanning_finds_the_next_valid_header() {
        let mut bytes = b"garbageSDR1xx".to_vec();
        let at = bytes.len();
        bytes.extend_from_slice(&Header::of(1, 1, b"").to_bytes());
        assert_eq!(find_header(&bytes, 0), Some(at));
        assert_eq!(find_header(&bytes, at + 1), None);
    }
}
