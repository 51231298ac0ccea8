//! Reductions: the bias gradient, and row-wise kernels (softmax and its gradient, the
//! losses and their gradients). Sums that produce a loss accumulate in f64; every sum runs
//! in an order fixed by the shapes alone.

use super::{lower_rules, no_element, one_item, opaque, per_sample, KernelBufs, LowerCtx, MicroTile, NodeCx, Work};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::{types, Convert, FloatCC, Idx, MathFn, Val};
use crate::ops::{
    mean_count, BceWithLogits, BiasGrad, Mse, Softmax, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, SoftmaxGrad,
};

/// Values computed at an element index, on lanes of a type.
pub type ElementValues<'a> = dyn FnMut(&mut Kb, types::Type, Idx) -> CgResult<Vec<Val>> + 'a;

/// Σ f(i) for i in 0..len in f32 on four f32x4 accumulators, 16 floats a step, so the
/// adds do not wait on each other (one chain of adds is bound by their latency); then the
/// four added pairwise, the remaining whole vectors, the lanes, the tail in order. The
/// order depends on `len` alone. Batch norm's per-sample partials use it; the other sums
/// keep `lane_sums`' order.
pub fn wide_lane_sum(
    kb: &mut Kb,
    len: usize,
    f: &mut dyn FnMut(&mut Kb, types::Type, Idx) -> CgResult<Val>,
) -> CgResult<Val> {
    let (end16, end4) = ((len / 16 * 16) as i64, (len / 4 * 4) as i64);
    let z = kb.f(types::F32X4, 0.0);
    let acc = kb.fold_n(&[z; 4], (0, end16, 16), |kb, i, acc| {
        (0..4)
            .map(|j| {
                let v = f(kb, types::F32X4, i + Idx::constant(4 * j as i64))?;
                Ok(kb.fadd(acc[j], v))
            })
            .collect()
    })?;
    let a = kb.fadd(acc[0], acc[1]);
    let b = kb.fadd(acc[2], acc[3]);
    let v = kb.fadd(a, b);
    let v = kb.fold_n(&[v], (end16, end4, 4), |kb, i, acc| {
        let x = f(kb, types::F32X4, i)?;
        Ok(vec![kb.fadd(acc[0], x)])
    })?[0];
    let head = kb.lane_sum(v);
    Ok(kb.fold_n(&[head], (end4, len as i64, 1), |kb, i, acc| {
        let x = f(kb, types::F32, i)?;
        Ok(vec![kb.fadd(acc[0], x)])
    })?[0])
}

/// Σ f(i) for i in 0..len, for `k` values of `f` at once, in f32 — in the one order every
/// f32 sum over a run follows: f32x4 lanes over the whole vectors, the lanes added, then
/// the tail in order. `f(kb, ty, i)` gives the `k` values at offset `i` on lanes of `ty`.
pub fn lane_sums(kb: &mut Kb, len: usize, k: usize, f: &mut ElementValues) -> CgResult<Vec<Val>> {
    let end4 = (len / 4 * 4) as i64;
    let z = kb.f(types::F32X4, 0.0);
    let lanes = kb.fold_n(&vec![z; k], (0, end4, 4), |kb, i, lanes| {
        let vs = f(kb, types::F32X4, i)?;
        Ok(lanes.iter().zip(vs).map(|(&l, v)| kb.fadd(l, v)).collect())
    })?;
    let heads: Vec<Val> = lanes.iter().map(|&l| kb.lane_sum(l)).collect();
    kb.fold_n(&heads, (end4, len as i64, 1), |kb, i, tails| {
        let vs = f(kb, types::F32, i)?;
        Ok(tails.iter().zip(vs).map(|(&t, v)| kb.fadd(t, v)).collect())
    })
}

/// Σ buf[start .. start+len] in f32 ([`lane_sums`]' order).
pub fn sum_span(kb: &mut Kb, buf: &Buf, start: Idx, len: usize) -> CgResult<Val> {
    let s = lane_sums(kb, len, 1, &mut |kb, ty, i| {
        let at = kb.add(start, i);
        Ok(vec![kb.load(ty, buf, at)?])
    })?;
    Ok(s[0])
}

/// A bias gradient's sum over channel `ch` of [n, c, inner] values in f32: each sample's
/// run of `inner` values in [`lane_sums`]' order, the samples in order. `f(kb, ty, at)`
/// gives the value at element `at` — a load, or (batch norm's gradient computing the bias
/// gradient as a sibling) the value being stored there, so both give the same bits.
pub fn bias_sum(
    kb: &mut Kb,
    (n, c, inner): (usize, usize, usize),
    ch: Idx,
    f: &mut dyn FnMut(&mut Kb, types::Type, Idx) -> CgResult<Val>,
) -> CgResult<Val> {
    let z = kb.f(types::F32, 0.0);
    kb.fold(z, (0, n as i64, 1), |kb, b, acc| {
        let row = kb.affine(0, &[(b, (c * inner) as i64), (ch, inner as i64)]);
        let s = lane_sums(kb, inner, 1, &mut |kb, ty, i| {
            let at = kb.add(row, i);
            Ok(vec![f(kb, ty, at)?])
        })?;
        Ok(kb.fadd(acc, s[0]))
    })
}

fn bias_grad_work(_: &BiasGrad, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
    let s = cx.in_shape(0);
    let inner: usize = s[2..].iter().product();
    Work::items(if inner == 1 { 1 } else { s[1] })
}

fn lower_bias_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &BiasGrad) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (dy, db) = (&bufs.inputs[0], &bufs.outputs[0]);
    let (n, c) = (s[0], s[1]);
    let inner: usize = s[2..].iter().product();
    if inner == 1 {
        // db[f] = Σ_n dy[n, f], four features at a time.
        return kb.for_lanes(0, c as i64, |kb, f, ty| {
            let z = kb.f(ty, 0.0);
            let sum = kb.fold(z, (0, n as i64, 1), |kb, b, acc| {
                let at = kb.affine(0, &[(b, c as i64)]);
                let at = kb.add(at, f);
                let v = kb.load(ty, dy, at)?;
                Ok(kb.fadd(acc, v))
            })?;
            kb.store(sum, db, f)
        });
    }
    // One channel per work item (each sum in the same order whatever the split).
    kb.for_items(c, |kb, ch| {
        let sum = bias_sum(kb, (n, c, inner), ch, &mut |kb, ty, at| kb.load(ty, dy, at))?;
        kb.store(sum, db, ch)
    })
}

/// max over a row (NaN-propagating) in f32.
fn row_max(kb: &mut Kb, buf: &Buf, row: Idx, k: usize) -> CgResult<Val> {
    let first = kb.load(types::F32, buf, row)?;
    kb.fold(first, (1, k as i64, 1), |kb, j, cur| {
        let at = kb.add(row, j);
        let v = kb.load(types::F32, buf, at)?;
        // v when v > cur or v is NaN (and cur is not NaN)
        let up = kb.fcmp(FloatCC::UnorderedOrGreaterThan, v, cur);
        let ok = kb.fcmp(FloatCC::Ordered, cur, cur);
        let take = kb.band(up, ok);
        Ok(kb.select(take, v, cur))
    })
}

/// softmax of a row into `out` (same row index); returns Σ exp(z − max) (f32) and max.
fn softmax_row(kb: &mut Kb, z: &Buf, out: Option<&Buf>, row: Idx, k: usize) -> CgResult<(Val, Val)> {
    let m = row_max(kb, z, row, k)?;
    let zero = kb.f(types::F32, 0.0);
    let s = kb.fold(zero, (0, k as i64, 1), |kb, j, sum| {
        let at = kb.add(row, j);
        let v = kb.load(types::F32, z, at)?;
        let d = kb.fsub(v, m);
        let e = kb.math(MathFn::Exp, d);
        if let Some(o) = out {
            kb.store(e, o, at)?;
        }
        Ok(kb.fadd(sum, e))
    })?;
    if let Some(o) = out {
        let one = kb.f(types::F32, 1.0);
        let inv = kb.fdiv(one, s);
        scale_row(kb, o, row, k, inv)?;
    }
    Ok((s, m))
}

/// buf[row .. row + k] *= c.
fn scale_row(kb: &mut Kb, buf: &Buf, row: Idx, k: usize, c: Val) -> CgResult<()> {
    kb.for_range(0, k as i64, 1, |kb, j| {
        let at = kb.add(row, j);
        let v = kb.load(types::F32, buf, at)?;
        let v = kb.fmul(v, c);
        kb.store(v, buf, at)
    })
}

/// The class index held (as a float) in a target, clamped into 0..k so a bad label can
/// never index outside the row (labels are validated before training).
fn label(kb: &mut Kb, t: &Buf, at: Idx, k: usize) -> CgResult<Idx> {
    let f = kb.load(types::F32, t, at)?;
    let i = kb.convert(Convert::FcvtToSintSat, types::I64, f);
    let zero = kb.iconst(0);
    let top = kb.iconst(k as i64 - 1);
    let i = kb.smax(i, zero);
    let i = kb.smin(i, top);
    kb.idx(i)
}

/// Accumulate an f64 loss over `f(kb, i) -> f64 term`, i in 0..n; store sum·scale as f32.
fn f64_sum(
    kb: &mut Kb,
    n: usize,
    scale: f64,
    out: &Buf,
    f: &mut dyn FnMut(&mut Kb, Idx) -> CgResult<Val>,
) -> CgResult<()> {
    let z = kb.f64const(0.0);
    let a = kb.fold(z, (0, n as i64, 1), |kb, i, acc| {
        let t = f(kb, i)?;
        Ok(kb.fadd(acc, t))
    })?;
    let k = kb.f64const(scale);
    let l = kb.fmul(a, k);
    let l = kb.fdemote(l);
    kb.store(l, out, Idx::constant(0))
}

/// Softmax cross-entropy over rows of logits `z` with class targets `t`: the mean loss
/// into `loss`, and/or (softmax − onehot)/N into `grad`; with both, each row's softmax is
/// computed once (the same bits as either alone).
fn sce_rows(
    kb: &mut Kb,
    (n, k): (usize, usize),
    count: usize,
    z: &Buf,
    t: &Buf,
    loss: Option<&Buf>,
    grad: Option<&Buf>,
) -> CgResult<()> {
    let inv = 1.0 / count as f32;
    let mut row_term = |kb: &mut Kb, r: Idx| -> CgResult<Val> {
        let row = kb.mul(r, k as i64);
        let (sum, m) = softmax_row(kb, z, grad, row, k)?;
        let l = label(kb, t, r, k)?;
        let at = kb.add(row, l);
        if let Some(g) = grad {
            let p = kb.load(types::F32, g, at)?;
            let one = kb.f(types::F32, 1.0);
            let p = kb.fsub(p, one);
            kb.store(p, g, at)?;
            let c = kb.f(types::F32, inv);
            scale_row(kb, g, row, k, c)?;
        }
        // log Σ exp(z − m) + m − z[label], in f64
        let s64 = kb.fpromote(sum);
        let lse = kb.math(MathFn::LogF64, s64);
        let m64 = kb.fpromote(m);
        let lse = kb.fadd(lse, m64);
        let zl = kb.load(types::F32, z, at)?;
        let zl = kb.fpromote(zl);
        Ok(kb.fsub(lse, zl))
    };
    match loss {
        Some(out) => f64_sum(kb, n, 1.0 / count as f64, out, &mut row_term),
        None => kb.for_range(0, n as i64, 1, |kb, r| row_term(kb, r).map(|_| ())),
    }
}

lower_rules! {
    // Sums over the batch, in one item.
    // A dense layer's bias gradient in one item (four features a vector), a
    // convolution's one channel per item.
    BiasGrad => opaque, no_element, bias_grad_work, lower_bias_grad;
    // One row per item.
    Softmax => opaque, no_element, per_sample, lower_softmax;
    SoftmaxGrad => opaque, no_element, per_sample, lower_softmax_grad;
    // Losses sum over the batch in a fixed order, in one item.
    SoftmaxCrossEntropy => opaque, no_element, one_item, lower_sce_or_both;
    SoftmaxCrossEntropyGrad => opaque, no_element, one_item, lower_sce_grad;
    BceWithLogits => opaque, no_element, one_item, lower_bce;
    Mse => opaque, no_element, one_item, lower_mse;
}

/// (rows, row length) of a row kernel's first input: [N, K] (or [N] as N rows of 1).
fn rows_of(cx: &LowerCtx) -> (usize, usize) {
    let s = cx.in_shape(0);
    (s[0], s.get(1).copied().unwrap_or(1))
}

/// Softmax cross-entropy: the loss, or with its gradient as a sibling (`fuse`'s
/// loss_with_grad) both from one pass.
fn lower_sce_or_both(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &SoftmaxCrossEntropy) -> CgResult<()> {
    let grad = (!cx.kernel.siblings.is_empty()).then(|| &bufs.outputs[1]);
    let rows = rows_of(cx);
    let count = mean_count(op.samples, rows.0, 1);
    sce_rows(kb, rows, count, &bufs.inputs[0], &bufs.inputs[1], Some(&bufs.outputs[0]), grad)
}

fn lower_sce_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &SoftmaxCrossEntropyGrad) -> CgResult<()> {
    let rows = rows_of(cx);
    let count = mean_count(op.samples, rows.0, 1);
    sce_rows(kb, rows, count, &bufs.inputs[0], &bufs.inputs[1], None, Some(&bufs.outputs[0]))
}

fn lower_softmax(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &Softmax) -> CgResult<()> {
    let (n, k) = rows_of(cx);
    kb.for_items(n, |kb, r| {
        let row = kb.mul(r, k as i64);
        softmax_row(kb, &bufs.inputs[0], Some(&bufs.outputs[0]), row, k).map(|_| ())
    })
}

/// dx = y·(dy − Σ y·dy) per row.
fn lower_softmax_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &SoftmaxGrad) -> CgResult<()> {
    let (n, k) = rows_of(cx);
    let (y, dy, dx) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.outputs[0]);
    kb.for_items(n, |kb, r| {
        let row = kb.mul(r, k as i64);
        let z = kb.f(types::F32, 0.0);
        let d = kb.fold(z, (0, k as i64, 1), |kb, j, dot| {
            let at = kb.add(row, j);
            let yv = kb.load(types::F32, y, at)?;
            let g = kb.load(types::F32, dy, at)?;
            Ok(kb.fma(yv, g, dot))
        })?;
        kb.for_range(0, k as i64, 1, |kb, j| {
            let at = kb.add(row, j);
            let yv = kb.load(types::F32, y, at)?;
            let g = kb.load(types::F32, dy, at)?;
            let t = kb.fsub(g, d);
            let v = kb.fmul(yv, t);
            kb.store(v, dx, at)
        })
    })
}

/// The mean over all elements of `term(prediction, target)` (f64), as a loss.
fn elementwise_loss(
    kb: &mut Kb,
    cx: &LowerCtx,
    bufs: &KernelBufs,
    samples: Option<usize>,
    term: &mut dyn FnMut(&mut Kb, Val, Val) -> Val,
) -> CgResult<()> {
    let (n, k) = rows_of(cx);
    let (x, t) = (&bufs.inputs[0], &bufs.inputs[1]);
    let total = n * k;
    f64_sum(kb, total, 1.0 / mean_count(samples, n, k) as f64, &bufs.outputs[0], &mut |kb, i| {
        let a = kb.load(types::F32, x, i)?;
        let b = kb.load(types::F32, t, i)?;
        Ok(term(kb, a, b))
    })
}

/// max(z, 0) − z·t + log(1 + e^−|z|), the log in f64.
fn lower_bce(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &BceWithLogits) -> CgResult<()> {
    elementwise_loss(kb, cx, bufs, op.samples, &mut |kb, z, y| {
        let zero = kb.f(types::F32, 0.0);
        let pos = kb.max(z, zero);
        let a = kb.fabs(z);
        let na = kb.fneg(a);
        let e = kb.math(MathFn::Exp, na);
        let e64 = kb.fpromote(e);
        let one = kb.f64const(1.0);
        let ope = kb.fadd(one, e64);
        let lg = kb.math(MathFn::LogF64, ope);
        let zt = kb.fmul(z, y);
        let d = kb.fsub(pos, zt);
        let d = kb.fpromote(d);
        kb.fadd(d, lg)
    })
}

/// (a − b)² in f64.
fn lower_mse(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &Mse) -> CgResult<()> {
    elementwise_loss(kb, cx, bufs, op.samples, &mut |kb, a, b| {
        let a = kb.fpromote(a);
        let b = kb.fpromote(b);
        let d = kb.fsub(a, b);
        kb.fmul(d, d)
    })
}
