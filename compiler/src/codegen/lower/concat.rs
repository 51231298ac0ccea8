//! Concatenation along channels and its gradient's slices: per sample, contiguous runs
//! copied on f32x4 lanes (a sample's channels are one run in [N, C, …]).

use super::{lower_rules, no_element, opaque, per_sample, KernelBufs, LowerCtx};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::Idx;
use crate::ops::{Concat, SliceChannels};

lower_rules! {
    // One item per sample.
    Concat => opaque, no_element, per_sample, lower_concat;
    SliceChannels => opaque, no_element, per_sample, lower_slice;
}

/// Values per channel of [N, C, …].
fn inner(shape: &[usize]) -> usize {
    shape[2..].iter().product()
}

/// dst[to + i] = src[from + i] for i in 0..len.
fn copy_run(kb: &mut Kb, (src, from): (&Buf, Idx), (dst, to): (&Buf, Idx), len: usize) -> CgResult<()> {
    kb.for_lanes(0, len as i64, |kb, i, ty| {
        let a = kb.add(from, i);
        let v = kb.load(ty, src, a)?;
        let b = kb.add(to, i);
        kb.store(v, dst, b)
    })
}

fn lower_concat(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, _: &Concat) -> CgResult<()> {
    let out = cx.out_shape(0).to_vec();
    let per = inner(&out);
    let row = out[1] * per;
    let runs: Vec<usize> = (0..bufs.inputs.len()).map(|i| cx.in_shape(i)[1] * per).collect();
    kb.for_items(out[0], |kb, b| {
        let mut offset = 0;
        for (x, &run) in bufs.inputs.iter().zip(&runs) {
            let from = kb.affine(0, &[(b, run as i64)]);
            let to = kb.affine(offset as i64, &[(b, row as i64)]);
            copy_run(kb, (x, from), (&bufs.outputs[0], to), run)?;
            offset += run;
        }
        Ok(())
    })
}

fn lower_slice(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, op: &SliceChannels) -> CgResult<()> {
    let x = cx.in_shape(0).to_vec();
    let per = inner(&x);
    let run = op.len * per;
    kb.for_items(x[0], |kb, b| {
        let from = kb.affine((op.start * per) as i64, &[(b, (x[1] * per) as i64)]);
        let to = kb.affine(0, &[(b, run as i64)]);
        copy_run(kb, (&bufs.inputs[0], from), (&bufs.outputs[0], to), run)
    })
}
