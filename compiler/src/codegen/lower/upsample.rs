//! Nearest-neighbour upsampling and its gradient: per sample, each input value written to
//! (or each gradient value summed from) its fh×fw block, with affine indices only (the
//! block's rows and columns are loops, so no index is divided).

use super::{lower_rules, no_element, opaque, per_sample, KernelBufs, LowerCtx};
use crate::codegen::builder::Kb;
use crate::codegen::jit::CgResult;
use crate::codegen::loops::types;
use crate::ops::{Upsample, UpsampleGrad};

lower_rules! {
    // One item per sample.
    Upsample => opaque, no_element, per_sample, lower_upsample;
    UpsampleGrad => opaque, no_element, per_sample, lower_upsample_grad;
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
