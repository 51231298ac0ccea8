// The native micro-kernels' tiles (AVX2 + FMA 6×16, AVX-512 8×32), included by
// `native.rs` (registered with the JIT by address) and compiled alone by `build.rs` with
// `--cfg micro_object` (`no_std`, `#[no_mangle]` C symbols) into the object file that
// `percept build` adds to a library. Only `core` is used, and nothing here can panic.

/// A tile kernel: `$extern` (the C-ABI entry JIT code calls) wraps `$inner` (compiled for
/// `$features`), an MR×NR tile of `$ty` vectors of `$lanes` floats, two per row.
macro_rules! tile_kernel {
    (
        $(#[$doc:meta])* $extern:ident, $inner:ident, $features:literal, MR = $mr:literal, NR = $nr:literal,
        $ty:ident, $lanes:literal, zero = $zero:ident, load = $load:ident, store = $store:ident,
        add = $add:ident, fma = $fma:ident, broadcast = |$p:ident| $broadcast:expr
    ) => {
        $(#[$doc])*
        /// # Safety
        #[doc = concat!("The host must have ", $features, "; `a` must hold the floats `a + i·a_row + p·a_step`")]
        #[doc = concat!(" for i < ", $mr, " and p < `kc` (or, when `a_rows` is not null, `a + a_rows[i] + p·a_step`,")]
        #[doc = concat!(" `a_rows` holding ", $mr, " non-negative offsets), `b` ", $nr, " floats at each `b + p·b_step` (or, when `b_steps`")]
        #[doc = " is not null, at each `b + b_steps[p]`, `b_steps` holding `kc` non-negative offsets), and `tile` "]
        #[doc = concat!($mr, " rows of ", $nr, " floats, `ldc` ≥ ", $nr, " apart (what the JIT loop nest proves before it calls).")]
        #[doc = " With `add` non-zero the product is added to the tile (each float once: C + Σ, the sum"]
        #[doc = " finished first), else it is stored."]
        #[cfg(target_arch = "x86_64")]
        #[cfg_attr(micro_object, unsafe(no_mangle))]
        pub unsafe extern "C" fn $extern(
            kc: i64,
            a: *const f32,
            a_row: i64,
            a_step: i64,
            a_rows: *const i32,
            b: *const f32,
            b_step: i64,
            b_steps: *const i32,
            tile: *mut f32,
            ldc: i64,
            add: i64,
        ) {
            let u = |x: i64| x.max(0) as usize;
            // SAFETY: the caller upholds this function's contract.
            unsafe { $inner(u(kc), (a, u(a_row), u(a_step), a_rows), (b, u(b_step), b_steps), (tile, u(ldc), add != 0)) }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $inner(
            kc: usize,
            (a, a_row, a_step, a_rows): (*const f32, usize, usize, *const i32),
            (b, b_step, b_steps): (*const f32, usize, *const i32),
            (tile, ldc, add): (*mut f32, usize, bool),
        ) {
            use core::arch::x86_64::*;
            // A's rows: at one stride, or (a direct weight gradient's taps in a bordered
            // image) at the offsets of a table, read once per call.
            let mut rows = [a; $mr];
            for (i, row) in rows.iter_mut().enumerate() {
                // SAFETY: the caller's bounds proof covers every row's first float.
                unsafe {
                    let at = if a_rows.is_null() { i * a_row } else { (*a_rows.add(i)).max(0) as usize };
                    *row = a.add(at);
                }
            }
            let mut c: [[$ty; 2]; $mr] = [[$zero(); 2]; $mr];
            for p in 0..kc {
                // SAFETY: A's MR rows and B's NR columns are in bounds at every step's
                // strides (the caller's bounds proof).
                unsafe {
                    // A direct convolution's B steps through an image at the offsets of
                    // its kernel taps; a matrix's at one stride. The test is loop-invariant:
                    // LLVM unswitches it into two loops (checked in the disassembly).
                    let at = if b_steps.is_null() { p * b_step } else { (*b_steps.add(p)).max(0) as usize };
                    let bp = b.add(at);
                    let b0 = $load(bp);
                    let b1 = $load(bp.add($lanes));
                    let ap = p * a_step;
                    for (row, &a_i) in c.iter_mut().zip(&rows) {
                        let $p = a_i.add(ap);
                        let ai = $broadcast;
                        row[0] = $fma(ai, b0, row[0]);
                        row[1] = $fma(ai, b1, row[1]);
                    }
                }
            }
            for (i, row) in c.iter().enumerate() {
                // SAFETY: the tile's rows hold NR floats each, `ldc` apart. When the tile is
                // C itself (a GEMM with no epilogue), `add` finishes C + Σ here.
                unsafe {
                    let (t0, t1) = (tile.add(i * ldc), tile.add(i * ldc + $lanes));
                    if add {
                        $store(t0, $add($load(t0), row[0]));
                        $store(t1, $add($load(t1), row[1]));
                    } else {
                        $store(t0, row[0]);
                        $store(t1, row[1]);
                    }
                }
            }
        }
    };
}

tile_kernel! {
    /// 6×16 tile in twelve 256-bit accumulators.
    percept_micro_avx2_6x16, avx2_6x16, "avx2,fma", MR = 6, NR = 16, __m256, 8,
    zero = _mm256_setzero_ps, load = _mm256_loadu_ps, store = _mm256_storeu_ps, add = _mm256_add_ps,
    fma = _mm256_fmadd_ps,
    broadcast = |p| _mm256_broadcast_ss(&*p)
}

tile_kernel! {
    /// 8×32 tile in sixteen 512-bit accumulators.
    percept_micro_avx512_8x32, avx512_8x32, "avx512f,fma", MR = 8, NR = 32, __m512, 16,
    zero = _mm512_setzero_ps, load = _mm512_loadu_ps, store = _mm512_storeu_ps, add = _mm512_add_ps,
    fma = _mm512_fmadd_ps,
    broadcast = |p| _mm512_set1_ps(*p)
}
