//! Code objects, read from the process' memory (process_vm_readv, which
//! needs CAP_SYS_PTRACE over it): name, file, first line and line table,
//! and the line of an instruction from the table of each version.

use super::offsets::{CodeLayout, Layout, LineTable, BYTES_DATA, BYTES_SIZE, UNICODE_LENGTH, UNICODE_STATE};

/// Longest string read (function names and file paths are far shorter).
pub const MAX_STRING: usize = 4096;
/// Longest line table read.
pub const MAX_LINE_TABLE: usize = 1 << 20;
/// Bytes of a code object read at once: every field used is below it.
const CODE_HEADER: usize = 256;

/// Reads `buf.len()` bytes at `address` of process `pid`; false on any fault.
pub fn read_memory(pid: u32, address: u64, buf: &mut [u8]) -> bool {
    if buf.is_empty() {
        return true;
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, writable and owned for the call;
    // the remote range is only read by the kernel, which checks it.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

fn u64_at(bytes: &[u8], at: u16) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A code object, as much as naming its frames needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// Qualified name on 3.11+ (`Class.method`), the name before.
    pub name: String,
    pub filename: String,
    pub firstlineno: u32,
    pub linetable: Vec<u8>,
    /// The address of its first instruction (3.11+).
    pub code_start: u64,
    pub table: LineTable,
}

/// Why a code object could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeError {
    /// The memory could not be read (the process exited, or a bad address).
    Fault,
    /// Its type is not `PyCode_Type` (a stale or wrong address).
    NotCode,
}

/// Reads the code object at `address` of process `pid`.
pub fn read_code(pid: u32, address: u64, layout: &Layout, code_type: Option<u64>) -> Result<CodeInfo, CodeError> {
    let mut header = [0u8; CODE_HEADER];
    if !read_memory(pid, address, &mut header) {
        return Err(CodeError::Fault);
    }
    if code_type.is_some_and(|t| t != u64_at(&header, 8)) {
        return Err(CodeError::NotCode);
    }
    let c: &CodeLayout = &layout.code;
    let name_at = u64_at(&header, c.qualname.unwrap_or(c.name));
    let firstlineno = {
        let at = c.firstlineno as usize;
        i32::from_le_bytes(header[at..at + 4].try_into().unwrap())
    };
    Ok(CodeInfo {
        name: read_string(pid, name_at, layout).ok_or(CodeError::Fault)?,
        filename: read_string(pid, u64_at(&header, c.filename), layout).ok_or(CodeError::Fault)?,
        firstlineno: firstlineno.max(0) as u32,
        linetable: read_bytes(pid, u64_at(&header, c.linetable)).unwrap_or_default(),
        code_start: c.code_adaptive.map_or(0, |at| address + at as u64),
        table: c.table,
    })
}

/// A `str` object's text (compact strings: every identifier and path).
pub fn read_string(pid: u32, address: u64, layout: &Layout) -> Option<String> {
    let mut head = [0u8; 40];
    if address == 0 || !read_memory(pid, address, &mut head) {
        return None;
    }
    let length = u64::from_le_bytes(head[UNICODE_LENGTH as usize..][..8].try_into().unwrap()) as usize;
    let state = u32::from_le_bytes(head[UNICODE_STATE as usize..][..4].try_into().unwrap());
    let kind = ((state >> 2) & 7) as usize;
    let compact = state & (1 << 5) != 0;
    let ascii = state & (1 << 6) != 0;
    if !compact || !matches!(kind, 1 | 2 | 4) {
        return None;
    }
    let length = length.min(MAX_STRING);
    let data = address + if ascii { layout.ascii_size } else { layout.compact_size } as u64;
    let mut raw = vec![0u8; length * kind];
    if !read_memory(pid, data, &mut raw) {
        return None;
    }
    Some(match kind {
        1 => raw.iter().map(|b| char::from(*b)).collect(),
        2 => char::decode_utf16(raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_le_bytes(c.try_into().unwrap())).unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    })
}

/// A `bytes` object's content.
fn read_bytes(pid: u32, address: u64) -> Option<Vec<u8>> {
    let mut size = [0u8; 8];
    if address == 0 || !read_memory(pid, address + BYTES_SIZE, &mut size) {
        return None;
    }
    let size = (u64::from_le_bytes(size) as usize).min(MAX_LINE_TABLE);
    let mut data = vec![0u8; size];
    read_memory(pid, address + BYTES_DATA, &mut data).then_some(data)
}

impl CodeInfo {
    /// The line of instruction `instr` (as the program recorded it:
    /// `f_lasti`, or an instruction pointer on 3.11+); the first line when
    /// the table has none for it.
    pub fn line(&self, instr: u64) -> u32 {
        let line = match self.table {
            LineTable::Lnotab => lnotab_line(&self.linetable, self.firstlineno, instr as u32 as i32),
            LineTable::Linetable310 => linetable310_line(&self.linetable, self.firstlineno, (instr as u32 as i32) * 2),
            LineTable::Locations => {
                let index = instr.wrapping_sub(self.code_start) / 2;
                if instr < self.code_start {
                    None
                } else {
                    locations_line(&self.linetable, self.firstlineno, index)
                }
            }
        };
        line.unwrap_or(self.firstlineno)
    }
}

/// 3.8/3.9 `co_lnotab`, `offset` in bytes (`PyCode_Addr2Line`).
pub fn lnotab_line(table: &[u8], first: u32, offset: i32) -> Option<u32> {
    if offset < 0 {
        return Some(first);
    }
    let mut line = first as i64;
    let mut address = 0i32;
    for pair in table.chunks_exact(2) {
        address += pair[0] as i32;
        if address > offset {
            break;
        }
        line += pair[1] as i8 as i64;
    }
    u32::try_from(line).ok()
}

/// 3.10 `co_linetable`, `offset` in bytes: (bytecode delta, line delta)
/// pairs, line delta -128 for "no line".
pub fn linetable310_line(table: &[u8], first: u32, offset: i32) -> Option<u32> {
    if offset < 0 {
        return Some(first);
    }
    let mut line = first as i64;
    let mut end = 0i32;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += pair[0] as i32;
        let delta = pair[1] as i8;
        let this = if delta == -128 {
            None
        } else {
            line += delta as i64;
            Some(line)
        };
        if start <= offset && offset < end {
            return this.and_then(|l| u32::try_from(l).ok());
        }
    }
    None
}

/// 3.11+ location table, `index` in code units (`Objects/locations.md`).
pub fn locations_line(table: &[u8], first: u32, index: u64) -> Option<u32> {
    let mut line = first as i64;
    let mut at = 0usize;
    let mut end = 0u64;
    while at < table.len() {
        let byte = table[at];
        at += 1;
        let code = (byte >> 3) & 15;
        let start = end;
        end += (byte & 7) as u64 + 1;
        let delta = match code {
            15 => None,
            13 | 14 => Some(signed_varint(table, &mut at)),
            10..=12 => Some(code as i64 - 10),
            _ => Some(0),
        };
        if let Some(delta) = delta {
            line += delta;
        }
        // Skip the rest of the entry (columns): up to the next first byte.
        while at < table.len() && table[at] & 0x80 == 0 {
            at += 1;
        }
        if start <= index && index < end {
            return delta.and_then(|_| u32::try_from(line).ok());
        }
    }
    None
}

fn varint(table: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    while let Some(&byte) = table.get(*at) {
        *at += 1;
        value |= ((byte & 63) as u64) << shift;
        shift += 6;
        if byte & 64 == 0 || shift > 60 {
            break;
        }
    }
    value
}

fn signed_varint(table: &[u8], at: &mut usize) -> i64 {
    let value = varint(table, at);
    if value & 1 != 0 {
        -((value >> 1) as i64)
    } else {
        (value >> 1) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_and_310_tables_give_lines() {
        // Lines 10 (bytes 0-5), 12 (6-9), 11 (10-).
        let lnotab = [6, 2, 4, (-1i8) as u8];
        assert_eq!(lnotab_line(&lnotab, 10, 0), Some(10));
        assert_eq!(lnotab_line(&lnotab, 10, 6), Some(12));
        assert_eq!(lnotab_line(&lnotab, 10, 12), Some(11));
        assert_eq!(lnotab_line(&lnotab, 10, -1), Some(10));
        // 3.10: bytes 0-3 line 5, 4-7 no line, 8-11 line 7.
        let table = [4, 0, 4, 0x80, 4, 2];
        assert_eq!(linetable310_line(&table, 5, 2), Some(5));
        assert_eq!(linetable310_line(&table, 5, 6), None);
        assert_eq!(linetable310_line(&table, 5, 8), Some(7));
    }

    #[test]
    fn location_tables_give_lines() {
        // Entry 1: short form (code 0), 2 units, line +0, one column byte.
        // Entry 2: one-line form +1 (code 11), 1 unit, two column bytes.
        // Entry 3: no-columns form (code 13), 3 units, delta -1 (svarint 3).
        // Entry 4: none (code 15), 1 unit.
        let table = [
            0x80 | 1,
            0x05,
            0x80 | (11 << 3),
            1,
            2,
            0x80 | (13 << 3) | 2,
            3,
            0x80 | (15 << 3),
        ];
        assert_eq!(locations_line(&table, 20, 0), Some(20));
        assert_eq!(locations_line(&table, 20, 1), Some(20));
        assert_eq!(locations_line(&table, 20, 2), Some(21));
        assert_eq!(locations_line(&table, 20, 5), Some(20));
        assert_eq!(locations_line(&table, 20, 6), None);
        assert_eq!(locations_line(&table, 20, 7), None);
    }

    #[test]
    fn own_memory_reads_and_faults() {
        let value = [1u8, 2, 3, 4];
        let mut out = [0u8; 4];
        assert!(read_memory(std::process::id(), value.as_ptr() as u64, &mut out));
        assert_eq!(out, value);
        assert!(!read_memory(std::process::id(), 8, &mut out));
    }
}
