//! Rust mirror of `bpf/python.h`. The constants are generated from the
//! header by the crate's `build.rs`; the structs are checked field by field
//! against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/python_consts.rs"));

/// The instruction's bits of [`PythonFrame::instr`]; the top byte is the
/// frame's entry byte (`PYTHON_INSTR_MASK` in the header: not a u32).
pub const PYTHON_INSTR_MASK: u64 = (1 << 56) - 1;

/// `struct python_proc`: where one process keeps its Python state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PythonProc {
    /// Address of `_PyRuntime.interpreters.head`.
    pub interp_head: u64,
    pub interp_threads: u16,
    pub tstate_next: u16,
    pub tstate_thread_id: u16,
    /// 0: none (before 3.11).
    pub tstate_native_tid: u16,
    pub tstate_frame: u16,
    /// [`PYTHON_NO_CFRAME`] when `tstate_frame` is the frame itself.
    pub cframe_frame: u16,
    pub frame_previous: u16,
    pub frame_code: u16,
    pub frame_instr: u16,
    pub frame_entry: u16,
    /// 4 (int `f_lasti`) or 8 (instruction pointer).
    pub instr_size: u8,
    /// `PYTHON_ENTRY_*`.
    pub entry_kind: u8,
    pub pad: [u8; 2],
}

/// `struct python_frame`: a code object and an instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PythonFrame {
    pub code: u64,
    /// `f_lasti` (up to 3.10) or the instruction pointer, with the entry
    /// byte in bits 56–63.
    pub instr: u64,
}

/// `struct python_stack`: frames, leaf first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PythonStack {
    pub len: u32,
    pub truncated: u32,
    pub frames: [PythonFrame; PYTHON_MAX_FRAMES as usize],
}

impl PythonStack {
    /// The walked frames, leaf first.
    pub fn frames(&self) -> &[PythonFrame] {
        &self.frames[..(self.len as usize).min(self.frames.len())]
    }
}

// SAFETY: repr(C), integer fields and arrays of them, no padding (8 + 10 ×
// 2 + 4 bytes; 16-byte frames; 8 + 64 × 16): every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for PythonProc {}
// SAFETY: as above.
unsafe impl sonde_ebpf::aya::Pod for PythonFrame {}
// SAFETY: as above.
unsafe impl sonde_ebpf::aya::Pod for PythonStack {}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(crate::profile::bpf::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "python_proc",
            PythonProc {
                interp_head,
                interp_threads,
                tstate_next,
                tstate_thread_id,
                tstate_native_tid,
                tstate_frame,
                cframe_frame,
                frame_previous,
                frame_code,
                frame_instr,
                frame_entry,
                instr_size,
                entry_kind,
                pad
            }
        );
        sonde_ebpf::assert_layout!(btf, "python_frame", PythonFrame { code, instr });
        sonde_ebpf::assert_layout!(btf, "python_stack", PythonStack { len, truncated, frames });
    }
}
