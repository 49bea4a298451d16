//! The file sink's options and service.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::event::{EventBatch, EventKinds};
use sonde_core::{batch_sink, BatchSink, BoxError, Sink, SinkConfig, SinkContext, SinkError};

use super::profiles::ProfileFiles;
use super::writer::RotatingFile;

/// Default size at which the file is rotated: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Default number of rotated files kept.
pub const DEFAULT_MAX_FILES: usize = 5;

const fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
const fn default_max_files() -> usize {
    DEFAULT_MAX_FILES
}

/// What the file sink writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// JSON lines, one event per line, every kind (default).
    #[default]
    Json,
    /// Profiles only: one gzipped pprof file (`profile-<start>.pb.gz`) per interval.
    Pprof,
    /// Profiles only: one folded-stacks file (`stacks-<start>.folded`) per interval.
    Folded,
    /// Profiles only: one flame graph SVG (`flamegraph-<start>.svg`) per interval.
    Flamegraph,
}

/// Writes events as JSON lines to a file, rotating it by size; or profiles
/// as pprof, folded-stacks or flame graph files, one per interval.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// With `format = "json"`: the file; appended to if it exists. With the
    /// profile formats: the directory that receives one file per interval
    /// (named by the interval's UTC start) and the newest again at
    /// `<prefix>-latest.<ext>` (`flamegraph-latest.svg`). Missing parent
    /// directories are created. A JSON file deleted or replaced while the
    /// sink runs (`rm`, logrotate) is created again at the path.
    pub path: PathBuf,
    /// `json` (default), `pprof`, `folded` or `flamegraph`. The profile
    /// formats accept only profile events; other events sent to them are
    /// dropped and counted.
    #[serde(default)]
    pub format: FileFormat,
    /// With `format = "json"`: rotate when the file would grow past this
    /// many bytes (`path` becomes `path.1`, `path.1` becomes `path.2` …); 0
    /// never rotates. Unused by the profile formats. Default 104857600 (100 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files (`json`: `path.1` … `path.N`) or interval files (profile
    /// formats) to keep; older ones are deleted. Default 5.
    #[serde(default = "default_max_files")]
    pub max_files: usize,
}

impl sonde_core::registry::SinkType for FileSinkConfig {
    const NAME: &'static str = "file";
}

impl SinkConfig for FileSinkConfig {
    fn accepts(&self) -> EventKinds {
        match self.format {
            FileFormat::Json => EventKinds::ALL,
            FileFormat::Pprof | FileFormat::Folded | FileFormat::Flamegraph => EventKinds::PROFILE,
        }
    }

    fn build(&self, _cx: &SinkContext) -> Result<Sink, BoxError> {
        if self.format != FileFormat::Json {
            let files = ProfileFiles::open(&self.path, self.format, self.max_files)?;
            return Ok(batch_sink(files));
        }
        let file = RotatingFile::open(&self.path, self.max_bytes, self.max_files)?;
        Ok(batch_sink(FileSink {
            file: Arc::new(Mutex::new(file)),
        }))
    }
}

struct FileSink {
    // An `Arc` of its own: the blocking write task needs an owned handle.
    file: Arc<Mutex<RotatingFile>>,
}

impl BatchSink for FileSink {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        let mut lines = Vec::with_capacity(batch.len() * 256);
        for event in &batch {
            serde_json::to_writer(&mut lines, event).map_err(SinkError::permanent)?;
            lines.push(b'\n');
        }
        let file = self.file.clone();
        // File writes block; keep them off the async worker threads.
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            // Disk full, EIO: worth retrying once space is freed; the
            // failed write left nothing behind, so the retry duplicates nothing.
            file.write_lines(&lines).map_err(SinkError::retriable)
        })
        .await
        .map_err(SinkError::permanent)?
    }
}
