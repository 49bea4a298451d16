//! Places in a Go function's code for probes: its return instructions,
//! where the "return" probes go (a uretprobe would rewrite the return
//! address on a goroutine stack Go may move), and the first instruction
//! after its stack check, which runs once per call (the entry runs again
//! when the check grows the stack: the runtime restarts the function).
//! amd64 code is decoded with `iced-x86` (instructions have variable
//! lengths: a byte scan would find RET bytes inside others); arm64
//! instructions are 4 bytes, aligned, one encoding per kind.

use object::Architecture;

/// The addresses of the RET instructions in `code`, which starts at
/// `address`; `None` for an architecture not handled.
pub fn returns(arch: Architecture, code: &[u8], address: u64) -> Option<Vec<u64>> {
    match arch {
        Architecture::X86_64 => Some(x86_64(code, address)),
        Architecture::Aarch64 => Some(aarch64(code, address)),
        _ => None,
    }
}

/// How many instructions from the entry the stack check may take.
const PROLOGUE_INSTRUCTIONS: usize = 6;

/// The address of the first instruction after the function's stack
/// check: Go's prologue compares the stack pointer (or SP minus the
/// frame) with the goroutine's stack guard and branches forward to the
/// code that calls `runtime.morestack` and jumps back to the entry. The
/// argument registers are untouched until then. `None` when the function
/// has no such check (`//go:nosplit`) or the architecture is not handled:
/// its entry runs once per call.
pub fn after_stack_check(arch: Architecture, code: &[u8], address: u64) -> Option<u64> {
    let end = address + code.len() as u64;
    let forward = |from: u64, target: u64| target > from && target < end;
    match arch {
        Architecture::X86_64 => {
            use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
            let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
            let mut instruction = Instruction::default();
            for _ in 0..PROLOGUE_INSTRUCTIONS {
                if !decoder.can_decode() {
                    return None;
                }
                decoder.decode_out(&mut instruction);
                // JLS in Go's assembler: unsigned "below or equal".
                if matches!(instruction.mnemonic(), Mnemonic::Jbe | Mnemonic::Jb)
                    && forward(instruction.ip(), instruction.near_branch_target())
                {
                    return Some(instruction.next_ip());
                }
            }
            None
        }
        Architecture::Aarch64 => code
            .chunks_exact(4)
            .take(PROLOGUE_INSTRUCTIONS)
            .enumerate()
            .find_map(|(i, word)| {
                let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                let at = address + 4 * i as u64;
                // B.cond: 01010100 imm19 0 cond; BLS is cond 9.
                let imm19 = ((word >> 5) & 0x7ffff) as i64;
                let offset = ((imm19 << 45) >> 43) as u64;
                (word & 0xff00_001f == 0x5400_0009 && forward(at, at.wrapping_add(offset))).then_some(at + 4)
            }),
        _ => None,
    }
}

fn x86_64(code: &[u8], address: u64) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.mnemonic() == Mnemonic::Ret {
            out.push(instruction.ip());
        }
    }
    out
}

/// `RET Xn`: 1101011 0 0 10 11111 000000 n 00000.
fn aarch64(code: &[u8], address: u64) -> Vec<u64> {
    code.chunks_exact(4)
        .enumerate()
        .filter(|(_, word)| {
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            word & 0xffff_fc1f == 0xd65f_0000
        })
        .map(|(i, _)| address + 4 * i as u64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amd64_returns_are_found_by_decoding_not_by_byte() {
        // mov eax, 0xc3 (a RET byte inside); ret; nop; ret 8
        let code = [0xb8, 0xc3, 0x00, 0x00, 0x00, 0xc3, 0x90, 0xc2, 0x08, 0x00];
        assert_eq!(returns(Architecture::X86_64, &code, 0x1000), Some(vec![0x1005, 0x1007]));
    }

    #[test]
    fn the_stack_check_is_skipped_to_the_body() {
        // Go 1.19's (*tls.Conn).Write: lea -0x68(%rsp),%r12;
        // cmp 0x10(%r14),%r12; jbe +0x764 (morestack); sub $0xe8,%rsp …
        let mut code = vec![
            0x4c, 0x8d, 0x64, 0x24, 0x98, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x64, 0x07, 0x00, 0x00,
        ];
        code.extend_from_slice(&[0x48, 0x81, 0xec, 0xe8, 0x00, 0x00, 0x00]);
        code.resize(0x800, 0xcc);
        assert_eq!(after_stack_check(Architecture::X86_64, &code, 0x5a7120), Some(0x5a712f));
        // No check (a nosplit function): none.
        assert_eq!(after_stack_check(Architecture::X86_64, &[0x90, 0xc3], 0x1000), None);
        // arm64: ldr x16, [x28, #16]; cmp sp, x16; b.ls +0x40; stp …
        let words: [u32; 5] = [0xf9400b90, 0xeb3063ff, 0x54000209, 0xa9bf7bfd, 0xd65f03c0];
        let mut code: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        code.resize(0x100, 0);
        assert_eq!(after_stack_check(Architecture::Aarch64, &code, 0x400), Some(0x40c));
    }

    #[test]
    fn arm64_returns_are_ret_words() {
        let words: [u32; 4] = [0xd503201f, 0xd65f03c0, 0x910003fd, 0xd65f0200];
        let code: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(returns(Architecture::Aarch64, &code, 0x400), Some(vec![0x404, 0x40c]));
        assert_eq!(returns(Architecture::Riscv64, &code, 0), None);
    }
}
