//! What a source's conformance check returns. A check loads the source's
//! programs for real, drives a small workload of its own and compares what
//! the source reported with an independent count (the kernel's own
//! counters, /proc, the workload's arithmetic). The same function is the
//! body of the source's real-kernel test (`tests/bpf_<source>.rs`) and of
//! its row in the kernel matrix (`sonde conformance`, run by
//! `cargo xtask kernels` inside VMs of other kernels), so each comparison
//! is written once.

use crate::error::{LoadError, ReadError};

/// Why a check failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The source did not load or attach: `sonde doctor` explains it the same way.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Its maps or buffers could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The workload could not run (not the source's fault, but no verdict either).
    #[error("workload: {what}: {source}")]
    Workload {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// It loaded, but what it reported does not match the workload.
    #[error("implausible: {0}")]
    Implausible(String),
}

impl CheckError {
    /// A workload error, with what was being done.
    pub fn workload(what: &'static str) -> impl FnOnce(std::io::Error) -> CheckError {
        move |source| CheckError::Workload { what, source }
    }

    /// The stage that failed: `load`, `read`, `workload` or `verify`.
    pub fn stage(&self) -> &'static str {
        match self {
            CheckError::Load(_) => "load",
            CheckError::Read(_) => "read",
            CheckError::Workload { .. } => "workload",
            CheckError::Implausible(_) => "verify",
        }
    }
}

/// Fails with [`CheckError::Implausible`] unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), CheckError> {
    if condition {
        Ok(())
    } else {
        Err(CheckError::Implausible(message()))
    }
}
