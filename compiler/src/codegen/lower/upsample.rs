//! Nearest-neighbour upsampling and its gradient: per sample, each input value written to
//! (or each gradient value summed from) its fh×fw block, with affine indices only (the
//! block's rows and columns are loops, so no index is divided).
//!
//! Bilinear upsampling and its gradient: the weights repeat with period f along each axis
//! except at the edges, so the input positions are cut into runs (`ops::linear_runs`:
//! the first, the interior, the last) and, inside a run's loops, the f×f outputs of a
//! position are written out with constant weights and constant tap offsets.

use super::{lower_rules, no_element, opaque, per_sample, KernelBufs, LowerCtx};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::{types, Idx};
use crate::ops::{linear_runs, LinearTap, Upsample, UpsampleBilinear, UpsampleBilinearGrad, UpsampleGrad};

lower_rules! {
    // One item per sample.
    Upsample => opaque, no_element, per_sample, lower_upsample;
    UpsampleGrad => opaque, no_element, per_sample, lower_upsample_grad;
    UpsampleBilinear => opaque, no_element, per_sample, lower_upsample_bilinear;
    UpsampleBilinearGrad => opaque, no_element, per_sample, lower_upsample_bilinear_grad;
}

/// (channels, small height, small width) and the factor: the [N, C, H, W] side and the
/// [N, C, H·fh, W·fw] side of either op.
fn dims(small: &[usize], [fh, fw]: [usize; 2]) -> ((i64, i64, i64), (i64, i64)) {
    ((small[1] as i64, small[2] as i64, small[3] as i64), (fh as i64, fw as i64))
}

fn lower_upsample(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &Upsample) -> CgResult<()> {
    let ((c, h, w), (fh, fw)) = dims(cx.in_shape(0), op.factor);
    let (x, y) = (&bufs.inputs[0], &bufs.outputs[0]);
    let (big_w, big_plane) = (w * fw, h * fh * w * fw);
    kb.for_items(cx.in_shape(0)[0], |kb, b| {
        kb.for_range(0, c, 1, |kb, ch| {
            kb.for_range(0, h, 1, |kb, i| {
                kb.for_range(0, fh, 1, |kb, a| {
                    kb.for_range(0, w, 1, |kb, j| {
                        let from = kb.affine(0, &[(b, c * h * w), (ch, h * w), (i, w), (j, 1)]);
                        let v = kb.load(types::F32, x, from)?;
                        kb.for_range(0, fw, 1, |kb, e| {
                            let terms =
                                [(b, c * big_plane), (ch, big_plane), (i, fh * big_w), (a, big_w), (j, fw), (e, 1)];
                            let to = kb.affine(0, &terms);
                            kb.store(v, y, to)
                        })
                    })
                })
            })
        })
    })
}

fn lower_upsample_grad(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &UpsampleGrad) -> CgResult<()> {
    let ((c, h, w), (fh, fw)) = dims(cx.out_shape(0), op.factor);
    let (dy, dx) = (&bufs.inputs[0], &bufs.outputs[0]);
    let (big_w, big_plane) = (w * fw, h * fh * w * fw);
    kb.for_items(cx.out_shape(0)[0], |kb, b| {
        kb.for_range(0, c, 1, |kb, ch| {
            kb.for_range(0, h, 1, |kb, i| {
                kb.for_range(0, w, 1, |kb, j| {
                    let z = kb.f(types::F32, 0.0);
                    // Row-major over the block, as the interpreter adds.
                    let s = kb.fold(z, (0, fh, 1), |kb, a, acc| {
                        kb.fold(acc, (0, fw, 1), |kb, e, acc| {
                            let terms =
                                [(b, c * big_plane), (ch, big_plane), (i, fh * big_w), (a, big_w), (j, fw), (e, 1)];
                            let at = kb.affine(0, &terms);
                            let v = kb.load(types::F32, dy, at)?;
                            Ok(kb.fadd(acc, v))
                        })
                    })?;
                    let to = kb.affine(0, &[(b, c * h * w), (ch, h * w), (i, w), (j, 1)]);
                    kb.store(s, dx, to)
                })
            })
        })
    })
}

/// Where one output of a bilinear upsampling reads (or its gradient adds): its index in
/// the large plane and its four (index in the small plane, weight product) taps, rows
/// outer, and the row and column weights for the forward's nested form.
struct Bilinear {
    out: Idx,
    taps: [Idx; 4],
    rows: (f32, f32),
    cols: (f32, f32),
}

/// For each sample, channel and output, in run order: `f(kb, the output's taps)`.
fn each_bilinear_output(
    kb: &mut Kb,
    small: &[usize],
    [fh, fw]: [usize; 2],
    f: &mut dyn FnMut(&mut Kb, &Bilinear) -> CgResult<()>,
) -> CgResult<()> {
    let (n, c, h, w) = (small[0], small[1] as i64, small[2], small[3]);
    let (plane, big_w) = ((h * w) as i64, (w * fw) as i64);
    let big_plane = (h * fh) as i64 * big_w;
    let (row_runs, col_runs) = (linear_runs(h, fh), linear_runs(w, fw));
    kb.for_items(n, |kb, b| {
        kb.for_range(0, c, 1, |kb, ch| {
            for (ylo, yhi, ytaps) in &row_runs {
                for (xlo, xhi, xtaps) in &col_runs {
                    kb.for_range(*ylo as i64, *yhi as i64, 1, |kb, i| {
                        kb.for_range(*xlo as i64, *xhi as i64, 1, |kb, j| {
                            let src = kb.affine(0, &[(b, c * plane), (ch, plane), (i, w as i64), (j, 1)]);
                            let dst = kb.affine(
                                0,
                                &[(b, c * big_plane), (ch, big_plane), (i, fh as i64 * big_w), (j, fw as i64)],
                            );
                            for (r, ty) in ytaps.iter().enumerate() {
                                for (e, tx) in xtaps.iter().enumerate() {
                                    let at = |t: &LinearTap, u: &LinearTap, row: bool, col: bool| {
                                        let dy = if row { t.d1 } else { t.d0 };
                                        let dx = if col { u.d1 } else { u.d0 };
                                        src.plus(dy * w as i64 + dx)
                                    };
                                    let out = dst.plus(r as i64 * big_w + e as i64);
                                    let taps = [
                                        at(ty, tx, false, false),
                                        at(ty, tx, false, true),
                                        at(ty, tx, true, false),
                                        at(ty, tx, true, true),
                                    ];
                                    f(kb, &Bilinear { out, taps, rows: (ty.w0, ty.w1), cols: (tx.w0, tx.w1) })?;
                                }
                            }
                            Ok(())
                        })
                    })?;
                }
            }
            Ok(())
        })
    })
}

/// y = a0·(b0·x00 + b1·x01) + a1·(b0·x10 + b1·x11), as the interpreter computes it.
fn lower_upsample_bilinear(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &UpsampleBilinear) -> CgResult<()> {
    let (x, y) = (&bufs.inputs[0], &bufs.outputs[0]);
    each_bilinear_output(kb, cx.in_shape(0), op.factor, &mut |kb, o| {
        let v: Vec<_> = o.taps.iter().map(|&t| kb.load(types::F32, x, t)).collect::<CgResult<_>>()?;
        let mix = |kb: &mut Kb, p, q, (w0, w1): (f32, f32)| {
            let (w0, w1) = (kb.f(types::F32, w0), kb.f(types::F32, w1));
            let a = kb.fmul(w0, p);
            let b = kb.fmul(w1, q);
            kb.fadd(a, b)
        };
        let top = mix(kb, v[0], v[1], o.cols);
        let bottom = mix(kb, v[2], v[3], o.cols);
        let out = mix(kb, top, bottom, o.rows);
        kb.store(out, y, o.out)
    })
}

/// dx is zeroed, then each output's dy is added to its four inputs with weight products
/// (a·b)·g, in the interpreter's order of taps.
fn lower_upsample_bilinear_grad(
    kb: &mut Kb,
    cx: &LowerCtx,
    bufs: &KernelBufs,
    op: &UpsampleBilinearGrad,
) -> CgResult<()> {
    let small = cx.out_shape(0);
    let (dy, dx): (&Buf, &Buf) = (&bufs.inputs[0], &bufs.outputs[0]);
    let per = small[1] * small[2] * small[3];
    kb.for_items(small[0], |kb, b| {
        let start = kb.mul(b, per as i64);
        kb.zero(dx, start, per)
    })?;
    each_bilinear_output(kb, small, op.factor, &mut |kb, o| {
        let g = kb.load(types::F32, dy, o.out)?;
        let (a, bw) = (o.rows, o.cols);
        let weights = [a.0 * bw.0, a.0 * bw.1, a.1 * bw.0, a.1 * bw.1];
        for (&t, wgt) in o.taps.iter().zip(weights) {
            let k = kb.f(types::F32, wgt);
            let c = kb.fmul(k, g);
            let old = kb.load(types::F32, dx, t)?;
            let s = kb.fadd(old, c);
            kb.store(s, dx, t)?;
        }
        Ok(())
    })
}
