//! [`RotatingFile`]: an append-only file rotated by size.
//!
//! Two ways a file sink goes wrong on a real system, handled here:
//! - a write that fails part way (a full disk) leaves half a line; the file
//!   is truncated back to its last whole line, so the retry neither glues
//!   a partial line to its retry nor writes an event twice;
//! - the file is deleted or replaced behind the agent (`rm`, logrotate
//!   without copytruncate): writing on into the unlinked inode would lose
//!   everything, so before each write the path's inode is compared with
//!   the open file's (one `stat`, next to the cost of encoding a batch) and
//!   the path reopened, as log shippers do.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why the file sink could not open its file.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {path} for writing: {source}")]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

/// Why a write failed; nothing of it is left in the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to {path}: {source}")]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

/// An append-only file that rotates to `path.1 … path.N` past a size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file, all of them whole lines.
    size: u64,
    max_bytes: u64,
    max_files: usize,
    /// (device, inode) of the open file.
    identity: (u64, u64),
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending, creating parent directories.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> Result<Self, OpenError> {
        let error = |source| OpenError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(error)?;
        let metadata = file.metadata().map_err(error)?;
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size: metadata.len(),
            max_bytes,
            max_files,
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends whole lines, rotating first if they would not fit. On
    /// failure the file is cut back to where it was, so it holds only whole
    /// lines and the same lines can be written again.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<(), WriteError> {
        self.write(lines).map_err(|source| WriteError {
            path: self.path.clone(),
            source,
        })
    }

    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        self.reopen_if_moved()?;
        if self.max_bytes > 0 && self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if let Err(error) = self.file.write_all(lines) {
            // Part of it may be on disk: cut it off. If even that fails,
            // find the real end at the next write.
            if let Err(cut) = self.file.set_len(self.size) {
                tracing::error!(path = %self.path.display(), error = %cut, "cannot cut a partial write off");
                self.size = self.file.metadata().map(|m| m.len()).unwrap_or(self.size);
            }
            return Err(error);
        }
        self.size += lines.len() as u64;
        Ok(())
    }

    /// Reopens `path` when it no longer names the open file (deleted, or
    /// moved away and replaced).
    fn reopen_if_moved(&mut self) -> io::Result<()> {
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if current == Some(self.identity) {
            return Ok(());
        }
        tracing::warn!(
            path = %self.path.display(),
            "the file was deleted or replaced; reopening it"
        );
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        self.reopen()
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        let metadata = self.file.metadata()?;
        self.size = metadata.len();
        self.identity = (metadata.dev(), metadata.ino());
        Ok(())
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.max_files).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.reopen()
    }
}
