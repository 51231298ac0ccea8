//! Pooling and maxout: max with the first maximum winning (strict `>`) and NaN winning,
//! matching the interpreter; gradients recompute the winner and add into a zeroed input
//! gradient (overlapping windows add) — except 2×2 windows at stride 2, which tile the
//! input, so their gradient writes every element once (`tiles_2x2`). One work item per
//! sample.
//!
//! An epilogue is applied to each stored output; for the gradients (which scatter into a
//! zeroed input gradient) to each contribution, which fusion allows only where windows do
//! not overlap (`Storage::Scatter`), so each element gets at most one.

use super::epilogue::{self, At, EpiOp};
use super::{image_start, lower_rules, no_element, per_sample, pointwise, KernelBufs, LowerCtx, NodeCx, Storage};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::{err, CgResult};
use crate::codegen::loops::{types, Convert, FloatCC, Idx, Type, Val};
use crate::ops::{avg_divisor, Op};
use crate::ops::{
    AvgPool, AvgPoolGrad, GlobalAvgPool, GlobalAvgPoolGrad, GlobalMaxPool, GlobalMaxPoolGrad, MaxPool, MaxPoolGrad,
    MaxoutGrad, MaxoutReduce, PoolGeom,
};

/// The first maximum of `vals` (strict `>`; NaN wins and stays) and, for each value after
/// the first, the mask of where it took over from the ones before it — without branches,
/// on scalars or lanes alike. The one statement of max pooling's rule.
fn running_max(kb: &mut Kb, vals: &[Val]) -> (Val, Vec<Val>) {
    let mut best = vals[0];
    let mut takes = vec![];
    for &v in &vals[1..] {
        // Take v when it is greater or NaN, unless the best so far is NaN.
        let up = kb.fcmp(FloatCC::UnorderedOrGreaterThan, v, best);
        let ordered = kb.fcmp(FloatCC::Ordered, best, best);
        let take = kb.band(up, ordered);
        best = kb.select(take, v, best);
        takes.push(take);
    }
    (best, takes)
}

/// Over candidates (value, offset) in order: the winning value ([`running_max`]) and its
/// offset, as a value of `off_ty` (i64 for scalar candidates, i32x4 for four lanes at once).
fn first_max(kb: &mut Kb, cands: &[(Val, i64)], off_ty: Type) -> (Val, Val) {
    let vals: Vec<Val> = cands.iter().map(|c| c.0).collect();
    let (best, takes) = running_max(kb, &vals);
    let mut best_off = kb.iconst_of(off_ty, cands[0].1);
    for (&take, &(_, off)) in takes.iter().zip(&cands[1..]) {
        let o = kb.iconst_of(off_ty, off);
        best_off = kb.select(take, o, best_off);
    }
    (best, best_off)
}

/// Each candidate `buf[base + off]` of a window, as `ty`, with its offset.
fn candidates(kb: &mut Kb, ty: Type, buf: &Buf, base: Idx, offs: &[i64]) -> CgResult<Vec<(Val, i64)>> {
    offs.iter().map(|&o| Ok((kb.load(ty, buf, base.plus(o))?, o))).collect()
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
        let cands = candidates(kb, types::F32X4, x, base, offs)?;
        let (best, off) = first_max(kb, &cands, types::I32X4);
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
        let cands = candidates(kb, types::F32, x, base, offs)?;
        let (v, off) = first_max(kb, &cands, types::I64);
        let off = kb.convert(Convert::Ireduce, types::I32, off);
        per_output(kb, ox, v, off)
    })
}

/// Runs of consecutive outputs on one axis whose windows keep the same kernel taps (the
/// ones inside the input): (first output, end, taps). Without padding, one run.
fn tap_runs(geom: &PoolGeom, axis: usize, out: usize, n: usize) -> Vec<(usize, usize, std::ops::Range<usize>)> {
    let mut runs: Vec<(usize, usize, std::ops::Range<usize>)> = vec![];
    for o in 0..out {
        let taps = geom.taps(axis, o, n);
        match runs.last_mut() {
            Some(run) if run.2 == taps => run.1 = o + 1,
            _ => runs.push((o, o + 1, taps)),
        }
    }
    runs
}

/// What is done with a window: (kb, its origin in x, the output index, its taps' offsets).
type AtWindow<'a> = dyn FnMut(&mut Kb, Idx, Idx, &[i64]) -> CgResult<()> + 'a;

/// Loop over (sample, channel, oy, ox) of a pooling node, on the planes `samples` covers:
/// `f(kb, window origin in x, output index, the offsets from the origin of the window's
/// positions inside x)`, with x of shape [N, C, H, W] and outputs [N, C, Ho, Wo]. A padded window's origin lies up and
/// left of the input by the padding; its offsets, row-major, are fixed at compile time for
/// each run of rows and columns (a border's windows lose their outside taps), so no
/// access is tested at run time.
fn windows(kb: &mut Kb, x_shape: &[usize], geom: &PoolGeom, samples: Samples, f: &mut AtWindow) -> CgResult<()> {
    let (n, c, h, w) = (x_shape[0], x_shape[1], x_shape[2], x_shape[3]);
    let [ho, wo] = geom.out_hw(h, w).expect("checked shapes");
    let [sh, sw] = geom.stride;
    let origin = -((geom.padding[0] * w + geom.padding[1]) as i64);
    let (row_runs, col_runs) = (tap_runs(geom, 0, ho, h), tap_runs(geom, 1, wo, w));
    samples.planes(kb, (n, c), (h * w, ho * wo), &mut |kb, x_at, y_at| {
        for (oy_lo, oy_hi, rows) in &row_runs {
            for (ox_lo, ox_hi, cols) in &col_runs {
                let offs: Vec<i64> =
                    rows.clone().flat_map(|ky| cols.clone().map(move |kx| (ky * w + kx) as i64)).collect();
                kb.for_range(*oy_lo as i64, *oy_hi as i64, 1, |kb, oy| {
                    kb.for_range(*ox_lo as i64, *ox_hi as i64, 1, |kb, ox| {
                        let xb = kb.affine(0, &[(x_at, 1), (oy, (sh * w) as i64), (ox, sw as i64)]).plus(origin);
                        let yo = kb.affine(0, &[(y_at, 1), (oy, wo as i64), (ox, 1)]);
                        f(kb, xb, yo, &offs)
                    })
                })?;
            }
        }
        Ok(())
    })
}

/// Loop over (sample, channel, output row) of the planes `samples` covers: `f(kb, first
/// input row's start, output row's start, output width)`.
fn rows(
    kb: &mut Kb,
    x_shape: &[usize],
    geom: &PoolGeom,
    samples: Samples,
    f: &mut dyn FnMut(&mut Kb, Idx, Idx, usize) -> CgResult<()>,
) -> CgResult<()> {
    let (n, c, h, w) = (x_shape[0], x_shape[1], x_shape[2], x_shape[3]);
    let [ho, wo] = geom.out_hw(h, w).expect("checked shapes");
    let sh = geom.stride[0];
    samples.planes(kb, (n, c), (h * w, ho * wo), &mut |kb, x_at, y_at| {
        kb.for_range(0, ho as i64, 1, |kb, oy| {
            let xrow = kb.affine(0, &[(x_at, 1), (oy, (sh * w) as i64)]);
            let yrow = kb.affine(0, &[(y_at, 1), (oy, wo as i64)]);
            f(kb, xrow, yrow, wo)
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

lower_rules! {
    MaxPool => pointwise, no_element, per_sample, lower_maxpool;
    MaxPoolGrad => |p: &MaxPoolGrad, _: &NodeCx| scatter_if_disjoint(&p.geom), no_element, per_sample, lower_maxpool_grad;
    AvgPool => pointwise, no_element, per_sample, lower_avgpool;
    AvgPoolGrad => |p: &AvgPoolGrad, _: &NodeCx| scatter_if_disjoint(&p.geom), no_element, per_sample, lower_avgpool_grad;
    GlobalAvgPool => pointwise, no_element, per_sample, lower_global_avgpool;
    GlobalAvgPoolGrad => pointwise, no_element, per_sample, lower_global_avgpool_grad;
    GlobalMaxPool => pointwise, no_element, per_sample, lower_global_maxpool;
    // One winner per plane: each element gets at most one contribution.
    GlobalMaxPoolGrad => |_: &GlobalMaxPoolGrad, _: &NodeCx| Storage::Scatter, no_element, per_sample, lower_global_maxpool_grad;
    MaxoutReduce => pointwise, no_element, per_sample, lower_maxout;
    // Each input element belongs to one unit's pieces: contributions never meet.
    MaxoutGrad => |_: &MaxoutGrad, _: &NodeCx| Storage::Scatter, no_element, per_sample, lower_maxout_grad;
}

/// A pooling gradient scatters: with disjoint windows each element gets at most one
/// contribution (an epilogue may apply to each); overlapping ones add several.
fn scatter_if_disjoint(g: &PoolGeom) -> Storage {
    if g.stride[0] >= g.size[0] && g.stride[1] >= g.size[1] {
        Storage::Scatter
    } else {
        Storage::Opaque
    }
}

/// Whether the vectorized row form applies: windows four input columns at a time, every
/// stride-th lane kept (unpadded windows only: a padded border has fewer taps).
fn by_rows(g: &PoolGeom) -> bool {
    4 % g.stride[1] == 0 && g.padding == [0, 0]
}

/// What a pooling kernel writes: its first input and output, and the epilogue applied to
/// each stored value (forward) or contribution (gradients).
struct Io<'a> {
    x: &'a Buf,
    y: &'a Buf,
    epi: &'a [EpiOp],
}

impl<'a> Io<'a> {
    fn of(bufs: &'a KernelBufs) -> Io<'a> {
        Io { x: &bufs.inputs[0], y: &bufs.outputs[0], epi: &bufs.epilogue }
    }

    /// y[at] = epi(v).
    fn put(&self, kb: &mut Kb, v: Val, at: Idx) -> CgResult<()> {
        let v = epilogue::apply(kb, self.epi, v, At::flat(at))?;
        kb.store(v, self.y, at)
    }

    /// y[at] += epi(v).
    fn add(&self, kb: &mut Kb, v: Val, at: Idx) -> CgResult<()> {
        let v = epilogue::apply(kb, self.epi, v, At::flat(at))?;
        let old = kb.load(types::F32, self.y, at)?;
        let s = kb.fadd(old, v);
        kb.store(s, self.y, at)
    }
}

/// What is done with a window's (or maxout unit's) winner: (kb, the window's start in the
/// input, the output index, the winning value, its offset in the window as an i64).
type AtWinner<'a> = dyn FnMut(&mut Kb, Idx, Idx, Val, Val) -> CgResult<()> + 'a;

/// A gradient scatters into its output, zeroed first (`per` floats per sample).
fn zero_per_sample(kb: &mut Kb, y: &Buf, n: usize, per: usize) -> CgResult<()> {
    kb.for_items(n, |kb, item| {
        let start = kb.mul(item, per as i64);
        kb.zero(y, start, per)
    })
}

/// Every window's maximum, for max pooling and its gradient alike: `at_winner(kb, window
/// start in x, output index, the winning value, its offset in the window as an i64)`.
/// Vectorized over rows (four window starts per f32x4) where the stride divides 4.
fn each_window_max(
    kb: &mut Kb,
    x: &Buf,
    xs: &[usize],
    geom: &PoolGeom,
    samples: Samples,
    at_winner: &mut AtWinner,
) -> CgResult<()> {
    if !by_rows(geom) {
        return windows(kb, xs, geom, samples, &mut |kb, xb, yo, offs| {
            let cands = candidates(kb, types::F32, x, xb, offs)?;
            let (best, off) = first_max(kb, &cands, types::I64);
            at_winner(kb, xb, yo, best, off)
        });
    }
    let offs = window_offsets(geom, xs[3]);
    let sw = geom.stride[1] as i64;
    rows(kb, xs, geom, samples, &mut |kb, xrow, yrow, wo| {
        max_row(kb, x, xrow, xs[3], wo, geom, &offs, &mut |kb, ox, best, off| {
            let off = kb.convert(Convert::Uextend, types::I64, off);
            let xo = kb.mul(ox, sw);
            let win = kb.add(xrow, xo);
            let yo = kb.add(yrow, ox);
            at_winner(kb, win, yo, best, off)
        })
    })
}

/// 2×2 windows at stride 2, unpadded — nearly every CNN's pooling: the windows tile the
/// input. Four outputs are computed per f32x4, from two vectors of each input row split
/// into even and odd columns (the general row form keeps half its lanes), and the
/// gradient writes each input element once — the winner's contribution, zero elsewhere —
/// instead of zeroing the whole input gradient first and adding into it.
fn tiles_2x2(g: &PoolGeom) -> bool {
    g.size == [2, 2] && g.stride == [2, 2] && g.padding == [0, 0]
}

/// A 2×2 window (or four neighbouring ones, as the lanes of f32x4 values): its four
/// inputs in window order (top left, top right, bottom left, bottom right), where its top
/// left input is in x, and its output's index.
struct Quad {
    ty: Type,
    x: [Val; 4],
    xat: Idx,
    yat: Idx,
}

const EVEN: [u8; 4] = [0, 2, 4, 6];
const ODD: [u8; 4] = [1, 3, 5, 7];

/// `f` on every 2×2 window of a `tiles_2x2` pooling over x: four at a time; the rest of a
/// row as four more that overlap the last ones, or one at a time on rows of fewer than
/// four outputs.
fn each_quad(
    kb: &mut Kb,
    x: &Buf,
    xs: &[usize],
    geom: &PoolGeom,
    samples: Samples,
    f: &mut dyn FnMut(&mut Kb, &Quad) -> CgResult<()>,
) -> CgResult<()> {
    let w = xs[3] as i64;
    rows(kb, xs, geom, samples, &mut |kb, xrow, yrow, wo| {
        let vec_end = (wo / 4 * 4) as i64;
        let mut four = |kb: &mut Kb, ox: Idx| -> CgResult<()> {
            let xo = kb.mul(ox, 2);
            let xat = kb.add(xrow, xo);
            let mut halves = [None; 4];
            for (i, h) in halves.iter_mut().enumerate() {
                let at = xat.plus((i as i64 / 2) * w + (i as i64 % 2) * 4);
                *h = Some(kb.load(types::F32X4, x, at)?);
            }
            let [a0, b0, a1, b1] = halves.map(|h| h.expect("loaded"));
            let x =
                [kb.shuffle(a0, b0, EVEN), kb.shuffle(a0, b0, ODD), kb.shuffle(a1, b1, EVEN), kb.shuffle(a1, b1, ODD)];
            let yat = kb.add(yrow, ox);
            f(kb, &Quad { ty: types::F32X4, x, xat, yat })
        };
        kb.for_range(0, vec_end, 4, |kb, ox| four(kb, ox))?;
        if wo > 4 && wo % 4 != 0 {
            // The rest of the row as four windows ending at its last one, overlapping
            // windows already done: `f` writes each of its outputs from its own window
            // alone, and a kernel's outputs never share memory with its inputs (`plan`:
            // lifetimes include the kernel, and `plan::verify` rejects live allocations
            // that overlap), so the overlap is written again with the same bits. Scalar
            // windows cost about four times as much: on a 14×14 plane they were three of
            // every seven.
            return four(kb, Idx::constant(wo as i64 - 4));
        }
        kb.for_range(vec_end, wo as i64, 1, |kb, ox| {
            let xo = kb.mul(ox, 2);
            let xat = kb.add(xrow, xo);
            let mut vals = [None; 4];
            for (i, v) in vals.iter_mut().enumerate() {
                *v = Some(kb.load(types::F32, x, xat.plus((i as i64 / 2) * w + i as i64 % 2))?);
            }
            let yat = kb.add(yrow, ox);
            f(kb, &Quad { ty: types::F32, x: vals.map(|v| v.expect("loaded")), xat, yat })
        })
    })
}

/// Whether a gradient's epilogue reads nothing but the pooling input at the winner (the
/// derivative of the activation before the pooling), which the 2×2 form has in hand.
fn needs_only_input(epi: &[EpiOp], x: &Buf) -> bool {
    epi.iter().all(|op| match op {
        EpiOp::Act(_) => true,
        EpiOp::ActGrad(_, o) => o.region == x.region && o.offset == x.offset,
        _ => false,
    })
}

fn lower_maxpool(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &MaxPool) -> CgResult<()> {
    maxpool(kb, &Io::of(bufs), cx.in_shape(0), &p.geom, Samples::Items)
}

fn maxpool(kb: &mut Kb, io: &Io, xs: &[usize], geom: &PoolGeom, samples: Samples) -> CgResult<()> {
    if tiles_2x2(geom) {
        return each_quad(kb, io.x, xs, geom, samples, &mut |kb, q| {
            let (best, _) = running_max(kb, &q.x);
            io.put(kb, best, q.yat)
        });
    }
    each_window_max(kb, io.x, xs, geom, samples, &mut |kb, _, yo, best, _| io.put(kb, best, yo))
}

/// Which planes a pooling loop covers: every sample's, as the kernel's work items; one
/// image's, for a convolution's kernel that pools it right after storing it (where the
/// image starts in x and where its output starts in y); or one channel's of every sample,
/// for batch norm's kernel, whose items are channels.
// Built once per kernel while the loop nest is written: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
enum Samples {
    Items,
    One { x: Idx, y: Idx },
    Channel(Idx),
}

impl Samples {
    /// `f(kb, x's plane start, y's plane start)` for each (sample, channel) plane covered
    /// of x [n, c, …] (`plane` = the floats of a plane of x and of y).
    fn planes(
        self,
        kb: &mut Kb,
        (n, c): (usize, usize),
        (xp, yp): (usize, usize),
        f: &mut dyn FnMut(&mut Kb, Idx, Idx) -> CgResult<()>,
    ) -> CgResult<()> {
        let mut at = |kb: &mut Kb, (x, y): (Idx, Idx), ch: Idx| {
            let (xc, yc) = (kb.mul(ch, xp as i64), kb.mul(ch, yp as i64));
            f(kb, x + xc, y + yc)
        };
        match self {
            Samples::Items => kb.for_items(n, |kb, item| {
                let starts = (kb.mul(item, (c * xp) as i64), kb.mul(item, (c * yp) as i64));
                kb.for_range(0, c as i64, 1, |kb, ch| at(kb, starts, ch))
            }),
            Samples::One { x, y } => kb.for_range(0, c as i64, 1, |kb, ch| at(kb, (x, y), ch)),
            Samples::Channel(ch) => kb.for_range(0, n as i64, 1, |kb, b| {
                let starts = (kb.mul(b, (c * xp) as i64), kb.mul(b, (c * yp) as i64));
                at(kb, starts, ch)
            }),
        }
    }
}

/// Max or average pooling `op` of image `img` of x [N, C, H, W] into y — what a
/// convolution's kernel computes right after it stores the image, while it is in cache
/// (fusion's `conv_with_pooling`).
pub fn pool_image(kb: &mut Kb, op: &Op, xs: &[usize], img: Idx, (x, y): (&Buf, &Buf)) -> CgResult<()> {
    let (x_at, _) = image_start(kb, x, img, xs[1..].iter().product());
    let y_at = kb.mul(img, (y.len / xs[0]) as i64);
    pool_planes(kb, op, xs, Samples::One { x: x_at, y: y_at }, (x, y))
}

/// Max or average pooling `op` of channel `ch` of every sample of x [N, C, H, W] into y —
/// what batch norm's kernel computes right after it normalizes the channel, while its
/// planes are in cache (fusion's `batchnorm_with_pooling`).
pub fn pool_channel(kb: &mut Kb, op: &Op, xs: &[usize], ch: Idx, (x, y): (&Buf, &Buf)) -> CgResult<()> {
    pool_planes(kb, op, xs, Samples::Channel(ch), (x, y))
}

/// The pooling kernel's own loops over the planes `samples` covers, with no epilogue: what
/// another op's kernel computes beside it, with the same bits.
fn pool_planes(kb: &mut Kb, op: &Op, xs: &[usize], samples: Samples, (x, y): (&Buf, &Buf)) -> CgResult<()> {
    let io = Io { x, y, epi: &[] };
    match op {
        Op::MaxPool(p) => maxpool(kb, &io, xs, &p.geom, samples),
        Op::AvgPool(p) => avgpool(kb, &io, xs, p, samples),
        _ => err(format!("`{}` is not a pooling another kernel computes beside it", op.name())),
    }
}

/// Each window's dy goes to its winner.
fn lower_maxpool_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &MaxPoolGrad) -> CgResult<()> {
    let io = Io::of(bufs);
    let xs = cx.in_shape(0);
    let dy = &bufs.inputs[1];
    if tiles_2x2(&p.geom) && needs_only_input(io.epi, io.x) {
        return maxpool_2x2_grad(kb, &io, dy, xs, &p.geom);
    }
    zero_per_sample(kb, io.y, xs[0], xs[1..].iter().product())?;
    each_window_max(kb, io.x, xs, &p.geom, Samples::Items, &mut |kb, win, yo, best, off| {
        let g = kb.load(types::F32, dy, yo)?;
        add_to_winner(kb, (io.x, io.y), win, off, g, best, io.epi)
    })
}

/// dx of a `tiles_2x2` max pooling, every element written once: each window's
/// contribution epi(dy) at its winner (as 0 + epi(dy): the bits the zeroed form adds),
/// zeros at the other three, and zeros on a last row or column no window covers.
fn maxpool_2x2_grad(kb: &mut Kb, io: &Io, dy: &Buf, xs: &[usize], geom: &PoolGeom) -> CgResult<()> {
    let (h, w) = (xs[2], xs[3]);
    let wi = w as i64;
    each_quad(kb, io.x, xs, geom, Samples::Items, &mut |kb, q| {
        let (best, takes) = running_max(kb, &q.x);
        let g = kb.load(q.ty, dy, q.yat)?;
        let e = epilogue::apply_knowing(kb, io.epi, g, At::flat(q.xat), Some((io.x, best)))?;
        let zero = kb.f(q.ty, 0.0);
        let e = kb.fadd(zero, e);
        // Candidate k takes the contribution from the ones before it when it wins.
        let mut out = [e, zero, zero, zero];
        for (k, &take) in takes.iter().enumerate() {
            for o in out.iter_mut().take(k + 1) {
                *o = kb.select(take, zero, *o);
            }
            out[k + 1] = kb.select(take, e, zero);
        }
        if q.ty == types::F32 {
            for (i, &v) in out.iter().enumerate() {
                kb.store(v, io.y, q.xat.plus((i as i64 / 2) * wi + i as i64 % 2))?;
            }
            return Ok(());
        }
        // Back to columns: even and odd interleaved, two vectors per input row.
        for row in 0..2 {
            let (even, odd) = (out[2 * row], out[2 * row + 1]);
            let lo = kb.shuffle(even, odd, [0, 4, 1, 5]);
            let hi = kb.shuffle(even, odd, [2, 6, 3, 7]);
            let at = q.xat.plus(row as i64 * wi);
            kb.store(lo, io.y, at)?;
            kb.store(hi, io.y, at.plus(4))?;
        }
        Ok(())
    })?;
    if h % 2 == 0 && w % 2 == 0 {
        return Ok(());
    }
    // The row and column past the last window.
    let (c, plane) = (xs[1], h * w);
    kb.for_items(xs[0], |kb, item| {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            let start = kb.affine(0, &[(item, (c * plane) as i64), (ch, plane as i64)]);
            if h % 2 == 1 {
                kb.zero(io.y, start.plus(((h - 1) * w) as i64), w)?;
            }
            if w % 2 == 1 {
                let z = kb.f(types::F32, 0.0);
                kb.for_range(0, (h / 2 * 2) as i64, 1, |kb, y| {
                    let at = kb.affine((w - 1) as i64, &[(y, wi)]);
                    let at = kb.add(start, at);
                    kb.store(z, io.y, at)
                })?;
            }
            Ok(())
        })
    })
}

fn lower_avgpool(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &AvgPool) -> CgResult<()> {
    avgpool(kb, &Io::of(bufs), cx.in_shape(0), p, Samples::Items)
}

fn avgpool(kb: &mut Kb, io: &Io, xs: &[usize], p: &AvgPool, samples: Samples) -> CgResult<()> {
    windows(kb, xs, &p.geom, samples, &mut |kb, xb, yo, offs| {
        let inv = 1.0 / avg_divisor(&p.geom, p.include_pad, offs.len()) as f32;
        let mut s = kb.load(types::F32, io.x, xb.plus(offs[0]))?;
        for &o in &offs[1..] {
            let v = kb.load(types::F32, io.x, xb.plus(o))?;
            s = kb.fadd(s, v);
        }
        let k = kb.f(types::F32, inv);
        let y = kb.fmul(s, k);
        io.put(kb, y, yo)
    })
}

/// Each window's dy/divisor goes to every input element of the window.
fn lower_avgpool_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, p: &AvgPoolGrad) -> CgResult<()> {
    let io = Io::of(bufs);
    let xs = cx.out_shape(0);
    zero_per_sample(kb, io.y, xs[0], xs[1..].iter().product())?;
    windows(kb, xs, &p.geom, Samples::Items, &mut |kb, xb, yo, offs| {
        let inv = 1.0 / avg_divisor(&p.geom, p.include_pad, offs.len()) as f32;
        let g = kb.load(types::F32, io.x, yo)?;
        let k = kb.f(types::F32, inv);
        let g = kb.fmul(g, k);
        offs.iter().try_for_each(|&o| io.add(kb, g, xb.plus(o)))
    })
}

/// Over each (sample, channel) plane: `f(kb, the plane's start, its (sample, channel)
/// index)`.
fn each_plane(kb: &mut Kb, xs: &[usize], f: &mut dyn FnMut(&mut Kb, Idx, Idx) -> CgResult<()>) -> CgResult<()> {
    let (c, hw) = (xs[1], xs[2] * xs[3]);
    kb.for_items(xs[0], |kb, item| {
        kb.for_range(0, c as i64, 1, |kb, ch| {
            let plane = kb.affine(0, &[(item, (c * hw) as i64), (ch, hw as i64)]);
            let at = kb.affine(0, &[(item, c as i64), (ch, 1)]);
            f(kb, plane, at)
        })
    })
}

fn lower_global_avgpool(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &GlobalAvgPool) -> CgResult<()> {
    let io = Io::of(bufs);
    let xs = cx.in_shape(0);
    let hw = xs[2] * xs[3];
    each_plane(kb, xs, &mut |kb, plane, at| {
        let s = super::reduce::sum_span(kb, io.x, plane, hw)?;
        let k = kb.f(types::F32, 1.0 / hw as f32);
        let y = kb.fmul(s, k);
        io.put(kb, y, at)
    })
}

fn lower_global_avgpool_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &GlobalAvgPoolGrad) -> CgResult<()> {
    let io = Io::of(bufs);
    let xs = cx.out_shape(0);
    let hw = xs[2] * xs[3];
    each_plane(kb, xs, &mut |kb, plane, at| {
        let g = kb.load(types::F32, io.x, at)?;
        let k = kb.f(types::F32, 1.0 / hw as f32);
        let g = kb.fmul(g, k);
        kb.for_lanes(0, hw as i64, |kb, i, ty| {
            let a = kb.add(plane, i);
            let gv = kb.splat(ty, g);
            io.put(kb, gv, a)
        })
    })
}

/// The winner of the `hw` values of a plane: (value, offset), the first maximum winning
/// and NaN winning, as in a pooling window. The offset is carried around the loop in a
/// variable; clamping it into 0..hw (where it is) gives it a proved range.
fn plane_max(kb: &mut Kb, x: &Buf, plane: Idx, hw: usize) -> CgResult<(Val, Val)> {
    let first = kb.load(types::F32, x, plane)?;
    let zero = kb.iconst(0);
    let won = kb.fold_n(&[first, zero], (1, hw as i64, 1), |kb, i, acc| {
        let at = kb.add(plane, i);
        let v = kb.load(types::F32, x, at)?;
        let up = kb.fcmp(FloatCC::UnorderedOrGreaterThan, v, acc[0]);
        let ordered = kb.fcmp(FloatCC::Ordered, acc[0], acc[0]);
        let take = kb.band(up, ordered);
        let i = kb.value(i);
        Ok(vec![kb.select(take, v, acc[0]), kb.select(take, i, acc[1])])
    })?;
    let top = kb.iconst(hw as i64 - 1);
    let off = kb.smax(won[1], zero);
    Ok((won[0], kb.smin(off, top)))
}

fn lower_global_maxpool(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &GlobalMaxPool) -> CgResult<()> {
    let io = Io::of(bufs);
    let xs = cx.in_shape(0);
    let hw = xs[2] * xs[3];
    each_plane(kb, xs, &mut |kb, plane, at| {
        let (best, _) = plane_max(kb, io.x, plane, hw)?;
        io.put(kb, best, at)
    })
}

/// Each plane's dy goes to its winner.
fn lower_global_maxpool_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &GlobalMaxPoolGrad) -> CgResult<()> {
    let io = Io::of(bufs);
    let xs = cx.in_shape(0);
    let hw = xs[2] * xs[3];
    let dy = &bufs.inputs[1];
    zero_per_sample(kb, io.y, xs[0], xs[1] * hw)?;
    each_plane(kb, xs, &mut |kb, plane, at| {
        let (best, off) = plane_max(kb, io.x, plane, hw)?;
        let g = kb.load(types::F32, dy, at)?;
        add_to_winner(kb, (io.x, io.y), plane, off, g, best, io.epi)
    })
}

/// Every maxout unit's winning piece: `at_winner(kb, the unit's first piece in z, its
/// output index, the winner, its piece)`, z [N, units·k] and outputs [N, units].
fn each_unit_max(kb: &mut Kb, z: &Buf, zs: &[usize], pieces: usize, at_winner: &mut AtWinner) -> CgResult<()> {
    let (units, offs) = (zs[1] / pieces, (0..pieces as i64).collect::<Vec<_>>());
    kb.for_items(zs[0], |kb, item| {
        kb.for_range(0, units as i64, 1, |kb, u| {
            let zb = kb.affine(0, &[(item, (units * pieces) as i64), (u, pieces as i64)]);
            let cands = candidates(kb, types::F32, z, zb, &offs)?;
            let (best, off) = first_max(kb, &cands, types::I64);
            let at = kb.affine(0, &[(item, units as i64), (u, 1)]);
            at_winner(kb, zb, at, best, off)
        })
    })
}

fn lower_maxout(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, m: &MaxoutReduce) -> CgResult<()> {
    let io = Io::of(bufs);
    each_unit_max(kb, io.x, cx.in_shape(0), m.pieces, &mut |kb, _, at, best, _| io.put(kb, best, at))
}

/// Each unit's dy goes to its winning piece (the output was zeroed: one write per unit).
fn lower_maxout_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, m: &MaxoutGrad) -> CgResult<()> {
    let io = Io::of(bufs);
    let zs = cx.in_shape(0);
    let dy = &bufs.inputs[1];
    zero_per_sample(kb, io.y, zs[0], zs[1])?;
    each_unit_max(kb, io.x, zs, m.pieces, &mut |kb, zb, at, _, off| {
        let off = kb.idx(off)?;
        let piece = kb.add(zb, off);
        let g = kb.load(types::F32, dy, at)?;
        io.put(kb, g, piece)
    })
}
