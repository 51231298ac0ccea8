//! Reductions: the bias gradient, and row-wise kernels (softmax and its gradient, the
//! losses and their gradients). Sums that produce a loss accumulate in f64; every sum runs
//! in an order fixed by the shapes alone.

use super::{no_epilogue, Element, KernelBufs, LowerCtx, LowerRule, MicroTile, NodeCx, Storage, Work};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::{types, Convert, FloatCC, Idx, MathFn, Val};
use crate::ops::{BceWithLogits, BiasGrad, Mse, Softmax, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, SoftmaxGrad};

/// Σ buf[start .. start+len] in f32: four lanes, then the lanes, then the tail.
pub fn sum_span(kb: &mut Kb, buf: &Buf, start: Idx, len: usize) -> CgResult<Val> {
    let end4 = len / 4 * 4;
    let acc = kb.var(types::F32X4);
    let z = kb.f(types::F32X4, 0.0);
    kb.def_var(acc, z);
    kb.for_range(0, end4 as i64, 4, |kb, i| {
        let at = kb.add(start, i);
        let v = kb.load(types::F32X4, buf, at)?;
        let a = kb.use_var(acc);
        let s = kb.fadd(a, v);
        kb.def_var(acc, s);
        Ok(())
    })?;
    let a = kb.use_var(acc);
    let s = kb.lane_sum(a);
    let tot = kb.var(types::F32);
    kb.def_var(tot, s);
    kb.for_range(end4 as i64, len as i64, 1, |kb, i| {
        let at = kb.add(start, i);
        let v = kb.load(types::F32, buf, at)?;
        let t = kb.use_var(tot);
        let s = kb.fadd(t, v);
        kb.def_var(tot, s);
        Ok(())
    })?;
    Ok(kb.use_var(tot))
}

fn lower_bias_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (dy, db) = (&bufs.inputs[0], &bufs.outputs[0]);
    let (n, c) = (s[0], s[1]);
    let inner: usize = s[2..].iter().product();
    if inner == 1 {
        // db[f] = Σ_n dy[n, f], four features at a time.
        let end4 = c / 4 * 4;
        let col = |kb: &mut Kb, f: Idx, ty: types::Type| -> CgResult<()> {
            let acc = kb.var(ty);
            let z = kb.f(ty, 0.0);
            kb.def_var(acc, z);
            kb.for_range(0, n as i64, 1, |kb, b| {
                let at = kb.affine(0, &[(b, c as i64)]);
                let at = kb.add(at, f);
                let v = kb.load(ty, dy, at)?;
                let a = kb.use_var(acc);
                let s = kb.fadd(a, v);
                kb.def_var(acc, s);
                Ok(())
            })?;
            let a = kb.use_var(acc);
            kb.store(a, db, f)
        };
        kb.for_range(0, end4 as i64, 4, |kb, f| col(kb, f, types::F32X4))?;
        kb.for_range(end4 as i64, c as i64, 1, |kb, f| col(kb, f, types::F32))
    } else {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            let tot = kb.var(types::F32);
            let z = kb.f(types::F32, 0.0);
            kb.def_var(tot, z);
            kb.for_range(0, n as i64, 1, |kb, b| {
                let row = kb.affine(0, &[(b, (c * inner) as i64), (ch, inner as i64)]);
                let s = sum_span(kb, dy, row, inner)?;
                let t = kb.use_var(tot);
                let t = kb.fadd(t, s);
                kb.def_var(tot, t);
                Ok(())
            })?;
            let t = kb.use_var(tot);
            kb.store(t, db, ch)
        })
    }
}

/// max over a row (NaN-propagating) in f32.
fn row_max(kb: &mut Kb, buf: &Buf, row: Idx, k: usize) -> CgResult<Val> {
    let m = kb.var(types::F32);
    let first = kb.load(types::F32, buf, row)?;
    kb.def_var(m, first);
    kb.for_range(1, k as i64, 1, |kb, j| {
        let at = kb.add(row, j);
        let v = kb.load(types::F32, buf, at)?;
        let cur = kb.use_var(m);
        // v when v > cur or v is NaN (and cur is not NaN)
        let up = kb.fcmp(FloatCC::UnorderedOrGreaterThan, v, cur);
        let ok = kb.fcmp(FloatCC::Ordered, cur, cur);
        let take = kb.band(up, ok);
        let nm = kb.select(take, v, cur);
        kb.def_var(m, nm);
        Ok(())
    })?;
    Ok(kb.use_var(m))
}

/// softmax of a row into `out` (same row index); returns Σ exp(z − max) (f32) and max.
fn softmax_row(kb: &mut Kb, z: &Buf, out: Option<&Buf>, row: Idx, k: usize) -> CgResult<(Val, Val)> {
    let m = row_max(kb, z, row, k)?;
    let sum = kb.var(types::F32);
    let zero = kb.f(types::F32, 0.0);
    kb.def_var(sum, zero);
    kb.for_range(0, k as i64, 1, |kb, j| {
        let at = kb.add(row, j);
        let v = kb.load(types::F32, z, at)?;
        let d = kb.fsub(v, m);
        let e = kb.math(MathFn::Exp, d);
        if let Some(o) = out {
            kb.store(e, o, at)?;
        }
        let s = kb.use_var(sum);
        let s = kb.fadd(s, e);
        kb.def_var(sum, s);
        Ok(())
    })?;
    let s = kb.use_var(sum);
    if let Some(o) = out {
        let one = kb.f(types::F32, 1.0);
        let inv = kb.fdiv(one, s);
        kb.for_range(0, k as i64, 1, |kb, j| {
            let at = kb.add(row, j);
            let e = kb.load(types::F32, o, at)?;
            let p = kb.fmul(e, inv);
            kb.store(p, o, at)
        })?;
    }
    Ok((s, m))
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
    let acc = kb.var(types::F64);
    let z = kb.f64const(0.0);
    kb.def_var(acc, z);
    kb.for_range(0, n as i64, 1, |kb, i| {
        let t = f(kb, i)?;
        let a = kb.use_var(acc);
        let s = kb.fadd(a, t);
        kb.def_var(acc, s);
        Ok(())
    })?;
    let a = kb.use_var(acc);
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
    z: &Buf,
    t: &Buf,
    loss: Option<&Buf>,
    grad: Option<&Buf>,
) -> CgResult<()> {
    let inv = 1.0 / n as f32;
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
            kb.for_range(0, k as i64, 1, |kb, j| {
                let at = kb.add(row, j);
                let v = kb.load(types::F32, g, at)?;
                let v = kb.fmul(v, c);
                kb.store(v, g, at)
            })?;
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
        Some(out) => f64_sum(kb, n, 1.0 / n as f64, out, &mut row_term),
        None => kb.for_range(0, n as i64, 1, |kb, r| row_term(kb, r).map(|_| ())),
    }
}

impl LowerRule for BiasGrad {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Opaque
    }

    fn element(&self) -> Option<Element> {
        None
    }

    /// One item: the sums run over the batch.
    fn work(&self, _: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(1)
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        no_epilogue(cx, bufs)?;
        lower_bias_grad(kb, cx, bufs)
    }
}

impl LowerRule for Softmax {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Opaque
    }

    fn element(&self) -> Option<Element> {
        None
    }

    /// One row per item.
    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        no_epilogue(cx, bufs)?;
        lower_softmax(kb, cx, bufs)
    }
}

impl LowerRule for SoftmaxGrad {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Opaque
    }

    fn element(&self) -> Option<Element> {
        None
    }

    /// One row per item.
    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        no_epilogue(cx, bufs)?;
        lower_softmax_grad(kb, cx, bufs)
    }
}

impl LowerRule for SoftmaxCrossEntropy {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Opaque
    }

    fn element(&self) -> Option<Element> {
        None
    }

    /// One item: the loss sums over the batch in a fixed order.
    fn work(&self, _: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(1)
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        no_epilogue(cx, bufs)?;
        // With its gradient as a sibling (`fuse`'s loss_with_grad): both from one pass.
        if cx.kernel.siblings.is_empty() {
            lower_sce(kb, cx, bufs)
        } else {
            lower_loss_with_grad(kb, cx, bufs)
        }
    }
}

impl LowerRule for SoftmaxCrossEntropyGrad {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Opaque
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, _: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(1)
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        no_epilogue(cx, bufs)?;
        lower_sce_grad(kb, cx, bufs)
    }
}

impl LowerRule for BceWithLogits {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Opaque
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, _: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(1)
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        no_epilogue(cx, bufs)?;
        lower_bce(kb, cx, bufs)
    }
}

impl LowerRule for Mse {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Opaque
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, _: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(1)
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        no_epilogue(cx, bufs)?;
        lower_mse(kb, cx, bufs)
    }
}

/// Softmax cross-entropy and its gradient as one kernel (see `fuse`'s loss_with_grad).
fn lower_loss_with_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (n, k) = (s[0], s.get(1).copied().unwrap_or(1));
    sce_rows(kb, (n, k), &bufs.inputs[0], &bufs.inputs[1], Some(&bufs.outputs[0]), Some(&bufs.outputs[1]))
}

fn lower_softmax(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (n, k) = (s[0], s.get(1).copied().unwrap_or(1));
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    kb.for_items(n, |kb, r| {
        let row = kb.mul(r, k as i64);
        softmax_row(kb, i0, Some(o0), row, k).map(|_| ())
    })
}

fn lower_softmax_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (n, k) = (s[0], s.get(1).copied().unwrap_or(1));
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let dy = &bufs.inputs[1];
    kb.for_items(n, |kb, r| {
        let row = kb.mul(r, k as i64);
        let dot = kb.var(types::F32);
        let z = kb.f(types::F32, 0.0);
        kb.def_var(dot, z);
        kb.for_range(0, k as i64, 1, |kb, j| {
            let at = kb.add(row, j);
            let y = kb.load(types::F32, i0, at)?;
            let g = kb.load(types::F32, dy, at)?;
            let d = kb.use_var(dot);
            let d = kb.fma(y, g, d);
            kb.def_var(dot, d);
            Ok(())
        })?;
        let d = kb.use_var(dot);
        kb.for_range(0, k as i64, 1, |kb, j| {
            let at = kb.add(row, j);
            let y = kb.load(types::F32, i0, at)?;
            let g = kb.load(types::F32, dy, at)?;
            let t = kb.fsub(g, d);
            let v = kb.fmul(y, t);
            kb.store(v, o0, at)
        })
    })
}

fn lower_sce(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (n, k) = (s[0], s.get(1).copied().unwrap_or(1));
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    sce_rows(kb, (n, k), i0, &bufs.inputs[1], Some(o0), None)
}

fn lower_sce_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (n, k) = (s[0], s.get(1).copied().unwrap_or(1));
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    sce_rows(kb, (n, k), i0, &bufs.inputs[1], None, Some(o0))
}

fn lower_bce(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (n, k) = (s[0], s.get(1).copied().unwrap_or(1));
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let t = &bufs.inputs[1];
    let total = n * k;
    f64_sum(kb, total, 1.0 / total as f64, o0, &mut |kb, i| {
        let z = kb.load(types::F32, i0, i)?;
        let y = kb.load(types::F32, t, i)?;
        // max(z, 0) − z·t + log(1 + e^−|z|)
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
        Ok(kb.fadd(d, lg))
    })
}

fn lower_mse(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
    let s = cx.in_shape(0).to_vec();
    let (n, k) = (s[0], s.get(1).copied().unwrap_or(1));
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let t = &bufs.inputs[1];
    let total = n * k;
    f64_sum(kb, total, 1.0 / total as f64, o0, &mut |kb, i| {
        let a = kb.load(types::F32, i0, i)?;
        let b = kb.load(types::F32, t, i)?;
        let a = kb.fpromote(a);
        let b = kb.fpromote(b);
        let d = kb.fsub(a, b);
        Ok(kb.fmul(d, d))
    })
}
