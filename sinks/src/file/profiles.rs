//! Profile outputs of the file sink: one file per profiling interval in a
//! directory (`pprof`, `folded`, `flamegraph`), the newest also at a stable
//! name (`flamegraph-latest.svg`) for a browser tab or a script to reload.
//!
//! An interval is the profiles sharing a start time: a profile source
//! emits all of one interval's profiles together. Files are written to a
//! temporary name and renamed, so a reader never sees half a file.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sonde_core::event::{Event, EventBatch, Profile, Timestamp};
use sonde_core::{BatchSink, SinkError};

use super::config::FileFormat;
use super::stacks;
use super::writer::OpenError;
use crate::pprof;

/// Writes each interval's profiles to a file of its own. Clone, because
/// the blocking write task needs an owned handle; clones share the lock.
#[derive(Clone, Debug)]
pub(super) struct ProfileFiles {
    dir: PathBuf,
    format: FileFormat,
    max_files: usize,
    // One writer at a time: names and pruning look at the directory.
    lock: Arc<Mutex<()>>,
}

impl ProfileFiles {
    /// Creates `dir` if needed.
    pub fn open(dir: &Path, format: FileFormat, max_files: usize) -> Result<Self, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(ProfileFiles {
            dir: dir.to_path_buf(),
            format,
            max_files,
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// File name prefix and extension of the format.
    fn naming(&self) -> (&'static str, &'static str) {
        match self.format {
            FileFormat::Pprof => ("profile", "pb.gz"),
            FileFormat::Folded => ("stacks", "folded"),
            FileFormat::Flamegraph | FileFormat::Json => ("flamegraph", "svg"),
        }
    }

    /// The stable path of the newest file.
    pub fn latest(&self) -> PathBuf {
        let (prefix, ext) = self.naming();
        self.dir.join(format!("{prefix}-latest.{ext}"))
    }

    /// Writes one interval's profiles; returns the interval file's path.
    pub fn write_interval(&self, start: Timestamp, end: Timestamp, profiles: &[&Profile]) -> io::Result<PathBuf> {
        let bytes = match self.format {
            FileFormat::Pprof => {
                let profile = pprof::encode(profiles.iter().copied(), pprof::EncodeOptions::default())
                    .ok_or_else(|| io::Error::other("no profile"))?;
                pprof::gzip(&profile)
            }
            FileFormat::Folded => stacks::folded_text(profiles.iter().copied()).into_bytes(),
            FileFormat::Flamegraph | FileFormat::Json => stacks::flamegraph(profiles.iter().copied(), start, end)?,
        };
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (prefix, ext) = self.naming();
        let stamp = file_stamp(start);
        let mut path = self.dir.join(format!("{prefix}-{stamp}.{ext}"));
        // The same interval again (a retry after a partial failure, or a
        // source restarted within a second): keep both.
        let mut n = 1;
        while path.exists() {
            path = self.dir.join(format!("{prefix}-{stamp}-{n}.{ext}"));
            n += 1;
        }
        write_atomic(&path, &bytes)?;
        write_atomic(&self.latest(), &bytes)?;
        self.prune(prefix, ext)?;
        Ok(path)
    }

    /// Deletes the oldest interval files beyond `max_files`.
    fn prune(&self, prefix: &str, ext: &str) -> io::Result<()> {
        let latest = self.latest();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| *p != latest)
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{prefix}-")) && n.ends_with(&format!(".{ext}")))
            })
            .collect();
        // Names hold the UTC start time, so they sort by age.
        files.sort();
        let excess = files.len().saturating_sub(self.max_files);
        for old in &files[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

/// `20261126T154133Z`: the interval's start to the second, safe in file names.
fn file_stamp(start: Timestamp) -> String {
    let rfc3339 = start.to_string();
    let seconds: String = rfc3339.chars().take(19).filter(|c| *c != '-' && *c != ':').collect();
    format!("{seconds}Z")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl BatchSink for ProfileFiles {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        let files = self.clone();
        // Encoding (flame graph layout, gzip) and file writes block.
        tokio::task::spawn_blocking(move || {
            let mut intervals: BTreeMap<Timestamp, Vec<&Profile>> = BTreeMap::new();
            for event in &batch {
                if let Event::Profile(profile) = event {
                    intervals.entry(profile.start).or_default().push(profile);
                }
            }
            for (start, profiles) in intervals {
                let end = profiles.iter().map(|p| p.end).max().unwrap_or(start);
                // Disk full, EIO: worth retrying once space is freed.
                files
                    .write_interval(start, end, &profiles)
                    .map_err(SinkError::retriable)?;
            }
            Ok(())
        })
        .await
        .map_err(SinkError::permanent)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_seconds() {
        assert_eq!(
            file_stamp(Timestamp::from_nanos(1_700_000_000_123_456_789)),
            "20231114T221320Z"
        );
    }

    #[test]
    fn keeps_max_files_and_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let files = ProfileFiles::open(dir.path(), FileFormat::Folded, 2).unwrap();
        let profile = crate::pprof::encode::tests::profile();
        for i in 0..4u64 {
            let start = Timestamp::from_nanos((1_700_000_000 + i) * 1_000_000_000);
            files.write_interval(start, start, &[&profile]).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "stacks-20231114T221322Z.folded",
                "stacks-20231114T221323Z.folded",
                "stacks-latest.folded"
            ]
        );
        let latest = std::fs::read_to_string(files.latest()).unwrap();
        assert!(latest.starts_with("a;main;hot 90\n"), "{latest}");
    }
}
