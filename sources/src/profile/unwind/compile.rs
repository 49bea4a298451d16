//! Compiling an ELF file's call frame information (`.eh_frame`, or
//! `.debug_frame` when it has none) into the sorted rows the BPF walker
//! searches (`unwind.h`): one row per address range with the same rule,
//! x86-64 only.
//!
//! Each FDE's rows come from gimli's evaluation of its CFA program; the
//! address after an FDE's end gets a "no CFI" row (unless another FDE
//! starts there), and a row equal to the one before it is dropped. Rules
//! the walker cannot follow become `UNWIND_ROW_UNSUPPORTED` rows, so the
//! walk stops there with that reason rather than going astray.

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, EndianSlice, LittleEndian, Reader, RegisterRule,
    UnwindContext, UnwindSection, UnwindTableRow, X86_64,
};
use object::{Object, ObjectSection, ObjectSegment};

use crate::profile::bpf::{
    UnwindRow, UNWIND_MAX_FILE_ROWS, UNWIND_ROW_CFA_RBP, UNWIND_ROW_CFA_RSP, UNWIND_ROW_END, UNWIND_ROW_NONE,
    UNWIND_ROW_PLT, UNWIND_ROW_SIGNAL, UNWIND_ROW_UNSUPPORTED,
};

/// Why a file has no table.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Not an ELF file `object` can read.
    #[error("not a readable ELF file: {0}")]
    Elf(#[from] object::Error),
    /// Not x86-64 code.
    #[error("unsupported architecture {0:?}")]
    Architecture(object::Architecture),
    /// Neither `.eh_frame` nor `.debug_frame`.
    #[error("no .eh_frame or .debug_frame section")]
    NoCfi,
    /// Malformed CFI.
    #[error("malformed call frame information: {0}")]
    Cfi(#[from] gimli::Error),
    /// Addresses past 4 GiB, or more rows than the walker searches.
    #[error("too large for the unwind table format ({0})")]
    TooLarge(&'static str),
}

/// Where a table came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfiSection {
    /// `.eh_frame` (every C/C++/Rust binary built for unwinding).
    EhFrame,
    /// `.debug_frame` (files built without `.eh_frame`).
    DebugFrame,
}

/// One file's table.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Rows sorted by address, no two alike in a row.
    pub rows: Vec<UnwindRow>,
    /// The section read.
    pub section: CfiSection,
    /// Rows with a rule the walker cannot follow.
    pub unsupported: usize,
}

/// A loadable segment of the file: maps file offsets to ELF addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// File offset of the segment's first byte.
    pub offset: u64,
    /// ELF virtual address of that byte.
    pub vaddr: u64,
    /// Bytes of the file in the segment.
    pub size: u64,
    /// Whether it holds code (`PF_X`).
    pub executable: bool,
}

/// The build id and loadable segments of an ELF file.
pub fn identify(data: &[u8]) -> Result<(Option<Vec<u8>>, Vec<Segment>), CompileError> {
    let file = object::File::parse(data)?;
    let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
    let segments = file
        .segments()
        .map(|s| {
            let (offset, size) = s.file_range();
            let executable =
                matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
            Segment {
                offset,
                vaddr: s.address(),
                size,
                executable,
            }
        })
        .collect();
    Ok((build_id, segments))
}

/// Compiles the CFI of ELF file `data`.
pub fn compile(data: &[u8]) -> Result<Compiled, CompileError> {
    let file = object::File::parse(data)?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(CompileError::Architecture(file.architecture()));
    }
    let address = |name: &str| file.section_by_name(name).map_or(0, |s| s.address());
    let bases = BaseAddresses::default()
        .set_text(address(".text"))
        .set_got(address(".got"))
        .set_eh_frame_hdr(address(".eh_frame_hdr"));
    let mut raw = Vec::new();
    let mut unsupported = 0;
    let section = match file.section_by_name(".eh_frame").filter(|s| s.size() > 4) {
        Some(eh) => {
            let data = eh.data()?;
            let frame = EhFrame::new(data, LittleEndian);
            let bases = bases.set_eh_frame(eh.address());
            collect(&frame, &bases, &mut raw, &mut unsupported)?;
            CfiSection::EhFrame
        }
        None => {
            let debug = file.section_by_name(".debug_frame").ok_or(CompileError::NoCfi)?;
            let data = debug.uncompressed_data()?;
            let mut frame = DebugFrame::new(&data, LittleEndian);
            frame.set_address_size(8);
            collect(&frame, &bases, &mut raw, &mut unsupported)?;
            CfiSection::DebugFrame
        }
    };
    let rows = finish(raw)?;
    Ok(Compiled {
        rows,
        section,
        unsupported,
    })
}

/// A row's address as the table holds it (32 bits: ELF addresses of
/// shared objects and executables start near 0).
fn pc32(address: u64) -> Result<u32, CompileError> {
    u32::try_from(address).map_err(|_| CompileError::TooLarge("address past 4 GiB"))
}

/// Collects every FDE's rows, and a `UNWIND_ROW_NONE` row at each FDE's
/// end, unsorted: the table itself, 8 bytes a row (a file with a million
/// rows takes 8 MiB here, and no more while it is sorted and compacted).
fn collect<'a, S>(
    frame: &S,
    bases: &BaseAddresses,
    out: &mut Vec<UnwindRow>,
    unsupported: &mut usize,
) -> Result<(), CompileError>
where
    S: UnwindSection<EndianSlice<'a, LittleEndian>>,
{
    let mut ctx = UnwindContext::new();
    let mut entries = frame.entries(bases);
    while let Some(entry) = entries.next()? {
        let CieOrFde::Fde(partial) = entry else { continue };
        // A bad FDE costs its function, not the file.
        let Ok(fde) = partial.parse(S::cie_from_offset) else {
            continue;
        };
        let signal = fde.is_signal_trampoline();
        let Ok(mut table) = fde.rows(frame, bases, &mut ctx) else {
            continue;
        };
        while let Ok(Some(row)) = table.next_row() {
            let rule = if signal {
                rule_row(UNWIND_ROW_SIGNAL, 0, 0)
            } else {
                rule_of(row, frame)
            };
            if u32::from(rule.kind) == UNWIND_ROW_UNSUPPORTED {
                *unsupported += 1;
            }
            out.push(UnwindRow {
                pc: pc32(row.start_address())?,
                ..rule
            });
        }
        out.push(UnwindRow {
            pc: pc32(fde.end_address())?,
            ..rule_row(UNWIND_ROW_NONE, 0, 0)
        });
    }
    Ok(())
}

/// Sorts, resolves FDE ends that are another FDE's start, drops repeats,
/// in place. Only FDE ends are `UNWIND_ROW_NONE` rows (`rule_of` never
/// gives one), so at one address a row of a function sorts before the end
/// of the one before, and wins.
fn finish(mut rows: Vec<UnwindRow>) -> Result<Vec<UnwindRow>, CompileError> {
    rows.sort_by_key(|row| (row.pc, u32::from(row.kind) == UNWIND_ROW_NONE));
    rows.dedup_by_key(|row| row.pc);
    rows.dedup_by(|row, before| same_rule(before, row));
    if rows.len() > UNWIND_MAX_FILE_ROWS as usize {
        return Err(CompileError::TooLarge("too many rows"));
    }
    rows.shrink_to_fit();
    Ok(rows)
}

fn same_rule(a: &UnwindRow, b: &UnwindRow) -> bool {
    (a.kind, a.rbp_slot, a.cfa_offset) == (b.kind, b.rbp_slot, b.cfa_offset)
}

fn rule_row(kind: u32, rbp_slot: i8, cfa_offset: i16) -> UnwindRow {
    UnwindRow {
        pc: 0,
        kind: kind as u8,
        rbp_slot,
        cfa_offset,
    }
}

/// The walker's rule for one CFI row.
fn rule_of<'a, S>(row: &UnwindTableRow<usize>, frame: &S) -> UnwindRow
where
    S: UnwindSection<EndianSlice<'a, LittleEndian>>,
{
    let unsupported = rule_row(UNWIND_ROW_UNSUPPORTED, 0, 0);
    match row.register(X86_64::RA) {
        Some(RegisterRule::Undefined) => return rule_row(UNWIND_ROW_END, 0, 0),
        Some(RegisterRule::Offset(-8)) => {}
        _ => return unsupported,
    }
    let rbp_slot = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::SameValue) | Some(RegisterRule::Undefined) => 0,
        Some(RegisterRule::Offset(n)) if n % 8 == 0 && n != 0 => match i8::try_from(n / 8) {
            Ok(slot) => slot,
            Err(_) => return unsupported,
        },
        _ => return unsupported,
    };
    match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let Ok(offset) = i16::try_from(*offset) else {
                return unsupported;
            };
            match *register {
                X86_64::RSP => rule_row(UNWIND_ROW_CFA_RSP, rbp_slot, offset),
                X86_64::RBP => rule_row(UNWIND_ROW_CFA_RBP, rbp_slot, offset),
                _ => unsupported,
            }
        }
        CfaRule::Expression(expression) => {
            let bytes = expression
                .get(frame)
                .ok()
                .and_then(|e| e.0.to_slice().ok().map(|s| s.to_vec()));
            match bytes.as_deref().and_then(plt_threshold) {
                Some(threshold) => rule_row(UNWIND_ROW_PLT, rbp_slot, threshold),
                None => unsupported,
            }
        }
    }
}

/// The threshold of the expression compilers and linkers give PLT stubs:
/// `CFA = RSP + 8 + ((RIP & 15) >= N) << 3`, i.e. `DW_OP_breg7 8;
/// DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_litN; DW_OP_ge;
/// DW_OP_lit3; DW_OP_shl; DW_OP_plus`.
pub fn plt_threshold(expression: &[u8]) -> Option<i16> {
    match expression {
        [0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, lit, 0x2a, 0x33, 0x24, 0x22] if (0x30..=0x4f).contains(lit) => {
            Some(i16::from(*lit - 0x30))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plt_expression_is_recognised() {
        let plt = [0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
        assert_eq!(plt_threshold(&plt), Some(11));
        let mut other = plt;
        other[1] = 0x10;
        assert_eq!(plt_threshold(&other), None);
        assert_eq!(plt_threshold(&plt[..10]), None);
    }

    #[test]
    fn fde_ends_yield_to_the_next_start_and_repeats_go() {
        let rsp8 = rule_row(UNWIND_ROW_CFA_RSP, 0, 8);
        let rsp16 = rule_row(UNWIND_ROW_CFA_RSP, 0, 16);
        let none = rule_row(UNWIND_ROW_NONE, 0, 0);
        let at = |pc: u32, rule: UnwindRow| UnwindRow { pc, ..rule };
        let rows = finish(vec![
            at(0x20, none),
            at(0x10, rsp8),
            at(0x14, rsp16),
            at(0x20, rsp8),
            at(0x30, none),
            at(0x28, rsp8),
        ])
        .unwrap();
        let got: Vec<(u32, u8, i16)> = rows.iter().map(|r| (r.pc, r.kind, r.cfa_offset)).collect();
        assert_eq!(
            got,
            vec![
                (0x10, UNWIND_ROW_CFA_RSP as u8, 8),
                (0x14, UNWIND_ROW_CFA_RSP as u8, 16),
                (0x20, UNWIND_ROW_CFA_RSP as u8, 8),
                (0x30, UNWIND_ROW_NONE as u8, 0),
            ]
        );
        assert!(pc32(1 << 33).is_err());
    }

    /// libc's own CFI: its signal trampoline, its outermost frames and PLT
    /// stubs of this very test binary compile to the special rows.
    #[test]
    fn libc_and_this_binary_compile() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6");
        let Ok(libc) = libc else {
            eprintln!("skipped: no x86-64 libc");
            return;
        };
        let table = compile(&libc).unwrap();
        assert_eq!(table.section, CfiSection::EhFrame);
        let kinds = |k: u32| table.rows.iter().filter(|r| u32::from(r.kind) == k).count();
        eprintln!(
            "libc: {} rows, {} unsupported, {} signal, {} end",
            table.rows.len(),
            table.unsupported,
            kinds(UNWIND_ROW_SIGNAL),
            kinds(UNWIND_ROW_END)
        );
        assert!(table.rows.len() > 5000);
        assert!(kinds(UNWIND_ROW_SIGNAL) >= 1, "__restore_rt");
        assert!(kinds(UNWIND_ROW_END) >= 1, "clone3's child");
        assert!(table.rows.windows(2).all(|w| w[0].pc < w[1].pc));
        // A few percent of rows at most are beyond the format.
        assert!(table.unsupported * 20 < table.rows.len());
    }
}
