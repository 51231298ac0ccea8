//! GEMM micro-kernels: `tile = packedA · packedB` for one MR×NR tile over `kc` steps of
//! zero-padded panels, the narrow interface between the loop nests (which pack, block and
//! run epilogues: `lower::gemm`) and the register-blocked inner loop.
//!
//! Two kinds, chosen per host when a program is compiled: the native ones (`native`,
//! ahead-of-time Rust with `#[target_feature]`, 256- and 512-bit vectors) and the portable
//! Cranelift one (`cranelift`, 128-bit), which has the same signature.

pub mod cranelift;
pub mod native;

use super::jit::{CgResult, CodeModule, FunctionText, HostFeatures};
use super::MicroChoice;
use cranelift_codegen::ir::{types, AbiParam, Signature};
use cranelift_module::Module;
use cranelift_module::{FuncId, Linkage};

/// What the loop nests need to know of a micro-kernel: its tile's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicroTile {
    pub mr: usize,
    pub nr: usize,
    /// `cranelift-6x8`, `native-avx2-6x16`, ...
    pub name: String,
}

/// The micro-kernel a program's GEMMs call: its tile, and the function in the module.
#[derive(Clone, Debug)]
pub struct MicroKernel {
    pub id: FuncId,
    pub tile: MicroTile,
}

/// The tile `choice` selects on this host (what fusion, planning and lowering need; the
/// same one `declare` puts in a module).
pub fn tile_for(choice: MicroChoice, features: HostFeatures) -> MicroTile {
    match native_for(choice, features) {
        Some(n) => MicroTile { mr: n.mr, nr: n.nr, name: n.name.to_string() },
        None => cranelift::tile(),
    }
}

/// The signature of a micro-kernel: (kc, A, A's row stride, A's step stride, B, B's step
/// stride, B's step offsets or null, tile), strides and offsets in floats (see
/// `loops::MicroCall`).
pub fn signature<M: Module>(jit: &CodeModule<M>) -> Signature {
    let mut sig = Signature::new(jit.call_conv());
    for _ in 0..8 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig
}

/// The native micro-kernel `choice` selects on this host, if any (JIT code may call it:
/// its symbol goes on the allowlist).
pub fn native_for(choice: MicroChoice, features: HostFeatures) -> Option<native::NativeMicro> {
    match choice {
        MicroChoice::Auto => native::best_native(features),
        MicroChoice::Avx2 => native::avx2_native(features),
        MicroChoice::Cranelift => None,
    }
}

/// Declare the chosen micro-kernel in `jit` (importing a native one, or defining the
/// Cranelift one); with its text for `inspect`.
pub fn declare<M: Module>(
    jit: &mut CodeModule<M>,
    native: Option<&native::NativeMicro>,
    features: HostFeatures,
) -> CgResult<(MicroKernel, FunctionText)> {
    match native {
        Some(n) => {
            let sig = signature(jit);
            let id = jit.declare(n.symbol, &sig, Linkage::Import)?;
            let text = FunctionText {
                clif: format!(
                    "; {}: ahead-of-time Rust with #[target_feature] (compiler/src/codegen/micro/native.rs)\n",
                    n.name
                ),
                code: vec![],
                note: format!(
                    "; {}: ahead-of-time Rust, see `objdump -d` of the binary, symbol {}\n",
                    n.name, n.symbol
                ),
                code_bytes: 0,
            };
            Ok((MicroKernel { id, tile: MicroTile { mr: n.mr, nr: n.nr, name: n.name.to_string() } }, text))
        }
        None => cranelift::define(jit, features.fma),
    }
}
