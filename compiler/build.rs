//! With the `codegen` feature on x86-64: compile the native micro-kernels' tiles
//! (`src/codegen/micro/tiles.rs`) alone into a position-independent object with C
//! symbols, which `percept build` puts into the static libraries it writes beside the
//! kernels (`codegen::aot`). The same source is compiled into this crate for the JIT.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(micro_object)");
    println!("cargo::rustc-check-cfg=cfg(micro_object_built)");
    println!("cargo::rerun-if-changed=src/codegen/micro/tiles.rs");
    println!("cargo::rerun-if-changed=src/codegen/micro/tiles_object.rs");
    let codegen = std::env::var_os("CARGO_FEATURE_CODEGEN").is_some();
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    if !codegen || !x86_64 {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("micro_tiles.o");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "lib", "--crate-name", "percept_micro_tiles", "--emit", "obj"])
        .args(["-C", "opt-level=3", "-C", "panic=abort", "-C", "relocation-model=pic", "-C", "debuginfo=0"])
        .args(["--cfg", "micro_object", "-o"])
        .arg(&out)
        .arg("src/codegen/micro/tiles_object.rs")
        .status();
    match status {
        Ok(s) if s.success() => println!("cargo::rustc-cfg=micro_object_built"),
        // Libraries then use the Cranelift micro-kernel only; the JIT is unaffected.
        _ => println!("cargo::warning=could not compile the native micro-kernels' object; percept build will offer the Cranelift micro-kernel only"),
    }
}
