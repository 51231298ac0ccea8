//! Batch normalization. Statistics are two-pass per channel (the mean, then the squared
//! deviations from it; the gradient's two sums share one pass): each sample's run of
//! values is summed on f32x4 lanes (a fixed chunk), and the chunks are added in f64, in
//! sample order — so the sums do not depend on how work is split.

use super::element::{eval_scale, inv_std};
use super::epilogue::{self, At, EpiOp};
use super::{
    lower_rules, no_element, opaque, per_sample, pointwise, Element, KernelBufs, LowerCtx, MicroTile, NodeCx, Work,
};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::{types, Idx, Val};
use crate::ops::{
    batchnorm_layout, BatchNormEval, BatchNormGradInput, BatchNormGradSums, BatchNormStats, BatchNormTrain,
    BatchNormTrainGrad,
};

/// Values computed at an element index, on lanes of a type.
type ElementValues<'a> = dyn FnMut(&mut Kb, types::Type, Idx) -> CgResult<Vec<Val>> + 'a;

/// `k` sums over the batch for one channel, in f64, in one pass: `f` gives `k` values per
/// element (lane-wise); each sample's run of `inner` values is summed on f32x4 lanes (a
/// fixed chunk), and the chunks are added in f64 in sample order.
fn channel_sums(
    kb: &mut Kb,
    (n, c, inner): (usize, usize, usize),
    ch: Idx,
    k: usize,
    f: &mut ElementValues,
) -> CgResult<Vec<Val>> {
    let z = kb.f64const(0.0);
    let end4 = (inner / 4 * 4) as i64;
    kb.fold_n(&vec![z; k], (0, n as i64, 1), |kb, b, acc| {
        let row = kb.affine(0, &[(b, (c * inner) as i64), (ch, inner as i64)]);
        let z4 = kb.f(types::F32X4, 0.0);
        let lanes = kb.fold_n(&vec![z4; k], (0, end4, 4), |kb, i, lanes| {
            let at = kb.add(row, i);
            let vs = f(kb, types::F32X4, at)?;
            Ok(lanes.iter().zip(vs).map(|(&l, v)| kb.fadd(l, v)).collect())
        })?;
        let heads: Vec<Val> = lanes.iter().map(|&l| kb.lane_sum(l)).collect();
        let tails = kb.fold_n(&heads, (end4, inner as i64, 1), |kb, i, tails| {
            let at = kb.add(row, i);
            let vs = f(kb, types::F32, at)?;
            Ok(tails.iter().zip(vs).map(|(&t, v)| kb.fadd(t, v)).collect())
        })?;
        Ok(tails
            .iter()
            .zip(acc)
            .map(|(&t, &a)| {
                let t = kb.fpromote(t);
                kb.fadd(a, t)
            })
            .collect())
    })
}

fn channel_sum(
    kb: &mut Kb,
    dims: (usize, usize, usize),
    ch: Idx,
    f: &mut dyn FnMut(&mut Kb, types::Type, Idx) -> CgResult<Val>,
) -> CgResult<Val> {
    Ok(channel_sums(kb, dims, ch, 1, &mut |kb, ty, at| Ok(vec![f(kb, ty, at)?]))?[0])
}

/// out[x] = x·scale + shift over one channel of every sample.
fn affine_channel(
    kb: &mut Kb,
    (n, c, inner): (usize, usize, usize),
    ch: Idx,
    f: &mut dyn FnMut(&mut Kb, types::Type, Idx) -> CgResult<()>,
) -> CgResult<()> {
    kb.for_range(0, n as i64, 1, |kb, b| {
        let row = kb.affine(0, &[(b, (c * inner) as i64), (ch, inner as i64)]);
        kb.for_lanes(0, inner as i64, |kb, i, ty| {
            let at = kb.add(row, i);
            f(kb, ty, at)
        })
    })
}

/// y[at] = epi((x[at] − mean)·scale + shift) on lanes of `ty`: the normalization of both
/// modes.
fn normalize(
    kb: &mut Kb,
    ty: types::Type,
    at: Idx,
    (x, y): (&Buf, &Buf),
    [mean, scale, shift]: [Val; 3],
    epi: &[EpiOp],
) -> CgResult<()> {
    let v = kb.load(ty, x, at)?;
    let mu = kb.splat(ty, mean);
    let d = kb.fsub(v, mu);
    let sc = kb.splat(ty, scale);
    let sh = kb.splat(ty, shift);
    let out = kb.fma(d, sc, sh);
    let out = epilogue::apply(kb, epi, out, At::flat(at))?;
    kb.store(out, y, at)
}

/// (x[at] − mean, dy[at]) on lanes of `ty`: what both passes of the gradient read.
fn centered_and_dy(kb: &mut Kb, ty: types::Type, at: Idx, (x, dy): (&Buf, &Buf), mean: Val) -> CgResult<(Val, Val)> {
    let v = kb.load(ty, x, at)?;
    let gy = kb.load(ty, dy, at)?;
    let mu = kb.splat(ty, mean);
    Ok((kb.fsub(v, mu), gy))
}

fn load_c(kb: &mut Kb, buf: &Buf, ch: Idx) -> CgResult<Val> {
    kb.load(types::F32, buf, ch)
}

lower_rules! {
    BatchNormTrain => pointwise, no_element, per_channel, lower_train;
    BatchNormTrainGrad => opaque, no_element, per_channel, lower_train_grad;
    // One item per sample: the statistics are given.
    BatchNormEval => pointwise, |b: &BatchNormEval| Some(Element::BatchNormEval { eps: b.eps }), per_sample, lower_eval;
    // The split forms of data-parallel training (`exec::shard_batchnorm`).
    BatchNormStats => opaque, no_element, per_channel, lower_stats;
    BatchNormGradSums => opaque, no_element, per_channel, lower_grad_sums;
    BatchNormGradInput => opaque, no_element, per_channel, lower_grad_input;
}

/// One work item per channel: batch statistics are per channel.
fn per_channel<T>(_: &T, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
    Work::items(batchnorm_layout(cx.in_shape(0)).1)
}

/// A channel's mean (f32) and biased variance (f64), two-pass.
fn channel_stats(kb: &mut Kb, dims: (usize, usize, usize), ch: Idx, x: &Buf) -> CgResult<(Val, Val)> {
    let (n, _, inner) = dims;
    let s = channel_sum(kb, dims, ch, &mut |kb, ty, at| kb.load(ty, x, at))?;
    let inv_m = kb.f64const(1.0 / (n * inner) as f64);
    let mean = kb.fmul(s, inv_m);
    let mean32 = kb.fdemote(mean);
    let ss = channel_sum(kb, dims, ch, &mut |kb, ty, at| {
        let v = kb.load(ty, x, at)?;
        let mu = kb.splat(ty, mean32);
        let d = kb.fsub(v, mu);
        Ok(kb.fmul(d, d))
    })?;
    Ok((mean32, kb.fmul(ss, inv_m)))
}

fn lower_train(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormTrain) -> CgResult<()> {
    let epi = &bufs.epilogue;
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (x, g, b) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.inputs[2]);
    let (y, mean_o, var_o) = (&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]);
    kb.for_items(dims.1, |kb, ch| {
        let (mean32, var) = channel_stats(kb, dims, ch, x)?;
        let var32 = kb.fdemote(var);
        kb.store(mean32, mean_o, ch)?;
        kb.store(var32, var_o, ch)?;
        let istd = inv_std(kb, var, bn.eps);
        let istd = kb.fdemote(istd);
        let gv = load_c(kb, g, ch)?;
        let bv = load_c(kb, b, ch)?;
        let scale = kb.fmul(gv, istd);
        affine_channel(kb, dims, ch, &mut |kb, ty, at| normalize(kb, ty, at, (x, y), [mean32, scale, bv], epi))
    })
}

fn lower_stats(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &BatchNormStats) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (x, mean_o, var_o) = (&bufs.inputs[0], &bufs.outputs[0], &bufs.outputs[1]);
    kb.for_items(dims.1, |kb, ch| {
        let (mean32, var) = channel_stats(kb, dims, ch, x)?;
        let var32 = kb.fdemote(var);
        kb.store(mean32, mean_o, ch)?;
        kb.store(var32, var_o, ch)
    })
}

/// A channel's mean (f32) and istd (f64) from stored statistics.
fn stored_stats(kb: &mut Kb, (mean_i, var_i): (&Buf, &Buf), ch: Idx, eps: f64) -> CgResult<(Val, Val)> {
    let mean = load_c(kb, mean_i, ch)?;
    let var = load_c(kb, var_i, ch)?;
    let var64 = kb.fpromote(var);
    Ok((mean, inv_std(kb, var64, eps)))
}

/// (Σ dy, Σ x̂·dy) of a channel in f64, in one pass over x and dy.
fn gradient_sums(
    kb: &mut Kb,
    dims: (usize, usize, usize),
    ch: Idx,
    (x, dy): (&Buf, &Buf),
    (mean, istd64): (Val, Val),
) -> CgResult<(Val, Val)> {
    let istd = kb.fdemote(istd64);
    let sums = channel_sums(kb, dims, ch, 2, &mut |kb, ty, at| {
        let (d, gy) = centered_and_dy(kb, ty, at, (x, dy), mean)?;
        let is = kb.splat(ty, istd);
        let xh = kb.fmul(d, is);
        Ok(vec![gy, kb.fmul(xh, gy)])
    })?;
    Ok((sums[0], sums[1]))
}

/// dx = a·dy − b·(x − mean) − c over a channel, with a = γ·istd, b = a·istd·k·Σ x̂·dy,
/// c = a·k·Σ dy (f64 sums; k = the weight of a sum: 1/M, or the shard's scale over the
/// global M).
#[allow(clippy::too_many_arguments)]
fn input_gradient(
    kb: &mut Kb,
    dims: (usize, usize, usize),
    ch: Idx,
    (x, dy, dx): (&Buf, &Buf, &Buf),
    (mean, istd64): (Val, Val),
    gamma: Val,
    (dbeta, dgamma): (Val, Val),
    k: f64,
) -> CgResult<()> {
    let g64 = kb.fpromote(gamma);
    let a64 = kb.fmul(g64, istd64);
    let k = kb.f64const(k);
    let t = kb.fmul(a64, istd64);
    let t = kb.fmul(t, dgamma);
    let b64 = kb.fmul(t, k);
    let c0 = kb.fmul(a64, dbeta);
    let c64 = kb.fmul(c0, k);
    let a = kb.fdemote(a64);
    let bq = kb.fdemote(b64);
    let cc = kb.fdemote(c64);
    affine_channel(kb, dims, ch, &mut |kb, ty, at| {
        let (d, gy) = centered_and_dy(kb, ty, at, (x, dy), mean)?;
        let av = kb.splat(ty, a);
        let bv = kb.splat(ty, bq);
        let cv = kb.splat(ty, cc);
        let t1 = kb.fmul(av, gy);
        let t2 = kb.fmul(bv, d);
        let r = kb.fsub(t1, t2);
        let r = kb.fsub(r, cv);
        kb.store(r, dx, at)
    })
}

fn lower_train_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormTrainGrad) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (n, c, inner) = dims;
    let (x, mean_i, var_i, g, dy) =
        (&bufs.inputs[0], &bufs.inputs[1], &bufs.inputs[2], &bufs.inputs[3], &bufs.inputs[4]);
    let (dx, dg, db) = (&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]);
    kb.for_items(c, |kb, ch| {
        let stats = stored_stats(kb, (mean_i, var_i), ch, bn.eps)?;
        let (dbeta, dgamma) = gradient_sums(kb, dims, ch, (x, dy), stats)?;
        let db32 = kb.fdemote(dbeta);
        let dg32 = kb.fdemote(dgamma);
        kb.store(dg32, dg, ch)?;
        kb.store(db32, db, ch)?;
        let gv = load_c(kb, g, ch)?;
        input_gradient(kb, dims, ch, (x, dy, dx), stats, gv, (dbeta, dgamma), 1.0 / (n * inner) as f64)
    })
}

fn lower_grad_sums(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormGradSums) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (x, mean_i, var_i, dy) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.inputs[2], &bufs.inputs[3]);
    let (sdx, sd) = (&bufs.outputs[0], &bufs.outputs[1]);
    kb.for_items(dims.1, |kb, ch| {
        let stats = stored_stats(kb, (mean_i, var_i), ch, bn.eps)?;
        let (dbeta, dgamma) = gradient_sums(kb, dims, ch, (x, dy), stats)?;
        let db32 = kb.fdemote(dbeta);
        let dg32 = kb.fdemote(dgamma);
        kb.store(dg32, sdx, ch)?;
        kb.store(db32, sd, ch)
    })
}

fn lower_grad_input(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormGradInput) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let [x, mean_i, var_i, g, dy, sdx, sd] = [0, 1, 2, 3, 4, 5, 6].map(|i| &bufs.inputs[i]);
    let (dx, dg, db) = (&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]);
    kb.for_items(dims.1, |kb, ch| {
        let stats = stored_stats(kb, (mean_i, var_i), ch, bn.eps)?;
        let dgamma = load_c(kb, sdx, ch)?;
        let dbeta = load_c(kb, sd, ch)?;
        kb.store(dgamma, dg, ch)?;
        kb.store(dbeta, db, ch)?;
        let dgamma = kb.fpromote(dgamma);
        let dbeta = kb.fpromote(dbeta);
        let gv = load_c(kb, g, ch)?;
        input_gradient(kb, dims, ch, (x, dy, dx), stats, gv, (dbeta, dgamma), bn.scale / bn.count as f64)
    })
}

fn lower_eval(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormEval) -> CgResult<()> {
    let epi = &bufs.epilogue;
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (n, c, inner) = dims;
    let (x, rm, rv, g, b) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.inputs[2], &bufs.inputs[3], &bufs.inputs[4]);
    let y = &bufs.outputs[0];
    kb.for_items(n, |kb, item| {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            let mean = load_c(kb, rm, ch)?;
            let var = load_c(kb, rv, ch)?;
            let gv = load_c(kb, g, ch)?;
            let bv = load_c(kb, b, ch)?;
            let scale = eval_scale(kb, var, gv, bn.eps);
            let row = kb.affine(0, &[(item, (c * inner) as i64), (ch, inner as i64)]);
            kb.for_lanes(0, inner as i64, |kb, i, ty| {
                let at = kb.add(row, i);
                normalize(kb, ty, at, (x, y), [mean, scale, bv], epi)
            })
        })
    })
}
