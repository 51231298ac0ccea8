//! Elementwise kernels: out = f(in…) over a tensor seen as [outer][channels][inner],
//! where each operand is either full-size or broadcast along the channels or along the
//! inner axis (a bias). The inner loop runs on f32x4 with an exact scalar remainder.
//! The per-element function of each op is `element`, which fusion composes.

use super::epilogue::{self, At, EpiOp};
use super::{LowerCtx, NodeBufs};
use crate::codegen::builder::{ctx, Buf, Kb};
use crate::codegen::jit::{err, CgResult};
use crate::codegen::loops::{types, FloatCC, Idx, IntCC, MathFn, Type, Val};
use crate::layers::Activation;
use crate::ops::{self, Op};

/// How an operand is indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bcast {
    Full,
    /// One value per channel.
    Channel,
    /// One value per inner position (the bias of a flat [N, F] tensor).
    Inner,
}

/// The iteration space of an elementwise kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub outer: usize,
    pub chans: usize,
    pub inner: usize,
    /// Whether `outer` is the kernel's parallel item axis.
    pub items: bool,
}

/// Scalars loaded once per kernel (learning rate, Adam's factors).
pub fn setup(kb: &mut Kb, op: &Op) -> Vec<Val> {
    match op {
        Op::SgdUpdate(_) => vec![kb.ctx_f32(ctx::LR)],
        Op::AdamUpdate(_) => vec![kb.ctx_f32(ctx::ADAM_STEP_SIZE), kb.ctx_f32(ctx::ADAM_INV_SQRT_BC2)],
        _ => vec![],
    }
}

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

/// The per-element function of an elementwise op on lanes of `ty`.
pub fn element(kb: &mut Kb, op: &Op, ty: Type, setup: &[Val], xs: &[Val], numel: usize) -> CgResult<Vec<Val>> {
    let c = |kb: &mut Kb, x: f64| kb.f(ty, x as f32);
    Ok(match op {
        Op::Act(a) => vec![activation(kb, a.act, xs[0])],
        Op::ActGrad(a) => vec![activation_grad(kb, a.act, xs[0], xs[1])],
        Op::Add(_) | Op::BiasAdd(_) => vec![kb.fadd(xs[0], xs[1])],
        Op::RunningUpdate(r) => {
            let keep = c(kb, 1.0 - r.momentum);
            let take = c(kb, r.momentum * r.correction);
            let t = kb.fmul(xs[1], take);
            vec![kb.fma(xs[0], keep, t)]
        }
        Op::MseGrad(_) => {
            let k = c(kb, 2.0 / numel as f64);
            let d = kb.fsub(xs[0], xs[1]);
            vec![kb.fmul(d, k)]
        }
        Op::BceWithLogitsGrad(_) => {
            let k = c(kb, 1.0 / numel as f64);
            let s = kb.math(MathFn::Sigmoid, xs[0]);
            let d = kb.fsub(s, xs[1]);
            vec![kb.fmul(d, k)]
        }
        Op::SgdUpdate(u) => {
            let (p, mut g) = (xs[0], xs[1]);
            let lr = kb.splat(ty, setup[0]);
            if u.weight_decay != 0.0 {
                let wd = c(kb, u.weight_decay);
                let t = kb.fmul(wd, p);
                g = kb.fadd(g, t);
            }
            let mut out = vec![];
            if u.has_velocity() {
                let mom = c(kb, u.momentum);
                let mv = kb.fmul(mom, xs[2]);
                let v2 = kb.fadd(mv, g);
                g = if u.nesterov {
                    let t = kb.fmul(mom, v2);
                    kb.fadd(g, t)
                } else {
                    v2
                };
                out.push(v2);
            }
            let step = kb.fmul(lr, g);
            out.insert(0, kb.fsub(p, step));
            out
        }
        Op::AdamUpdate(u) => {
            let (p, mut g, m, v) = (xs[0], xs[1], xs[2], xs[3]);
            if u.weight_decay != 0.0 {
                let wd = c(kb, u.weight_decay);
                let t = kb.fmul(wd, p);
                g = kb.fadd(g, t);
            }
            let (b1, nb1, b2, nb2) = (c(kb, u.beta1), c(kb, 1.0 - u.beta1), c(kb, u.beta2), c(kb, 1.0 - u.beta2));
            let t1 = kb.fmul(b1, m);
            let t2 = kb.fmul(nb1, g);
            let m2 = kb.fadd(t1, t2);
            let t3 = kb.fmul(b2, v);
            let t4 = kb.fmul(nb2, g);
            let t4 = kb.fmul(t4, g);
            let v2 = kb.fadd(t3, t4);
            let step = kb.splat(ty, setup[0]);
            let inv = kb.splat(ty, setup[1]);
            let eps = c(kb, u.eps);
            let sq = kb.sqrt(v2);
            let sq = kb.fmul(sq, inv);
            let denom = kb.fadd(sq, eps);
            let num = kb.fmul(step, m2);
            let d = kb.fdiv(num, denom);
            vec![kb.fsub(p, d), m2, v2]
        }
        other => return err(format!("`{}` is not an elementwise op", other.name())),
    })
}

/// A per-element function on lanes of a type: input values → output values.
pub type ElementFn<'a> = dyn FnMut(&mut Kb, Type, &[Val]) -> CgResult<Vec<Val>> + 'a;

/// Emit `outs = f(ins)` over `space`, the first output through the epilogue `epi`.
pub fn emit(
    kb: &mut Kb,
    space: Space,
    ins: &[(Buf, Bcast)],
    outs: &[Buf],
    epi: &[EpiOp],
    f: &mut ElementFn,
) -> CgResult<()> {
    let Space { outer, chans, inner, items } = space;
    let mut per_outer = |kb: &mut Kb, o: Idx| -> CgResult<()> {
        kb.for_range(0, chans as i64, 1, |kb, ch| {
            let row = kb.affine(0, &[(o, (chans * inner) as i64), (ch, inner as i64)]);
            let mut chan_vals = vec![None; ins.len()];
            for (k, (buf, b)) in ins.iter().enumerate() {
                if *b == Bcast::Channel {
                    chan_vals[k] = Some(kb.load(types::F32, buf, ch)?);
                }
            }
            kb.for_lanes(0, inner as i64, |kb, i, ty| {
                let at = kb.add(row, i);
                let mut xs = Vec::with_capacity(ins.len());
                for (k, (buf, b)) in ins.iter().enumerate() {
                    xs.push(match b {
                        Bcast::Full => kb.load(ty, buf, at)?,
                        Bcast::Inner => kb.load(ty, buf, i)?,
                        Bcast::Channel => kb.splat(ty, chan_vals[k].expect("loaded")),
                    });
                }
                let mut ys = f(kb, ty, &xs)?;
                if !epi.is_empty() {
                    ys[0] = epilogue::apply(kb, epi, ys[0], At::flat(at))?;
                }
                for (y, buf) in ys.into_iter().zip(outs) {
                    kb.store(y, buf, at)?;
                }
                Ok(())
            })
        })
    };
    if items {
        kb.for_items(outer, &mut per_outer)
    } else {
        kb.for_range(0, outer as i64, 1, per_outer)
    }
}

/// The iteration space of a node, and how each input is broadcast.
pub fn space_of(cx: &LowerCtx) -> (Space, Vec<Bcast>) {
    let shape = cx.out_shape(0);
    let numel: usize = shape.iter().product();
    let n_in = cx.node.inputs.len();
    let items = super::extent_of(cx.graph, cx.node) > 1;
    match &cx.node.op {
        Op::BiasAdd(_) if shape.len() == 2 => {
            (Space { outer: shape[0], chans: 1, inner: shape[1], items }, vec![Bcast::Full, Bcast::Inner])
        }
        Op::BiasAdd(_) => {
            let inner = shape[2..].iter().product();
            (Space { outer: shape[0], chans: shape[1], inner, items }, vec![Bcast::Full, Bcast::Channel])
        }
        _ if items => {
            (Space { outer: shape[0], chans: 1, inner: numel / shape[0].max(1), items }, vec![Bcast::Full; n_in])
        }
        _ => (Space { outer: 1, chans: 1, inner: numel, items }, vec![Bcast::Full; n_in]),
    }
}

pub fn lower(kb: &mut Kb, cx: &LowerCtx, bufs: &NodeBufs, epi: &[EpiOp]) -> CgResult<()> {
    if let Op::Dropout(d) = &cx.node.op {
        return lower_dropout(kb, cx, bufs, d);
    }
    let (space, bcast) = space_of(cx);
    let ins: Vec<(Buf, Bcast)> = bufs.inputs.iter().cloned().zip(bcast).collect();
    let op = cx.node.op.clone();
    let setup_vals = setup(kb, &op);
    let numel: usize = cx.out_shape(0).iter().product();
    emit(kb, space, &ins, &bufs.outputs, epi, &mut |kb, ty, xs| element(kb, &op, ty, &setup_vals, xs, numel))
}

/// SplitMix64's finalizer in CLIF (the same function as `ops::mix64`).
fn mix64(kb: &mut Kb, z: Val) -> Val {
    let t = kb.ushr_imm(z, 30);
    let z = kb.bxor(z, t);
    let z = kb.imul_imm(z, 0xbf58476d1ce4e5b9u64 as i64);
    let t = kb.ushr_imm(z, 27);
    let z = kb.bxor(z, t);
    let z = kb.imul_imm(z, 0x94d049bb133111ebu64 as i64);
    let t = kb.ushr_imm(z, 31);
    kb.bxor(z, t)
}

/// Inverted dropout with the counter-based mask of `ops::dropout_keep`, bit for bit.
fn lower_dropout(kb: &mut Kb, cx: &LowerCtx, bufs: &NodeBufs, d: &ops::Dropout) -> CgResult<()> {
    let shape = cx.out_shape(0).to_vec();
    let n = shape[0];
    let per: usize = shape[1..].iter().product();
    let seed = kb.ctx_i64(ctx::SEED);
    let step = kb.ctx_i64(ctx::STEP);
    // key = mix(seed ^ mix(step + C1 ^ mix(stream + C2)))
    let s = kb.iconst(d.stream.wrapping_add(0x9e3779b97f4a7c15) as i64);
    let ms = mix64(kb, s);
    let st = kb.iadd_imm(step, 0x632be59bd9b4e019u64 as i64);
    let x = kb.bxor(st, ms);
    let mx = mix64(kb, x);
    let x = kb.bxor(seed, mx);
    let key = mix64(kb, x);
    let threshold = ops::dropout_threshold(d.p) as i64;
    let scale = (1.0 / (1.0 - d.p)) as f32;
    let (src, dst) = (bufs.inputs[0].clone(), bufs.outputs[0].clone());
    kb.for_items(n, |kb, item| {
        kb.for_range(0, per as i64, 1, |kb, j| {
            let at = kb.affine(0, &[(item, per as i64), (j, 1)]);
            let idx = kb.value(at);
            let h = kb.imul_imm(idx, 0x9e3779b97f4a7c15u64 as i64);
            let h = kb.bxor(key, h);
            let h = mix64(kb, h);
            let top = kb.ushr_imm(h, 40);
            let keep = kb.icmp_imm(IntCC::UnsignedGreaterThanOrEqual, top, threshold);
            let xv = kb.load(types::F32, &src, at)?;
            let sc = kb.f(types::F32, scale);
            let kept = kb.fmul(xv, sc);
            let zero = kb.f(types::F32, 0.0);
            let y = kb.select(keep, kept, zero);
            kb.store(y, &dst, at)
        })
    })
}
