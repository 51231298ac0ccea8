//! Element functions that several kernels share: activations and their derivatives
//! (elementwise kernels, every epilogue, pooling gradients) and batch norm's evaluation
//! scale (the batch-norm kernel and a GEMM epilogue compute it the same way, so fused and
//! unfused give the same bits).

use crate::codegen::builder::Kb;
use crate::codegen::loops::{FloatCC, MathFn, Val};
use crate::layers::Activation;

/// Activation on lanes of type `ty`. relu and friends take the "negative" branch for
/// x ≤ 0, which NaN fails, so NaN propagates.
pub fn activation(kb: &mut Kb, act: Activation, x: Val) -> Val {
    let ty = kb.ty(x);
    let zero = kb.f(ty, 0.0);
    let le = kb.fcmp(FloatCC::LessThanOrEqual, x, zero);
    match act {
        Activation::Relu => kb.select(le, zero, x),
        Activation::LeakyRelu { slope } => {
            let s = kb.f(ty, slope as f32);
            let neg = kb.fmul(x, s);
            kb.select(le, neg, x)
        }
        Activation::Elu { alpha } => {
            let a = kb.f(ty, alpha as f32);
            let e = kb.math(MathFn::Expm1, x);
            let neg = kb.fmul(e, a);
            kb.select(le, neg, x)
        }
        Activation::Sigmoid => kb.math(MathFn::Sigmoid, x),
        Activation::Tanh => kb.math(MathFn::Tanh, x),
    }
}

/// dy·f′ from the output or the input, as [`Activation::grad_uses_output`] says.
pub fn activation_grad(kb: &mut Kb, act: Activation, v: Val, dy: Val) -> Val {
    let ty = kb.ty(v);
    let zero = kb.f(ty, 0.0);
    let one = kb.f(ty, 1.0);
    let gt = kb.fcmp(FloatCC::GreaterThan, v, zero);
    match act {
        Activation::Relu => kb.select(gt, dy, zero),
        Activation::LeakyRelu { slope } => {
            let s = kb.f(ty, slope as f32);
            let neg = kb.fmul(dy, s);
            kb.select(gt, dy, neg)
        }
        Activation::Elu { alpha } if act.grad_uses_output() => {
            let a = kb.f(ty, alpha as f32);
            let t = kb.fadd(v, a);
            let neg = kb.fmul(dy, t);
            kb.select(gt, dy, neg)
        }
        Activation::Elu { alpha } => {
            let a = kb.f(ty, alpha as f32);
            let e = kb.math(MathFn::Exp, v);
            let d = kb.fmul(dy, a);
            let neg = kb.fmul(d, e);
            kb.select(gt, dy, neg)
        }
        Activation::Sigmoid => {
            let om = kb.fsub(one, v);
            let t = kb.fmul(dy, v);
            kb.fmul(t, om)
        }
        Activation::Tanh => {
            let v2 = kb.fmul(v, v);
            let om = kb.fsub(one, v2);
            kb.fmul(dy, om)
        }
    }
}

/// 1/√(var + ε) in f64.
pub fn inv_std(kb: &mut Kb, var64: Val, eps: f64) -> Val {
    let e = kb.f64const(eps);
    let v = kb.fadd(var64, e);
    let s = kb.sqrt(v);
    let one = kb.f64const(1.0);
    kb.fdiv(one, s)
}

/// Evaluation mode's per-channel scale γ·(var + ε)^−½, the inverse square root in f64
/// (scalars), as the batch-norm kernel and a GEMM epilogue both compute it.
pub fn eval_scale(kb: &mut Kb, var: Val, gamma: Val, eps: f64) -> Val {
    let var64 = kb.fpromote(var);
    let istd = inv_std(kb, var64, eps);
    let istd = kb.fdemote(istd);
    kb.fmul(gamma, istd)
}
