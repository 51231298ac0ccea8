//! Matrix products and convolutions, all through the GEMM loop nest.
//!
//! A stride-1 convolution, and its input gradient, may be *direct* (`Direct`): the GEMM
//! multiplies the zero-bordered image in place, stepping through it at the taps' offsets,
//! into a wide result whose valid columns are copied out; a cycle estimate chooses it per
//! layer (`conv_plan`), with the micro-kernel tile. A stride-1 weight gradient may be
//! direct too (`DirectDw`: the image as A at the taps' row offsets; `grad_weight_form`),
//! and any but a 1×1 one may take the panel form (`PanelsDw`: colᵀ written straight from
//! the image as the GEMM's B rows).
//! Otherwise convolutions use im2col: each image's receptive fields are copied into a
//! [C·kh·kw, Ho·Wo] matrix (zeros where the window covers padding), then one GEMM per
//! image and group: y = W·col (forward), dcol = Wᵀ·dy then col2im (input gradient),
//! dW += dy·colᵀ (weight gradient). The matrix's rows are ordered (channel, ky, kx), so
//! a group's rows are one contiguous block and a group's GEMM is the plain one on
//! sub-matrices. A padded convolution first copies each image into the interior of a
//! zero-bordered buffer (its border zeroed once per call), so every row of the matrix is
//! one plain run of Wo floats — straight-line vector copies for stride 1, the last one
//! overlapping — with no tests and no zero spans; the per-row loops and padding spans
//! cost a padded layer more than its copy (LeNet-5's first layer: about a quarter of its
//! forward kernel). col2im adds back only the taps inside the image, whose bounds for each
//! kernel offset are computed at compile time.

use super::epilogue::{self, At};
use super::gemm::{emit_gemm, Gemm, GemmScratch, Mat, MicroTile};
use super::{
    image_start, lower_rules, no_element, norm, pool, ChannelAxis, KernelBufs, LowerCtx, NodeCx, Storage, Work,
};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::{err, CgResult};
use crate::codegen::loops::{types, Idx, Val};
use crate::ops::{batchnorm_layout, Conv2d, Conv2dGradInput, Conv2dGradWeight, ConvGeom, MatMul, Op};
use std::sync::Arc;

fn gemm_scratch(bufs: &KernelBufs, first: usize) -> GemmScratch {
    GemmScratch {
        pack_a: bufs.scratch[first].clone(),
        pack_b: bufs.scratch[first + 1].clone(),
        tile: bufs.scratch[first + 2].clone(),
    }
}

fn whole(buf: &Buf, rs: i64, cs: i64) -> Mat {
    Mat { buf: buf.clone(), base: Idx::constant(0), rs, cs }
}

/// How a GEMM's columns split into work items: (block width, blocks). One block per
/// thread, each a whole number of micro-tile columns; every element is computed the same
/// way whatever the split, so results do not depend on the thread count.
pub fn column_blocks(n: usize, micro: &MicroTile, threads: usize) -> (usize, usize) {
    let panels = n.div_ceil(micro.nr);
    let blocks = threads.clamp(1, panels.max(1));
    let nb = panels.div_ceil(blocks) * micro.nr;
    (nb.min(n).max(1), n.div_ceil(nb.min(n).max(1)))
}

/// Run `f(kb, first index, width)` for this thread's blocks of `total` columns, `width`
/// a constant in each path: full blocks share one path, the narrower last block has its
/// own (so every access is still proved in bounds).
fn for_column_blocks(
    kb: &mut Kb,
    total: usize,
    nb: usize,
    blocks: usize,
    f: &mut dyn FnMut(&mut Kb, Idx, usize) -> CgResult<()>,
) -> CgResult<()> {
    let last_w = total - (blocks - 1) * nb;
    kb.for_items(blocks, |kb, item| {
        if blocks == 1 {
            return f(kb, Idx::constant(0), total);
        }
        if last_w == nb {
            let start = kb.mul(item, nb as i64);
            return f(kb, start, nb);
        }
        kb.if_below(item, blocks as i64 - 1, &mut |kb, full, item| {
            if full {
                let start = kb.mul(item, nb as i64);
                f(kb, start, nb)
            } else {
                f(kb, Idx::constant(((blocks - 1) * nb) as i64), last_w)
            }
        })
    })
}

lower_rules! {
    MatMul => gemm_columns, no_element, matmul_work, lower_matmul;
    Conv2d => gemm_rows, no_element, conv2d_work, lower_conv2d;
    // Each input-gradient element is final once per image (the direct form's copy out, or
    // after col2im), where the epilogue is applied: the derivative of the layer before.
    Conv2dGradInput => gemm_rows, no_element, grad_input_work, lower_conv2d_grad_input;
    Conv2dGradWeight => super::opaque, no_element, grad_weight_work, lower_conv2d_grad_weight;
}

/// A dense layer's C is [batch, features]: a bias or batch norm indexes the columns.
fn gemm_columns<T>(_: &T, _: &NodeCx) -> Storage {
    Storage::Gemm(ChannelAxis::Columns)
}

/// A convolution's per-image C is [filters, pixels] (its input gradient's [channels,
/// pixels]): the rows.
fn gemm_rows<T>(_: &T, _: &NodeCx) -> Storage {
    Storage::Gemm(ChannelAxis::Rows)
}

/// Blocks of whole micro-tile columns, one per thread.
fn matmul_work(mm: &MatMul, cx: &NodeCx, micro: &MicroTile, threads: usize) -> Work {
    let (m, k, n) = mm.dims(cx.in_shape(0), cx.in_shape(1));
    let (nb, blocks) = column_blocks(n, micro, threads);
    Work { scratch: super::gemm::scratch((m, k, nb), micro), shared: vec![], passes: vec![blocks] }
}

fn lower_matmul(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, mm: &MatMul) -> CgResult<()> {
    let epi = &bufs.epilogue;
    let (sa, sb) = (cx.in_shape(0).to_vec(), cx.in_shape(1).to_vec());
    let (m, k, n) = mm.dims(&sa, &sb);
    let a = if mm.trans_a { whole(&bufs.inputs[0], 1, sa[1] as i64) } else { whole(&bufs.inputs[0], sa[1] as i64, 1) };
    let b = if mm.trans_b { whole(&bufs.inputs[1], 1, sb[1] as i64) } else { whole(&bufs.inputs[1], sb[1] as i64, 1) };
    let scratch = gemm_scratch(bufs, 0);
    let (nb, blocks) = column_blocks(n, cx.micro, cx.threads);
    for_column_blocks(kb, n, nb, blocks, &mut |kb, col0, width| {
        let bb = kb.mul(col0, b.cs);
        let b_blk = Mat { base: bb, ..b.clone() };
        let c = Mat { buf: bufs.outputs[0].clone(), base: col0, rs: n as i64, cs: 1 };
        if m == 1 && b.rs == 1 && a.cs == 1 {
            return dot_row(kb, (&a, &b, &c), k, (col0, width), epi);
        }
        let g = Gemm {
            m,
            n: width,
            k,
            a: a.clone(),
            b: b_blk,
            c,
            b_rows: None,
            a_rows: None,
            b_padded: false,
            accumulate: false,
            scratch: &scratch,
            micro: cx.micro,
        };
        if epi.is_empty() {
            return emit_gemm(kb, &g, None);
        }
        // C is this block of columns: bias and batch norm need the global column.
        let mut f = |kb: &mut Kb, v: Val, pos: At| {
            let col = kb.add(col0, pos.col);
            epilogue::apply(kb, epi, v, At { col, ..pos })
        };
        emit_gemm(kb, &g, Some(&mut f))
    })
}

/// C's row 0 (a batch of one) for columns `col0..col0 + width` when A's row and B's
/// columns are contiguous along K — a dense layer's weights [out, in]: one dot product
/// per output, four outputs at a time on four independent accumulators. A GEMM would
/// first copy all of B transposed into panels to use one row of each tile; at batch 1
/// that copy cost more than the product (LeNet-5's 400×120 layer). `c`'s base is the
/// block's first column.
fn dot_row(
    kb: &mut Kb,
    (a, b, c): (&Mat, &Mat, &Mat),
    k: usize,
    (col0, width): (Idx, usize),
    epi: &[super::EpiOp],
) -> CgResult<()> {
    let k4 = (k / 4 * 4) as i64;
    let outputs = |kb: &mut Kb, first: Idx, count: usize| -> CgResult<()> {
        let cols: Vec<Idx> = (0..count).map(|j| kb.add(col0, first.plus(j as i64))).collect();
        let rows: Vec<Idx> = cols
            .iter()
            .map(|&col| {
                let at = kb.mul(col, b.cs);
                kb.add(b.base, at)
            })
            .collect();
        let z = kb.f(types::F32X4, 0.0);
        let lanes = kb.fold_n(&vec![z; count], (0, k4, 4), |kb, p, acc| {
            let xa = kb.add(a.base, p);
            let x = kb.load(types::F32X4, &a.buf, xa)?;
            let mut next = Vec::with_capacity(count);
            for (j, &row) in rows.iter().enumerate() {
                let wa = kb.add(row, p);
                let w = kb.load(types::F32X4, &b.buf, wa)?;
                next.push(kb.fma(x, w, acc[j]));
            }
            Ok(next)
        })?;
        for (j, (&row, &col)) in rows.iter().zip(&cols).enumerate() {
            let s = kb.lane_sum(lanes[j]);
            let s = kb.fold(s, (k4, k as i64, 1), |kb, p, s| {
                let xa = kb.add(a.base, p);
                let x = kb.load(types::F32, &a.buf, xa)?;
                let wa = kb.add(row, p);
                let w = kb.load(types::F32, &b.buf, wa)?;
                Ok(kb.fma(x, w, s))
            })?;
            let at = kb.add(c.base, first.plus(j as i64));
            let v = epilogue::apply(kb, epi, s, At { at, row: Idx::constant(0), col })?;
            kb.store(v, &c.buf, at)?;
        }
        Ok(())
    };
    let full = width / 4 * 4;
    kb.for_range(0, full as i64, 4, |kb, j| outputs(kb, j, 4))?;
    if width > full {
        outputs(kb, Idx::constant(full as i64), width - full)?;
    }
    Ok(())
}

/// (N, C, H, W, F, kh, kw, Ho, Wo) and the groups of a convolution node.
struct ConvDims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    f: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    groups: usize,
    /// The im2col matrix is the image itself (a 1×1 kernel, stride 1, no padding): every
    /// GEMM reads the image, or writes its gradient, in place, and nothing is copied.
    identity: bool,
}

impl ConvDims {
    /// Rows of the im2col matrix: every channel's kernel taps.
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Rows of one group's block of the im2col matrix: a GEMM's depth.
    fn group_k(&self) -> usize {
        self.ckk() / self.groups
    }

    /// Filters per group.
    fn group_f(&self) -> usize {
        self.f / self.groups
    }

    fn p(&self) -> usize {
        self.ho * self.wo
    }
}

impl ConvDims {
    /// From the shapes of the image x [N, C, H, W], the weights [F, C, kh, kw] and the
    /// output y [N, F, Ho, Wo] (whichever of them are the op's inputs and output).
    fn of(x: &[usize], w: &[usize], y: &[usize], g: &ConvGeom) -> ConvDims {
        let (kh, kw, groups) = (w[2], w[3], g.groups);
        let identity = (kh, kw) == (1, 1) && g.stride == [1, 1] && g.padding == [0, 0];
        ConvDims { n: x[0], c: x[1], h: x[2], w: x[3], f: w[0], kh, kw, ho: y[2], wo: y[3], groups, identity }
    }

    /// Scratch for one image's im2col matrix (none when it is the image), a GEMM of
    /// (m, k, n), and (`padded`: what im2col reads) the zero-bordered copy of one image.
    fn scratch(&self, mkn: (usize, usize, usize), micro: &MicroTile, padded: usize) -> Vec<usize> {
        let mut scratch = vec![if self.identity { 1 } else { self.ckk() * self.p() }];
        scratch.extend(super::gemm::scratch(mkn, micro));
        scratch.push(padded);
        scratch
    }
}

/// Images per partial sum of a convolution's weight gradient: fixed, so the sums do not
/// depend on the thread count.
const DW_CHUNK: usize = 8;

/// The dimensions of y = conv2d(x, w).
fn conv2d_dims(cx: &NodeCx, g: &ConvGeom) -> ConvDims {
    ConvDims::of(cx.in_shape(0), cx.in_shape(1), cx.out_shape(0), g)
}

/// The dimensions of dx = conv2d_grad_input(dy, w).
fn grad_input_dims(cx: &NodeCx, g: &ConvGeom) -> ConvDims {
    ConvDims::of(cx.out_shape(0), cx.in_shape(1), cx.in_shape(0), g)
}

/// The dimensions of dw = conv2d_grad_weight(x, dy).
fn grad_weight_dims(cx: &NodeCx, g: &ConvGeom) -> ConvDims {
    ConvDims::of(cx.in_shape(0), cx.out_shape(0), cx.in_shape(1), g)
}

/// Image `img`'s im2col matrix: the image itself when that is what it would hold, else
/// the scratch matrix `col` (filled by `im2col`).
fn col_of(kb: &mut Kb, d: &ConvDims, img: Idx, x: &Buf, col: &Buf) -> (Buf, Idx) {
    if d.identity {
        (x.clone(), kb.mul(img, (d.c * d.h * d.w) as i64))
    } else {
        (col.clone(), Idx::constant(0))
    }
}

/// `start + group·size`: where a group's block of rows of an im2col matrix starts.
fn at_group(kb: &mut Kb, start: Idx, group: Idx, size: usize) -> Idx {
    let block = kb.mul(group, size as i64);
    kb.add(start, block)
}

/// Where a group's filters start in an image's [F, Ho·Wo] output (or its gradient).
fn group_base(kb: &mut Kb, img: Idx, group: Idx, d: &ConvDims) -> Idx {
    let image = kb.mul(img, (d.f * d.p()) as i64);
    let filters = kb.mul(group, (d.group_f() * d.p()) as i64);
    kb.add(image, filters)
}

/// `f(kb, group)` for each group: a loop over them (one group: the body once, with the
/// constant 0).
fn for_groups(kb: &mut Kb, d: &ConvDims, f: impl FnMut(&mut Kb, Idx) -> CgResult<()>) -> CgResult<()> {
    kb.for_range(0, d.groups as i64, 1, f)
}

/// Output positions o in 0..out whose input o·s + k − p lies in 0..n: a range lo..hi.
fn valid_range(out: usize, n: usize, k: usize, s: usize, p: usize) -> (usize, usize) {
    let lo = p.saturating_sub(k).div_ceil(s).min(out);
    // o·s + k − p ≤ n − 1  ⇔  o ≤ (n − 1 + p − k) / s
    let hi = if n + p > k { ((n - 1 + p - k) / s + 1).min(out) } else { 0 };
    (lo, hi.max(lo))
}

/// How a run of floats is split into accesses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// f32x4 steps, then one f32x4 ending at the run's end: the floats it writes twice
    /// get the same value twice (a copy).
    Overlap,
    /// f32x4 steps, then single floats: an accumulation must touch each float once.
    Exact,
    /// Single floats (a strided source).
    Scalar,
}

/// Runs up to this many floats are straight-line code: a convolution's rows are short
/// (LeNet-5's 28, 10), and a loop per row cost more than the copy it made.
const UNROLLED_RUN: usize = 64;

/// `f(kb, j, ty)` over a run of `len` floats, split as `run` says.
fn for_run(
    kb: &mut Kb,
    len: usize,
    run: Run,
    f: &mut dyn FnMut(&mut Kb, Idx, types::Type) -> CgResult<()>,
) -> CgResult<()> {
    let (lanes, ty) = if run == Run::Scalar || len < 4 { (1, types::F32) } else { (4, types::F32X4) };
    let body_end = len / lanes * lanes;
    if len <= UNROLLED_RUN {
        for j in (0..body_end).step_by(lanes) {
            f(kb, Idx::constant(j as i64), ty)?;
        }
    } else {
        kb.for_range(0, body_end as i64, lanes as i64, |kb, j| f(kb, j, ty))?;
    }
    if body_end < len && run == Run::Overlap {
        return f(kb, Idx::constant(len as i64 - 4), types::F32X4);
    }
    (body_end..len).try_for_each(|j| f(kb, Idx::constant(j as i64), types::F32))
}

/// The zero-bordered copy of a [C, H, W] image with `border` = [rows, columns]: each plane
/// has the border's rows above and below the image, and each row the border's columns on
/// its left only, Hp = H + 2·border[0] rows of Wp = W + border[1] floats. A row's right
/// border is the next row's left one (the same zeros; after the last row, the next plane's
/// or, past the last plane, `BorderedImage::size`'s tail), so a window that runs off a row's
/// right end reads zeros as it would in a [C, H + 2·ph, W + 2·pw] copy, and the wide columns
/// of a direct convolution (Wp − Wo per row) are half as many.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BorderedImage {
    c: usize,
    hp: usize,
    wp: usize,
    border: [usize; 2],
}

impl BorderedImage {
    fn of([c, h, w]: [usize; 3], border: [usize; 2]) -> BorderedImage {
        BorderedImage { c, hp: h + 2 * border[0], wp: w + border[1], border }
    }

    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// Floats of the copy: its planes and, after them, the last row's right border.
    fn size(&self) -> usize {
        self.c * self.plane() + self.border[1]
    }

    /// Where pixel (0, 0) of channel 0 lands.
    fn interior(&self) -> usize {
        self.border[0] * self.wp + self.border[1]
    }
}

/// The bordered copy im2col reads, with the convolution's padding as its border.
fn bordered_input(d: &ConvDims, g: &ConvGeom) -> BorderedImage {
    BorderedImage::of([d.c, d.h, d.w], g.padding)
}

/// Floats of the zero-bordered copy of one image that a padded convolution's im2col reads
/// (one float, unused, when it reads the image itself).
fn padded_size(d: &ConvDims, g: &ConvGeom) -> usize {
    if d.identity || g.padding == [0, 0] {
        1
    } else {
        bordered_input(d, g).size()
    }
}

/// Zero the padded copy's buffer, once per call of the kernel: the border stays zero
/// while each image's interior is copied in, so the border stands for the padding.
fn zero_padded(kb: &mut Kb, d: &ConvDims, g: &ConvGeom, pad: &Buf) -> CgResult<()> {
    match padded_size(d, g) {
        1 => Ok(()),
        size => kb.zero(pad, Idx::constant(0), size),
    }
}

/// Image `img` of `x` as im2col reads it: `x` itself without padding, else its copy into
/// the interior of `pad` (a `BorderedImage`, whose border `zero_padded` wrote), so that
/// every row of the matrix is one plain copy, with no tests and no zero spans.
/// Returns the buffer, the image's first float, its row length and its plane.
fn padded_image(
    kb: &mut Kb,
    d: &ConvDims,
    g: &ConvGeom,
    img: Idx,
    x: &Buf,
    pad: &Buf,
) -> CgResult<(Buf, Idx, usize, usize)> {
    let image = kb.mul(img, (d.c * d.h * d.w) as i64);
    if padded_size(d, g) == 1 {
        return Ok((x.clone(), image, d.w, d.h * d.w));
    }
    let b = bordered_input(d, g);
    copy_into_border(kb, [d.c, d.h, d.w], &b, image, x, pad)?;
    Ok((pad.clone(), Idx::constant(0), b.wp, b.plane()))
}

/// The image of `x` starting at `image` ([c, h, w]) into the interior of `pad`, laid out
/// as `b`, whose border stays zero: each row one straight-line run (the last vector
/// overlapping; it ends where the row does, so it never writes the next row's border).
fn copy_into_border(
    kb: &mut Kb,
    [c, h, w]: [usize; 3],
    b: &BorderedImage,
    image: Idx,
    x: &Buf,
    pad: &Buf,
) -> CgResult<()> {
    kb.for_range(0, c as i64, 1, |kb, ch| {
        kb.for_range(0, h as i64, 1, |kb, y| {
            let s = kb.affine(0, &[(ch, (h * w) as i64), (y, w as i64)]);
            let s = kb.add(image, s);
            let t = kb.affine(b.interior() as i64, &[(ch, b.plane() as i64), (y, b.wp as i64)]);
            for_run(kb, w, Run::Overlap, &mut |kb, j, ty| {
                let v = kb.load(ty, x, s + j)?;
                kb.store(v, pad, t + j)
            })
        })
    })
}

/// Image `img`'s im2col matrix into `col` [C·kh·kw, Ho·Wo]: row (c, ky, kx), column
/// (oy, ox) is the (padded) image at (c, oy·sh + ky·dh, ox·sw + kx·dw). Read from the
/// zero-bordered copy, each row is a run of Wo floats (vectors for stride 1).
fn im2col(kb: &mut Kb, d: &ConvDims, g: &ConvGeom, img: Idx, (x, pad): (&Buf, &Buf), col: &Buf) -> CgResult<()> {
    let (src, image, wp, plane) = padded_image(kb, d, g, img, x, pad)?;
    let (sh, sw) = (g.stride[0], g.stride[1]);
    let p = d.p() as i64;
    let run = if sw == 1 { Run::Overlap } else { Run::Scalar };
    for ky in 0..d.kh {
        for kx in 0..d.kw {
            let tap = (ky * g.dilation[0] * wp + kx * g.dilation[1]) as i64;
            kb.for_range(0, d.c as i64, 1, |kb, c| {
                kb.for_range(0, d.ho as i64, 1, |kb, oy| {
                    let s = kb.affine(tap, &[(c, plane as i64), (oy, (sh * wp) as i64)]);
                    let s = kb.add(image, s);
                    let t =
                        kb.affine(((ky * d.kw + kx) as i64) * p, &[(c, (d.kh * d.kw) as i64 * p), (oy, d.wo as i64)]);
                    for_run(kb, d.wo, run, &mut |kb, j, ty| {
                        let xo = kb.mul(j, sw as i64);
                        let v = kb.load(ty, &src, s + xo)?;
                        kb.store(v, col, t + j)
                    })
                })
            })?;
        }
    }
    Ok(())
}

/// col2im: image `img` of `dx` += its im2col matrix's gradient `dcol`, each element
/// added to the input it was copied from (padding taps dropped). For each kernel offset
/// the output rows and columns whose window lands inside the image are computed at
/// compile time, so the loop has no per-element tests.
fn col2im(kb: &mut Kb, d: &ConvDims, g: &ConvGeom, img: Idx, dx: &Buf, dcol: &Buf) -> CgResult<()> {
    let (sh, sw) = (g.stride[0], g.stride[1]);
    let (ph, pw) = (g.padding[0], g.padding[1]);
    let p = d.p() as i64;
    let run = if sw == 1 { Run::Exact } else { Run::Scalar };
    for ky in 0..d.kh {
        // The tap's offset in the input: the kernel's row times the dilation.
        let dy = ky * g.dilation[0];
        let (oy_lo, oy_hi) = valid_range(d.ho, d.h, dy, sh, ph);
        for kx in 0..d.kw {
            let dxo = kx * g.dilation[1];
            let (ox_lo, ox_hi) = valid_range(d.wo, d.w, dxo, sw, pw);
            kb.for_range(0, d.c as i64, 1, |kb, c| {
                let row = kb.affine(((ky * d.kw + kx) as i64) * p + ox_lo as i64, &[(c, (d.kh * d.kw) as i64 * p)]);
                kb.for_range(oy_lo as i64, oy_hi as i64, 1, |kb, oy| {
                    let crow = kb.affine(0, &[(oy, d.wo as i64)]);
                    let crow = kb.add(row, crow);
                    // dx[img, c, oy·sh + ky·dh − ph, ox·sw + kx·dw − pw] for ox from ox_lo
                    let base = (dy as i64 - ph as i64) * d.w as i64 + (dxo + ox_lo * sw) as i64 - pw as i64;
                    let xrow = kb.affine(
                        base,
                        &[(img, (d.c * d.h * d.w) as i64), (c, (d.h * d.w) as i64), (oy, (sh * d.w) as i64)],
                    );
                    for_run(kb, ox_hi - ox_lo, run, &mut |kb, j, ty| {
                        let xo = kb.mul(j, sw as i64);
                        let xi = kb.add(xrow, xo);
                        let v = kb.load(ty, dcol, crow + j)?;
                        let old = kb.load(ty, dx, xi)?;
                        let s = kb.fadd(old, v);
                        kb.store(s, dx, xi)
                    })
                })
            })?;
        }
    }
    Ok(())
}

/// A direct convolution (stride 1): the GEMM's B is the zero-bordered image itself, with
/// no im2col matrix. Output pixel (oy, ox) is computed at column oy·Wp + ox of a *wide*
/// [rows, `wide`] result, so that tap (c, ky, kx) of every column is the image at that
/// column plus one offset, c·Hp·Wp + ky·dh·Wp + kx·dw — the micro-kernel's step offsets
/// (`Gemm::b_rows`). The columns with ox ≥ Wo (and the round-up to whole panels) are
/// computed and dropped; the valid ones are copied out (through the epilogue).
///
/// The input gradient of a stride-1 convolution is one too: dx = dy, bordered by
/// (k − 1)·d − p, convolved with the kernel flipped (the flip is in the offsets) and its
/// filter and channel axes swapped (a copy of the weights, made once per call).
struct Direct {
    /// The image convolved, per sample: channels, rows, columns (dy for an input gradient).
    src: [usize; 3],
    /// Its zero-bordered copy (border: (k − 1)·d − p for an input gradient, else p).
    bordered: BorderedImage,
    /// The result, per sample: channels, rows, columns.
    out: [usize; 3],
    groups: usize,
    /// Columns computed: (rows − 1)·Wp + columns, rounded up to whole micro-tile panels.
    wide: usize,
    /// Floats of the zero-bordered image buffer: the image, and what the wide columns
    /// past its end read.
    size: usize,
    /// The offset of each tap of a group's K, from the group's first channel.
    steps: Arc<[i32]>,
}

impl Direct {
    /// Rows of one group's result (the GEMM's M) and taps of one group (its K).
    fn group_mk(&self) -> (usize, usize) {
        (self.out[0] / self.groups, self.steps.len())
    }

    /// Scratch: the wide result where im2col's matrix would be, a GEMM's, the bordered
    /// image, and (an input gradient) the swapped weights.
    fn scratch(&self, micro: &MicroTile, weights: usize) -> Vec<usize> {
        let (m, k) = self.group_mk();
        let mut scratch = vec![m * self.wide];
        scratch.extend(super::gemm::scratch((m, k, self.wide), micro));
        scratch.extend([self.size, weights]);
        scratch
    }
}

/// The form of y = conv2d(x, w) (`grad_input`: of dx from dy) and its tile (the program's,
/// or its narrow one): direct when the convolution has stride 1 and the form costs less
/// than im2col, the tile that costs least, by the estimate below — in cycles: a
/// tile step is MR·NR multiply-adds at 16 a cycle; a float of the im2col matrix costs one
/// (written, then read by the GEMM; or read and added by col2im), of the bordered image and
/// of the result's copy half, and each K block after the first a pass over the wide result.
/// The wide columns cost Wp / Wo more tile steps; im2col costs its K·Ho·Wo floats and a
/// packed partial panel. LeNet-5's forward layers and the 3×3 layers on 28×28 images
/// (both ways) take the direct form; an unpadded input gradient, which would multiply
/// a border of zeros, does not. LeNet-5's first layer (six filters) takes the narrow tile.
fn conv_plan(d: &ConvDims, g: &ConvGeom, micro: &MicroTile, grad_input: bool) -> ConvPlan {
    let (direct, tile) = cheapest(micro, |tile| {
        let (im2col, direct) = conv_forms(d, g, tile, grad_input);
        std::iter::once((im2col, None)).chain(direct.map(|(cost, dp)| (cost, Some(dp)))).collect()
    });
    ConvPlan { direct, tile }
}

/// The cheapest of the forms `forms(tile)` lists with their estimated cycles, over the
/// tiles a GEMM may call (`MicroTile::choices`; the program's own first, so it wins ties),
/// with the tile that computes it.
fn cheapest<F>(micro: &MicroTile, forms: impl Fn(&MicroTile) -> Vec<(f64, F)>) -> (F, MicroTile) {
    let mut best: Option<(f64, F, &MicroTile)> = None;
    for tile in micro.choices() {
        for (cost, form) in forms(tile) {
            if best.as_ref().is_none_or(|(c, ..)| cost < *c) {
                best = Some((cost, form, tile));
            }
        }
    }
    let (_, form, tile) = best.expect("a GEMM has a form");
    (form, MicroTile { narrow: None, ..tile.clone() })
}

/// Cycles of the MR×NR tile steps an m×n product over k takes with `tile`: a step is MR·NR
/// multiply-adds at 16 a cycle, partial tiles cost whole ones.
fn tile_cycles(tile: &MicroTile, m: usize, n: usize, k: usize) -> f64 {
    (m.div_ceil(tile.mr) * n.div_ceil(tile.nr) * k * tile.mr * tile.nr) as f64 / 16.0
}

/// A convolution's (or input gradient's) form and the micro-kernel tile its GEMMs call.
struct ConvPlan {
    direct: Option<Direct>,
    tile: MicroTile,
}

/// The estimated cycles per image of the im2col form with `micro`'s tile, and of the
/// direct form with the plan for it where it applies (see `conv_plan`).
fn conv_forms(d: &ConvDims, g: &ConvGeom, micro: &MicroTile, grad_input: bool) -> (f64, Option<(f64, Direct)>) {
    let tiles = |m: usize, n: usize, k: usize| tile_cycles(micro, m, n, k);
    let (q, copy) = (d.p(), if d.identity { 0.0 } else { (d.group_k() * d.p()) as f64 });
    let im2col = d.groups as f64
        * if grad_input {
            // dcol = Wᵀ·dy ([C·kh·kw, Ho·Wo] over F), then col2im.
            tiles(d.group_k(), q, d.group_f()) + copy
        } else {
            let partial = if q % micro.nr != 0 { (d.group_k() * micro.nr) as f64 * 0.5 } else { 0.0 };
            tiles(d.group_f(), q, d.group_k()) + copy + partial
        };
    if d.identity || g.stride != [1, 1] {
        return (im2col, None);
    }
    let (kh, kw) = (d.kh, d.kw);
    let reach = [(kh - 1) * g.dilation[0], (kw - 1) * g.dilation[1]];
    let (src, pad, out) = if grad_input {
        if g.padding[0] > reach[0] || g.padding[1] > reach[1] {
            return (im2col, None);
        }
        ([d.f, d.ho, d.wo], [reach[0] - g.padding[0], reach[1] - g.padding[1]], [d.c, d.h, d.w])
    } else {
        ([d.c, d.h, d.w], g.padding, [d.f, d.ho, d.wo])
    };
    let bordered = BorderedImage::of(src, pad);
    let (hp, wp) = (bordered.hp, bordered.wp);
    let wide = ((out[1] - 1) * wp + out[2]).div_ceil(micro.nr) * micro.nr;
    let (gsrc, gout, taps) = (src[0] / d.groups, out[0] / d.groups, kh * kw);
    let (p, gk) = (out[1] * out[2], gsrc * taps);
    if gk > MAX_STEPS {
        return (im2col, None);
    }
    let k_blocks = gk.div_ceil(super::gemm::KC);
    let direct = d.groups as f64
        * (tiles(gout, wide, gk)
            + ((gout * p) as f64 + (gsrc * hp * wp) as f64) * 0.5
            + ((k_blocks - 1) * gout * wide) as f64);
    let plane = hp * wp;
    let mut steps = Vec::with_capacity(gk);
    for c in 0..gsrc {
        for ky in 0..kh {
            for kx in 0..kw {
                // An input gradient's taps run the kernel backwards.
                let (ty, tx) = if grad_input { (kh - 1 - ky, kw - 1 - kx) } else { (ky, kx) };
                steps.push((c * plane + ty * g.dilation[0] * wp + tx * g.dilation[1]) as i32);
            }
        }
    }
    let last = *steps.iter().max().expect("a kernel has taps") as usize;
    let size = bordered.size().max((d.groups - 1) * gsrc * plane + last + wide);
    (im2col, Some((direct, Direct { src, bordered, out, groups: d.groups, wide, size, steps: steps.into() })))
}

/// Most taps per group a direct convolution takes: its step offsets live on the kernel's
/// stack (4 bytes each), written once per call.
const MAX_STEPS: usize = 4096;

/// A direct convolution's loop nest: per sample, the bordered copy of `src`; per group, the
/// GEMM of A (`a`, its group g's rows from `a_base(g)`, `a_rs` apart, taps contiguous) into
/// the wide result, then its valid columns through `epi` into `out` [N, dp.out]; then the
/// sample's batch-norm partials or pooling when the kernel computes them (`after`).
#[allow(clippy::too_many_arguments)]
fn emit_direct(
    kb: &mut Kb,
    (cx, tile): (&LowerCtx, &MicroTile),
    bufs: &KernelBufs,
    dp: &Direct,
    (src, a, a_rs): (&Buf, &Buf, usize),
    out: &Buf,
    epi: &[super::EpiOp],
    after: &AfterImage,
) -> CgResult<()> {
    let (wide_c, pad) = (&bufs.scratch[0], &bufs.scratch[4]);
    let scratch = gemm_scratch(bufs, 1);
    let (gm, gk) = dp.group_mk();
    let [oc, oh, ow] = dp.out;
    let gsrc_plane = (dp.src[0] / dp.groups * dp.bordered.plane()) as i64;
    kb.zero(pad, Idx::constant(0), dp.size)?;
    kb.for_items(cx.in_shape(0)[0], |kb, img| {
        let [c, h, w] = dp.src;
        let image = kb.mul(img, (c * h * w) as i64);
        copy_into_border(kb, dp.src, &dp.bordered, image, src, pad)?;
        kb.for_range(0, dp.groups as i64, 1, |kb, group| {
            let g = Gemm {
                m: gm,
                n: dp.wide,
                k: gk,
                a: Mat { buf: a.clone(), base: kb.mul(group, (gm * a_rs) as i64), rs: a_rs as i64, cs: 1 },
                b: Mat { buf: pad.clone(), base: kb.mul(group, gsrc_plane), rs: 0, cs: 1 },
                c: Mat { buf: wide_c.clone(), base: Idx::constant(0), rs: dp.wide as i64, cs: 1 },
                b_rows: Some(dp.steps.clone()),
                a_rows: None,
                b_padded: false,
                accumulate: false,
                scratch: &scratch,
                micro: tile,
            };
            emit_gemm(kb, &g, None)?;
            let first_row = kb.mul(group, gm as i64);
            let (image, to_batch) = image_start(kb, out, img, oc * oh * ow);
            kb.for_range(0, gm as i64, 1, |kb, r| {
                let row = kb.add(first_row, r);
                kb.for_range(0, oh as i64, 1, |kb, oy| {
                    let from = kb.affine(0, &[(r, dp.wide as i64), (oy, dp.bordered.wp as i64)]);
                    let pix = kb.affine(0, &[(oy, ow as i64)]);
                    let to = kb.affine(0, &[(row, (oh * ow) as i64)]);
                    let to = kb.add(image, to);
                    let to = kb.add(to, pix);
                    for_run(kb, ow, Run::Exact, &mut |kb, j, ty| {
                        let v = kb.load(ty, wide_c, from + j)?;
                        let v = epilogue::apply(kb, epi, v, At { at: to + to_batch + j, row, col: pix + j })?;
                        kb.store(v, out, to + j)
                    })
                })
            })
        })?;
        after.emit(kb, cx, img, out)
    })
}

/// What a convolution's kernel computes from each image right after storing it, while the
/// image is in cache: nothing, batch norm's partial statistics (fusion's
/// `conv_with_batchnorm_stats`) or a max or average pooling (`conv_with_pooling`), into
/// the kernel's second output.
enum AfterImage<'a> {
    Nothing,
    Stats(&'a Buf),
    Pool(&'a Op, &'a Buf),
}

impl<'a> AfterImage<'a> {
    fn of(cx: &'a LowerCtx, bufs: &'a KernelBufs) -> CgResult<AfterImage<'a>> {
        let op = match cx.kernel.siblings.as_slice() {
            [] => return Ok(AfterImage::Nothing),
            [s] => &cx.graph.nodes[*s].op,
            _ => return err(format!("kernel `{}`: a convolution computes one op beside it", cx.kernel.name)),
        };
        match op {
            Op::BatchNormStats(_) => Ok(AfterImage::Stats(&bufs.outputs[1])),
            Op::MaxPool(_) | Op::AvgPool(_) => Ok(AfterImage::Pool(op, &bufs.outputs[1])),
            _ => err(format!("kernel `{}`: a convolution does not compute `{}` beside it", cx.kernel.name, op.name())),
        }
    }

    /// Its part for image `img` of the stored output `y`.
    fn emit(&self, kb: &mut Kb, cx: &LowerCtx, img: Idx, y: &Buf) -> CgResult<()> {
        let shape = cx.graph.shape(cx.node.outputs[0]);
        match self {
            AfterImage::Nothing => Ok(()),
            AfterImage::Stats(partials) => norm::sample_stats(kb, batchnorm_layout(shape), img, y, partials),
            AfterImage::Pool(op, pooled) => pool::pool_image(kb, op, shape, img, (y, pooled)),
        }
    }
}

/// An input gradient's A: wt[g][c][f][tap] = w[g·F/G + f][c][tap] for each group g, its
/// C/G channels and F/G filters — the filter and channel axes swapped, written once per
/// call into scratch.
fn swap_filters_channels(kb: &mut Kb, d: &ConvDims, w: &Buf, wt: &Buf) -> CgResult<()> {
    let (gc, gf, taps) = (d.c / d.groups, d.group_f(), d.kh * d.kw);
    kb.for_range(0, d.groups as i64, 1, |kb, group| {
        kb.for_range(0, gc as i64, 1, |kb, c| {
            kb.for_range(0, gf as i64, 1, |kb, f| {
                let from = kb.affine(0, &[(group, (gf * gc * taps) as i64), (f, (gc * taps) as i64), (c, taps as i64)]);
                let to = kb.affine(0, &[(group, (gc * gf * taps) as i64), (c, (gf * taps) as i64), (f, taps as i64)]);
                for_run(kb, taps, Run::Overlap, &mut |kb, j, ty| {
                    let v = kb.load(ty, w, from + j)?;
                    kb.store(v, wt, to + j)
                })
            })
        })
    })
}

/// One image per work item.
fn conv2d_work(conv: &Conv2d, cx: &NodeCx, micro: &MicroTile, _: usize) -> Work {
    let d = conv2d_dims(cx, &conv.geom);
    let ConvPlan { direct, tile } = conv_plan(&d, &conv.geom, micro, false);
    if let Some(dp) = direct {
        return Work { scratch: dp.scratch(&tile, 1), shared: vec![], passes: vec![d.n] };
    }
    let padded = padded_size(&d, &conv.geom);
    Work { scratch: d.scratch((d.group_f(), d.group_k(), d.p()), &tile, padded), shared: vec![], passes: vec![d.n] }
}

/// One image per work item.
fn grad_input_work(conv: &Conv2dGradInput, cx: &NodeCx, micro: &MicroTile, _: usize) -> Work {
    let d = grad_input_dims(cx, &conv.geom);
    let ConvPlan { direct, tile } = conv_plan(&d, &conv.geom, micro, true);
    if let Some(dp) = direct {
        return Work { scratch: dp.scratch(&tile, d.f * d.group_k()), shared: vec![], passes: vec![d.n] };
    }
    Work { scratch: d.scratch((d.group_k(), d.group_f(), d.p()), &tile, 1), shared: vec![], passes: vec![d.n] }
}

/// Whether a weight gradient is computed transposed, dWᵀ = col·dyᵀ (M = taps, N =
/// filters), rather than dW = dy·colᵀ (M = filters, N = taps). Either way one operand
/// is packed (transposed) and the other read in place: the plain form packs the im2col
/// matrix (taps × pixels), the transposed one dy (filters × pixels), which is usually far
/// smaller; the choice weighs that copy against the tiles each wastes on padding (few
/// filters, like LeNet-5's first layer's six, fill a 16-wide tile poorly). The estimate is
/// in cycles: a tile step is MR·NR multiply-adds at 16 a cycle, a packed float half a cycle.
fn grad_weight_transposed(d: &ConvDims, micro: &MicroTile) -> bool {
    let (gk, gf, p) = (d.group_k(), d.group_f(), d.p());
    let cost = |m: usize, n: usize, packed: usize| tile_cycles(micro, m, n, p) + (packed * p) as f64 * 0.5;
    cost(gk, gf, gf) < cost(gf, gk, gk)
}

/// The GEMM dimensions (m, k, n) of one image's weight gradient.
fn grad_weight_mkn(d: &ConvDims, micro: &MicroTile) -> (usize, usize, usize) {
    let (gk, gf, p) = (d.group_k(), d.group_f(), d.p());
    if grad_weight_transposed(d, micro) {
        (gk, p, gf)
    } else {
        (gf, p, gk)
    }
}

/// The direct form of a stride-1 weight gradient: dWᵀ += X·dyᵀ over the *wide* pixels
/// (Ho − 1)·Wp + Wo of the zero-bordered image (Wp its bordered width) — X's row
/// (c, ky, kx) is the bordered image itself read from that tap's offset (the micro-kernel's
/// A row offsets), so no im2col matrix is written; dyᵀ is packed per image and group into
/// [wide, F/G rounded up to whole panels], zero at the wide columns (x ≥ Wo of each row)
/// and past the last filter, which a call zeroes once. A wide column multiplies an image
/// float by that zero, so every sum is the im2col form's plus exact zeros.
struct DirectDw {
    /// The bordered image's height and width.
    hp: usize,
    wp: usize,
    /// The GEMM's K: the wide pixels. The last row needs no wide columns, so A's last tap
    /// ends in the bordered image's tail (its last row's right border).
    wide: usize,
    /// Columns of the packed dyᵀ.
    cols: usize,
    /// The offset of each tap of a group's M (channel, ky, kx), from the group's first
    /// channel.
    rows: Arc<[i32]>,
}

/// The panel form of a weight gradient: dW += dy·colᵀ, with colᵀ [Ho·Wo, C/G·kh·kw]
/// written straight from the (bordered) image into GEMM-ready rows of `cols` floats — the
/// taps rounded up to whole panels, the rest zero from one zeroing per call — so there is
/// no im2col matrix and no transposing pack. Any stride or dilation. It puts the filters
/// on the tile's rows and the taps on its columns, the opposite of the direct form: for
/// few filters and few taps (LeNet-5's first layer: six filters fill AVX2's 6-row tile,
/// 25 taps two 16-wide panels) it wastes less of each tile.
struct PanelsDw {
    /// Floats per row of the written colᵀ.
    cols: usize,
}

/// Most floats the panel form's colᵀ may take: the GEMM's own bound on a packed B block
/// (KC × NC, 768 KB), which stays in L2.
const MAX_PANELS: usize = 384 * 512;

/// Cycles to run one of the panel form's `pack` loops, besides its stores (an estimate).
const PACK_LOOP: usize = 20;

/// Most taps per group the direct weight gradient takes: its row tiles are unrolled (each
/// call gets its offsets as constants), so this bounds the kernel's code.
const MAX_DW_ROWS: usize = 1152;

/// How a weight gradient is computed (`grad_weight_form`).
enum DwForm {
    /// im2col, then dW += dy·colᵀ (M = filters).
    Plain,
    /// im2col, then dWᵀ += col·dyᵀ (M = taps).
    Transposed,
    /// The bordered image in place: dWᵀ += X·dyᵀ over the wide pixels.
    Direct(DirectDw),
    /// colᵀ written from the image as GEMM-ready rows, then dW += dy·colᵀ (M = filters).
    Panels(PanelsDw),
}

impl DwForm {
    /// Whether its partial sums are dWᵀ per group (its tiles have the taps on their rows),
    /// which pass 1 transposes.
    fn partials_transposed(&self) -> bool {
        matches!(self, DwForm::Transposed | DwForm::Direct(_))
    }
}

/// A weight gradient's form and the micro-kernel tile its GEMMs call.
struct DwPlan {
    form: DwForm,
    tile: MicroTile,
}

/// The cheapest form and tile (the program's, or its narrow one) by a cycle estimate: a
/// tile step is MR·NR multiply-adds at 16 a cycle; a float of the im2col matrix costs one
/// (written, then read by the GEMM), a packed or bordered-copy float half. The direct form
/// needs stride 1 and costs Wp / Wo more tile steps (the wide columns); the panel form's
/// writes are counted store by store (`grad_weight_forms`). residual's and cnn_bn's 3×3
/// layers and LeNet-5's second take the direct form, LeNet-5's first the panel form;
/// where the host has AVX-512's 8×32 beside AVX2's 6×16, layers with 16 or fewer filters
/// (half of 32 columns) take the narrow one, cnn_bn's 64-filter layer the wide one.
fn grad_weight_form(d: &ConvDims, g: &ConvGeom, micro: &MicroTile) -> DwPlan {
    let (form, tile) = cheapest(micro, |tile| grad_weight_forms(d, g, tile));
    DwPlan { form, tile }
}

/// The forms a weight gradient can take with `tile`, each with its estimated cycles per
/// image: im2col in its cheaper orientation (`grad_weight_transposed`), and the panel
/// and direct forms where they apply.
fn grad_weight_forms(d: &ConvDims, g: &ConvGeom, tile: &MicroTile) -> Vec<(f64, DwForm)> {
    let (gk, gf, p, gc) = (d.group_k(), d.group_f(), d.p(), d.c / d.groups);
    let tiles = |m: usize, n: usize, k: usize| tile_cycles(tile, m, n, k);
    let groups = d.groups as f64;
    let copy = if d.identity { 0.0 } else { (gk * p) as f64 };
    let mut forms = vec![if grad_weight_transposed(d, tile) {
        ((tiles(gk, gf, p) + (gf * p) as f64 * 0.5 + copy) * groups, DwForm::Transposed)
    } else {
        ((tiles(gf, gk, p) + (gk * p) as f64 * 0.5 + copy) * groups, DwForm::Plain)
    }];
    if d.identity {
        return forms;
    }
    let b = bordered_input(d, g);
    let (hp, wp) = (b.hp, b.wp);
    let bordered = if padded_size(d, g) == 1 { 0.0 } else { b.size() as f64 * 0.5 };
    let taps_cols = gk.div_ceil(tile.nr) * tile.nr;
    if p * taps_cols <= MAX_PANELS {
        // colᵀ's writes, a cycle a store: each (pixel, channel, ky) run of kw taps is
        // ⌊kw/4⌋ vector and kw mod 4 single stores (counted as kw when dilated), and each
        // `pack` of Wo pixels a loop that costs PACK_LOOP to run. Measured: 3-wide kernels
        // (cnn_bn's, strided's) and short rows (strided's 7 pixels) lose to the other forms.
        let run = if g.dilation[1] == 1 { d.kw / 4 + d.kw % 4 } else { d.kw };
        let writes = (p * run + d.ho * PACK_LOOP) * gc * d.kh;
        let panels = (tiles(gf, gk, p) + writes as f64) * groups + bordered;
        forms.push((panels, DwForm::Panels(PanelsDw { cols: taps_cols })));
    }
    if g.stride != [1, 1] || gk > MAX_DW_ROWS {
        return forms;
    }
    let wide = (d.ho - 1) * wp + d.wo;
    let direct = (tiles(gk, gf, wide) + (gf * p) as f64 * 0.5) * groups + bordered;
    let plane = hp * wp;
    let mut rows = Vec::with_capacity(gk);
    for c in 0..gc {
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                rows.push((c * plane + ky * g.dilation[0] * wp + kx * g.dilation[1]) as i32);
            }
        }
    }
    let cols = gf.div_ceil(tile.nr) * tile.nr;
    forms.push((direct, DwForm::Direct(DirectDw { hp, wp, wide, cols, rows: rows.into() })));
    forms
}

/// Pass 0: one chunk of DW_CHUNK images per item, each summed into its own partial;
/// pass 1: the partials added in chunk order.
fn grad_weight_work(conv: &Conv2dGradWeight, cx: &NodeCx, micro: &MicroTile, _: usize) -> Work {
    let d = grad_weight_dims(cx, &conv.geom);
    let chunks = d.n.div_ceil(DW_CHUNK);
    let padded = padded_size(&d, &conv.geom);
    let plan = grad_weight_form(&d, &conv.geom, micro);
    let scratch = match &plan.form {
        DwForm::Direct(dd) => {
            // The packed dyᵀ where im2col's matrix would be, a GEMM's, the bordered image.
            let mut scratch = vec![dd.wide * dd.cols];
            scratch.extend(super::gemm::scratch((d.group_k(), dd.wide, d.group_f()), &plan.tile));
            scratch.push(padded);
            scratch
        }
        DwForm::Panels(pd) => {
            let mut scratch = vec![d.p() * pd.cols];
            scratch.extend(super::gemm::scratch((d.group_f(), d.p(), d.group_k()), &plan.tile));
            scratch.push(padded);
            scratch
        }
        _ => d.scratch(grad_weight_mkn(&d, &plan.tile), &plan.tile, padded),
    };
    Work { scratch, shared: vec![chunks * d.f * d.group_k()], passes: vec![chunks, 1] }
}

fn lower_conv2d(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, conv: &Conv2d) -> CgResult<()> {
    let epi = &bufs.epilogue;
    let d = conv2d_dims(&cx.node_cx(), &conv.geom);
    let ConvPlan { direct, tile } = conv_plan(&d, &conv.geom, cx.micro, false);
    let after = AfterImage::of(cx, bufs)?;
    if let Some(dp) = direct {
        let (x, w, y) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.outputs[0]);
        return emit_direct(kb, (cx, &tile), bufs, &dp, (x, w, d.group_k()), y, epi, &after);
    }
    let (x, w, y) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.outputs[0]);
    let col = &bufs.scratch[0];
    let scratch = gemm_scratch(bufs, 1);
    let pad = &bufs.scratch[4];
    let (gk, gf, p) = (d.group_k(), d.group_f(), d.p());
    zero_padded(kb, &d, &conv.geom, pad)?;
    kb.for_items(d.n, |kb, img| {
        if !d.identity {
            im2col(kb, &d, &conv.geom, img, (x, pad), col)?;
        }
        let (col, col0) = col_of(kb, &d, img, x, col);
        // Group g: filters g·gf.. of the output from rows g·gk.. of the matrix.
        for_groups(kb, &d, |kb, group| {
            let (image, to_batch) = image_start(kb, y, img, d.f * p);
            let base = at_group(kb, image, group, gf * p);
            let c = Mat { buf: y.clone(), base, rs: p as i64, cs: 1 };
            let g = Gemm {
                m: gf,
                n: p,
                k: gk,
                a: Mat { buf: w.clone(), base: kb.mul(group, (gf * gk) as i64), rs: gk as i64, cs: 1 },
                b: Mat { buf: col.clone(), base: at_group(kb, col0, group, gk * p), rs: p as i64, cs: 1 },
                c,
                b_rows: None,
                a_rows: None,
                b_padded: false,
                accumulate: false,
                scratch: &scratch,
                micro: &tile,
            };
            if epi.is_empty() {
                return emit_gemm(kb, &g, None);
            }
            // A bias or batch norm needs the filter: the group's first plus the tile's row.
            let first_row = kb.mul(group, gf as i64);
            let mut f = |kb: &mut Kb, v: Val, pos: At| {
                let row = kb.add(first_row, pos.row);
                epilogue::apply(kb, epi, v, At { at: pos.at + to_batch, row, ..pos })
            };
            emit_gemm(kb, &g, Some(&mut f))
        })?;
        after.emit(kb, cx, img, y)
    })
}

fn lower_conv2d_grad_input(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, conv: &Conv2dGradInput) -> CgResult<()> {
    let d = grad_input_dims(&cx.node_cx(), &conv.geom);
    let (dy, w, dx) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.outputs[0]);
    let ConvPlan { direct, tile } = conv_plan(&d, &conv.geom, cx.micro, true);
    if let Some(dp) = direct {
        let wt = &bufs.scratch[5];
        swap_filters_channels(kb, &d, w, wt)?;
        return emit_direct(
            kb,
            (cx, &tile),
            bufs,
            &dp,
            (dy, wt, d.group_f() * d.kh * d.kw),
            dx,
            &bufs.epilogue,
            &AfterImage::Nothing,
        );
    }
    let dcol = &bufs.scratch[0];
    let scratch = gemm_scratch(bufs, 1);
    let (gk, gf, p) = (d.group_k(), d.group_f(), d.p());
    kb.for_items(d.n, |kb, img| {
        // dcol is dx itself when im2col is the identity: written by the GEMM, no col2im.
        let (dcol, dcol0) = col_of(kb, &d, img, dx, dcol);
        // Group g: rows g·gk.. of dcol = (filters g·gf.. of W)ᵀ · (channels g·gf.. of dy).
        for_groups(kb, &d, |kb, group| {
            let dy_base = group_base(kb, img, group, &d);
            let g = Gemm {
                m: gk,
                n: p,
                k: gf,
                a: Mat { buf: w.clone(), base: kb.mul(group, (gf * gk) as i64), rs: 1, cs: gk as i64 },
                b: Mat { buf: dy.clone(), base: dy_base, rs: p as i64, cs: 1 },
                c: Mat { buf: dcol.clone(), base: at_group(kb, dcol0, group, gk * p), rs: p as i64, cs: 1 },
                b_rows: None,
                a_rows: None,
                b_padded: false,
                accumulate: false,
                scratch: &scratch,
                micro: &tile,
            };
            emit_gemm(kb, &g, None)
        })?;
        let start = kb.mul(img, (d.c * d.h * d.w) as i64);
        if !d.identity {
            kb.zero(dx, start, d.c * d.h * d.w)?;
            col2im(kb, &d, &conv.geom, img, dx, &dcol)?;
        }
        // The image's gradient is final: the epilogue, in place while it is hot.
        if bufs.epilogue.is_empty() {
            return Ok(());
        }
        let hw = (d.h * d.w) as i64;
        kb.for_range(0, d.c as i64, 1, |kb, c| {
            let plane = kb.affine(0, &[(c, hw)]);
            let plane = kb.add(start, plane);
            kb.for_lanes(0, hw, |kb, j, ty| {
                let at = kb.add(plane, j);
                let v = kb.load(ty, dx, at)?;
                let v = epilogue::apply(kb, &bufs.epilogue, v, At { at, row: c, col: j })?;
                kb.store(v, dx, at)
            })
        })
    })
}

fn lower_conv2d_grad_weight(kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs, conv: &Conv2dGradWeight) -> CgResult<()> {
    let d = grad_weight_dims(&cx.node_cx(), &conv.geom);
    let (x, dy, dw) = (&bufs.inputs[0], &bufs.inputs[1], &bufs.outputs[0]);
    let (gk, gf, p) = (d.group_k(), d.group_f(), d.p());
    let size = d.f * gk;
    let partial = &bufs.shared[0];
    let chunks = d.n.div_ceil(DW_CHUNK);
    let DwPlan { form, tile } = grad_weight_form(&d, &conv.geom, cx.micro);
    if cx.pass == 1 {
        if form.partials_transposed() {
            // dW = Σ partial sums, in chunk order; a transposed or direct form's partials
            // are dWᵀ per group ([taps, filters], so its tiles store whole vectors).
            return kb.for_range(0, d.groups as i64, 1, |kb, group| {
                kb.for_range(0, gf as i64, 1, |kb, f| {
                    kb.for_range(0, gk as i64, 1, |kb, t| {
                        let from = kb.affine(0, &[(group, (gf * gk) as i64), (t, gf as i64), (f, 1)]);
                        let mut acc = kb.load(types::F32, partial, from)?;
                        for ch in 1..chunks {
                            let v = kb.load(types::F32, partial, from.plus((ch * size) as i64))?;
                            acc = kb.fadd(acc, v);
                        }
                        let to = kb.affine(0, &[(group, (gf * gk) as i64), (f, gk as i64), (t, 1)]);
                        kb.store(acc, dw, to)
                    })
                })
            });
        }
        // dW = Σ partial sums, in chunk order.
        return kb.for_lanes(0, size as i64, |kb, j, ty| {
            let mut acc = kb.load(ty, partial, j)?;
            for ch in 1..chunks {
                let v = kb.load(ty, partial, j.plus((ch * size) as i64))?;
                acc = kb.fadd(acc, v);
            }
            kb.store(acc, dw, j)
        });
    }
    // Pass 0: each work item sums the images of one chunk, in order, into its partial.
    let col = &bufs.scratch[0];
    let scratch = gemm_scratch(bufs, 1);
    let pad = &bufs.scratch[4];
    let transposed = matches!(form, DwForm::Transposed);
    let last = d.n - (chunks - 1) * DW_CHUNK;
    let chunk = |kb: &mut Kb, first: Idx, base: Idx, count: usize| -> CgResult<()> {
        kb.zero(partial, base, size)?;
        kb.for_range(0, count as i64, 1, |kb, i| {
            let img = kb.add(first, i);
            if let DwForm::Direct(dd) = &form {
                let bufs = (x, dy, pad, col);
                return direct_grad_weight(kb, (&d, &conv.geom, dd), img, bufs, (partial, base), (&scratch, &tile));
            }
            if let DwForm::Panels(pd) = &form {
                let bufs = (x, dy, pad, col);
                return panels_grad_weight(kb, (&d, &conv.geom, pd), img, bufs, (partial, base), (&scratch, &tile));
            }
            if !d.identity {
                im2col(kb, &d, &conv.geom, img, (x, pad), col)?;
            }
            let (col, col0) = col_of(kb, &d, img, x, col);
            // Group g: filters g·gf.. of dW += (channels g·gf.. of dy) · (rows g·gk.. of col)ᵀ,
            // or the same transposed: dWᵀ += col · dyᵀ (partials stored as dWᵀ, see pass 1).
            for_groups(kb, &d, |kb, group| {
                let dy_base = group_base(kb, img, group, &d);
                let c_base = kb.mul(group, (gf * gk) as i64);
                let c_base = kb.add(base, c_base);
                let col_base = at_group(kb, col0, group, gk * p);
                let (m, n, a, b, c) = if transposed {
                    let a = Mat { buf: col.clone(), base: col_base, rs: p as i64, cs: 1 };
                    let b = Mat { buf: dy.clone(), base: dy_base, rs: 1, cs: p as i64 };
                    (gk, gf, a, b, Mat { buf: partial.clone(), base: c_base, rs: gf as i64, cs: 1 })
                } else {
                    let a = Mat { buf: dy.clone(), base: dy_base, rs: p as i64, cs: 1 };
                    let b = Mat { buf: col.clone(), base: col_base, rs: 1, cs: p as i64 };
                    (gf, gk, a, b, Mat { buf: partial.clone(), base: c_base, rs: gk as i64, cs: 1 })
                };
                let g = Gemm {
                    m,
                    n,
                    k: p,
                    a,
                    b,
                    c,
                    b_rows: None,
                    a_rows: None,
                    b_padded: false,
                    accumulate: true,
                    scratch: &scratch,
                    micro: &tile,
                };
                emit_gemm(kb, &g, None)
            })
        })
    };
    zero_padded(kb, &d, &conv.geom, pad)?;
    match &form {
        // The packed dyᵀ's wide columns and its columns past the last filter stay zero.
        DwForm::Direct(dd) => kb.zero(col, Idx::constant(0), dd.wide * dd.cols)?,
        // colᵀ's columns past the last tap stay zero.
        DwForm::Panels(pd) => kb.zero(col, Idx::constant(0), p * pd.cols)?,
        _ => {}
    }
    kb.for_items(chunks, |kb, item| {
        if last == DW_CHUNK || chunks == 1 {
            let first = kb.mul(item, DW_CHUNK as i64);
            let base = kb.mul(item, size as i64);
            return chunk(kb, first, base, if chunks == 1 { last } else { DW_CHUNK });
        }
        kb.if_below(item, chunks as i64 - 1, &mut |kb, full, item| {
            if full {
                let first = kb.mul(item, DW_CHUNK as i64);
                let base = kb.mul(item, size as i64);
                chunk(kb, first, base, DW_CHUNK)
            } else {
                let first = Idx::constant(((chunks - 1) * DW_CHUNK) as i64);
                chunk(kb, first, Idx::constant(((chunks - 1) * size) as i64), last)
            }
        })
    })
}

/// Image `img`'s weight gradient in the direct form (`DirectDw`), added into the partial
/// sum at `base` (per group dWᵀ, [C/G·kh·kw, F/G], which pass 1 transposes): per group, dyᵀ packed into `packed`
/// [wide, cols] (each output row's Wo pixels at its wide position), then one GEMM with the
/// bordered image as A at the taps' offsets.
fn direct_grad_weight(
    kb: &mut Kb,
    (d, geom, dd): (&ConvDims, &ConvGeom, &DirectDw),
    img: Idx,
    (x, dy, pad, packed): (&Buf, &Buf, &Buf, &Buf),
    (partial, base): (&Buf, Idx),
    (scratch, micro): (&GemmScratch, &MicroTile),
) -> CgResult<()> {
    let (gk, gf, p) = (d.group_k(), d.group_f(), d.p());
    let (src, image, wp, plane) = padded_image(kb, d, geom, img, x, pad)?;
    if (wp, plane) != (dd.wp, dd.hp * dd.wp) {
        return Err(crate::Error::Codegen("a direct weight gradient's bordered image has another shape".into()));
    }
    for_groups(kb, d, |kb, group| {
        let dy_base = group_base(kb, img, group, d);
        kb.for_range(0, d.ho as i64, 1, |kb, oy| {
            let from = kb.affine(0, &[(oy, d.wo as i64)]);
            let from = kb.add(dy_base, from);
            let to = kb.affine(0, &[(oy, (dd.wp * dd.cols) as i64)]);
            super::gemm::pack(kb, (dy, from, 1, p as i64), d.wo, (dd.cols, gf), (packed, to))
        })?;
        let a_base = at_group(kb, image, group, d.c / d.groups * plane);
        let c_base = kb.mul(group, (gf * gk) as i64);
        let g = Gemm {
            m: gk,
            n: gf,
            k: dd.wide,
            a: Mat { buf: src.clone(), base: a_base, rs: 0, cs: 1 },
            b: Mat { buf: packed.clone(), base: Idx::constant(0), rs: dd.cols as i64, cs: 1 },
            c: Mat { buf: partial.clone(), base: kb.add(base, c_base), rs: gf as i64, cs: 1 },
            b_rows: None,
            a_rows: Some(dd.rows.clone()),
            b_padded: true,
            accumulate: true,
            scratch,
            micro,
        };
        emit_gemm(kb, &g, None)
    })
}

/// Image `img`'s weight gradient in the panel form (`PanelsDw`), added into the partial
/// sum at `base` (per group dW, [F/G, C/G·kh·kw]): per group, colᵀ written into `packed`
/// — row (oy, ox), columns (c, ky, 0..kw) one `pack` of Wo rows by kw taps — then one
/// GEMM with dy as A, read in place.
fn panels_grad_weight(
    kb: &mut Kb,
    (d, geom, pd): (&ConvDims, &ConvGeom, &PanelsDw),
    img: Idx,
    (x, dy, pad, packed): (&Buf, &Buf, &Buf, &Buf),
    (partial, base): (&Buf, Idx),
    (scratch, micro): (&GemmScratch, &MicroTile),
) -> CgResult<()> {
    let (gk, gf, p, gc) = (d.group_k(), d.group_f(), d.p(), d.c / d.groups);
    let (src, image, wp, plane) = padded_image(kb, d, geom, img, x, pad)?;
    let ([sh, sw], [dh, dw]) = (geom.stride, geom.dilation);
    for_groups(kb, d, |kb, group| {
        let first = at_group(kb, image, group, gc * plane);
        kb.for_range(0, gc as i64, 1, |kb, c| {
            kb.for_range(0, d.kh as i64, 1, |kb, ky| {
                kb.for_range(0, d.ho as i64, 1, |kb, oy| {
                    let from = kb.affine(0, &[(c, plane as i64), (ky, (dh * wp) as i64), (oy, (sh * wp) as i64)]);
                    let from = kb.add(first, from);
                    let taps = [(c, (d.kh * d.kw) as i64), (ky, d.kw as i64), (oy, (d.wo * pd.cols) as i64)];
                    let to = kb.affine(0, &taps);
                    super::gemm::pack(kb, (&src, from, sw as i64, dw as i64), d.wo, (pd.cols, d.kw), (packed, to))
                })
            })
        })?;
        let c_base = kb.mul(group, (gf * gk) as i64);
        let g = Gemm {
            m: gf,
            n: gk,
            k: p,
            a: Mat { buf: dy.clone(), base: group_base(kb, img, group, d), rs: p as i64, cs: 1 },
            b: Mat { buf: packed.clone(), base: Idx::constant(0), rs: pd.cols as i64, cs: 1 },
            c: Mat { buf: partial.clone(), base: kb.add(base, c_base), rs: gk as i64, cs: 1 },
            b_rows: None,
            a_rows: None,
            b_padded: true,
            accumulate: true,
            scratch,
            micro,
        };
        emit_gemm(kb, &g, None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(c: usize, f: usize, k: usize, out: usize, groups: usize) -> ConvDims {
        ConvDims { n: 1, c, h: out, w: out, f, kh: k, kw: k, ho: out, wo: out, groups, identity: false }
    }

    /// A stride-1 convolution over an h×w image: its dimensions and geometry.
    fn conv(
        c: usize,
        f: usize,
        k: usize,
        (h, w): (usize, usize),
        pad: usize,
        dil: usize,
        groups: usize,
    ) -> (ConvDims, ConvGeom) {
        let out = |n: usize| n + 2 * pad - (k - 1) * dil;
        let d = ConvDims { n: 1, c, h, w, f, kh: k, kw: k, ho: out(h), wo: out(w), groups, identity: false };
        (d, ConvGeom { stride: [1, 1], padding: [pad, pad], dilation: [dil, dil], groups })
    }

    /// Which convolutions take the direct form with the AVX2 tile: the examples' (as their
    /// comments say) and the differential suite's cases written for it (dilated and
    /// grouped; two K blocks both ways).
    #[test]
    fn the_direct_form_is_taken_where_it_costs_less() {
        let avx2 = MicroTile { mr: 6, nr: 16, name: "native-avx2-6x16".into(), narrow: None };
        let direct =
            |(d, g): (ConvDims, ConvGeom), grad_input: bool| conv_plan(&d, &g, &avx2, grad_input).direct.is_some();
        // LeNet-5: both forward layers; not the unpadded second layer's input gradient.
        assert!(direct(conv(1, 6, 5, (28, 28), 2, 1, 1), false));
        assert!(direct(conv(6, 16, 5, (14, 14), 0, 1, 1), false));
        assert!(!direct(conv(6, 16, 5, (14, 14), 0, 1, 1), true));
        // residual's 16→16 3×3 layers, both ways; cnn_bn's one-channel first layer stays
        // im2col (9 taps: the wide columns cost more than the copy).
        assert!(direct(conv(16, 16, 3, (28, 28), 1, 1, 1), false));
        assert!(direct(conv(16, 16, 3, (28, 28), 1, 1, 1), true));
        assert!(!direct(conv(1, 32, 3, (28, 28), 1, 1, 1), false));
        // The differential suite's cases.
        assert!(direct(conv(4, 8, 3, (20, 18), 2, 2, 2), false));
        assert!(direct(conv(8, 6, 3, (20, 18), 1, 1, 1), false));
        assert!(direct(conv(8, 6, 3, (20, 18), 1, 1, 1), true));
        assert!(direct(conv(48, 5, 3, (10, 12), 1, 1, 1), false));
        assert!(direct(conv(48, 5, 3, (10, 12), 1, 1, 1), true));
        // Beside AVX-512's 8×32, LeNet-5's first layer (six filters: M = 6) takes the narrow
        // 6×16 tile; residual's (16 filters) keeps the wide one.
        let avx512 =
            MicroTile { mr: 8, nr: 32, name: "native-avx512-8x32".into(), narrow: Some(Box::new(avx2.clone())) };
        let (d, g) = conv(1, 6, 5, (28, 28), 2, 1, 1);
        assert_eq!(conv_plan(&d, &g, &avx512, false).tile.name, "native-avx2-6x16");
        let (d, g) = conv(16, 16, 3, (28, 28), 1, 1, 1);
        assert_eq!(conv_plan(&d, &g, &avx512, false).tile.name, "native-avx512-8x32");
        // Stride 2 never.
        let (d, mut g) = conv(16, 16, 3, (28, 28), 1, 1, 1);
        g.stride = [2, 2];
        assert!(conv_plan(&d, &g, &avx2, false).direct.is_none());
    }

    /// Which form each weight gradient takes, on which tile: with AVX-512's 8×32 and its
    /// narrow AVX2 6×16 beside it, the examples' stride-1 layers are direct, those with 16
    /// or fewer filters on the narrow tile; cnn_bn's 64-filter layer keeps the wide one.
    /// LeNet-5's first layer takes the panel form; strided and 1×1 layers keep im2col
    /// (for a 1×1 one that is the image, no copy).
    #[test]
    fn each_weight_gradient_takes_the_form_and_tile_that_cost_least() {
        let avx2 = MicroTile { mr: 6, nr: 16, name: "native-avx2-6x16".into(), narrow: None };
        let avx512 =
            MicroTile { mr: 8, nr: 32, name: "native-avx512-8x32".into(), narrow: Some(Box::new(avx2.clone())) };
        let form = |(d, g): (ConvDims, ConvGeom), micro: &MicroTile| {
            let plan = grad_weight_form(&d, &g, micro);
            let form = match plan.form {
                DwForm::Plain => "plain",
                DwForm::Transposed => "transposed",
                DwForm::Direct(_) => "direct",
                DwForm::Panels(_) => "panels",
            };
            (form, plan.tile.name)
        };
        let (narrow, wide) = ("native-avx2-6x16".to_string(), "native-avx512-8x32".to_string());
        assert_eq!(form(conv(16, 16, 3, (28, 28), 1, 1, 1), &avx512), ("direct", narrow.clone()));
        assert_eq!(form(conv(1, 16, 3, (28, 28), 1, 1, 1), &avx512), ("direct", narrow.clone()));
        assert_eq!(form(conv(6, 16, 5, (14, 14), 0, 1, 1), &avx512), ("direct", narrow.clone()));
        assert_eq!(form(conv(32, 64, 3, (14, 14), 1, 1, 1), &avx512), ("direct", wide.clone()));
        assert_eq!(form(conv(16, 16, 3, (28, 28), 1, 1, 1), &avx2), ("direct", narrow.clone()));
        // LeNet-5's first layer: six filters fill the 6-row tile, 25 taps two panels.
        assert_eq!(form(conv(1, 6, 5, (28, 28), 2, 1, 1), &avx512), ("panels", narrow.clone()));
        assert_eq!(form(conv(1, 6, 5, (28, 28), 2, 1, 1), &avx2), ("panels", narrow.clone()));
        // cnn_bn's first layer (32 filters, 9 taps) stays direct: 3-wide runs of taps
        // are single stores.
        assert_eq!(form(conv(1, 32, 3, (28, 28), 1, 1, 1), &avx512), ("direct", narrow.clone()));
        // strided's layers keep im2col: their rows are short (7 pixels), their taps 3 or 5.
        let strided =
            |c: usize, f: usize, (kh, kw): (usize, usize), (h, w): (usize, usize), s: [usize; 2], pad: [usize; 2]| {
                let (ho, wo) = ((h + 2 * pad[0] - kh) / s[0] + 1, (w + 2 * pad[1] - kw) / s[1] + 1);
                let d = ConvDims { n: 1, c, h, w, f, kh, kw, ho, wo, groups: 1, identity: false };
                (d, ConvGeom { stride: s, padding: pad, dilation: [1, 1], groups: 1 })
            };
        assert_eq!(form(strided(8, 16, (3, 3), (14, 14), [2, 2], [1, 1]), &avx512).0, "transposed");
        assert_eq!(form(strided(16, 32, (3, 5), (7, 7), [2, 1], [1, 2]), &avx512).0, "transposed");
        // The differential suite's panel-form cases, on AVX2's tile.
        let (mut d, mut g) = strided(4, 6, (5, 5), (19, 23), [2, 1], [2, 2]);
        (g.dilation, g.groups, d.groups, d.wo) = ([1, 2], 2, 2, 19);
        assert_eq!(form((d, g), &avx2), ("panels", narrow.clone()));
        let (d, g) = strided(6, 6, (4, 4), (10, 19), [1, 1], [2, 1]);
        assert_eq!(form((d, g), &avx2), ("panels", narrow.clone()));
        // 1×1: im2col is the image itself, read in place.
        let (mut d, g) = conv(16, 8, 1, (28, 28), 0, 1, 1);
        d.identity = true;
        assert!(["plain", "transposed"].contains(&form((d, g), &avx512).0));
    }

    /// The weight-gradient orientations the differential suite's models rely on: LeNet-5's
    /// first layer (6 filters, 25 taps) stays plain with the 16-wide AVX2 tile (6 of its 16
    /// columns) and is transposed with the 8-wide Cranelift one; its second layer (16
    /// filters, 150 taps) and the suite's grouped and partial-tile cases are transposed on
    /// both.
    #[test]
    fn weight_gradients_are_transposed_where_filters_fill_a_tile() {
        let avx2 = MicroTile { mr: 6, nr: 16, name: "native-avx2-6x16".into(), narrow: None };
        let clif = MicroTile { mr: 6, nr: 8, name: "cranelift-6x8".into(), narrow: None };
        assert!(!grad_weight_transposed(&dims(1, 6, 5, 28, 1), &avx2));
        assert!(grad_weight_transposed(&dims(1, 6, 5, 28, 1), &clif));
        for micro in [&avx2, &clif] {
            assert!(grad_weight_transposed(&dims(6, 16, 5, 10, 1), micro), "{}", micro.name);
            assert!(grad_weight_transposed(&dims(5, 12, 3, 7, 1), micro), "{}", micro.name);
            assert!(grad_weight_transposed(&dims(12, 16, 3, 3, 2), micro), "{}", micro.name);
        }
    }
}
