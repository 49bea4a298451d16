//! A command's response, packet by packet: OK, ERR, a result set (column
//! count, column definitions, an EOF unless CLIENT_DEPRECATE_EOF, rows, a
//! terminating EOF or OK), several of them when the server says more
//! results exist, or a prepared statement's definitions.

/// SERVER_MORE_RESULTS_EXISTS in a status word.
const MORE_RESULTS: u16 = 0x0008;

/// Where a response stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Its first packet is next.
    First,
    /// Column definitions, this many left.
    Columns(u64),
    /// The packet after the column definitions: an EOF (classic) or the
    /// first row or the terminator (CLIENT_DEPRECATE_EOF).
    AfterColumns,
    /// Rows.
    Rows,
    /// A prepare's parameter and column definitions, this many left.
    Definitions(u64),
    /// Definitions up to an EOF (COM_FIELD_LIST).
    UntilEof,
    /// Complete.
    Done,
}

/// What a response said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// Rows returned, or affected by a statement without a result set.
    pub rows: Option<u64>,
    /// The ERR packet's error number.
    pub error: Option<u16>,
    /// A prepare's statement id.
    pub statement: Option<u32>,
}

/// A length-encoded integer at the start of `data`, and its size.
pub fn lenenc(data: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = data.split_first()?;
    let wide = |n: usize| -> Option<u64> {
        let bytes = rest.get(..n)?;
        Some(bytes.iter().rev().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => Some((wide(2)?, 3)),
        0xfd => Some((wide(3)?, 4)),
        0xfe => Some((wide(8)?, 9)),
        _ => None,
    }
}

/// The status word of an OK packet's payload (after the header byte).
fn ok_status(payload: &[u8]) -> Option<u16> {
    let (_, a) = lenenc(payload.get(1..)?)?;
    let (_, b) = lenenc(payload.get(1 + a..)?)?;
    let at = 1 + a + b;
    Some(u16::from_le_bytes([*payload.get(at)?, *payload.get(at + 1)?]))
}

/// An EOF packet's status word (classic 5-byte EOF) or an OK-style one.
fn end_status(payload: &[u8], length: u64) -> u16 {
    if length < 9 {
        payload.get(3..5).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
    } else {
        ok_status(payload).unwrap_or(0)
    }
}

/// Takes one packet of the response to `command`.
pub fn step(step: Step, command: u8, payload: &[u8], length: u64, answer: &mut Answer) -> Step {
    let first = payload.first().copied().unwrap_or(0);
    let is_end = first == 0xfe && length < u64::from(super::packet::CONTINUED);
    match step {
        Step::First if first == 0xff => {
            answer.error = payload.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
            Step::Done
        }
        Step::First if command == super::command::STMT_PREPARE && first == 0x00 => {
            let field = |at: usize| {
                payload
                    .get(at..at + 2)
                    .map_or(0, |s| u64::from(u16::from_le_bytes([s[0], s[1]])))
            };
            answer.statement = payload.get(1..5).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
            let definitions = field(5) + field(7);
            if definitions == 0 {
                Step::Done
            } else {
                Step::Definitions(definitions)
            }
        }
        Step::First if command == super::command::FIELD_LIST => Step::UntilEof,
        Step::First if first == 0x00 || is_end => {
            let affected = lenenc(payload.get(1..).unwrap_or_default()).map(|(n, _)| n);
            answer.rows = Some(answer.rows.unwrap_or(0) + affected.unwrap_or(0));
            if ok_status(payload).is_some_and(|s| s & MORE_RESULTS != 0) {
                Step::First
            } else {
                Step::Done
            }
        }
        Step::First if first == 0xfb => Step::Done,
        Step::First => match lenenc(payload) {
            Some((count, _)) if count > 0 => Step::Columns(count),
            _ => Step::Done,
        },
        Step::Columns(n) if n > 1 => Step::Columns(n - 1),
        Step::Columns(_) => {
            answer.rows.get_or_insert(0);
            Step::AfterColumns
        }
        Step::AfterColumns if is_end && length < 9 => Step::Rows,
        Step::AfterColumns => self::step(Step::Rows, command, payload, length, answer),
        Step::Rows if first == 0xff => {
            answer.error = payload.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
            Step::Done
        }
        Step::Rows if is_end => {
            if end_status(payload, length) & MORE_RESULTS != 0 {
                Step::First
            } else {
                Step::Done
            }
        }
        Step::Rows => {
            answer.rows = Some(answer.rows.unwrap_or(0) + 1);
            Step::Rows
        }
        Step::Definitions(n) if n > 1 => Step::Definitions(n - 1),
        // The EOF after definitions, when sent, is skipped as it comes
        // (the next command's response starts at sequence 1 anyway).
        Step::Definitions(_) => Step::Done,
        Step::UntilEof if is_end || first == 0xff => Step::Done,
        Step::UntilEof => Step::UntilEof,
        Step::Done => Step::Done,
    }
}
