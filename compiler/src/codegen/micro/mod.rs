//! GEMM micro-kernels: `tile (+)= packedA · packedB` for one MR×NR tile over `kc` steps of
//! zero-padded panels (the tile a buffer of its own, or C itself when the GEMM has no
//! epilogue), the narrow interface between the loop nests (which pack, block and
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
    /// The host's narrower native tile, which a GEMM with few columns may call instead:
    /// AVX2's 6×16 beside AVX-512's 8×32. Where 512-bit FMAs run as two 256-bit halves
    /// (this machine's Zen 4), both tiles have the same peak, and a 16-column product
    /// fills the narrow one but only half the wide one.
    pub narrow: Option<Box<MicroTile>>,
}

impl MicroTile {
    /// This tile, then its narrow one if there is one: the tiles a GEMM may choose from.
    pub fn choices(&self) -> Vec<&MicroTile> {
        std::iter::once(self).chain(self.narrow.as_deref()).collect()
    }
}

/// The micro-kernels a program's GEMMs call: the tile (with its narrow one) and the
/// functions in the module.
#[derive(Clone, Debug)]
pub struct MicroKernel {
    pub id: FuncId,
    pub narrow: Option<FuncId>,
    pub tile: MicroTile,
}

fn native_tile(n: &native::NativeMicro, narrow: Option<&native::NativeMicro>) -> MicroTile {
    MicroTile { mr: n.mr, nr: n.nr, name: n.name.to_string(), narrow: narrow.map(|m| Box::new(native_tile(m, None))) }
}

/// The tile `choice` selects on this host (what fusion, planning and lowering need; the
/// same one `declare` puts in a module).
pub fn tile_for(choice: MicroChoice, features: HostFeatures) -> MicroTile {
    match native_for(choice, features) {
        Some(n) => native_tile(&n, narrow_for(choice, features).as_ref()),
        None => cranelift::tile(),
    }
}

/// The narrow native tile beside the one `choice` selects, if any: AVX2's when the
/// automatic choice is AVX-512's.
pub fn narrow_for(choice: MicroChoice, features: HostFeatures) -> Option<native::NativeMicro> {
    match (choice, native_for(choice, features)) {
        (MicroChoice::Auto, Some(n)) if n.nr > 16 => native::avx2_native(features),
        _ => None,
    }
}

/// The signature of a micro-kernel: (kc, A, A's row stride, A's step stride, A's row
/// offsets or null, B, B's step stride, B's step offsets or null, tile, the tile's row
/// stride, add: non-zero to add the product to the tile), strides and offsets in floats
/// (see `loops::MicroCall`).
pub fn signature<M: Module>(jit: &CodeModule<M>) -> Signature {
    let mut sig = Signature::new(jit.call_conv());
    for _ in 0..11 {
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

/// Declare the chosen micro-kernel in `jit` (importing a native one and its narrow one,
/// or defining the Cranelift one); with its text for `inspect`.
pub fn declare<M: Module>(
    jit: &mut CodeModule<M>,
    native: Option<&native::NativeMicro>,
    narrow: Option<&native::NativeMicro>,
    features: HostFeatures,
) -> CgResult<(MicroKernel, FunctionText)> {
    match native {
        Some(n) => {
            let sig = signature(jit);
            let id = jit.declare(n.symbol, &sig, Linkage::Import)?;
            let narrow_id = match narrow {
                Some(m) => Some(jit.declare(m.symbol, &sig, Linkage::Import)?),
                None => None,
            };
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
            Ok((MicroKernel { id, narrow: narrow_id, tile: native_tile(n, narrow) }, text))
        }
        None => cranelift::define(jit, features.fma),
    }
}
