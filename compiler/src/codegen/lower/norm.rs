//! Batch normalization. Each sample's run of a channel's values is a fixed chunk, summed
//! on f32x4 lanes; the chunks are added in f64, in sample order, so no sum depends on how
//! work is split. In training the statistics come from per-sample partials
//! (`batchnorm_stats`: a chunk's sum, then its squared deviations about its own mean,
//! while the chunk is in cache — computed by the convolution that stored the sample when
//! fusion puts it there), merged per channel by `batchnorm_train`; the gradient's two sums
//! share one pass over x and dy.

use super::element::{eval_scale, inv_std};
use super::epilogue::{self, At, EpiOp};
use super::reduce::{bias_sum, lane_sums, wide_lane_sum, ElementValues};
use super::{
    lower_rules, no_element, opaque, per_sample, pointwise, Element, KernelBufs, LowerCtx, MicroTile, NodeCx, Work,
};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::{err, CgResult};
use crate::codegen::loops::{types, Idx, Val};
use crate::ops::{
    batchnorm_layout, BatchNormApply, BatchNormEval, BatchNormGradInput, BatchNormGradSums, BatchNormSqDev,
    BatchNormStats, BatchNormSum, BatchNormTrain, BatchNormTrainGrad, Op,
};

/// `k` sums over the batch for one channel, in f64, in one pass: `f` gives `k` values per
/// element (lane-wise); each sample's run of `inner` values is summed on f32x4 lanes (a
/// fixed chunk, `lane_sums`), and the chunks are added in f64 in sample order.
fn channel_sums(
    kb: &mut Kb,
    (n, c, inner): (usize, usize, usize),
    ch: Idx,
    k: usize,
    f: &mut ElementValues,
) -> CgResult<Vec<Val>> {
    let z = kb.f64const(0.0);
    kb.fold_n(&vec![z; k], (0, n as i64, 1), |kb, b, acc| {
        let row = kb.affine(0, &[(b, (c * inner) as i64), (ch, inner as i64)]);
        let sums = lane_sums(kb, inner, k, &mut |kb, ty, i| {
            let at = kb.add(row, i);
            f(kb, ty, at)
        })?;
        Ok(sums
            .iter()
            .zip(acc)
            .map(|(&t, &a)| {
                let t = kb.fpromote(t);
                kb.fadd(a, t)
            })
            .collect())
    })
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
    BatchNormStats => opaque, no_element, per_sample, lower_stats;
    BatchNormTrain => pointwise, no_element, per_channel, lower_train;
    BatchNormTrainGrad => opaque, no_element, per_channel, lower_train_grad;
    // One item per sample: the statistics are given.
    BatchNormEval => pointwise, |b: &BatchNormEval| Some(Element::BatchNormEval { eps: b.eps }), per_sample, lower_eval;
    // The split forms of data-parallel training (`exec::shard_batchnorm`).
    BatchNormSum => opaque, no_element, per_partial_channel, lower_sum;
    BatchNormSqDev => opaque, no_element, per_partial_channel, lower_sqdev;
    BatchNormApply => pointwise, no_element, per_channel, lower_apply;
    BatchNormGradSums => opaque, no_element, per_channel, lower_grad_sums;
    BatchNormGradInput => opaque, no_element, per_channel, lower_grad_input;
}

/// One work item per channel: batch statistics are per channel.
fn per_channel<T>(_: &T, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
    Work::items(batchnorm_layout(cx.in_shape(0)).1)
}

/// One work item per channel of partials [N, 2, C].
fn per_partial_channel<T>(_: &T, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
    Work::items(cx.in_shape(0)[2])
}

/// Sample `img`'s partial statistics, row `img` of `partials` [N, 2, C]: per channel, the
/// sum S of its chunk and Q = Σ (x − c)² about the chunk's mean c = S/inner rounded to f32
/// (`chunk_centre`), both f32, each on four accumulators (`wide_lane_sum`: on one chain
/// of adds these sums are bound by the adds' latency). Two passes over a chunk of `inner`
/// values, which are in cache when the kernel that has just stored the sample computes
/// them.
pub fn sample_stats(
    kb: &mut Kb,
    (_, c, inner): (usize, usize, usize),
    img: Idx,
    x: &Buf,
    partials: &Buf,
) -> CgResult<()> {
    kb.for_range(0, c as i64, 1, |kb, ch| {
        let row = kb.affine(0, &[(img, (c * inner) as i64), (ch, inner as i64)]);
        let s = wide_lane_sum(kb, inner, &mut |kb, ty, i| {
            let at = kb.add(row, i);
            kb.load(ty, x, at)
        })?;
        let centre = chunk_centre(kb, s, inner);
        let q = wide_lane_sum(kb, inner, &mut |kb, ty, i| {
            let at = kb.add(row, i);
            let v = kb.load(ty, x, at)?;
            let mu = kb.splat(ty, centre);
            let d = kb.fsub(v, mu);
            Ok(kb.fmul(d, d))
        })?;
        let at = kb.affine(0, &[(img, (2 * c) as i64), (ch, 1)]);
        kb.store(s, partials, at)?;
        let at = kb.affine(c as i64, &[(img, (2 * c) as i64), (ch, 1)]);
        kb.store(q, partials, at)
    })
}

/// The centre of a chunk of `inner` values whose f32 sum is `s`: S/inner, rounded to f32.
fn chunk_centre(kb: &mut Kb, s: Val, inner: usize) -> Val {
    let s = kb.fpromote(s);
    let inv = kb.f64const(1.0 / inner as f64);
    mean_from_sum(kb, s, inv)
}

/// A channel's mean (rounded to f32) and biased variance about it (f64) from the
/// per-sample partials [N, 2, C], merged in sample order in f64 (`partial_sum`,
/// `moved_sqdev`).
fn merged_stats(kb: &mut Kb, (n, c, inner): (usize, usize, usize), ch: Idx, partials: &Buf) -> CgResult<(Val, Val)> {
    let s = partial_sum(kb, (n, c), ch, partials)?;
    let inv_m = kb.f64const(1.0 / (n * inner) as f64);
    let mean32 = mean_from_sum(kb, s, inv_m);
    let m2 = moved_sqdev(kb, (n, c, inner), ch, partials, mean32)?;
    Ok((mean32, kb.fmul(m2, inv_m)))
}

/// Where value `r` (0: S, 1: Q) of sample `b` and channel `ch` is in partials [N, 2, C].
fn partial_at(kb: &mut Kb, c: usize, b: Idx, r: usize, ch: Idx) -> Idx {
    kb.affine((r * c) as i64, &[(b, (2 * c) as i64), (ch, 1)])
}

/// Σ S of a channel over the samples of partials [N, 2, C], in f64, in sample order.
fn partial_sum(kb: &mut Kb, (n, c): (usize, usize), ch: Idx, partials: &Buf) -> CgResult<Val> {
    let z = kb.f64const(0.0);
    Ok(kb.fold_n(&[z], (0, n as i64, 1), |kb, b, acc| {
        let i = partial_at(kb, c, b, 0, ch);
        let v = kb.load(types::F32, partials, i)?;
        let v = kb.fpromote(v);
        Ok(vec![kb.fadd(acc[0], v)])
    })?[0])
}

/// Σ (x − μ)² of a channel (f64) from partials [N, 2, C] of runs of n = `inner` values,
/// μ = `mean32`: each sample's Q about its centre c moved to μ, as
/// Q + (c − μ)·(2·(S − n·c) + n·(c − μ)), exact in real arithmetic (Chan, Golub and
/// LeVeque's update for shifted data), added in f64 in sample order. No sum of squares
/// of raw values.
fn moved_sqdev(
    kb: &mut Kb,
    (n, c, inner): (usize, usize, usize),
    ch: Idx,
    partials: &Buf,
    mean32: Val,
) -> CgResult<Val> {
    let z = kb.f64const(0.0);
    let mu = kb.fpromote(mean32);
    let size = kb.f64const(inner as f64);
    let two = kb.f64const(2.0);
    Ok(kb.fold_n(&[z], (0, n as i64, 1), |kb, b, acc| {
        let i = partial_at(kb, c, b, 0, ch);
        let s32 = kb.load(types::F32, partials, i)?;
        let i = partial_at(kb, c, b, 1, ch);
        let q = kb.load(types::F32, partials, i)?;
        let centre = chunk_centre(kb, s32, inner);
        let centre = kb.fpromote(centre);
        let s = kb.fpromote(s32);
        let q = kb.fpromote(q);
        let d = kb.fsub(centre, mu);
        let off = kb.fmul(size, centre);
        let off = kb.fsub(s, off);
        let off = kb.fmul(two, off);
        let nd = kb.fmul(size, d);
        let t = kb.fadd(off, nd);
        let t = kb.fmul(d, t);
        let t = kb.fadd(q, t);
        Ok(vec![kb.fadd(acc[0], t)])
    })?[0])
}

/// Σ x·(1/M), rounded to f32: the mean batch norm centres with.
fn mean_from_sum(kb: &mut Kb, s: Val, inv_m: Val) -> Val {
    let mean = kb.fmul(s, inv_m);
    kb.fdemote(mean)
}

/// The normalization of batch norm in training from a channel's mean (f32) and biased
/// variance (f64): y = (x − mean)·γ·istd + β, then the epilogue.
fn apply_channel(
    kb: &mut Kb,
    dims: (usize, usize, usize),
    ch: Idx,
    bufs: &KernelBufs,
    (x, g, b, y): (&Buf, &Buf, &Buf, &Buf),
    (mean32, var): (Val, Val),
    eps: f64,
) -> CgResult<()> {
    let istd = inv_std(kb, var, eps);
    let istd = kb.fdemote(istd);
    let gv = load_c(kb, g, ch)?;
    let bv = load_c(kb, b, ch)?;
    let scale = kb.fmul(gv, istd);
    let epi = &bufs.epilogue;
    affine_channel(kb, dims, ch, &mut |kb, ty, at| normalize(kb, ty, at, (x, y), [mean32, scale, bv], epi))
}

/// Store an f64 as value `r` of an exchange buffer [2·values, C]: rows 2r (hi: rounded to
/// f32) and 2r + 1 (lo: the rest).
fn store_split(kb: &mut Kb, v: Val, buf: &Buf, (r, c): (usize, usize), ch: Idx) -> CgResult<Val> {
    let row = 2 * r;
    let hi = kb.fdemote(v);
    let hi64 = kb.fpromote(hi);
    let rest = kb.fsub(v, hi64);
    let lo = kb.fdemote(rest);
    let at = kb.affine((row * c) as i64, &[(ch, 1)]);
    kb.store(hi, buf, at)?;
    let at = kb.affine(((row + 1) * c) as i64, &[(ch, 1)]);
    kb.store(lo, buf, at)?;
    Ok(hi)
}

/// Value `r` of an exchange buffer joined into an f64, and its hi row.
fn load_split(kb: &mut Kb, buf: &Buf, (r, c): (usize, usize), ch: Idx) -> CgResult<(Val, Val)> {
    let row = 2 * r;
    let at = kb.affine((row * c) as i64, &[(ch, 1)]);
    let hi = kb.load(types::F32, buf, at)?;
    let at = kb.affine(((row + 1) * c) as i64, &[(ch, 1)]);
    let lo = kb.load(types::F32, buf, at)?;
    let h = kb.fpromote(hi);
    let l = kb.fpromote(lo);
    Ok((kb.fadd(h, l), hi))
}

/// One sample per item, its partial statistics.
fn lower_stats(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &BatchNormStats) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (x, partials) = (&bufs.inputs[0], &bufs.outputs[0]);
    kb.for_items(dims.0, |kb, img| sample_stats(kb, dims, img, x, partials))
}

fn lower_train(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormTrain) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (x, partials, g, b) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.inputs[2], &bufs.inputs[3]);
    let (y, mean_o, var_o) = (&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]);
    let pool = sibling_pool(cx, bufs)?;
    kb.for_items(dims.1, |kb, ch| {
        let (mean32, var) = merged_stats(kb, dims, ch, partials)?;
        let var32 = kb.fdemote(var);
        kb.store(mean32, mean_o, ch)?;
        kb.store(var32, var_o, ch)?;
        apply_channel(kb, dims, ch, bufs, (x, g, b, y), (mean32, var), bn.eps)?;
        pool_after(kb, pool, &shape, ch, y)
    })
}

/// The pooling batch norm's kernel computes beside it (fusion's `batchnorm_with_pooling`),
/// into its fourth output (after y, mean and variance).
fn sibling_pool<'a>(cx: &'a LowerCtx, bufs: &'a KernelBufs) -> CgResult<Option<(&'a Op, &'a Buf)>> {
    match cx.kernel.siblings.as_slice() {
        [] => Ok(None),
        [s] if matches!(cx.graph.nodes[*s].op, Op::MaxPool(_) | Op::AvgPool(_)) => {
            Ok(Some((&cx.graph.nodes[*s].op, &bufs.outputs[3])))
        }
        _ => err(format!("kernel `{}`: batch norm computes only a pooling beside it", cx.kernel.name)),
    }
}

/// Pool channel `ch` of y, once normalized, when the kernel computes the pooling.
fn pool_after(kb: &mut Kb, pool: Option<(&Op, &Buf)>, shape: &[usize], ch: Idx, y: &Buf) -> CgResult<()> {
    match pool {
        Some((op, pooled)) => super::pool::pool_channel(kb, op, shape, ch, (y, pooled)),
        None => Ok(()),
    }
}

/// `lower_train`'s first step: Σ S of the shard's partials.
fn lower_sum(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &BatchNormSum) -> CgResult<()> {
    let (n, c) = (cx.in_shape(0)[0], cx.in_shape(0)[2]);
    let (partials, out) = (&bufs.inputs[0], &bufs.outputs[0]);
    kb.for_items(c, |kb, ch| {
        let s = partial_sum(kb, (n, c), ch, partials)?;
        store_split(kb, s, out, (0, c), ch).map(|_| ())
    })
}

/// `lower_train`'s second step, about the mean of the global batch's Σ x.
fn lower_sqdev(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &BatchNormSqDev) -> CgResult<()> {
    let (n, c) = (cx.in_shape(0)[0], cx.in_shape(0)[2]);
    let (partials, sum, out) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.outputs[0]);
    kb.for_items(c, |kb, ch| {
        let (s, _) = load_split(kb, sum, (0, c), ch)?;
        let inv_m = kb.f64const(1.0 / op.count as f64);
        let mean32 = mean_from_sum(kb, s, inv_m);
        let ss = moved_sqdev(kb, (n, c, op.inner), ch, partials, mean32)?;
        store_split(kb, ss, out, (0, c), ch).map(|_| ())
    })
}

/// `lower_train` after its two passes, from the global batch's sums.
fn lower_apply(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormApply) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let [x, sum, sq, g, b] = [0, 1, 2, 3, 4].map(|i| &bufs.inputs[i]);
    let (y, mean_o, var_o) = (&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]);
    let pool = sibling_pool(cx, bufs)?;
    kb.for_items(dims.1, |kb, ch| {
        let (s, _) = load_split(kb, sum, (0, dims.1), ch)?;
        let inv_m = kb.f64const(1.0 / bn.count as f64);
        let mean32 = mean_from_sum(kb, s, inv_m);
        let (ss, _) = load_split(kb, sq, (0, dims.1), ch)?;
        let var = kb.fmul(ss, inv_m);
        let var32 = kb.fdemote(var);
        kb.store(mean32, mean_o, ch)?;
        kb.store(var32, var_o, ch)?;
        apply_channel(kb, dims, ch, bufs, (x, g, b, y), (mean32, var), bn.eps)?;
        pool_after(kb, pool, &shape, ch, y)
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
/// c = a·k·Σ dy (f64 sums; k = 1/M, M the batch's values per channel); and when the
/// kernel computes the bias gradient of the layer before as a sibling, Σ dx into `bias`
/// while each value is stored, in the bias gradient's own order (`bias_sum`).
#[allow(clippy::too_many_arguments)]
fn input_gradient(
    kb: &mut Kb,
    dims: (usize, usize, usize),
    ch: Idx,
    (x, dy, dx, bias): (&Buf, &Buf, &Buf, Option<&Buf>),
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
    let mut value = |kb: &mut Kb, ty: types::Type, at: Idx| -> CgResult<Val> {
        let (d, gy) = centered_and_dy(kb, ty, at, (x, dy), mean)?;
        let av = kb.splat(ty, a);
        let bv = kb.splat(ty, bq);
        let cv = kb.splat(ty, cc);
        let t1 = kb.fmul(av, gy);
        let t2 = kb.fmul(bv, d);
        let r = kb.fsub(t1, t2);
        let r = kb.fsub(r, cv);
        kb.store(r, dx, at)?;
        Ok(r)
    };
    match bias {
        None => affine_channel(kb, dims, ch, &mut |kb, ty, at| value(kb, ty, at).map(drop)),
        Some(db) => {
            let sum = bias_sum(kb, dims, ch, &mut value)?;
            kb.store(sum, db, ch)
        }
    }
}

/// The output of the bias gradient a batch-norm gradient's kernel computes as a sibling
/// (fusion's `bias_grad_with_batchnorm_grad`): after batch norm's own three.
fn sibling_bias<'a>(cx: &LowerCtx, bufs: &'a KernelBufs) -> CgResult<Option<&'a Buf>> {
    match cx.kernel.siblings.as_slice() {
        [] => Ok(None),
        [s] if matches!(cx.graph.nodes[*s].op, Op::BiasGrad(_)) => Ok(Some(&bufs.outputs[3])),
        _ => err(format!("kernel `{}`: batch norm's gradient computes only a bias gradient beside it", cx.kernel.name)),
    }
}

fn lower_train_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormTrainGrad) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (n, c, inner) = dims;
    let (x, mean_i, var_i, g, dy) =
        (&bufs.inputs[0], &bufs.inputs[1], &bufs.inputs[2], &bufs.inputs[3], &bufs.inputs[4]);
    let (dx, dg, db) = (&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]);
    let bias = sibling_bias(cx, bufs)?;
    kb.for_items(c, |kb, ch| {
        let stats = stored_stats(kb, (mean_i, var_i), ch, bn.eps)?;
        let (dbeta, dgamma) = gradient_sums(kb, dims, ch, (x, dy), stats)?;
        let db32 = kb.fdemote(dbeta);
        let dg32 = kb.fdemote(dgamma);
        kb.store(dg32, dg, ch)?;
        kb.store(db32, db, ch)?;
        let gv = load_c(kb, g, ch)?;
        input_gradient(kb, dims, ch, (x, dy, dx, bias), stats, gv, (dbeta, dgamma), 1.0 / (n * inner) as f64)
    })
}

fn lower_grad_sums(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormGradSums) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let (x, mean_i, var_i, dy) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.inputs[2], &bufs.inputs[3]);
    let out = &bufs.outputs[0];
    kb.for_items(dims.1, |kb, ch| {
        let stats = stored_stats(kb, (mean_i, var_i), ch, bn.eps)?;
        let (dbeta, dgamma) = gradient_sums(kb, dims, ch, (x, dy), stats)?;
        store_split(kb, dgamma, out, (0, dims.1), ch)?;
        store_split(kb, dbeta, out, (1, dims.1), ch).map(|_| ())
    })
}

/// `lower_train_grad` after its sums (the global batch's, in f64).
fn lower_grad_input(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, bn: &BatchNormGradInput) -> CgResult<()> {
    let shape = cx.in_shape(0).to_vec();
    let dims = batchnorm_layout(&shape);
    let [x, mean_i, var_i, g, dy, sums] = [0, 1, 2, 3, 4, 5].map(|i| &bufs.inputs[i]);
    let (dx, dg, db) = (&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]);
    let bias = sibling_bias(cx, bufs)?;
    kb.for_items(dims.1, |kb, ch| {
        let stats = stored_stats(kb, (mean_i, var_i), ch, bn.eps)?;
        let (dgamma, dg32) = load_split(kb, sums, (0, dims.1), ch)?;
        let (dbeta, db32) = load_split(kb, sums, (1, dims.1), ch)?;
        kb.store(dg32, dg, ch)?;
        kb.store(db32, db, ch)?;
        let gv = load_c(kb, g, ch)?;
        input_gradient(kb, dims, ch, (x, dy, dx, bias), stats, gv, (dbeta, dgamma), 1.0 / bn.count as f64)
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
