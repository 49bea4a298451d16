//! Go executables that use `crypto/tls`: where to put the probes of
//! `(*Conn).Read` and `(*Conn).Write` (entry and each RET, as file
//! offsets), and where a `Conn` keeps its socket's fd.
//!
//! The functions are found by name in the ELF symbol table. A binary
//! linked with `-ldflags=-s` has none: its `.gopclntab` still names the
//! functions (so it is known to use `crypto/tls`), but reading their
//! addresses from it would take a hand-written parser of a format that
//! changes between releases (no kept crate reads it), so such a binary
//! is reported as not traceable instead. Go before 1.17 passes
//! arguments on the stack, which the programs do not read: not traceable
//! either.

mod buildinfo;
pub mod offsets;
mod returns;

use std::fs;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol};

pub use buildinfo::{release, BuildInfo, Module};
pub use offsets::OffsetsSource;

use super::bpf::ProtoGoOffsets;

/// The symbols probed.
pub const READ: &str = "crypto/tls.(*Conn).Read";
/// See [`READ`].
pub const WRITE: &str = "crypto/tls.(*Conn).Write";

/// Largest executable looked at (bigger ones are skipped).
const MAX_EXECUTABLE_BYTES: u64 = 512 * 1024 * 1024;

/// Where one function's probes go: file offsets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Probes {
    /// The first instruction after the stack check (the function's entry
    /// if it has none): runs once per call.
    pub entry: u64,
    /// Its return instructions (Read only: Write is sent at its call).
    pub returns: Vec<u64>,
}

/// A Go binary whose TLS calls can be traced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GoTls {
    pub build: BuildInfo,
    pub read: Probes,
    pub write: Probes,
    #[serde(skip)]
    pub offsets: ProtoGoOffsets,
    pub offsets_source: OffsetsSource,
}

/// Why a Go binary that uses `crypto/tls` cannot be traced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Untraceable {
    #[error("no symbol table (stripped, e.g. linked with -ldflags=-s): crypto/tls's functions cannot be located")]
    Stripped,
    #[error("{0} passes arguments on the stack (Go's register ABI, which the probes read, came in 1.17)")]
    StackAbi(String),
    #[error("unknown Go release {0:?}")]
    UnknownRelease(String),
    #[error("{0} is not supported (amd64 and arm64 are)")]
    Architecture(String),
    #[error("{0} has no return instruction to probe")]
    NoReturns(&'static str),
}

/// What a file is, for the Go TLS probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    /// Not a Go executable (or not one that can be read).
    NotGo,
    /// A Go executable that does not use `crypto/tls`.
    NoTls(BuildInfo),
    /// Probes can be attached.
    Traceable(Box<GoTls>),
    /// It uses `crypto/tls` but cannot be traced.
    Untraceable(BuildInfo, Untraceable),
}

/// Looks at the executable at `path`.
pub fn inspect(path: &Path) -> Inspection {
    let Ok(meta) = fs::metadata(path) else {
        return Inspection::NotGo;
    };
    if !meta.is_file() || meta.len() > MAX_EXECUTABLE_BYTES {
        return Inspection::NotGo;
    }
    // Cheap refusal of other executables (their section headers only)
    // before reading a whole one.
    if !has_buildinfo(path) {
        return Inspection::NotGo;
    }
    let Ok(data) = fs::read(path) else {
        return Inspection::NotGo;
    };
    inspect_bytes(&data)
}

/// Whether the file is an ELF file with a `.go.buildinfo` section.
fn has_buildinfo(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else { return false };
    let cache = object::ReadCache::new(file);
    object::File::parse(&cache).is_ok_and(|elf| elf.section_by_name(".go.buildinfo").is_some())
}

/// [`inspect`] on the file's bytes.
pub fn inspect_bytes(data: &[u8]) -> Inspection {
    let Ok(elf) = object::File::parse(data) else {
        return Inspection::NotGo;
    };
    let Some(build) = buildinfo::read(&elf) else {
        return Inspection::NotGo;
    };
    let symbols: Vec<_> = elf
        .symbols()
        .filter(|s| matches!(s.name(), Ok(READ) | Ok(WRITE)) && s.is_definition())
        .collect();
    let find = |name: &str| symbols.iter().find(|s| s.name() == Ok(name));
    let (read, write) = match (find(READ), find(WRITE)) {
        (Some(read), Some(write)) => (read, write),
        _ if uses_tls_without_symbols(&elf) => return Inspection::Untraceable(build, Untraceable::Stripped),
        _ => return Inspection::NoTls(build),
    };
    let Some(release) = release(&build.go_version) else {
        let version = build.go_version.clone();
        return Inspection::Untraceable(build, Untraceable::UnknownRelease(version));
    };
    if release < (1, 17) {
        let version = build.go_version.clone();
        return Inspection::Untraceable(build, Untraceable::StackAbi(version));
    }
    let arch = elf.architecture();
    if !matches!(arch, object::Architecture::X86_64 | object::Architecture::Aarch64) {
        return Inspection::Untraceable(build, Untraceable::Architecture(format!("{arch:?}")));
    }
    // Read: noted once its stack is checked, finished at each return
    // (the bytes are there only then). Write: its bytes are there at the
    // call, and sent from there: before the response its request may
    // bring, which another goroutine may read before this one returns.
    let probes =
        |symbol: &object::Symbol<'_, '_>, name: &'static str, at_returns: bool| -> Result<Probes, Untraceable> {
            let code = function_code(&elf, symbol.address(), symbol.size()).ok_or(Untraceable::NoReturns(name))?;
            let to_file = |address| file_offset(&elf, address).ok_or(Untraceable::NoReturns(name));
            let call = returns::after_stack_check(arch, code, symbol.address()).unwrap_or(symbol.address());
            let returns = if at_returns {
                let found = returns::returns(arch, code, symbol.address()).unwrap_or_default();
                if found.is_empty() {
                    return Err(Untraceable::NoReturns(name));
                }
                found.into_iter().map(to_file).collect::<Result<Vec<_>, _>>()?
            } else {
                Vec::new()
            };
            Ok(Probes {
                entry: to_file(call)?,
                returns,
            })
        };
    let (read, write) = match (probes(read, READ, true), probes(write, WRITE, false)) {
        (Ok(read), Ok(write)) => (read, write),
        (Err(why), _) | (_, Err(why)) => return Inspection::Untraceable(build, why),
    };
    let (offsets, offsets_source) = match offsets::from_dwarf(&elf) {
        Some(offsets) => (offsets, OffsetsSource::Dwarf),
        None => offsets::from_table(release).expect("the table covers every release from 1.17"),
    };
    Inspection::Traceable(Box::new(GoTls {
        build,
        read,
        write,
        offsets,
        offsets_source,
    }))
}

/// A binary without symbols whose function table names `crypto/tls`'s
/// Read (the table survives `-ldflags=-s -w`: the runtime needs it).
fn uses_tls_without_symbols(elf: &object::File<'_>) -> bool {
    let has_symbols = elf.symbols().next().is_some();
    !has_symbols
        && elf
            .section_by_name(".gopclntab")
            .and_then(|s| s.data().ok())
            .is_some_and(|table| memchr::memmem::find(table, READ.as_bytes()).is_some())
}

/// The bytes of a function.
fn function_code<'a>(elf: &object::File<'a>, address: u64, size: u64) -> Option<&'a [u8]> {
    if size == 0 {
        return None;
    }
    elf.sections()
        .find(|s| s.address() <= address && address < s.address() + s.size())?
        .data_range(address, size)
        .ok()
        .flatten()
}

/// Where the instruction at virtual `address` is in the file (what a
/// uprobe is attached by).
fn file_offset(elf: &object::File<'_>, address: u64) -> Option<u64> {
    let section = elf
        .sections()
        .find(|s| s.address() <= address && address < s.address() + s.size())?;
    let (start, _) = section.file_range()?;
    Some(address - section.address() + start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_go_are_not_go() {
        assert_eq!(inspect(Path::new("/bin/sh")), Inspection::NotGo);
        assert_eq!(inspect(Path::new("/etc/hostname")), Inspection::NotGo);
        assert_eq!(inspect(Path::new("/no/such/file")), Inspection::NotGo);
        assert_eq!(inspect_bytes(b"\x7fELF garbage"), Inspection::NotGo);
    }
}
