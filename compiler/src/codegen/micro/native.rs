//! Native micro-kernels: ahead-of-time Rust with `#[target_feature]`, the second (and
//! last) place with `unsafe` in the back end.
//!
//! Each computes `tile (+)= packedA · packedB` for one MR×NR tile over `kc` steps — the same
//! narrow interface as the Cranelift micro-kernel (`micro::cranelift`), so the JIT loop
//! nest calls either. They exist because Cranelift's x86 backend emits 128-bit vectors only;
//! these use 256-bit (AVX2 + FMA) or 512-bit (AVX-512) registers.
//!
//! Why the calls are sound: a kernel is registered with the JIT (and so callable at all)
//! only if the host has its features (`best_native`), and the JIT loop nest passes panel
//! pointers it proved in bounds for `kc` steps of MR (A) and NR (B) floats, and a tile of
//! MR rows of NR floats, `ldc` apart.

use crate::codegen::jit::HostFeatures;

/// A native micro-kernel and the symbol JIT code calls it by.
#[derive(Clone, Copy, Debug)]
pub struct NativeMicro {
    pub name: &'static str,
    pub symbol: &'static str,
    pub mr: usize,
    pub nr: usize,
    pub address: *const u8,
}

type TileFn =
    unsafe extern "C" fn(i64, *const f32, i64, i64, *const i32, *const f32, i64, *const i32, *mut f32, i64, i64);

#[cfg(target_arch = "x86_64")]
fn native(name: &'static str, symbol: &'static str, (mr, nr): (usize, usize), k: TileFn) -> NativeMicro {
    NativeMicro { name, symbol, mr, nr, address: k as *const u8 }
}

/// The AVX2 + FMA kernel, when the host has it.
fn avx2(f: HostFeatures) -> Option<NativeMicro> {
    #[cfg(target_arch = "x86_64")]
    if f.avx2 && f.fma {
        return Some(native("native-avx2-6x16", "percept_micro_avx2_6x16", (6, 16), percept_micro_avx2_6x16));
    }
    let _ = f;
    None
}

/// The AVX-512 kernel, when the host has it.
fn avx512(f: HostFeatures) -> Option<NativeMicro> {
    #[cfg(target_arch = "x86_64")]
    if f.avx512f && f.fma {
        return Some(native("native-avx512-8x32", "percept_micro_avx512_8x32", (8, 32), percept_micro_avx512_8x32));
    }
    let _ = f;
    None
}

/// The best native micro-kernel this host can run, if any.
pub fn best_native(f: HostFeatures) -> Option<NativeMicro> {
    avx512(f).or_else(|| avx2(f))
}

/// The AVX2 kernel only, when the host has it (to compare with AVX-512).
pub fn avx2_native(f: HostFeatures) -> Option<NativeMicro> {
    avx2(f)
}

// The tiles themselves, in a file of their own: `build.rs` also compiles it alone
// (`no_std`, C symbols) into the object `percept build` puts in libraries.
include!("tiles.rs");

/// `rounds` rounds of the host's widest fused multiply-add on twelve independent
/// accumulators (enough to cover the FMA units' latency): the FLOPs done and a checksum
/// (so the loop is not removed), for the roofline's compute peak. None without FMA.
pub fn fma_peak_work(f: HostFeatures, rounds: u64) -> Option<(u64, f32)> {
    #[cfg(target_arch = "x86_64")]
    {
        if f.avx512f && f.fma {
            // SAFETY: the host has AVX-512F and FMA; the loop touches no memory.
            return Some((rounds * 12 * 16 * 2, unsafe { fma_rounds_avx512(rounds) }));
        }
        if f.avx2 && f.fma {
            // SAFETY: the host has AVX2 and FMA; the loop touches no memory.
            return Some((rounds * 12 * 8 * 2, unsafe { fma_rounds_avx2(rounds) }));
        }
    }
    let _ = (f, rounds);
    None
}

/// The FMA loop of [`fma_peak_work`] for one vector type.
macro_rules! fma_rounds {
    ($name:ident, $features:literal, $ty:ident, $set1:ident, $fma:ident, $add:ident, $first:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $name(rounds: u64) -> f32 {
            use std::arch::x86_64::*;
            let (a, b) = ($set1(0.999_9), $set1(1e-7));
            let mut c: [$ty; 12] = [$set1(1.0); 12];
            for _ in 0..rounds {
                for acc in &mut c {
                    *acc = $fma(*acc, a, b);
                }
            }
            let s = c.iter().fold($set1(0.0), |s, &x| $add(s, x));
            $first(s)
        }
    };
}

fma_rounds!(fma_rounds_avx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_cvtss_f32);
fma_rounds!(fma_rounds_avx512, "avx512f,fma", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_cvtss_f32);

/// The tiles compiled alone into a position-independent object with C symbols
/// (`build.rs`), for the libraries `percept build` writes; None if that build failed.
#[cfg(micro_object_built)]
pub const TILES_OBJECT: Option<&[u8]> = Some(include_bytes!(concat!(env!("OUT_DIR"), "/micro_tiles.o")));
#[cfg(not(micro_object_built))]
pub const TILES_OBJECT: Option<&[u8]> = None;
