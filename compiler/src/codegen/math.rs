//! The loop nests' intrinsics (`loops::MathFn`) as inline CLIF: exp-based functions as
//! polynomials (Cranelift has no `exp`), for f32 and f32x4 lanes alike: Cephes-style range reduction x = n·ln2 + r, a degree-7 polynomial
//! for e^r, and 2^n built in the exponent bits (split in two factors so n up to 254 is
//! exact). Inputs are clamped to where the result is finite or flushes to 0/1, and NaN
//! is put back at the end: every function here propagates NaN. Accuracy: about 1e-7
//! relative against f64 (the sweep test holds them to 1e-6).

use super::emit::Clif;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// An f32 constant of type `ty`.
fn k(c: &mut Clif, ty: Type, x: f32) -> Value {
    c.f(ty, x as f64)
}

fn int_type(ty: Type) -> Type {
    if ty.is_vector() {
        types::I32X4
    } else {
        types::I32
    }
}

fn bitcast(c: &mut Clif, ty: Type, v: Value) -> Value {
    let flags = MemFlagsData::new().with_endianness(Endianness::Little);
    c.fb.ins().bitcast(ty, flags, v)
}

fn iconst(c: &mut Clif, ity: Type, x: i64) -> Value {
    let s = c.fb.ins().iconst(types::I32, x);
    if ity.is_vector() {
        c.fb.ins().splat(ity, s)
    } else {
        s
    }
}

/// lo ≤ x ≤ hi by compare-and-select (NaN comes out as some value; callers restore it).
fn clamp(c: &mut Clif, x: Value, lo: f32, hi: f32) -> Value {
    let ty = c.ty(x);
    let l = k(c, ty, lo);
    let h = k(c, ty, hi);
    let a = c.max(x, l);
    c.min(a, h)
}

/// `x` where x is NaN, else `y`.
fn keep_nan(c: &mut Clif, x: Value, y: Value) -> Value {
    let nan = c.fb.ins().fcmp(FloatCC::Unordered, x, x);
    c.select(nan, x, y)
}

/// Horner's rule: c[0] + x·(c[1] + x·(…)).
fn poly(c: &mut Clif, x: Value, coeffs: &[f32]) -> Value {
    let ty = c.ty(x);
    let mut acc = k(c, ty, *coeffs.last().expect("coefficients"));
    for &coeff in coeffs.iter().rev().skip(1) {
        let cv = k(c, ty, coeff);
        acc = c.fma(acc, x, cv);
    }
    acc
}

/// eˣ.
pub fn exp(c: &mut Clif, x: Value) -> Value {
    let ty = c.ty(x);
    let ity = int_type(ty);
    let xc = clamp(c, x, -104.0, 89.0);
    let log2e = k(c, ty, LOG2E);
    let magic = k(c, ty, MAGIC);
    let t = c.fma(xc, log2e, magic);
    let nf = c.fb.ins().fsub(t, magic);
    let tb = bitcast(c, ity, t);
    let mb = bitcast(c, ity, magic);
    let n = c.fb.ins().isub(tb, mb);
    let c1 = k(c, ty, -LN2_HI);
    let c2 = k(c, ty, -LN2_LO);
    let r = c.fma(nf, c1, xc);
    let r = c.fma(nf, c2, r);
    // e^r = 1 + r + r²·P(r)
    let p = poly(c, r, &[0.5, 1.666_666_5e-1, 4.166_579_6e-2, 8.333_452e-3, 1.398_2e-3, 1.987_569_1e-4]);
    let r2 = c.fb.ins().fmul(r, r);
    let one = k(c, ty, 1.0);
    let q = c.fb.ins().fadd(r, one);
    let e = c.fma(r2, p, q);
    // 2ⁿ = 2^(n>>1) · 2^(n − n>>1), each factor a normal float.
    let h = c.fb.ins().sshr_imm_s(n, 1);
    let h2 = c.fb.ins().isub(n, h);
    let bias = iconst(c, ity, 127);
    let s1 = c.fb.ins().iadd(h, bias);
    let s1 = c.fb.ins().ishl_imm_s(s1, 23);
    let s1 = bitcast(c, ty, s1);
    let s2 = c.fb.ins().iadd(h2, bias);
    let s2 = c.fb.ins().ishl_imm_s(s2, 23);
    let s2 = bitcast(c, ty, s2);
    let y = c.fb.ins().fmul(e, s1);
    let y = c.fb.ins().fmul(y, s2);
    keep_nan(c, x, y)
}

/// eˣ − 1, accurate near 0 (a Taylor polynomial for |x| < ½, eˣ − 1 beyond).
pub fn expm1(c: &mut Clif, x: Value) -> Value {
    let ty = c.ty(x);
    let big = exp(c, x);
    let one = k(c, ty, 1.0);
    let big = c.fb.ins().fsub(big, one);
    let p = poly(c, x, &[1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40320.0]);
    let x2 = c.fb.ins().fmul(x, x);
    let small = c.fma(x2, p, x);
    let ax = c.fb.ins().fabs(x);
    let half = k(c, ty, 0.5);
    let is_small = c.fb.ins().fcmp(FloatCC::LessThan, ax, half);
    c.select(is_small, small, big)
}

/// 1 / (1 + e⁻ˣ).
pub fn sigmoid(c: &mut Clif, x: Value) -> Value {
    let ty = c.ty(x);
    let nx = c.fb.ins().fneg(x);
    let e = exp(c, nx);
    let one = k(c, ty, 1.0);
    let d = c.fb.ins().fadd(one, e);
    c.fb.ins().fdiv(one, d)
}

/// tanh x = t / (t + 2) with t = e²ˣ − 1 (exact near 0, ±1 beyond |x| = 9).
pub fn tanh(c: &mut Clif, x: Value) -> Value {
    let ty = c.ty(x);
    let xc = clamp(c, x, -9.0, 9.0);
    let x2 = c.fb.ins().fadd(xc, xc);
    let t = expm1(c, x2);
    let two = k(c, ty, 2.0);
    let d = c.fb.ins().fadd(t, two);
    let y = c.fb.ins().fdiv(t, d);
    keep_nan(c, x, y)
}

/// ln x for a positive finite f64 (NaN propagates): x = m·2ᵉ with m in [√½, √2), then
/// ln m = 2·atanh(s), s = (m−1)/(m+1), by its series to s¹⁵.
pub fn log_f64(c: &mut Clif, x: Value) -> Value {
    let bits = bitcast(c, types::I64, x);
    let exp_bits = c.fb.ins().ushr_imm_s(bits, 52);
    let e = c.fb.ins().iadd_imm_s(exp_bits, -1023);
    let mant = c.fb.ins().band_imm_s(bits, 0x000f_ffff_ffff_ffff);
    let one_bits = c.fb.ins().bor_imm_s(mant, 0x3ff0_0000_0000_0000);
    let m = bitcast(c, types::F64, one_bits);
    let sqrt2 = c.fb.ins().f64const(std::f64::consts::SQRT_2);
    let big = c.fb.ins().fcmp(FloatCC::GreaterThan, m, sqrt2);
    let half = c.fb.ins().f64const(0.5);
    let mh = c.fb.ins().fmul(m, half);
    let m = c.fb.ins().select(big, mh, m);
    let e1 = c.fb.ins().iadd_imm_s(e, 1);
    let e = c.fb.ins().select(big, e1, e);
    let one = c.fb.ins().f64const(1.0);
    let num = c.fb.ins().fsub(m, one);
    let den = c.fb.ins().fadd(m, one);
    let s = c.fb.ins().fdiv(num, den);
    let z = c.fb.ins().fmul(s, s);
    let mut acc = c.fb.ins().f64const(1.0 / 15.0);
    for k in (0..7).rev() {
        let coeff = c.fb.ins().f64const(1.0 / (2 * k + 1) as f64);
        let t = c.fb.ins().fmul(acc, z);
        acc = c.fb.ins().fadd(t, coeff);
    }
    let two_s = c.fb.ins().fadd(s, s);
    let lm = c.fb.ins().fmul(two_s, acc);
    let ef = c.fb.ins().fcvt_from_sint(types::F64, e);
    let ln2 = c.fb.ins().f64const(std::f64::consts::LN_2);
    let le = c.fb.ins().fmul(ef, ln2);
    let y = c.fb.ins().fadd(le, lm);
    let nan = c.fb.ins().fcmp(FloatCC::Unordered, x, x);
    c.fb.ins().select(nan, x, y)
}

/// Lanes of `a` and `b` (f32x4; b's lanes numbered 4..8) picked by `lanes`.
pub fn shuffle4(c: &mut Clif, a: Value, b: Value, lanes: [u8; 4]) -> Value {
    let le = MemFlagsData::new().with_endianness(Endianness::Little);
    let bytes: Vec<u8> = lanes.iter().flat_map(|&l| (0..4).map(move |i| 4 * l + i)).collect();
    let imm = c.fb.func.dfg.immediates.push(cranelift_codegen::ir::ConstantData::from(bytes));
    let (a8, b8) = (c.fb.ins().bitcast(types::I8X16, le, a), c.fb.ins().bitcast(types::I8X16, le, b));
    let r = c.fb.ins().shuffle(a8, b8, imm);
    c.fb.ins().bitcast(types::F32X4, le, r)
}
