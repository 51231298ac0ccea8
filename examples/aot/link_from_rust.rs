//! Calling LeNet-5 compiled by `percept build` from Rust, through `extern "C"`: no Percept
//! crate, no JIT, just the archive.
//!
//!   percept build examples/lenet5.nn --weights runs/lenet5/weights.safetensors --out examples/aot/build
//!   rustc -O examples/aot/link_from_rust.rs -L examples/aot/build -l static=lenet5 -o link_from_rust
//!   ./link_from_rust INPUT.f32      # 784 little-endian floats (one normalized image)
//!
//! It prints the ten outputs and the class with the largest one.

use std::ffi::c_void;

const INPUT_SIZE: usize = 784; // LENET5_INPUT_SIZE
const OUTPUT_SIZE: usize = 10; // LENET5_OUTPUT_SIZE

extern "C" {
    fn lenet5_forward_ws(input: *const f32, output: *mut f32, workspace: *mut c_void) -> i32;
    fn lenet5_workspace_bytes() -> usize;
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: link_from_rust INPUT.f32");
    let bytes = std::fs::read(&path).expect("cannot read the input");
    let input: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(input.len(), INPUT_SIZE, "the input must hold {INPUT_SIZE} floats");
    let mut output = [0f32; OUTPUT_SIZE];
    // SAFETY: the workspace has the size the library asks for; input and output have the
    // sizes its header gives; the library touches no other memory.
    let rc = unsafe {
        let mut workspace = vec![0u8; lenet5_workspace_bytes()];
        lenet5_forward_ws(input.as_ptr(), output.as_mut_ptr(), workspace.as_mut_ptr().cast())
    };
    assert_eq!(rc, 0, "lenet5_forward_ws returned {rc} (2: this CPU lacks a feature the code needs)");
    let best = (0..OUTPUT_SIZE).max_by(|&a, &b| output[a].total_cmp(&output[b])).unwrap();
    for y in output {
        println!("{:08x} {y}", y.to_bits());
    }
    println!("class {best}");
}
