//! The kernel check of `file_io` (the kernel matrix and
//! `tests/bpf_file_io.rs` run it): this process writes then reads a file
//! in 64 KiB chunks; the source must count exactly the calls and bytes it
//! made, under the file's path.

use std::io::{Read, Seek, Write};

use sonde_core::event::{Event, MetricValue};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::{Collector, FileIoSourceConfig, BYTES, OPERATION, OPERATIONS, PATH};

const CHUNK: usize = 64 << 10;
const CHUNKS: usize = 64;

/// The counter `name` for `path`, operation `op`, summed.
pub fn counter(events: &[Event], name: &str, path: &str, op: &str) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m)
                if m.name.as_str() == name
                    && m.attributes.get(PATH).and_then(|v| v.as_str()) == Some(path)
                    && m.attributes.get(OPERATION).and_then(|v| v.as_str()) == Some(op) =>
            {
                match m.value {
                    MetricValue::Counter { value } => Some(value as u64),
                    _ => None,
                }
            }
            _ => None,
        })
        .sum()
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let config = FileIoSourceConfig {
        include_self: true,
        ..FileIoSourceConfig::default()
    };
    let mut collector = Collector::load(&config, "conformance".into(), &[])?;
    let workload = CheckError::workload;
    let dir = std::env::temp_dir().join(format!("sonde-file-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(workload("create a directory"))?;
    let path = dir.join("data");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(workload("create a file"))?;
    let chunk = vec![0x5au8; CHUNK];
    for _ in 0..CHUNKS {
        file.write_all(&chunk).map_err(workload("write"))?;
    }
    file.rewind().map_err(workload("seek"))?;
    let mut back = vec![0u8; CHUNK];
    for _ in 0..CHUNKS {
        file.read_exact(&mut back).map_err(workload("read"))?;
    }
    drop(file);
    let path = path.to_string_lossy().into_owned();
    // The path thread names the file within moments of its first call.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = collector.collect()?;
        if counter(&events, OPERATIONS, &path, "read") > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let expected = (CHUNK * CHUNKS) as u64;
    let (written, read) = (
        counter(&events, BYTES, &path, "write"),
        counter(&events, BYTES, &path, "read"),
    );
    let (writes, reads) = (
        counter(&events, OPERATIONS, &path, "write"),
        counter(&events, OPERATIONS, &path, "read"),
    );
    ensure(written == expected && read == expected, || {
        format!("{path}: {written} B written and {read} B read, the workload moved {expected} B each way")
    })?;
    ensure(writes == CHUNKS as u64 && reads == CHUNKS as u64, || {
        format!("{path}: {writes} writes and {reads} reads, the workload made {CHUNKS} of each")
    })?;
    Ok(format!(
        "{writes} writes and {reads} reads of {CHUNK} B on {path}, exactly as made"
    ))
}
