//! The disk buffer against an in-memory model (proptest): writes, reads,
//! acknowledgements in any order, crashes at any point (the buffer dropped
//! without closing: everything it wrote is in the files, as after
//! `kill -9`) and damaged bytes in records still to be delivered.

use std::collections::VecDeque;
use std::path::Path;

use proptest::prelude::*;

use super::disk::{segment_name, DiskBuffer, Encoded};
use super::metrics::BufferMetrics;
use super::record::{find_header, Header, HEADER_LEN};
use crate::event::{Event, EventBatch, Metric, MetricValue};

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Read,
    /// Acknowledges the n-th (modulo) record handed out and not yet acknowledged.
    Ack(usize),
    /// Crashes and reopens, first damaging a byte of the n-th (modulo)
    /// record to be delivered, if any.
    Crash(Option<(usize, usize)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..40).prop_map(Op::Write),
        4 => Just(Op::Read),
        3 => any::<usize>().prop_map(Op::Ack),
        1 => proptest::option::of((any::<usize>(), any::<usize>())).prop_map(Op::Crash),
    ]
}

#[derive(Debug)]
struct Record {
    id: u64,
    values: Vec<f64>,
    /// Handed out this session, with its ticket.
    ticket: Option<u64>,
    acked: bool,
    /// Damaged on disk: in the header (events unknown) or the payload.
    damaged: Option<bool>,
}

#[derive(Debug, Default)]
struct Model {
    /// Every record from the first unacknowledged one on, in id order.
    records: VecDeque<Record>,
    next_value: u64,
    /// Records with a lower id were handed out (in any session).
    handed_below: u64,
    corrupted_records: u64,
    corrupted_events: u64,
}

fn batch(values: &[f64]) -> EventBatch {
    values.iter().map(|v| Event::from(Metric::gauge("seq", *v))).collect()
}

fn values(batch: &EventBatch) -> Vec<f64> {
    batch
        .iter()
        .map(|e| match e {
            Event::Metric(m) => match m.value {
                MetricValue::Gauge { value } => value,
                _ => panic!("not a gauge"),
            },
            _ => panic!("not a metric"),
        })
        .collect()
}

/// Where record `id` is: its segment file and offset.
fn locate(dir: &Path, id: u64) -> Option<(std::path::PathBuf, usize, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        // Past damage left behind (acknowledged, not yet reclaimed) by its magic.
        while let Some(next) = find_header(&bytes, at) {
            let header = Header::parse(&bytes[next..]).expect("found");
            if header.id == id {
                return Some((path, next, header.record_len()));
            }
            at = next + header.record_len() as usize;
        }
    }
    None
}

fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// The model's ticket of a damaged record the reader skipped.
const SKIPPED: u64 = u64::MAX;

const MAX_SIZE: u64 = 48 * 1024;
const SEGMENT: u64 = 4 * 1024;

fn open(dir: &Path) -> DiskBuffer {
    DiskBuffer::open_with_segments(dir, MAX_SIZE, SEGMENT, BufferMetrics::noop()).unwrap()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sink");
    let mut buffer = open(&dir);
    let mut model = Model::default();
    let mut redelivered_expected = 0u64;
    for op in ops {
        match op {
            Op::Write(n) => {
                let vals: Vec<f64> = (0..n).map(|i| (model.next_value + i as u64) as f64).collect();
                let b = batch(&vals);
                match buffer.append(&mut Encoded::new(&b), &b) {
                    Ok(id) => {
                        model.next_value += n as u64;
                        if let Some(last) = model.records.back() {
                            prop_assert!(id > last.id, "ids grow: {id} after {}", last.id);
                        }
                        model.records.push_back(Record {
                            id,
                            values: vals,
                            ticket: None,
                            acked: false,
                            damaged: None,
                        });
                    }
                    Err(super::BufferError::Full { .. }) => {
                        prop_assert!(!model.records.is_empty(), "full while empty");
                    }
                    Err(other) => return Err(TestCaseError::fail(format!("append: {other}"))),
                }
            }
            Op::Read => {
                let got = buffer.read_next();
                // Damaged records ahead of the reader are skipped and
                // counted, and acknowledged once what precedes them is (a
                // crash before that meets them again).
                while let Some(position) = model.records.iter().position(|r| r.ticket.is_none()) {
                    let record = &mut model.records[position];
                    let Some(header_damage) = record.damaged else {
                        break;
                    };
                    record.ticket = Some(SKIPPED);
                    record.acked = true;
                    model.corrupted_records += 1;
                    if !header_damage {
                        model.corrupted_events += record.values.len() as u64;
                    }
                    while model.records.front().is_some_and(|r| r.acked) {
                        model.records.pop_front();
                    }
                }
                let expected = model.records.iter_mut().find(|r| r.ticket.is_none());
                match (got, expected) {
                    (None, None) => {}
                    (Some(got), Some(expected)) => {
                        prop_assert_eq!(got.id, expected.id);
                        prop_assert_eq!(values(&got.batch), expected.values.clone());
                        expected.ticket = Some(got.ticket);
                        if expected.id < model.handed_below {
                            redelivered_expected += expected.values.len() as u64;
                        }
                        model.handed_below = model.handed_below.max(expected.id + 1);
                    }
                    (got, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "read {:?}, model expected {:?}",
                            got.map(|g| g.id),
                            expected.map(|e| e.id)
                        )))
                    }
                }
            }
            Op::Ack(n) => {
                let handed: Vec<usize> = (0..model.records.len())
                    .filter(|&i| model.records[i].ticket.is_some_and(|t| t != SKIPPED) && !model.records[i].acked)
                    .collect();
                if handed.is_empty() {
                    continue;
                }
                let index = handed[n % handed.len()];
                let record = &mut model.records[index];
                record.acked = true;
                buffer.ack(record.ticket.unwrap());
                while model.records.front().is_some_and(|r| r.acked) {
                    model.records.pop_front();
                }
            }
            Op::Crash(damage) => {
                drop(buffer);
                for record in &mut model.records {
                    record.ticket = None;
                    record.acked = false;
                }
                // One damaged record at a time: two adjacent damaged headers
                // are one stretch to the scan, two records to the model.
                let damaged_now = model.records.iter().any(|r| r.damaged.is_some());
                if let Some((which, byte)) = damage.filter(|_| !damaged_now) {
                    let undamaged: Vec<usize> = (0..model.records.len())
                        .filter(|&i| model.records[i].damaged.is_none())
                        .collect();
                    if !undamaged.is_empty() {
                        let index = undamaged[which % undamaged.len()];
                        let (path, at, len) = locate(&dir, model.records[index].id).expect("record on disk");
                        let offset = byte % len as usize;
                        let mut bytes = std::fs::read(&path).unwrap();
                        bytes[at + offset] ^= 0x5a;
                        std::fs::write(&path, bytes).unwrap();
                        model.records[index].damaged = Some(offset < HEADER_LEN);
                    }
                }
                buffer = open(&dir);
                // The buffer's counts are per run.
                redelivered_expected = 0;
                model.corrupted_records = 0;
                model.corrupted_events = 0;
                prop_assert_eq!(buffer.stats().recovered_events, expected_unacked(&model));
            }
        }
        prop_assert_eq!(buffer.unacked_events(), expected_unacked(&model), "unacked events");
        prop_assert_eq!(buffer.bytes(), segment_bytes(&dir), "bytes of segment files");
        let stats = buffer.stats();
        prop_assert_eq!(stats.redelivered_events, redelivered_expected, "redelivered");
        prop_assert_eq!(stats.corrupted_records, model.corrupted_records, "corrupted records");
        prop_assert_eq!(stats.corrupted_events, model.corrupted_events, "corrupted events");
    }
    Ok(())
}

/// Events the buffer counts as unacknowledged: records whose header is
/// intact (a damaged header hides its count until the reader skips it).
fn expected_unacked(model: &Model) -> u64 {
    model
        .records
        .iter()
        .filter(|r| r.damaged != Some(true) && !(r.damaged.is_some() && r.ticket == Some(SKIPPED)))
        .map(|r| r.values.len() as u64)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn disk_buffer_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}

#[test]
fn a_reopened_buffer_resumes_where_acknowledgements_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut buffer = open(&dir);
    for i in 0..10 {
        let b = batch(&[f64::from(i)]);
        buffer.append(&mut Encoded::new(&b), &b).unwrap();
    }
    let first = buffer.read_next().unwrap();
    let second = buffer.read_next().unwrap();
    buffer.ack(first.ticket);
    drop((second, buffer));
    let mut buffer = open(&dir);
    let again = buffer.read_next().unwrap();
    assert_eq!(values(&again.batch), vec![1.0]);
    assert_eq!(buffer.stats().redelivered_events, 1);
    assert_eq!(buffer.unacked_events(), 9);
    assert!(dir.join(segment_name(0)).exists());
}
