//! Native micro-kernels: ahead-of-time Rust with `#[target_feature]`, the second (and
//! last) place with `unsafe` in the back end.
//!
//! Each computes `tile = packedA · packedB` for one MR×NR tile over `kc` steps — the same
//! narrow interface as the Cranelift micro-kernel (`micro::cranelift`), so the JIT loop
//! nest calls either. They exist because Cranelift's x86 backend emits 128-bit vectors only;
//! these use 256-bit (AVX2 + FMA) or 512-bit (AVX-512) registers.
//!
//! Why the calls are sound: a kernel is registered with the JIT (and so callable at all)
//! only if the host has its features (`best_native`), and the JIT loop nest passes panel
//! pointers it proved in bounds for `kc` steps of MR (A) and NR (B) floats, and a tile of
//! MR·NR floats.

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

/// The best native micro-kernel this host can run, if any.
pub fn best_native(f: HostFeatures) -> Option<NativeMicro> {
    #[cfg(target_arch = "x86_64")]
    {
        if f.avx512f && f.fma {
            let k = percept_micro_avx512_8x32 as unsafe extern "C" fn(i64, *const f32, *const f32, *mut f32);
            return Some(NativeMicro {
                name: "native-avx512-8x32",
                symbol: "percept_micro_avx512_8x32",
                mr: 8,
                nr: 32,
                address: k as *const u8,
            });
        }
        if f.avx2 && f.fma {
            let k = percept_micro_avx2_6x16 as unsafe extern "C" fn(i64, *const f32, *const f32, *mut f32);
            return Some(NativeMicro {
                name: "native-avx2-6x16",
                symbol: "percept_micro_avx2_6x16",
                mr: 6,
                nr: 16,
                address: k as *const u8,
            });
        }
    }
    let _ = f;
    None
}

/// The AVX2 kernel only, when the host has it (to compare with AVX-512).
pub fn avx2_native(f: HostFeatures) -> Option<NativeMicro> {
    #[cfg(target_arch = "x86_64")]
    if f.avx2 && f.fma {
        let k = percept_micro_avx2_6x16 as unsafe extern "C" fn(i64, *const f32, *const f32, *mut f32);
        return Some(NativeMicro {
            name: "native-avx2-6x16",
            symbol: "percept_micro_avx2_6x16",
            mr: 6,
            nr: 16,
            address: k as *const u8,
        });
    }
    let _ = f;
    None
}

/// 6×16 tile in twelve 256-bit accumulators.
#[cfg(target_arch = "x86_64")]
/// # Safety
/// The host must have AVX2 and FMA; `a` must hold `kc`·6 floats, `b` `kc`·16 and `tile`
/// 6·16 (what the JIT loop nest proves before it calls).
pub unsafe extern "C" fn percept_micro_avx2_6x16(kc: i64, a: *const f32, b: *const f32, tile: *mut f32) {
    // SAFETY: the caller upholds this function's contract.
    unsafe { avx2_6x16(kc.max(0) as usize, a, b, tile) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_6x16(kc: usize, a: *const f32, b: *const f32, tile: *mut f32) {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 2]; 6];
    for p in 0..kc {
        // SAFETY: A holds kc·6 floats, B kc·16 (the caller's bounds proof).
        unsafe {
            let bp = b.add(p * 16);
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            let ap = a.add(p * 6);
            for (i, row) in c.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*ap.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        }
    }
    for (i, row) in c.iter().enumerate() {
        // SAFETY: the tile holds 6·16 floats.
        unsafe {
            _mm256_storeu_ps(tile.add(i * 16), row[0]);
            _mm256_storeu_ps(tile.add(i * 16 + 8), row[1]);
        }
    }
}

/// 8×32 tile in sixteen 512-bit accumulators.
#[cfg(target_arch = "x86_64")]
/// # Safety
/// The host must have AVX-512F and FMA; `a` must hold `kc`·8 floats, `b` `kc`·32 and
/// `tile` 8·32.
pub unsafe extern "C" fn percept_micro_avx512_8x32(kc: i64, a: *const f32, b: *const f32, tile: *mut f32) {
    // SAFETY: the caller upholds this function's contract.
    unsafe { avx512_8x32(kc.max(0) as usize, a, b, tile) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn avx512_8x32(kc: usize, a: *const f32, b: *const f32, tile: *mut f32) {
    use std::arch::x86_64::*;
    let mut c = [[_mm512_setzero_ps(); 2]; 8];
    for p in 0..kc {
        // SAFETY: A holds kc·8 floats, B kc·32.
        unsafe {
            let bp = b.add(p * 32);
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            let ap = a.add(p * 8);
            for (i, row) in c.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*ap.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
        }
    }
    for (i, row) in c.iter().enumerate() {
        // SAFETY: the tile holds 8·32 floats.
        unsafe {
            _mm512_storeu_ps(tile.add(i * 32), row[0]);
            _mm512_storeu_ps(tile.add(i * 32 + 16), row[1]);
        }
    }
}
