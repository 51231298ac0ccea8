//! exp-based functions as inline CLIF polynomials (Cranelift has no `exp`), for f32 and
//! f32x4 lanes alike: Cephes-style range reduction x = n·ln2 + r, a degree-7 polynomial
//! for e^r, and 2^n built in the exponent bits (split in two factors so n up to 254 is
//! exact). Inputs are clamped to where the result is finite or flushes to 0/1, and NaN
//! is put back at the end: every function here propagates NaN. Accuracy: about 1e-7
//! relative against f64 (the sweep test holds them to 1e-6).

use super::builder::Kb;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

fn int_type(ty: Type) -> Type {
    if ty.is_vector() {
        types::I32X4
    } else {
        types::I32
    }
}

fn bitcast(kb: &mut Kb, ty: Type, v: Value) -> Value {
    let flags = MemFlagsData::new().with_endianness(Endianness::Little);
    kb.fb.ins().bitcast(ty, flags, v)
}

fn iconst(kb: &mut Kb, ity: Type, c: i64) -> Value {
    let s = kb.fb.ins().iconst(types::I32, c);
    if ity.is_vector() {
        kb.fb.ins().splat(ity, s)
    } else {
        s
    }
}

/// lo ≤ x ≤ hi by compare-and-select (NaN comes out as some value; callers restore it).
fn clamp(kb: &mut Kb, x: Value, lo: f32, hi: f32) -> Value {
    let ty = kb.fb.func.dfg.value_type(x);
    let l = kb.f(ty, lo);
    let h = kb.f(ty, hi);
    let a = kb.max(x, l);
    kb.min(a, h)
}

/// `x` where x is NaN, else `y`.
fn keep_nan(kb: &mut Kb, x: Value, y: Value) -> Value {
    let nan = kb.fcmp(FloatCC::Unordered, x, x);
    kb.select(nan, x, y)
}

/// Horner's rule: c[0] + x·(c[1] + x·(…)).
fn poly(kb: &mut Kb, x: Value, coeffs: &[f32]) -> Value {
    let ty = kb.fb.func.dfg.value_type(x);
    let mut acc = kb.f(ty, *coeffs.last().expect("coefficients"));
    for &c in coeffs.iter().rev().skip(1) {
        let cv = kb.f(ty, c);
        acc = kb.fma(acc, x, cv);
    }
    acc
}

/// eˣ.
pub fn exp(kb: &mut Kb, x: Value) -> Value {
    let ty = kb.fb.func.dfg.value_type(x);
    let ity = int_type(ty);
    let xc = clamp(kb, x, -104.0, 89.0);
    let log2e = kb.f(ty, LOG2E);
    let magic = kb.f(ty, MAGIC);
    let t = kb.fma(xc, log2e, magic);
    let nf = kb.fb.ins().fsub(t, magic);
    let tb = bitcast(kb, ity, t);
    let mb = bitcast(kb, ity, magic);
    let n = kb.fb.ins().isub(tb, mb);
    let c1 = kb.f(ty, -LN2_HI);
    let c2 = kb.f(ty, -LN2_LO);
    let r = kb.fma(nf, c1, xc);
    let r = kb.fma(nf, c2, r);
    // e^r = 1 + r + r²·P(r)
    let p = poly(kb, r, &[0.5, 1.666_666_5e-1, 4.166_579_6e-2, 8.333_452e-3, 1.398_2e-3, 1.987_569_1e-4]);
    let r2 = kb.fb.ins().fmul(r, r);
    let one = kb.f(ty, 1.0);
    let q = kb.fb.ins().fadd(r, one);
    let e = kb.fma(r2, p, q);
    // 2ⁿ = 2^(n>>1) · 2^(n − n>>1), each factor a normal float.
    let h = kb.fb.ins().sshr_imm_s(n, 1);
    let h2 = kb.fb.ins().isub(n, h);
    let bias = iconst(kb, ity, 127);
    let s1 = kb.fb.ins().iadd(h, bias);
    let s1 = kb.fb.ins().ishl_imm_s(s1, 23);
    let s1 = bitcast(kb, ty, s1);
    let s2 = kb.fb.ins().iadd(h2, bias);
    let s2 = kb.fb.ins().ishl_imm_s(s2, 23);
    let s2 = bitcast(kb, ty, s2);
    let y = kb.fb.ins().fmul(e, s1);
    let y = kb.fb.ins().fmul(y, s2);
    keep_nan(kb, x, y)
}

/// eˣ − 1, accurate near 0 (a Taylor polynomial for |x| < ½, eˣ − 1 beyond).
pub fn expm1(kb: &mut Kb, x: Value) -> Value {
    let ty = kb.fb.func.dfg.value_type(x);
    let big = exp(kb, x);
    let one = kb.f(ty, 1.0);
    let big = kb.fb.ins().fsub(big, one);
    let p = poly(kb, x, &[1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40320.0]);
    let x2 = kb.fb.ins().fmul(x, x);
    let small = kb.fma(x2, p, x);
    let ax = kb.fb.ins().fabs(x);
    let half = kb.f(ty, 0.5);
    let is_small = kb.fcmp(FloatCC::LessThan, ax, half);
    kb.select(is_small, small, big)
}

/// 1 / (1 + e⁻ˣ).
pub fn sigmoid(kb: &mut Kb, x: Value) -> Value {
    let ty = kb.fb.func.dfg.value_type(x);
    let nx = kb.fb.ins().fneg(x);
    let e = exp(kb, nx);
    let one = kb.f(ty, 1.0);
    let d = kb.fb.ins().fadd(one, e);
    kb.fb.ins().fdiv(one, d)
}

/// tanh x = t / (t + 2) with t = e²ˣ − 1 (exact near 0, ±1 beyond |x| = 9).
pub fn tanh(kb: &mut Kb, x: Value) -> Value {
    let ty = kb.fb.func.dfg.value_type(x);
    let xc = clamp(kb, x, -9.0, 9.0);
    let x2 = kb.fb.ins().fadd(xc, xc);
    let t = expm1(kb, x2);
    let two = kb.f(ty, 2.0);
    let d = kb.fb.ins().fadd(t, two);
    let y = kb.fb.ins().fdiv(t, d);
    keep_nan(kb, x, y)
}

/// ln x for a positive finite f64 (NaN propagates): x = m·2ᵉ with m in [√½, √2), then
/// ln m = 2·atanh(s), s = (m−1)/(m+1), by its series to s¹⁵.
pub fn log_f64(kb: &mut Kb, x: Value) -> Value {
    let bits = bitcast(kb, types::I64, x);
    let exp_bits = kb.fb.ins().ushr_imm_s(bits, 52);
    let e = kb.fb.ins().iadd_imm_s(exp_bits, -1023);
    let mant = kb.fb.ins().band_imm_s(bits, 0x000f_ffff_ffff_ffff);
    let one_bits = kb.fb.ins().bor_imm_s(mant, 0x3ff0_0000_0000_0000);
    let m = bitcast(kb, types::F64, one_bits);
    let sqrt2 = kb.fb.ins().f64const(std::f64::consts::SQRT_2);
    let big = kb.fb.ins().fcmp(FloatCC::GreaterThan, m, sqrt2);
    let half = kb.fb.ins().f64const(0.5);
    let mh = kb.fb.ins().fmul(m, half);
    let m = kb.fb.ins().select(big, mh, m);
    let e1 = kb.fb.ins().iadd_imm_s(e, 1);
    let e = kb.fb.ins().select(big, e1, e);
    let one = kb.fb.ins().f64const(1.0);
    let num = kb.fb.ins().fsub(m, one);
    let den = kb.fb.ins().fadd(m, one);
    let s = kb.fb.ins().fdiv(num, den);
    let z = kb.fb.ins().fmul(s, s);
    let mut acc = kb.fb.ins().f64const(1.0 / 15.0);
    for k in (0..7).rev() {
        let c = kb.fb.ins().f64const(1.0 / (2 * k + 1) as f64);
        let t = kb.fb.ins().fmul(acc, z);
        acc = kb.fb.ins().fadd(t, c);
    }
    let two_s = kb.fb.ins().fadd(s, s);
    let lm = kb.fb.ins().fmul(two_s, acc);
    let ef = kb.fb.ins().fcvt_from_sint(types::F64, e);
    let ln2 = kb.fb.ins().f64const(std::f64::consts::LN_2);
    let le = kb.fb.ins().fmul(ef, ln2);
    let y = kb.fb.ins().fadd(le, lm);
    let nan = kb.fb.ins().fcmp(FloatCC::Unordered, x, x);
    kb.fb.ins().select(nan, x, y)
}
