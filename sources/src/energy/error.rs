//! Errors of the `energy` source.

use std::io;
use std::path::PathBuf;

/// Why the `energy` source could not start or read a round.
#[derive(Debug, thiserror::Error)]
pub enum EnergyError {
    /// A sysfs or procfs file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file held something other than what the kernel writes there.
    #[error("{}: expected {what}, found {text:?}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was expected (`an integer`, `a cpu line`).
        what: &'static str,
        /// What was found (trimmed).
        text: String,
    },
    /// The eBPF program could not be loaded or attached.
    #[error(transparent)]
    Load(#[from] sonde_ebpf::LoadError),
    /// The eBPF program's map could not be read.
    #[error(transparent)]
    Map(#[from] sonde_ebpf::ReadError),
    /// The power model's options contradict each other.
    #[error("power model: {0}")]
    Model(&'static str),
}

/// Reads `path` as text, naming it in the error.
pub(super) fn read(path: PathBuf) -> Result<String, EnergyError> {
    std::fs::read_to_string(&path).map_err(|source| EnergyError::Read { path, source })
}

/// Reads `path` as one unsigned integer.
pub(super) fn read_u64(path: PathBuf) -> Result<u64, EnergyError> {
    let text = read(path.clone())?;
    text.trim().parse().map_err(|_| EnergyError::Parse {
        path,
        what: "an unsigned integer",
        text: text.trim().to_string(),
    })
}
