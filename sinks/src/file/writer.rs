//! [`RotatingFile`]: an append-only file rotated by size.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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

/// An append-only file that rotates to `path.1 … path.N` past a size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: usize,
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
        let size = file.metadata().map_err(error)?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            max_files,
        })
    }

    /// Appends whole lines, rotating first if they would not fit.
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.max_bytes > 0 && self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(lines)?;
        self.size += lines.len() as u64;
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
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}
