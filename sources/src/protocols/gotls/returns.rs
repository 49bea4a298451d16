//! The return instructions of a function, where the "return" probes go
//! (a uretprobe would rewrite the return address on a goroutine stack Go
//! may move). amd64 code is decoded with `iced-x86` (instructions have
//! variable lengths: a byte scan would find RET bytes inside others);
//! arm64 instructions are 4 bytes, aligned, and RET has one encoding per
//! register.

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
    fn arm64_returns_are_ret_words() {
        let words: [u32; 4] = [0xd503201f, 0xd65f03c0, 0x910003fd, 0xd65f0200];
        let code: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(returns(Architecture::Aarch64, &code, 0x400), Some(vec![0x404, 0x40c]));
        assert_eq!(returns(Architecture::Riscv64, &code, 0), None);
    }
}
