//! Pooling and maxout: max with the first maximum winning (strict `>`) and NaN winning,
//! matching the interpreter; gradients recompute the winner and add into a zeroed input
//! gradient (overlapping windows add). One work item per sample.
//!
//! An epilogue is applied to each stored output; for the gradients (which scatter into a
//! zeroed input gradient) to each contribution, which fusion allows only where windows do
//! not overlap (`Storage::Scatter`), so each element gets at most one.

use super::epilogue::{self, At, EpiOp};
use super::{Element, KernelBufs, LowerCtx, LowerRule, MicroTile, NodeCx, Storage, Work};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::{types, Convert, FloatCC, Idx, Val};
use crate::ops::{
    AvgPool, AvgPoolGrad, GlobalAvgPool, GlobalAvgPoolGrad, MaxPool, MaxPoolGrad, MaxoutGrad, MaxoutReduce, PoolGeom,
};

/// Over candidates (value, offset) in order: the winning value and its offset.
fn first_max(kb: &mut Kb, cands: &[(Val, i64)]) -> (Val, Val) {
    let (mut best, off0) = cands[0];
    let mut best_off = kb.iconst(off0);
    for &(v, off) in &cands[1..] {
        // Take v when it is greater or NaN, unless the best so far is NaN.
        let up = kb.fcmp(FloatCC::UnorderedOrGreaterThan, v, best);
        let ordered = kb.fcmp(FloatCC::Ordered, best, best);
        let take = kb.band(up, ordered);
        best = kb.select(take, v, best);
        let o = kb.iconst(off);
        best_off = kb.select(take, o, best_off);
    }
    (best, best_off)
}

/// The same on four lanes at once, without branches: the winning values and their
/// offsets (i32x4).
fn first_max4(kb: &mut Kb, cands: &[(Val, i64)]) -> (Val, Val) {
    let (mut best, off0) = cands[0];
    let splat_i = |kb: &mut Kb, c: i64| kb.iconst_of(types::I32X4, c);
    let mut best_off = splat_i(kb, off0);
    for &(v, off) in &cands[1..] {
        let up = kb.fcmp(FloatCC::UnorderedOrGreaterThan, v, best);
        let ordered = kb.fcmp(FloatCC::Ordered, best, best);
        let take = kb.band(up, ordered);
        best = kb.select(take, v, best);
        let o = splat_i(kb, off);
        best_off = kb.select(take, o, best_off);
    }
    (best, best_off)
}

/// Vectorized max pooling over one output row: window maxima are computed at four
/// consecutive input columns at a time and every stride-th lane is kept (needs a stride
/// that divides 4). `per_output(kb, ox, value, offset)` receives each output column with
/// its window's winner (value, and offset in the window as `ky·W + kx`, an i32).
#[allow(clippy::too_many_arguments)]
fn max_row(
    kb: &mut Kb,
    x: &Buf,
    row_base: Idx,
    w: usize,
    wo: usize,
    geom: &PoolGeom,
    offs: &[i64],
    per_output: &mut dyn FnMut(&mut Kb, Idx, Val, Val) -> CgResult<()>,
) -> CgResult<()> {
    let sw = geom.stride[1];
    let kw = geom.size[1];
    // Vector chunks: 4 window starts x0..x0+3, all loads inside the row block.
    let last_needed = (wo - 1) * sw;
    let vec_end = if w >= kw + 3 { ((w - kw - 3) / 4 + 1).min(last_needed / 4 + 1) * 4 } else { 0 };
    kb.for_range(0, vec_end as i64, 4, |kb, x0| {
        let base = kb.add(row_base, x0);
        let cands =
            offs.iter().map(|&o| Ok((kb.load(types::F32X4, x, base.plus(o))?, o))).collect::<CgResult<Vec<_>>>()?;
        let (best, off) = first_max4(kb, &cands);
        for l in (0..4).step_by(sw) {
            // The output whose window starts at x0 + l: ox = (x0 + l) / sw.
            // x0 is a multiple of 4, so of sw: (x0 + l) / sw = x0 / sw + l / sw.
            let ox = match x0.as_value() {
                Some(v) => {
                    let q = kb.ushr_imm(v, sw.trailing_zeros() as i64);
                    kb.idx(q)?.plus(l as i64 / sw as i64)
                }
                None => Idx::constant((x0.off + l as i64) / sw as i64),
            };
            let v = kb.extractlane(best, l as u8);
            let o = kb.extractlane(off, l as u8);
            per_output(kb, ox, v, o)?;
        }
        Ok(())
    })?;
    // The rest, one output at a time.
    let first_scalar = vec_end.div_ceil(sw);
    kb.for_range(first_scalar as i64, wo as i64, 1, |kb, ox| {
        let xs = kb.mul(ox, sw as i64);
        let base = kb.add(row_base, xs);
        let cands =
            offs.iter().map(|&o| Ok((kb.load(types::F32, x, base.plus(o))?, o))).collect::<CgResult<Vec<_>>>()?;
        let (v, off) = first_max(kb, &cands);
        let off = kb.convert(Convert::Ireduce, types::I32, off);
        per_output(kb, ox, v, off)
    })
}

/// Loop over (item, channel, oy, ox) of a pooling node: `f(kb, window base in x, output
/// index)`, with x of shape [N, C, H, W] and outputs [N, C, Ho, Wo].
fn windows(
    kb: &mut Kb,
    x_shape: &[usize],
    geom: &PoolGeom,
    f: &mut dyn FnMut(&mut Kb, Idx, Idx) -> CgResult<()>,
) -> CgResult<()> {
    let (n, c, h, w) = (x_shape[0], x_shape[1], x_shape[2], x_shape[3]);
    let [ho, wo] = geom.out_hw(h, w).expect("checked shapes");
    let [sh, sw] = geom.stride;
    kb.for_items(n, |kb, item| {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            kb.for_range(0, ho as i64, 1, |kb, oy| {
                kb.for_range(0, wo as i64, 1, |kb, ox| {
                    let xb = kb.affine(
                        0,
                        &[(item, (c * h * w) as i64), (ch, (h * w) as i64), (oy, (sh * w) as i64), (ox, sw as i64)],
                    );
                    let yo =
                        kb.affine(0, &[(item, (c * ho * wo) as i64), (ch, (ho * wo) as i64), (oy, wo as i64), (ox, 1)]);
                    f(kb, xb, yo)
                })
            })
        })
    })
}

/// Loop over (item, channel, output row): `f(kb, first input row's start, output row's
/// start, output width)`.
fn rows(
    kb: &mut Kb,
    x_shape: &[usize],
    geom: &PoolGeom,
    f: &mut dyn FnMut(&mut Kb, Idx, Idx, usize) -> CgResult<()>,
) -> CgResult<()> {
    let (n, c, h, w) = (x_shape[0], x_shape[1], x_shape[2], x_shape[3]);
    let [ho, wo] = geom.out_hw(h, w).expect("checked shapes");
    let sh = geom.stride[0];
    kb.for_items(n, |kb, item| {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            kb.for_range(0, ho as i64, 1, |kb, oy| {
                let xrow = kb.affine(0, &[(item, (c * h * w) as i64), (ch, (h * w) as i64), (oy, (sh * w) as i64)]);
                let yrow = kb.affine(0, &[(item, (c * ho * wo) as i64), (ch, (ho * wo) as i64), (oy, wo as i64)]);
                f(kb, xrow, yrow, wo)
            })
        })
    })
}

fn window_offsets(geom: &PoolGeom, w: usize) -> Vec<i64> {
    let mut v = vec![];
    for ky in 0..geom.size[0] {
        for kx in 0..geom.size[1] {
            v.push((ky * w + kx) as i64);
        }
    }
    v
}

/// dx[win + off] += epi(g): a window's gradient `g` goes to its winner (offset `off` in the
/// window, whose range follows from the candidates' offsets; holding the input value `best`, which the epilogue need not reload).
fn add_to_winner(
    kb: &mut Kb,
    (x, dx): (&Buf, &Buf),
    win: Idx,
    off: Val,
    g: Val,
    best: Val,
    epi: &[EpiOp],
) -> CgResult<()> {
    let off = kb.idx(off)?;
    let at = kb.add(win, off);
    let g = epilogue::apply_knowing(kb, epi, g, At::flat(at), Some((x, best)))?;
    let old = kb.load(types::F32, dx, at)?;
    let s = kb.fadd(old, g);
    kb.store(s, dx, at)
}

/// Whether no two windows share an input element.
fn disjoint(g: &PoolGeom) -> bool {
    g.stride[0] >= g.size[0] && g.stride[1] >= g.size[1]
}

/// Whether the vectorized row form applies: windows four input columns at a time, every
/// stride-th lane kept.
fn by_rows(g: &PoolGeom) -> bool {
    4 % g.stride[1] == 0
}

impl LowerRule for MaxPool {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Pointwise
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        if by_rows(&self.geom) {
            lower_maxpool_rows(kb, cx, bufs, self)
        } else {
            lower_maxpool_windows(kb, cx, bufs, self)
        }
    }
}

impl LowerRule for MaxPoolGrad {
    fn storage(&self, _: &NodeCx) -> Storage {
        if disjoint(&self.geom) {
            Storage::Scatter
        } else {
            Storage::Opaque
        }
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        if by_rows(&self.geom) {
            lower_maxpool_grad_rows(kb, cx, bufs, self)
        } else {
            lower_maxpool_grad_windows(kb, cx, bufs, self)
        }
    }
}

impl LowerRule for AvgPool {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Pointwise
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        lower_avgpool(kb, cx, bufs, self)
    }
}

impl LowerRule for AvgPoolGrad {
    fn storage(&self, _: &NodeCx) -> Storage {
        if disjoint(&self.geom) {
            Storage::Scatter
        } else {
            Storage::Opaque
        }
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        lower_avgpool_grad(kb, cx, bufs, self)
    }
}

impl LowerRule for GlobalAvgPool {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Pointwise
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        lower_global_avgpool(kb, cx, bufs, self)
    }
}

impl LowerRule for GlobalAvgPoolGrad {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Pointwise
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        lower_global_avgpool_grad(kb, cx, bufs, self)
    }
}

impl LowerRule for MaxoutReduce {
    fn storage(&self, _: &NodeCx) -> Storage {
        Storage::Pointwise
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        lower_maxout(kb, cx, bufs, self)
    }
}

impl LowerRule for MaxoutGrad {
    fn storage(&self, _: &NodeCx) -> Storage {
        // Each input element belongs to one unit's pieces.
        Storage::Scatter
    }

    fn element(&self) -> Option<Element> {
        None
    }

    fn work(&self, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
        Work::items(cx.out_shape(0)[0])
    }

    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()> {
        lower_maxout_grad(kb, cx, bufs, self)
    }
}

fn lower_maxpool_rows(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &MaxPool) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let xs = cx.in_shape(0).to_vec();
    let offs = window_offsets(&p.geom, xs[3]);
    rows(kb, &xs, &p.geom, &mut |kb, xrow, yrow, wo| {
        max_row(kb, i0, xrow, xs[3], wo, &p.geom, &offs, &mut |kb, ox, v, _| {
            let at = kb.add(yrow, ox);
            let v = out(kb, v, at)?;
            kb.store(v, o0, at)
        })
    })
}

fn lower_maxpool_grad_rows(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &MaxPoolGrad) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let xs = cx.in_shape(0).to_vec();
    let per: usize = xs[1..].iter().product();
    let offs = window_offsets(&p.geom, xs[3]);
    let dy = &bufs.inputs[1];
    kb.for_items(xs[0], |kb, item| {
        let start = kb.mul(item, per as i64);
        kb.zero(o0, start, per)
    })?;
    let sw = p.geom.stride[1] as i64;
    rows(kb, &xs, &p.geom, &mut |kb, xrow, yrow, wo| {
        max_row(kb, i0, xrow, xs[3], wo, &p.geom, &offs, &mut |kb, ox, best, off| {
            let off = kb.convert(Convert::Uextend, types::I64, off);
            let xo = kb.mul(ox, sw);
            let win = kb.add(xrow, xo);
            let yo = kb.add(yrow, ox);
            let g = kb.load(types::F32, dy, yo)?;
            add_to_winner(kb, (i0, o0), win, off, g, best, epi)
        })
    })
}

fn lower_maxpool_windows(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &MaxPool) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let xs = cx.in_shape(0).to_vec();
    let offs = window_offsets(&p.geom, xs[3]);
    windows(kb, &xs, &p.geom, &mut |kb, xb, yo| {
        let cands =
            offs.iter().map(|&o| Ok((kb.load(types::F32, i0, xb.plus(o))?, o))).collect::<CgResult<Vec<_>>>()?;
        let (best, _) = first_max(kb, &cands);
        let best = out(kb, best, yo)?;
        kb.store(best, o0, yo)
    })
}

fn lower_maxpool_grad_windows(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &MaxPoolGrad) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let xs = cx.in_shape(0).to_vec();
    let per: usize = xs[1..].iter().product();
    let offs = window_offsets(&p.geom, xs[3]);
    let dy = &bufs.inputs[1];
    kb.for_items(xs[0], |kb, item| {
        let start = kb.mul(item, per as i64);
        kb.zero(o0, start, per)
    })?;
    windows(kb, &xs, &p.geom, &mut |kb, xb, yo| {
        let cands =
            offs.iter().map(|&o| Ok((kb.load(types::F32, i0, xb.plus(o))?, o))).collect::<CgResult<Vec<_>>>()?;
        let (best, off) = first_max(kb, &cands);
        let g = kb.load(types::F32, dy, yo)?;
        add_to_winner(kb, (i0, o0), xb, off, g, best, epi)
    })
}

fn lower_avgpool(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &AvgPool) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let xs = cx.in_shape(0).to_vec();
    let offs = window_offsets(&p.geom, xs[3]);
    let inv = 1.0 / offs.len() as f32;
    windows(kb, &xs, &p.geom, &mut |kb, xb, yo| {
        let mut s = kb.load(types::F32, i0, xb.plus(offs[0]))?;
        for &o in &offs[1..] {
            let v = kb.load(types::F32, i0, xb.plus(o))?;
            s = kb.fadd(s, v);
        }
        let k = kb.f(types::F32, inv);
        let y = kb.fmul(s, k);
        let y = out(kb, y, yo)?;
        kb.store(y, o0, yo)
    })
}

fn lower_avgpool_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &AvgPoolGrad) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let ys = cx.in_shape(0).to_vec();
    let xs = cx.out_shape(0).to_vec();
    let per: usize = xs[1..].iter().product();
    let offs = window_offsets(&p.geom, xs[3]);
    let inv = 1.0 / offs.len() as f32;
    kb.for_items(ys[0], |kb, item| {
        let start = kb.mul(item, per as i64);
        kb.zero(o0, start, per)
    })?;
    windows(kb, &xs, &p.geom, &mut |kb, xb, yo| {
        let g = kb.load(types::F32, i0, yo)?;
        let k = kb.f(types::F32, inv);
        let g = kb.fmul(g, k);
        for &o in &offs {
            let gi = out(kb, g, xb.plus(o))?;
            let old = kb.load(types::F32, o0, xb.plus(o))?;
            let s = kb.fadd(old, gi);
            kb.store(s, o0, xb.plus(o))?;
        }
        Ok(())
    })
}

fn lower_global_avgpool(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &GlobalAvgPool) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let xs = cx.in_shape(0).to_vec();
    let (c, hw) = (xs[1], xs[2] * xs[3]);
    let inv = 1.0 / hw as f32;
    kb.for_items(xs[0], |kb, item| {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            let row = kb.affine(0, &[(item, (c * hw) as i64), (ch, hw as i64)]);
            let s = super::reduce::sum_span(kb, i0, row, hw)?;
            let k = kb.f(types::F32, inv);
            let y = kb.fmul(s, k);
            let at = kb.affine(0, &[(item, c as i64), (ch, 1)]);
            let y = out(kb, y, at)?;
            kb.store(y, o0, at)
        })
    })
}

fn lower_global_avgpool_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &GlobalAvgPoolGrad) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let xs = cx.out_shape(0).to_vec();
    let (c, hw) = (xs[1], xs[2] * xs[3]);
    let inv = 1.0 / hw as f32;
    kb.for_items(xs[0], |kb, item| {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            let at = kb.affine(0, &[(item, c as i64), (ch, 1)]);
            let g = kb.load(types::F32, i0, at)?;
            let k = kb.f(types::F32, inv);
            let g = kb.fmul(g, k);
            let row = kb.affine(0, &[(item, (c * hw) as i64), (ch, hw as i64)]);
            kb.for_lanes(0, hw as i64, |kb, i, ty| {
                let a = kb.add(row, i);
                let gv = kb.splat(ty, g);
                let gv = out(kb, gv, a)?;
                kb.store(gv, o0, a)
            })
        })
    })
}

fn lower_maxout(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, m: &MaxoutReduce) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let zs = cx.in_shape(0).to_vec();
    let (n, units, k) = (zs[0], zs[1] / m.pieces, m.pieces);
    kb.for_items(n, |kb, item| {
        kb.for_range(0, units as i64, 1, |kb, u| {
            let zb = kb.affine(0, &[(item, (units * k) as i64), (u, k as i64)]);
            let cands =
                (0..k as i64).map(|j| Ok((kb.load(types::F32, i0, zb.plus(j))?, j))).collect::<CgResult<Vec<_>>>()?;
            let (best, _) = first_max(kb, &cands);
            let at = kb.affine(0, &[(item, units as i64), (u, 1)]);
            let best = out(kb, best, at)?;
            kb.store(best, o0, at)
        })
    })
}

fn lower_maxout_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, m: &MaxoutGrad) -> CgResult<()> {
    let (i0, o0) = (&bufs.inputs[0], &bufs.outputs[0]);
    let epi = &bufs.epilogue;
    let out = |kb: &mut Kb, v: Val, at: Idx| -> CgResult<Val> { epilogue::apply(kb, epi, v, At::flat(at)) };
    let zs = cx.in_shape(0).to_vec();
    let (n, units, k) = (zs[0], zs[1] / m.pieces, m.pieces);
    let dy = &bufs.inputs[1];
    kb.for_items(n, |kb, item| {
        let start = kb.mul(item, (units * k) as i64);
        kb.zero(o0, start, units * k)?;
        kb.for_range(0, units as i64, 1, |kb, u| {
            let zb = kb.affine(0, &[(item, (units * k) as i64), (u, k as i64)]);
            let cands =
                (0..k as i64).map(|j| Ok((kb.load(types::F32, i0, zb.plus(j))?, j))).collect::<CgResult<Vec<_>>>()?;
            let (_, off) = first_max(kb, &cands);
            let off = kb.idx(off)?;
            let at = kb.add(zb, off);
            let yi = kb.affine(0, &[(item, units as i64), (u, 1)]);
            let g = kb.load(types::F32, dy, yi)?;
            let g = out(kb, g, at)?;
            kb.store(g, o0, at)
        })
    })
}
