//! Which processes run CPython, which version, and where its runtime
//! state is: a mapping of a file named `python3.X` or `libpython3.X…`
//! (the version) that defines `_PyRuntime` in its ELF symbols (`.dynsym`,
//! which CPython exports, or `.symtab`). Its address in the process is the
//! symbol's plus the mapping's load bias.

use std::fs::File;
use std::path::Path;

use object::{Object, ObjectSymbol, ReadCache};

use super::super::debuginfo::BinaryInfo;
use super::super::procs::{MappingKind, Process};
use super::offsets::version_from_name;

/// A CPython found in a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    /// (major, minor), from the file name.
    pub version: (u8, u8),
    /// Address of `_PyRuntime` in the process.
    pub runtime: u64,
    /// Address of `PyCode_Type` in the process (checks code objects), when defined.
    pub code_type: Option<u64>,
    /// The file that defines them (in the process' mount namespace).
    pub path: String,
}

/// Finds CPython in `process` (its mappings read), opening its files
/// through `procfs`.
pub fn detect(process: &Process, procfs: &Path) -> Option<Detected> {
    for mapping in &process.mappings {
        if !matches!(mapping.kind, MappingKind::File(_)) {
            continue;
        }
        let name = mapping.path.rsplit('/').next().unwrap_or("");
        let Some(version) = version_from_name(name) else {
            continue;
        };
        let candidates = process.open_candidates(procfs, mapping);
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            continue;
        };
        let Some([Some(runtime), code_type]) = symbols(path, ["_PyRuntime", "PyCode_Type"]) else {
            // A python binary linked to libpython: libpython defines it.
            continue;
        };
        let info = BinaryInfo::read(path)?;
        let linked = info.virtual_address(mapping.offset)?;
        let bias = mapping.start.wrapping_sub(linked);
        return Some(Detected {
            version,
            runtime: runtime.wrapping_add(bias),
            code_type: code_type.map(|a| a.wrapping_add(bias)),
            path: mapping.path.to_string(),
        });
    }
    None
}

/// The linked addresses of the symbols `names` defined in the ELF file at
/// `path` (dynamic symbols first, then the full table).
pub fn symbols<const N: usize>(path: &Path, names: [&str; N]) -> Option<[Option<u64>; N]> {
    let cache = ReadCache::new(File::open(path).ok()?);
    let elf = object::File::parse(&cache).ok()?;
    let mut found = [None; N];
    for symbol in elf.dynamic_symbols().chain(elf.symbols()) {
        if !symbol.is_definition() {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        if let Some(i) = names.iter().position(|n| *n == name) {
            found[i].get_or_insert(symbol.address());
        }
    }
    Some(found)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use object::ObjectSection;

    use super::*;

    /// pyenv's libpython of `minor` ("3.13"), if installed.
    pub(crate) fn pyenv_lib(minor: &str) -> Option<PathBuf> {
        let root = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".pyenv/versions");
        let dir = std::fs::read_dir(root)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{minor}.")))
            })?;
        Some(dir.join(format!("lib/libpython{minor}.so.1.0"))).filter(|p| p.is_file())
    }

    /// `len` bytes of the initializer of symbol `name` in the file at `path`.
    pub(crate) fn symbol_bytes(path: &Path, name: &str, len: usize) -> Option<Vec<u8>> {
        let [Some(address)] = symbols(path, [name])? else {
            return None;
        };
        let data = std::fs::read(path).ok()?;
        let elf = object::File::parse(&*data).ok()?;
        elf.sections()
            .find_map(|s| s.data_range(address, len as u64).ok().flatten())
            .map(<[u8]>::to_vec)
    }

    #[test]
    fn runtime_symbol_is_found_in_a_real_libpython() {
        let Some(lib) = pyenv_lib("3.11") else {
            eprintln!("skipped: no pyenv 3.11");
            return;
        };
        let [runtime, code_type] = symbols(&lib, ["_PyRuntime", "PyCode_Type"]).unwrap();
        assert!(runtime.is_some_and(|a| a > 0) && code_type.is_some_and(|a| a > 0));
        // The python binary linked to it only refers to it.
        let exe = lib.parent().unwrap().parent().unwrap().join("bin/python3.11");
        let [runtime] = symbols(&exe, ["_PyRuntime"]).unwrap();
        assert_eq!(runtime, None);
    }
}
