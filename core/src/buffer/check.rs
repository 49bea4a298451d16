//! `sonde buffer check DIR`: verifies a disk buffer's folder offline, with
//! no agent running: every record's checksums, ids in order, and what is
//! still to be delivered.

use std::fmt;
use std::path::{Path, PathBuf};

use super::codec;
use super::disk::{segment_name, State, STATE_FILE};
use super::record::{find_header, Header};

/// What a check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// The folder.
    pub dir: PathBuf,
    /// Segment files.
    pub segments: usize,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Whether the state file is present and intact.
    pub state_ok: bool,
    /// Records whose checksums hold and that decode.
    pub records: u64,
    /// Events in them.
    pub events: u64,
    /// Of those, records (and events) not yet acknowledged.
    pub unacked_records: u64,
    /// Events of the unacknowledged records.
    pub unacked_events: u64,
    /// Damaged stretches.
    pub damaged: u64,
    /// Bytes in damaged stretches.
    pub damaged_bytes: u64,
    /// Records whose id is not above the one before.
    pub out_of_order: u64,
    /// The lowest and highest record ids.
    pub ids: Option<(u64, u64)>,
    /// One line per problem.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "disk buffer {}", self.dir.display())?;
        writeln!(f, "  segments: {} ({} bytes)", self.segments, self.bytes)?;
        writeln!(f, "  records: {} ({} events)", self.records, self.events)?;
        writeln!(
            f,
            "  unacknowledged: {} records ({} events)",
            self.unacked_records, self.unacked_events
        )?;
        if let Some((low, high)) = self.ids {
            writeln!(f, "  record ids: {low}..={high}")?;
        }
        writeln!(
            f,
            "  damaged: {} stretches ({} bytes)",
            self.damaged, self.damaged_bytes
        )?;
        for problem in &self.problems {
            writeln!(f, "  problem: {problem}")?;
        }
        write!(f, "{}", if self.is_ok() { "ok" } else { "DAMAGED" })
    }
}

/// Why a folder cannot be checked at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct CheckError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

/// Checks the buffer in `dir`.
pub fn check(dir: &Path) -> Result<Report, CheckError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckError { path, source }
    };
    let mut report = Report {
        dir: dir.to_path_buf(),
        ..Report::default()
    };
    let mut nums = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(fail(dir))? {
        let entry = entry.map_err(fail(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(num) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
            nums.push(num);
        }
    }
    nums.sort_unstable();
    let state = std::fs::read(dir.join(STATE_FILE)).ok().and_then(|b| State::parse(&b));
    report.state_ok = state.is_some();
    if state.is_none() {
        report.problems.push(format!(
            "{STATE_FILE} is missing or damaged: every record would be delivered again"
        ));
    }
    let acked = state.map(|s| s.acked).unwrap_or_default();
    let mut last_id = None;
    for num in nums {
        let path = dir.join(segment_name(num));
        let bytes = std::fs::read(&path).map_err(fail(&path))?;
        report.segments += 1;
        report.bytes += bytes.len() as u64;
        let mut at = 0usize;
        while at < bytes.len() {
            let record = Header::parse(&bytes[at..]).filter(|h| at as u64 + h.record_len() <= bytes.len() as u64);
            let valid = record.filter(|h| {
                let payload = &bytes[at + super::record::HEADER_LEN..at + h.record_len() as usize];
                h.matches(payload) && codec::decode(payload).is_ok()
            });
            match valid {
                Some(header) => {
                    report.records += 1;
                    report.events += u64::from(header.events);
                    if (num, at as u64) >= (acked.segment, acked.offset) {
                        report.unacked_records += 1;
                        report.unacked_events += u64::from(header.events);
                    }
                    if last_id.is_some_and(|last| header.id <= last) {
                        report.out_of_order += 1;
                        report.problems.push(format!(
                            "{}: record id {} after {}",
                            path.display(),
                            header.id,
                            last_id.unwrap_or(0)
                        ));
                    }
                    last_id = Some(header.id);
                    report.ids = Some(match report.ids {
                        Some((low, high)) => (low.min(header.id), high.max(header.id)),
                        None => (header.id, header.id),
                    });
                    at += header.record_len() as usize;
                }
                None => {
                    let next = match record {
                        // An intact header over a damaged payload: skip by its length.
                        Some(header) => at + header.record_len() as usize,
                        None => find_header(&bytes, at + 1).unwrap_or(bytes.len()),
                    };
                    report.damaged += 1;
                    report.damaged_bytes += (next - at) as u64;
                    report.problems.push(format!(
                        "{}: damaged record at byte {at} ({} bytes skipped{})",
                        path.display(),
                        next - at,
                        record.map_or(String::new(), |h| format!(", {} events lost", h.events))
                    ));
                    at = next;
                }
            }
        }
    }
    Ok(report)
}
