//! Errors of loading, attaching and reading eBPF programs and maps. Each
//! variant names the object, the program or map, and the attach point, so a
//! log line or `sonde doctor` says exactly which step failed.

use std::io;

/// Why an eBPF object could not be loaded, attached or set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The running kernel's BTF could not be read or parsed.
    #[error("cannot read the kernel's BTF at {path}: {}", chain(.source))]
    KernelBtf {
        /// Where it was looked for.
        path: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::BtfError>,
    },
    /// The object did not parse, relocate, or create its maps.
    #[error("cannot load eBPF object `{object}`: {}", chain(.source))]
    Object {
        /// The object (`disk_latency`).
        object: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// The object has no program of that name (a build mismatch).
    #[error("eBPF object `{object}` has no program `{program}`")]
    NoSuchProgram {
        /// The object.
        object: &'static str,
        /// The program looked for.
        program: &'static str,
    },
    /// The object has no map of that name (a build mismatch).
    #[error("eBPF object `{object}` has no map `{map}`")]
    NoSuchMap {
        /// The object.
        object: &'static str,
        /// The map looked for.
        map: &'static str,
    },
    /// The kernel's verifier rejected a program.
    #[error(
        "the kernel rejected program `{program}` of `{object}`: {io_error}{}",
        log_suffix(verifier_log)
    )]
    Verifier {
        /// The object.
        object: &'static str,
        /// The program.
        program: &'static str,
        /// The error of BPF_PROG_LOAD.
        io_error: Box<io::Error>,
        /// What the verifier said.
        verifier_log: String,
    },
    /// A program could not be prepared or loaded (not a verifier rejection).
    #[error("cannot load program `{program}` of `{object}`: {}", chain(.source))]
    Program {
        /// The object.
        object: &'static str,
        /// The program.
        program: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A loaded program could not be attached.
    #[error("cannot attach program `{program}` of `{object}` to {attach_point}: {}", chain(.source))]
    Attach {
        /// The object.
        object: &'static str,
        /// The program.
        program: &'static str,
        /// Where (`tracepoint block:block_rq_issue`).
        attach_point: String,
        /// Why it failed.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map could not be turned into its typed handle.
    #[error("map `{map}` of `{object}`: {}", chain(.source))]
    Map {
        /// The object.
        object: &'static str,
        /// The map.
        map: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::maps::MapError>,
    },
}

impl LoadError {
    /// The OS error number behind this error, if there is one (`EPERM`
    /// for missing privileges, `ENOENT` for a missing tracepoint …).
    pub fn errno(&self) -> Option<i32> {
        if let LoadError::Verifier { io_error, .. } = self {
            return io_error.raw_os_error();
        }
        errno_in_chain(self)
    }

    /// The verifier's log, when the kernel rejected a program.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            LoadError::Verifier { verifier_log, .. } => Some(verifier_log),
            _ => None,
        }
    }
}

/// The first `io::Error` with an OS error number in `error`'s source chain.
pub fn errno_in_chain(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            if let Some(errno) = io.raw_os_error() {
                return Some(errno);
            }
        }
        next = error.source();
    }
    None
}

/// Why reading a map of a loaded program failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read map `{map}` of `{object}`: {}", chain(.source))]
pub struct ReadError {
    /// The object.
    pub object: &'static str,
    /// The map.
    pub map: &'static str,
    /// Why it failed.
    #[source]
    pub source: Box<aya::maps::MapError>,
}

impl ReadError {
    /// What a failed read of map `map` of object `object` becomes:
    /// `.map_err(ReadError::of(OBJECT, MAP))`.
    pub fn of(object: &'static str, map: &'static str) -> impl Fn(aya::maps::MapError) -> ReadError {
        move |source| ReadError {
            object,
            map,
            source: Box::new(source),
        }
    }
}

/// `error` and its sources, joined by ": " (aya's errors keep the OS error
/// in their source, not in their message).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

fn log_suffix(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("\nverifier log:\n{}", log.trim_end())
    }
}
