//! Where each CPython version keeps what the walk and the resolver read.
//!
//! 3.8–3.12: a table, one row per minor version, read from the DWARF of
//! pyenv's builds (`gdb -batch -ex 'ptype /o struct _ts' libpython3.X.so`;
//! the internal structs do not change within a minor version). 3.13 and
//! later describe themselves: `_PyRuntime` starts with `_Py_DebugOffsets`
//! (cookie `xdebugpy`), read from the process by [`Layout::from_debug_offsets`].

use super::abi::{PythonProc, PYTHON_ENTRY_EVERY, PYTHON_ENTRY_FLAG, PYTHON_ENTRY_SHIM, PYTHON_NO_CFRAME};

/// How a code object's line table is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTable {
    /// `co_lnotab` (3.8, 3.9): (bytecode delta, line delta) pairs; `f_lasti` in bytes.
    Lnotab,
    /// `co_linetable` of 3.10: (bytecode delta, line delta) pairs; `f_lasti` in code units.
    Linetable310,
    /// The location table of 3.11+; the instruction is a pointer into `co_code_adaptive`.
    Locations,
}

/// The code object fields the resolver reads (offsets in `PyCodeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeLayout {
    pub firstlineno: u16,
    pub filename: u16,
    pub name: u16,
    /// 3.11+: the qualified name (`Class.method`).
    pub qualname: Option<u16>,
    pub linetable: u16,
    /// 3.11+: where the bytecode starts (instruction pointers point into it).
    pub code_adaptive: Option<u16>,
    pub table: LineTable,
}

/// One version's layout: what the program walks and what the resolver reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// (major, minor).
    pub version: (u8, u8),
    /// Offset of `interpreters.head` in `_PyRuntime`.
    pub runtime_interp_head: u64,
    /// The program's offsets (`interp_head` is filled per process).
    pub walk: PythonProc,
    pub code: CodeLayout,
    /// `sizeof(PyASCIIObject)`: compact ASCII strings' characters follow it.
    pub ascii_size: u16,
    /// `sizeof(PyCompactUnicodeObject)`: other compact strings' characters follow it.
    pub compact_size: u16,
}

/// Offsets of `PyASCIIObject` fields, the same in every supported version.
pub const UNICODE_LENGTH: u64 = 16;
/// The `state` bit field: kind in bits 2–4, compact bit 5, ascii bit 6.
pub const UNICODE_STATE: u64 = 32;
/// `PyBytesObject`: `ob_size` and the first byte.
pub const BYTES_SIZE: u64 = 16;
pub const BYTES_DATA: u64 = 32;

#[allow(clippy::too_many_arguments)]
const fn walk(
    interp_threads: u16,
    tstate_thread_id: u16,
    tstate_native_tid: u16,
    tstate_frame: u16,
    cframe_frame: u16,
    frame_previous: u16,
    frame_code: u16,
    frame_instr: u16,
    frame_entry: u16,
    instr_size: u8,
    entry_kind: u32,
) -> PythonProc {
    PythonProc {
        interp_head: 0,
        interp_threads,
        tstate_next: 8,
        tstate_thread_id,
        tstate_native_tid,
        tstate_frame,
        cframe_frame,
        frame_previous,
        frame_code,
        frame_instr,
        frame_entry,
        instr_size,
        entry_kind: entry_kind as u8,
        pad: [0; 2],
    }
}

const NO_CFRAME: u16 = PYTHON_NO_CFRAME as u16;

/// The table for 3.8–3.12.
pub fn table(version: (u8, u8)) -> Option<Layout> {
    let code38 = CodeLayout {
        firstlineno: 40,
        filename: 104,
        name: 112,
        qualname: None,
        linetable: 120,
        code_adaptive: None,
        table: LineTable::Lnotab,
    };
    let layout = match version {
        (3, 8) | (3, 9) => Layout {
            version,
            runtime_interp_head: 32,
            walk: walk(8, 176, 0, 24, NO_CFRAME, 24, 32, 104, 0, 4, PYTHON_ENTRY_EVERY),
            code: code38,
            ascii_size: 48,
            compact_size: 72,
        },
        (3, 10) => Layout {
            version,
            runtime_interp_head: 32,
            walk: walk(8, 176, 0, 24, NO_CFRAME, 24, 32, 96, 0, 4, PYTHON_ENTRY_EVERY),
            code: CodeLayout {
                table: LineTable::Linetable310,
                ..code38
            },
            ascii_size: 48,
            compact_size: 72,
        },
        (3, 11) => Layout {
            version,
            runtime_interp_head: 40,
            // cframe → current_frame; _PyInterpreterFrame: f_code 32,
            // previous 48, prev_instr 56, is_entry 68.
            walk: walk(16, 152, 160, 56, 8, 48, 32, 56, 68, 8, PYTHON_ENTRY_FLAG),
            code: CodeLayout {
                firstlineno: 72,
                filename: 112,
                name: 120,
                qualname: Some(128),
                linetable: 136,
                code_adaptive: Some(184),
                table: LineTable::Locations,
            },
            ascii_size: 48,
            compact_size: 72,
        },
        (3, 12) => Layout {
            version,
            runtime_interp_head: 40,
            // threads.head 72; cframe → current_frame 0; _PyInterpreterFrame:
            // f_code 0, previous 8, prev_instr 56, owner 70.
            walk: walk(72, 136, 144, 56, 0, 8, 0, 56, 70, 8, PYTHON_ENTRY_SHIM),
            code: CodeLayout {
                firstlineno: 68,
                filename: 112,
                name: 120,
                qualname: Some(128),
                linetable: 136,
                code_adaptive: Some(192),
                table: LineTable::Locations,
            },
            ascii_size: 40,
            compact_size: 56,
        },
        _ => return None,
    };
    Some(layout)
}

/// The bytes of `_Py_DebugOffsets` read (from the start of `_PyRuntime`).
pub const DEBUG_OFFSETS_SIZE: usize = 584;
/// Its first eight bytes.
pub const DEBUG_OFFSETS_COOKIE: &[u8; 8] = b"xdebugpy";

impl Layout {
    /// The layout `_Py_DebugOffsets` describes (3.13; the struct grew in
    /// 3.14, whose layout is not known here: `None`), from the first
    /// [`DEBUG_OFFSETS_SIZE`] bytes of `_PyRuntime`.
    pub fn from_debug_offsets(bytes: &[u8]) -> Option<Layout> {
        if bytes.len() < DEBUG_OFFSETS_SIZE || &bytes[..8] != DEBUG_OFFSETS_COOKIE {
            return None;
        }
        let u = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let h = |at: usize| u16::try_from(u(at)).ok();
        let hex = u(8);
        let version = ((hex >> 24) as u8, (hex >> 16) as u8);
        // Free-threaded builds (3.13t) lay out objects differently.
        if version != (3, 13) || u(16) != 0 {
            return None;
        }
        let ascii_size = h(560)?;
        Some(Layout {
            version,
            runtime_interp_head: u(40),
            walk: walk(
                h(72)?,
                h(192)?,
                h(200)?,
                h(184)?,
                NO_CFRAME,
                h(232)?,
                h(240)?,
                h(248)?,
                h(264)?,
                8,
                PYTHON_ENTRY_SHIM,
            ),
            code: CodeLayout {
                firstlineno: h(312)?,
                filename: h(280)?,
                name: h(288)?,
                qualname: Some(h(296)?),
                linetable: h(304)?,
                code_adaptive: Some(h(344)?),
                table: LineTable::Locations,
            },
            ascii_size,
            // PyCompactUnicodeObject adds utf8_length and utf8 (not described).
            compact_size: ascii_size + 16,
        })
    }
}

/// `(major, minor)` from a file name such as `python3.11`,
/// `libpython3.12.so.1.0` or `python3.13d`.
pub fn version_from_name(name: &str) -> Option<(u8, u8)> {
    let rest = &name[name.find("python")? + "python".len()..];
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_file_names() {
        assert_eq!(version_from_name("python3.11"), Some((3, 11)));
        assert_eq!(version_from_name("libpython3.12.so.1.0"), Some((3, 12)));
        assert_eq!(version_from_name("python3.8d"), Some((3, 8)));
        assert_eq!(version_from_name("python"), None);
        assert_eq!(version_from_name("libc.so.6"), None);
        assert!(table((3, 8)).is_some() && table((3, 12)).is_some());
        assert!(table((3, 7)).is_none() && table((3, 13)).is_none());
    }

    /// pyenv's 3.13: the debug offsets in its libpython's `_PyRuntime`
    /// initializer (.data) give the offsets gdb reads from its DWARF.
    #[test]
    fn debug_offsets_of_a_real_3_13_match_its_dwarf() {
        let Some(lib) = super::super::detect::tests::pyenv_lib("3.13") else {
            eprintln!("skipped: no pyenv 3.13");
            return;
        };
        let bytes = super::super::detect::tests::symbol_bytes(&lib, "_PyRuntime", DEBUG_OFFSETS_SIZE).unwrap();
        let layout = Layout::from_debug_offsets(&bytes).expect("3.13 debug offsets");
        assert_eq!(layout.version, (3, 13));
        // From `ptype /o` of pyenv 3.13.0's libpython.
        assert_eq!(layout.runtime_interp_head, 0x278);
        assert_eq!(layout.walk.interp_threads, 0x1cb0);
        assert_eq!(layout.walk.tstate_frame, 72);
        assert_eq!(layout.walk.tstate_native_tid, 160);
        assert_eq!((layout.walk.frame_code, layout.walk.frame_previous), (0, 8));
        assert_eq!((layout.walk.frame_instr, layout.walk.frame_entry), (56, 70));
        assert_eq!(layout.code.code_adaptive, Some(200));
        assert_eq!((layout.code.firstlineno, layout.code.qualname), (68, Some(128)));
        assert_eq!((layout.ascii_size, layout.compact_size), (40, 56));
        let mut wrong = bytes.clone();
        wrong[0] = b'y';
        assert_eq!(Layout::from_debug_offsets(&wrong), None);
    }
}
