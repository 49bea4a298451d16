//! CPython 3.8–3.13 frames, mixed with native ones.
//!
//! - [`detect`]: a process maps `python3.X` or `libpython3.X` defining
//!   `_PyRuntime`: the version (file name) and the runtime's address.
//! - [`offsets`]: the version's struct offsets (a table for 3.8–3.12,
//!   `_Py_DebugOffsets` read from the process for 3.13).
//! - The eBPF program (`bpf/python.h`) walks the sampled thread's frame
//!   chain with them and records (code object, instruction) per frame.
//! - [`code`]: user space reads each code object once per process (name,
//!   file, line table) from the process' memory and computes lines.
//! - [`merge`]: Python frames replace the native eval-loop frames that ran
//!   them, in order.
//!
//! A process is described to the program when it is announced (its first
//! sample, or its first after an exec: the program forgets it at exec),
//! and its code cache starts over then. Needs CAP_SYS_PTRACE (reading
//! other processes' memory), and x86-64 for Python before 3.11.

pub mod abi;
pub mod code;
pub mod detect;
pub mod maps;
pub mod merge;
pub mod offsets;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sonde_core::event::{Frame, FrameKind, SharedStr};

pub use abi::{PythonFrame, PythonStack, PYTHON_INSTR_MASK};
pub use maps::PythonMaps;

use super::procs::Process;
use code::{read_code, read_memory, CodeInfo};
use offsets::{Layout, DEBUG_OFFSETS_SIZE};

/// Code objects cached per process, past which its cache starts over.
pub const MAX_CODES_PER_PROCESS: usize = 65_536;

/// One Python process.
#[derive(Debug)]
struct PythonProcess {
    layout: Layout,
    code_type: Option<u64>,
    module: SharedStr,
    codes: HashMap<u64, Option<Arc<CodeInfo>>>,
}

/// The Python processes of one collector and their code objects.
#[derive(Debug)]
pub struct Pythons {
    procfs: PathBuf,
    processes: HashMap<u32, PythonProcess>,
    /// Processes found not (yet) Python, with their number of mappings
    /// then: a process sampled right after its exec may not have mapped
    /// libpython yet, so it is looked at again when its mappings change.
    checked: HashMap<u32, usize>,
}

impl Pythons {
    /// None known yet; processes are read through `procfs` (`/proc`).
    pub fn new(procfs: PathBuf) -> Self {
        Pythons {
            procfs,
            processes: HashMap::new(),
            checked: HashMap::new(),
        }
    }

    /// Uses `procfs` instead of `/proc` (tests).
    pub fn set_procfs(&mut self, procfs: PathBuf) {
        self.procfs = procfs;
    }

    /// A process just announced (new, or a new program): describes it to
    /// the program if it runs a supported CPython, and forgets what was
    /// cached for its pid. Returns the version found.
    pub fn note(&mut self, process: &Process, maps: &mut PythonMaps) -> Option<(u8, u8)> {
        let pid = process.pid;
        self.processes.remove(&pid);
        self.checked.insert(pid, process.mappings.len());
        let found = detect::detect(process, &self.procfs)?;
        let layout = if found.version >= (3, 13) {
            let mut bytes = vec![0u8; DEBUG_OFFSETS_SIZE];
            if !read_memory(pid, found.runtime, &mut bytes) {
                tracing::debug!(pid, "cannot read _Py_DebugOffsets");
                return None;
            }
            Layout::from_debug_offsets(&bytes)
        } else {
            offsets::table(found.version)
        };
        let Some(layout) = layout else {
            tracing::debug!(pid, version = ?found.version, "unsupported Python version");
            return None;
        };
        let mut walk = layout.walk;
        walk.interp_head = found.runtime + layout.runtime_interp_head;
        if let Err(error) = maps.insert(pid, &walk) {
            tracing::debug!(pid, %error, "cannot describe a Python process");
            return None;
        }
        self.processes.insert(
            pid,
            PythonProcess {
                layout,
                code_type: found.code_type,
                module: SharedStr::from(found.path),
                codes: HashMap::new(),
            },
        );
        Some(layout.version)
    }

    /// [`Pythons::note`] for a process not known as Python whose mappings
    /// changed since it was last looked at.
    pub fn check(&mut self, process: &Process, maps: &mut PythonMaps) {
        if process.mappings.is_empty()
            || self.processes.contains_key(&process.pid)
            || self.checked.get(&process.pid) == Some(&process.mappings.len())
        {
            return;
        }
        self.note(process, maps);
    }

    /// Forgets process `pid` (gone).
    pub fn forget(&mut self, pid: u32, maps: &mut PythonMaps) {
        self.checked.remove(&pid);
        if self.processes.remove(&pid).is_some() {
            if let Err(error) = maps.remove(pid) {
                tracing::debug!(pid, %error, "cannot forget a Python process");
            }
        }
    }

    /// The frames of `stack` (leaf first), each with whether it is the
    /// outermost of its eval call.
    pub fn frames(&mut self, pid: u32, stack: &PythonStack) -> Vec<(Frame, bool)> {
        let Some(process) = self.processes.get_mut(&pid) else {
            return Vec::new();
        };
        if process.codes.len() > MAX_CODES_PER_PROCESS {
            process.codes.clear();
        }
        let kind = u32::from(process.layout.walk.entry_kind);
        let mut out: Vec<(Frame, bool)> = Vec::with_capacity(stack.frames().len());
        for (f, instr, end) in decode(kind, stack.frames()) {
            let code = process.codes.entry(f.code).or_insert_with(|| {
                read_code(pid, f.code, &process.layout, process.code_type)
                    .ok()
                    .map(Arc::new)
            });
            let frame = match code {
                Some(code) => Frame {
                    function: SharedStr::from(code.name.clone()),
                    module: Some(process.module.clone()),
                    file: Some(SharedStr::from(code.filename.clone())),
                    line: Some(code.line(instr)),
                    address: f.code,
                    kind: FrameKind::Python,
                },
                None => Frame {
                    function: SharedStr::from(format!("[python code {:#x}]", f.code)),
                    module: Some(process.module.clone()),
                    file: None,
                    line: None,
                    address: f.code,
                    kind: FrameKind::Unknown,
                },
            };
            out.push((frame, end));
        }
        out
    }

    /// Number of Python processes known.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }
}

/// The frames of a recorded stack (leaf first) as (frame, instruction,
/// whether it is the outermost of its eval call), read per `entry_kind`
/// (`PYTHON_ENTRY_*`): every frame up to 3.10; `is_entry` on 3.11; on
/// 3.12+ the frame before a shim (owner `FRAME_OWNED_BY_CSTACK`), the
/// shims themselves dropped.
pub fn decode(entry_kind: u32, frames: &[PythonFrame]) -> Vec<(PythonFrame, u64, bool)> {
    let mut out: Vec<(PythonFrame, u64, bool)> = Vec::with_capacity(frames.len());
    for f in frames {
        let entry = (f.instr >> 56) as u8;
        let instr = f.instr & PYTHON_INSTR_MASK;
        let end = match entry_kind {
            abi::PYTHON_ENTRY_FLAG => entry != 0,
            abi::PYTHON_ENTRY_SHIM => {
                if u32::from(entry) == abi::PYTHON_OWNED_BY_CSTACK {
                    if let Some(last) = out.last_mut() {
                        last.2 = true;
                    }
                    continue;
                }
                false
            }
            _ => true,
        };
        out.push((*f, instr, end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: u64, instr: u64, entry: u8) -> PythonFrame {
        PythonFrame {
            code,
            instr: instr | (u64::from(entry) << 56),
        }
    }

    fn ends(kind: u32, frames: &[PythonFrame]) -> Vec<(u64, u64, bool)> {
        decode(kind, frames)
            .into_iter()
            .map(|(f, i, e)| (f.code, i, e))
            .collect()
    }

    #[test]
    fn entry_bytes_mark_the_outermost_frame_of_each_eval_call() {
        // 3.12+: fib, key, [shim], main, <module>, [shim].
        let shim = abi::PYTHON_OWNED_BY_CSTACK as u8;
        let frames = [
            frame(1, 10, 0),
            frame(2, 20, 0),
            frame(9, 0, shim),
            frame(3, 30, 0),
            frame(4, 40, 0),
            frame(9, 0, shim),
        ];
        assert_eq!(
            ends(abi::PYTHON_ENTRY_SHIM, &frames),
            [(1, 10, false), (2, 20, true), (3, 30, false), (4, 40, true)]
        );
        // 3.11: is_entry on key and <module>.
        let frames = [frame(1, 10, 0), frame(2, 20, 1), frame(3, 30, 0), frame(4, 40, 1)];
        assert_eq!(
            ends(abi::PYTHON_ENTRY_FLAG, &frames),
            [(1, 10, false), (2, 20, true), (3, 30, false), (4, 40, true)]
        );
        // Up to 3.10: every frame; an f_lasti of -1 stays 32 bits.
        let frames = [frame(1, 0xffff_ffff, 0), frame(2, 4, 0)];
        assert_eq!(
            ends(abi::PYTHON_ENTRY_EVERY, &frames),
            [(1, 0xffff_ffff, true), (2, 4, true)]
        );
    }
}
