//! The machine code of a compiled function as text: the bytes Cranelift emitted, decoded
//! with iced-x86, each instruction at its offset, labelled by basic block (Cranelift's
//! `bb_starts`), branch targets named by their block, relocated operands by their symbol,
//! and the constant pool at the end shown as data. This is what runs, unlike Cranelift's
//! VCode listing (pseudo-instructions, no offsets or encodings).

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic, OpKind};
use iced_x86::{SymbolResolver, SymbolResult};
use std::fmt::Write;

/// One function's machine code with what is needed to list it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineCode {
    pub bytes: Vec<u8>,
    /// Byte offsets where basic blocks start, ascending; the first is 0.
    pub blocks: Vec<u32>,
    /// (offset of the bytes the linker fills in, the symbol they refer to).
    pub relocs: Vec<(u32, String)>,
}

impl MachineCode {
    /// `blocks` may omit 0 and hold offsets past the end (blocks Cranelift's branch
    /// optimizations emptied); both are normalized here.
    pub fn new(bytes: Vec<u8>, mut blocks: Vec<u32>, relocs: Vec<(u32, String)>) -> MachineCode {
        blocks.retain(|&b| (b as usize) < bytes.len());
        blocks.push(0);
        blocks.sort_unstable();
        blocks.dedup();
        MachineCode { bytes, blocks, relocs }
    }
}

/// Names a near branch's target by its block, and a RIP-relative address in the constant
/// pool by its offset there; other operands are printed as numbers.
struct Labels {
    blocks: Vec<u32>,
    code_end: u64,
}

impl SymbolResolver for Labels {
    fn symbol(
        &mut self,
        instruction: &Instruction,
        operand: u32,
        _instruction_operand: Option<u32>,
        address: u64,
        _address_size: u32,
    ) -> Option<SymbolResult<'_>> {
        match instruction.op_kind(operand) {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                let i = self.blocks.binary_search(&(address as u32)).ok()?;
                Some(SymbolResult::with_string(address, format!("block{i}")))
            }
            OpKind::Memory if instruction.is_ip_rel_memory_operand() && address >= self.code_end => {
                Some(SymbolResult::with_string(address, format!("const+0x{:x}", address - self.code_end)))
            }
            _ => None,
        }
    }
}

/// Whether control never falls through `i` (the end of the function's last block).
fn ends_flow(i: &Instruction) -> bool {
    matches!(i.mnemonic(), Mnemonic::Ret | Mnemonic::Jmp | Mnemonic::Ud2)
}

/// Where the last block's code ends: after its first instruction that does not fall
/// through, then any trap stubs (`ud2`) Cranelift appends; what follows is the constant pool.
fn code_end(code: &MachineCode) -> usize {
    let start = *code.blocks.last().unwrap_or(&0) as usize;
    let mut decoder = Decoder::with_ip(64, &code.bytes[start..], start as u64, DecoderOptions::NONE);
    let mut end = code.bytes.len();
    for i in &mut decoder {
        if ends_flow(&i) {
            end = i.next_ip() as usize;
            break;
        }
    }
    while code.bytes[end..].starts_with(&[0x0f, 0x0b]) {
        end += 2;
    }
    end
}

/// Where the constant pool starts: `end` rounded up to 16 bytes if Cranelift padded it
/// with zeros there (it aligns the pool for vector loads).
fn pool_start(code: &MachineCode, end: usize) -> usize {
    let aligned = end.next_multiple_of(16).min(code.bytes.len());
    if code.bytes[end..aligned].iter().all(|&b| b == 0) {
        aligned
    } else {
        end
    }
}

/// The listing: `blockN:` lines, then one instruction per line as `offset  [encoding]
/// instruction  [; reloc symbol]`, then the constant pool's bytes.
pub fn listing(code: &MachineCode, encodings: bool) -> String {
    let end = code_end(code);
    let pool = pool_start(code, end);
    let labels = Labels { blocks: code.blocks.clone(), code_end: pool as u64 };
    let mut formatter = IntelFormatter::with_options(Some(Box::new(labels)), None);
    let o = formatter.options_mut();
    o.set_hex_prefix("0x");
    o.set_hex_suffix("");
    o.set_uppercase_hex(false);
    o.set_space_after_operand_separator(true);
    o.set_branch_leading_zeros(false);
    o.set_show_branch_size(false);

    let mut out = String::new();
    let mut text = String::new();
    let mut bounds: Vec<usize> = code.blocks.iter().map(|&b| b as usize).filter(|&b| b < end).collect();
    bounds.push(end);
    for (n, w) in bounds.windows(2).enumerate() {
        let (start, stop) = (w[0], w[1]);
        let _ = writeln!(out, "block{n}:");
        let decoder = Decoder::with_ip(64, &code.bytes[start..stop], start as u64, DecoderOptions::NONE);
        for i in decoder {
            text.clear();
            if i.is_invalid() {
                text.push_str("(bad)");
            } else {
                formatter.format(&i, &mut text);
            }
            let at = i.ip() as usize;
            let _ = write!(out, "  {at:04x}  ");
            if encodings {
                let hex: String = code.bytes[at..at + i.len()].iter().map(|b| format!("{b:02x}")).collect();
                let _ = write!(out, "{hex:<24}");
            }
            out.push_str(&text);
            for (_, sym) in code.relocs.iter().filter(|(r, _)| (*r as usize) >= at && (*r as usize) < at + i.len()) {
                let _ = write!(out, "  ; {sym}");
            }
            out.push('\n');
        }
    }
    if pool > end {
        let _ = writeln!(out, "  {end:04x}  ; {} bytes of padding", pool - end);
    }
    if pool < code.bytes.len() {
        // Four 32-bit words a row, each with its value as an f32 (most constants are).
        let _ = writeln!(out, "constants:");
        for (row, chunk) in code.bytes[pool..].chunks(16).enumerate() {
            let _ = write!(out, "  {:04x}  ", pool + row * 16);
            let words: Vec<&[u8]> = chunk.chunks(4).collect();
            if words.iter().all(|w| w.len() == 4) {
                let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                let hex: Vec<String> = words.iter().map(|w| format!("0x{:08x}", word(w))).collect();
                let f: Vec<String> = words.iter().map(|w| format!("{}", f32::from_bits(word(w)))).collect();
                let _ = writeln!(out, ".long {}  ; f32 {}", hex.join(", "), f.join(", "));
            } else {
                let hex: Vec<String> = chunk.iter().map(|b| format!("0x{b:02x}")).collect();
                let _ = writeln!(out, ".byte {}", hex.join(", "));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_branches_relocations_and_constants_are_labelled() {
        // block0: mov eax, [rip+const]; test eax, eax; jne block1; ret
        // block1: movabs r11, 0 (reloc); call r11; ret; padding to 32; 4 bytes of constants.
        let mut bytes = vec![0x8b, 0x05, 0, 0, 0, 0, 0x85, 0xc0, 0x75, 0x01, 0xc3];
        let block1 = bytes.len() as u32;
        bytes.extend([0x49, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 0xff, 0xd3, 0xc3]);
        bytes.resize(32, 0);
        bytes[2..6].copy_from_slice(&(32 - 6i32).to_le_bytes());
        bytes.extend(1.5f32.to_le_bytes());
        let code = MachineCode::new(bytes, vec![block1, 999], vec![(block1 + 2, "percept_micro".into())]);
        assert_eq!(code.blocks, vec![0, block1]);
        let text = listing(&code, false);
        expect_test::expect![[r#"
            block0:
              0000  mov eax, [const+0x0]
              0006  test eax, eax
              0008  jne block1
              000a  ret
            block1:
              000b  mov r11, 0  ; percept_micro
              0015  call r11
              0018  ret
              0019  ; 7 bytes of padding
            constants:
              0020  .long 0x3fc00000  ; f32 1.5
        "#]]
        .assert_eq(&text);
        let with = listing(&code, true);
        assert!(with.contains("  0018  c3                      ret\n"), "{with}");
    }
}
