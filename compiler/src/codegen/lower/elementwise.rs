//! Elementwise kernels: out = f(in…) over a tensor seen as [outer][channels][inner],
//! where each operand is either full-size or broadcast along the channels or along the
//! inner axis (a bias). The inner loop runs on f32x4 with an exact scalar remainder.
//! Each op's rule gives its per-element function; ops over a batch split it into one
//! work item per sample, optimizer updates into chunks of their parameter.

use super::element::{activation, activation_grad};
use super::epilogue::{self, At};
use super::{
    lower_rules, no_element, opaque, per_sample, pointwise, Element, KernelBufs, LowerCtx, MicroTile, NodeCx, Work,
};
use crate::codegen::builder::{ctx, Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::{types, Idx, IntCC, MathFn, Type, Val};
use crate::ops::{
    self, Act, ActGrad, AdamUpdate, Add, BceWithLogitsGrad, BiasAdd, Dropout, MseGrad, RunningUpdate, SgdUpdate,
};

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

/// A per-element function on lanes of a type: input values → output values.
type ElementFn<'a> = dyn FnMut(&mut Kb, Type, &[Val]) -> CgResult<Vec<Val>> + 'a;

/// Emit `outs = f(ins)` over `space`, the first output through the epilogue `epi`.
fn emit(
    kb: &mut Kb,
    space: Space,
    ins: &[(Buf, Bcast)],
    outs: &[Buf],
    epi: &[super::EpiOp],
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

/// Over the batch: one item per sample, every operand full-size.
fn per_sample_space(cx: &LowerCtx) -> (Space, Vec<Bcast>) {
    let shape = cx.out_shape(0);
    let numel: usize = shape.iter().product();
    let space = Space { outer: shape[0], chans: 1, inner: numel / shape[0].max(1), items: true };
    (space, vec![Bcast::Full; cx.node.inputs.len()])
}

/// The most and the fewest floats of a whole-tensor pass's work item.
const CHUNK_MAX: usize = 16384;
const CHUNK_MIN: usize = 1024;

/// The floats per work item of a pass over a whole tensor (an optimizer or statistics
/// update of one parameter, an elementwise loss gradient): all of it when small, else
/// the largest divisor of its size in CHUNK_MIN..=CHUNK_MAX (a multiple of four where
/// one exists), so a large parameter's update is split over threads. Elementwise, so
/// any split gives the same bits.
fn chunk_of(numel: usize) -> usize {
    if numel <= CHUNK_MAX {
        return numel;
    }
    let divisors = || (CHUNK_MIN..=CHUNK_MAX).rev().filter(move |d| numel.is_multiple_of(*d));
    divisors().find(|d| d % 4 == 0).or_else(|| divisors().next()).unwrap_or(numel)
}

/// A whole tensor in chunks of `chunk_of` floats, one work item each.
fn whole(cx: &LowerCtx) -> (Space, Vec<Bcast>) {
    let numel: usize = cx.out_shape(0).iter().product();
    let chunk = chunk_of(numel);
    let outer = numel / chunk.max(1);
    let space = Space { outer, chans: 1, inner: chunk, items: outer > 1 };
    (space, vec![Bcast::Full; cx.node.inputs.len()])
}

/// The work items of `whole`.
fn whole_items<T>(_: &T, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
    let numel: usize = cx.out_shape(0).iter().product();
    Work::items(numel / chunk_of(numel).max(1))
}

/// `outs = f(ins)` over `space` with `bcast`, the first output through the epilogue.
fn lower_with(kb: &mut Kb, bufs: &KernelBufs, (space, bcast): (Space, Vec<Bcast>), f: &mut ElementFn) -> CgResult<()> {
    let ins: Vec<(Buf, Bcast)> = bufs.inputs.iter().cloned().zip(bcast).collect();
    emit(kb, space, &ins, &bufs.outputs, &bufs.epilogue, f)
}

lower_rules! {
    Act => pointwise, |a: &Act| Some(Element::Act(a.act)), per_sample, lower_act;
    ActGrad => pointwise, |a: &ActGrad| Some(Element::ActGrad(a.act)), per_sample, lower_act_grad;
    Add => pointwise, |_: &Add| Some(Element::Add), per_sample, lower_add;
    BiasAdd => pointwise, |_: &BiasAdd| Some(Element::Bias), per_sample, lower_bias_add;
    MseGrad => pointwise, no_element, whole_items, lower_mse_grad;
    BceWithLogitsGrad => pointwise, no_element, whole_items, lower_bce_grad;
    RunningUpdate => opaque, no_element, whole_items, lower_running_update;
    SgdUpdate => opaque, no_element, whole_items, lower_sgd;
    AdamUpdate => opaque, no_element, whole_items, lower_adam;
    Dropout => opaque, no_element, per_sample, lower_dropout;
}

fn lower_act(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, a: &Act) -> CgResult<()> {
    lower_with(kb, bufs, per_sample_space(cx), &mut |kb, _, xs| Ok(vec![activation(kb, a.act, xs[0])]))
}

fn lower_act_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, a: &ActGrad) -> CgResult<()> {
    lower_with(kb, bufs, per_sample_space(cx), &mut |kb, _, xs| Ok(vec![activation_grad(kb, a.act, xs[0], xs[1])]))
}

fn lower_add(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &Add) -> CgResult<()> {
    lower_with(kb, bufs, per_sample_space(cx), &mut |kb, _, xs| Ok(vec![kb.fadd(xs[0], xs[1])]))
}

/// A flat [N, F] tensor takes bias[f] along its rows; [N, C, …] takes bias[c] per channel.
fn lower_bias_add(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &BiasAdd) -> CgResult<()> {
    let shape = cx.out_shape(0);
    let space = if shape.len() == 2 {
        (Space { outer: shape[0], chans: 1, inner: shape[1], items: true }, vec![Bcast::Full, Bcast::Inner])
    } else {
        let inner = shape[2..].iter().product();
        (Space { outer: shape[0], chans: shape[1], inner, items: true }, vec![Bcast::Full, Bcast::Channel])
    };
    lower_with(kb, bufs, space, &mut |kb, _, xs| Ok(vec![kb.fadd(xs[0], xs[1])]))
}

/// What an elementwise loss's gradient divides by: its [N, K] elements, or K per sample of
/// a data-parallel shard's global batch.
fn loss_count(cx: &LowerCtx, samples: Option<usize>) -> usize {
    let s = cx.out_shape(0);
    ops::mean_count(samples, s[0], s[1..].iter().product())
}

/// 2(a − b)/numel.
fn lower_mse_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &MseGrad) -> CgResult<()> {
    let numel = loss_count(cx, op.samples);
    lower_with(kb, bufs, whole(cx), &mut |kb, ty, xs| {
        let k = kb.f(ty, (2.0 / numel as f64) as f32);
        let d = kb.fsub(xs[0], xs[1]);
        Ok(vec![kb.fmul(d, k)])
    })
}

/// (σ(z) − t)/numel.
fn lower_bce_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &BceWithLogitsGrad) -> CgResult<()> {
    let numel = loss_count(cx, op.samples);
    lower_with(kb, bufs, whole(cx), &mut |kb, ty, xs| {
        let k = kb.f(ty, (1.0 / numel as f64) as f32);
        let s = kb.math(MathFn::Sigmoid, xs[0]);
        let d = kb.fsub(s, xs[1]);
        Ok(vec![kb.fmul(d, k)])
    })
}

/// r ← (1 − m)·r + m·c·stat, in place.
fn lower_running_update(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, r: &RunningUpdate) -> CgResult<()> {
    lower_with(kb, bufs, whole(cx), &mut |kb, ty, xs| {
        let keep = kb.f(ty, (1.0 - r.momentum) as f32);
        let take = kb.f(ty, (r.momentum * r.correction) as f32);
        let t = kb.fmul(xs[1], take);
        Ok(vec![kb.fma(xs[0], keep, t)])
    })
}

/// `torch.optim.SGD`: weight decay, momentum (velocity out), Nesterov; one pass.
fn lower_sgd(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, u: &SgdUpdate) -> CgResult<()> {
    let lr = kb.ctx_f32(ctx::LR);
    lower_with(kb, bufs, whole(cx), &mut |kb, ty, xs| {
        let c = |kb: &mut Kb, x: f64| kb.f(ty, x as f32);
        let (p, mut g) = (xs[0], xs[1]);
        let lr = kb.splat(ty, lr);
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
        Ok(out)
    })
}

/// `torch.optim.Adam` (bias corrections folded into the step's two scalars); one pass.
fn lower_adam(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, u: &AdamUpdate) -> CgResult<()> {
    let (step_size, inv_sqrt_bc2) = (kb.ctx_f32(ctx::ADAM_STEP_SIZE), kb.ctx_f32(ctx::ADAM_INV_SQRT_BC2));
    lower_with(kb, bufs, whole(cx), &mut |kb, ty, xs| {
        let c = |kb: &mut Kb, x: f64| kb.f(ty, x as f32);
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
        let step = kb.splat(ty, step_size);
        let inv = kb.splat(ty, inv_sqrt_bc2);
        let eps = c(kb, u.eps);
        let sq = kb.sqrt(v2);
        let sq = kb.fmul(sq, inv);
        let denom = kb.fadd(sq, eps);
        let num = kb.fmul(step, m2);
        let d = kb.fdiv(num, denom);
        Ok(vec![kb.fsub(p, d), m2, v2])
    })
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
fn lower_dropout(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, d: &Dropout) -> CgResult<()> {
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
