//! Max, average and global-average pooling (floor mode, optional padding), nearest-neighbour
//! upsampling, and their gradients.

use super::{arity, rank, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::shape::window_out;
use crate::tensor::{Real, Tensor};
use crate::Error;

/// A pooling's windows: size, stride and padding, each (rows, cols). Windows may reach
/// `padding` past each side of the input; the positions outside are not candidates (max
/// pooling: as −∞ padding; average pooling: zeros, counted in the divisor or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub size: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl PoolGeom {
    /// Windows with no padding.
    pub fn unpadded(size: [usize; 2], stride: [usize; 2]) -> PoolGeom {
        PoolGeom { size, stride, padding: [0, 0] }
    }

    /// The padding is printed only when there is some, so unpadded IR reads as before.
    fn attrs(&self) -> String {
        let mut s = format!("size={:?} stride={:?}", self.size, self.stride);
        if self.padding != [0, 0] {
            s += &format!(" padding={:?}", self.padding);
        }
        s
    }

    fn from_text(t: &TextOp) -> Result<PoolGeom, String> {
        let padding = if t.has("padding") { t.pair("padding")? } else { [0, 0] };
        Ok(PoolGeom { size: t.positive_pair("size")?, stride: t.positive_pair("stride")?, padding })
    }

    /// The output shape of a pooling of one input.
    fn infer_pool(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        Ok(vec![self.infer_image(ins[0])?])
    }

    /// A forward pooling: `reduce(plane, window)` for every window of every plane.
    fn pool<T: Real>(&self, x: &Tensor<T>, reduce: impl Fn(&[T], &[usize]) -> T) -> Result<Vec<Tensor<T>>, String> {
        let (h, w) = (x.shape[2], x.shape[3]);
        let out = self.infer_image(&x.shape)?;
        let mut data = Vec::with_capacity(out.iter().product());
        for plane in x.data.chunks(h * w) {
            data.extend(self.windows(h, w).map(|win| reduce(plane, &win)));
        }
        Ok(vec![Tensor::new(out, data)])
    }

    pub fn out_hw(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let out = |a: usize, n: usize| window_out(n, self.padding[a].checked_mul(2)?, self.size[a], self.stride[a]);
        Some([out(0, h)?, out(1, w)?])
    }

    fn infer_image(&self, x: &[usize]) -> Result<Vec<usize>, String> {
        rank(x, 4, "input")?;
        // Every window keeps at least one input position (PyTorch's rule).
        if (0..2).any(|a| self.padding[a] > self.size[a] / 2) {
            return Err(format!("padding {:?} is more than half the window {:?}", self.padding, self.size));
        }
        let [ho, wo] = self.out_hw(x[2], x[3]).ok_or("window larger than input")?;
        Ok(vec![x[0], x[1], ho, wo])
    }

    /// The kernel offsets k of output `o` on `axis` whose input o·s + k − p is inside 0..n.
    pub fn taps(&self, axis: usize, o: usize, n: usize) -> std::ops::Range<usize> {
        let start = o * self.stride[axis];
        let lo = self.padding[axis].saturating_sub(start);
        let hi = (n + self.padding[axis]).saturating_sub(start).min(self.size[axis]);
        lo..hi.max(lo)
    }

    /// For every output of one [H, W] plane: the flat input indices of its window that lie
    /// inside the input, in row-major order.
    fn windows(&self, h: usize, w: usize) -> impl Iterator<Item = Vec<usize>> + '_ {
        let [ho, wo] = self.out_hw(h, w).unwrap_or([0, 0]);
        (0..ho * wo).map(move |o| {
            let (oy, ox) = (o / wo, o % wo);
            let mut idx = Vec::with_capacity(self.size[0] * self.size[1]);
            for ky in self.taps(0, oy, h) {
                for kx in self.taps(1, ox, w) {
                    let iy = oy * self.stride[0] + ky - self.padding[0];
                    idx.push(iy * w + ox * self.stride[1] + kx - self.padding[1]);
                }
            }
            idx
        })
    }
}

/// [N, C, H, W] → [N, C]: the shape rule of global pooling.
fn global_pool_shape(ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
    arity(ins, 1)?;
    rank(ins[0], 4, "input")?;
    Ok(vec![vec![ins[0][0], ins[0][1]]])
}

/// Max over each window: the first maximum in row-major order wins (strict `>`); NaN wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool {
    pub geom: PoolGeom,
}

fn winner<T: Real>(plane: &[T], window: &[usize]) -> usize {
    let vals: Vec<T> = window.iter().map(|&i| plane[i]).collect();
    window[super::dense::argmax_first(&vals)]
}

impl OpRule for MaxPool {
    fn name(&self) -> &'static str {
        "maxpool"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "maxpool").then(|| Ok(MaxPool { geom: PoolGeom::from_text(t)? }))
    }

    fn attrs(&self) -> String {
        self.geom.attrs()
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        self.geom.infer_pool(ins)
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        let x = cx.inputs[0];
        Ok(vec![Some(cx.emit1(MaxPoolGrad { geom: self.geom }, &[x, dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        self.geom.pool(ins[0], |plane, win| plane[winner(plane, win)])
    }

    fn flops(&self, _: &Shapes, outs: &Shapes) -> u64 {
        super::numel(outs[0]) * (self.geom.size[0] * self.geom.size[1]) as u64
    }
}

/// The max-pool gradient: each dy goes to its window's winner; overlapping windows add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPoolGrad {
    pub geom: PoolGeom,
}

impl OpRule for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "maxpool_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "maxpool_grad").then(|| Ok(MaxPoolGrad { geom: PoolGeom::from_text(t)? }))
    }

    fn attrs(&self) -> String {
        self.geom.attrs()
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        super::same(&self.geom.infer_image(ins[0])?, ins[1], "pooled input and dy")?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, dy) = (ins[0], ins[1]);
        let (h, w) = (x.shape[2], x.shape[3]);
        let per_plane = dy.shape[2] * dy.shape[3];
        let mut dx = Tensor::zeros(&x.shape);
        for (p, plane) in x.data.chunks(h * w).enumerate() {
            for (o, win) in self.geom.windows(h, w).enumerate() {
                dx.data[p * h * w + winner(plane, &win)] += dy.data[p * per_plane + o];
            }
        }
        Ok(vec![dx])
    }
}

/// The divisor of a padded window's mean: the whole window (`count_include_pad`, as
/// PyTorch's default), or only its positions inside the input.
pub fn avg_divisor(geom: &PoolGeom, include_pad: bool, inside: usize) -> usize {
    if include_pad {
        geom.size[0] * geom.size[1]
    } else {
        inside
    }
}

/// `exclude_pad` in the IR text when padded positions are not counted.
fn include_pad_attr(include_pad: bool) -> &'static str {
    if include_pad {
        ""
    } else {
        " exclude_pad"
    }
}

/// Mean over each window; with padding, the padded zeros count in the divisor when
/// `include_pad` (PyTorch's `count_include_pad=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool {
    pub geom: PoolGeom,
    pub include_pad: bool,
}

impl OpRule for AvgPool {
    fn name(&self) -> &'static str {
        "avgpool"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "avgpool")
            .then(|| Ok(AvgPool { geom: PoolGeom::from_text(t)?, include_pad: !t.flag("exclude_pad") }))
    }

    fn attrs(&self) -> String {
        self.geom.attrs() + include_pad_attr(self.include_pad)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        self.geom.infer_pool(ins)
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        let xs = cx.shape(cx.inputs[0]).to_vec();
        let grad = AvgPoolGrad { geom: self.geom, input_hw: [xs[2], xs[3]], include_pad: self.include_pad };
        Ok(vec![Some(cx.emit1(grad, &[dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        self.geom.pool(ins[0], |plane, win| {
            let inv = T::one() / T::from_usize(avg_divisor(&self.geom, self.include_pad, win.len()));
            win.iter().map(|&i| plane[i]).sum::<T>() * inv
        })
    }
}

/// The average-pool gradient: dy / divisor to every input element of its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPoolGrad {
    pub geom: PoolGeom,
    pub input_hw: [usize; 2],
    pub include_pad: bool,
}

impl OpRule for AvgPoolGrad {
    fn name(&self) -> &'static str {
        "avgpool_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "avgpool_grad").then(|| {
            Ok(AvgPoolGrad {
                geom: PoolGeom::from_text(t)?,
                input_hw: t.pair("input_hw")?,
                include_pad: !t.flag("exclude_pad"),
            })
        })
    }

    fn attrs(&self) -> String {
        format!("{} input_hw={:?}{}", self.geom.attrs(), self.input_hw, include_pad_attr(self.include_pad))
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        rank(ins[0], 4, "dy")?;
        let [h, w] = self.input_hw;
        let x = vec![ins[0][0], ins[0][1], h, w];
        super::same(&self.geom.infer_image(&x)?, ins[0], "pooled input and dy")?;
        Ok(vec![x])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let dy = ins[0];
        let [h, w] = self.input_hw;
        let per_plane = dy.shape[2] * dy.shape[3];
        let mut dx = Tensor::zeros(&[dy.shape[0], dy.shape[1], h, w]);
        for p in 0..dy.shape[0] * dy.shape[1] {
            for (o, win) in self.geom.windows(h, w).enumerate() {
                let inv = T::one() / T::from_usize(avg_divisor(&self.geom, self.include_pad, win.len()));
                for i in win {
                    dx.data[p * h * w + i] += dy.data[p * per_plane + o] * inv;
                }
            }
        }
        Ok(vec![dx])
    }
}

/// [N, C, H, W] → [N, C]: the mean of each channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalAvgPool;

impl OpRule for GlobalAvgPool {
    fn name(&self) -> &'static str {
        "global_avgpool"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("global_avgpool", || GlobalAvgPool)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        global_pool_shape(ins)
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        let xs = cx.shape(cx.inputs[0]).to_vec();
        Ok(vec![Some(cx.emit1(GlobalAvgPoolGrad { hw: [xs[2], xs[3]] }, &[dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let x = ins[0];
        let hw = x.shape[2] * x.shape[3];
        let inv = T::one() / T::from_usize(hw);
        let data = x.data.chunks(hw).map(|p| p.iter().copied().sum::<T>() * inv).collect();
        Ok(vec![Tensor::new(vec![x.shape[0], x.shape[1]], data)])
    }
}

/// dx[n,c,·,·] = dy[n,c] / (H·W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalAvgPoolGrad {
    pub hw: [usize; 2],
}

impl OpRule for GlobalAvgPoolGrad {
    fn name(&self) -> &'static str {
        "global_avgpool_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "global_avgpool_grad").then(|| Ok(GlobalAvgPoolGrad { hw: t.pair("hw")? }))
    }

    fn attrs(&self) -> String {
        format!("hw={:?}", self.hw)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        rank(ins[0], 2, "dy")?;
        Ok(vec![vec![ins[0][0], ins[0][1], self.hw[0], self.hw[1]]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let dy = ins[0];
        let hw = self.hw[0] * self.hw[1];
        let inv = T::one() / T::from_usize(hw);
        let data = dy.data.iter().flat_map(|&g| std::iter::repeat_n(g * inv, hw)).collect();
        Ok(vec![Tensor::new(vec![dy.shape[0], dy.shape[1], self.hw[0], self.hw[1]], data)])
    }
}

/// [N, C, H, W] → [N, C]: the maximum of each channel; the first maximum in row-major order
/// wins (strict `>`), NaN wins (PyTorch's `AdaptiveMaxPool2d(1)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalMaxPool;

impl OpRule for GlobalMaxPool {
    fn name(&self) -> &'static str {
        "global_maxpool"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("global_maxpool", || GlobalMaxPool)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        global_pool_shape(ins)
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        Ok(vec![Some(cx.emit1(GlobalMaxPoolGrad, &[cx.inputs[0], dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let x = ins[0];
        let data = x.data.chunks(x.shape[2] * x.shape[3]).map(|p| p[super::dense::argmax_first(p)]).collect();
        Ok(vec![Tensor::new(vec![x.shape[0], x.shape[1]], data)])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        super::numel(ins[0])
    }
}

/// (x, dy) → dx: each channel's dy goes to its winner, zeros elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalMaxPoolGrad;

impl OpRule for GlobalMaxPoolGrad {
    fn name(&self) -> &'static str {
        "global_maxpool_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("global_maxpool_grad", || GlobalMaxPoolGrad)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        rank(ins[0], 4, "input")?;
        super::same(&[ins[0][0], ins[0][1]], ins[1], "pooled input and dy")?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, dy) = (ins[0], ins[1]);
        let hw = x.shape[2] * x.shape[3];
        let mut dx = Tensor::zeros(&x.shape);
        for (p, plane) in x.data.chunks(hw).enumerate() {
            dx.data[p * hw + super::dense::argmax_first(plane)] = dy.data[p];
        }
        Ok(vec![dx])
    }
}

/// [N, C, H, W] → [N, C, H·fh, W·fw], nearest neighbour: y[i, j] = x[i / fh, j / fw]
/// (PyTorch's `nn.Upsample(scale_factor=(fh, fw), mode="nearest")`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample {
    pub factor: [usize; 2],
}

impl OpRule for Upsample {
    fn name(&self) -> &'static str {
        "upsample"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "upsample").then(|| Ok(Upsample { factor: t.positive_pair("factor")? }))
    }

    fn attrs(&self) -> String {
        format!("factor={:?}", self.factor)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        let x = ins[0];
        rank(x, 4, "upsample's input")?;
        Ok(vec![vec![x[0], x[1], x[2] * self.factor[0], x[3] * self.factor[1]]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        Ok(vec![Some(cx.emit1(UpsampleGrad { factor: self.factor }, &[dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let x = ins[0];
        let out = self.infer(&[x.shape.as_slice()])?.remove(0);
        let (h, w, [fh, fw]) = (x.shape[2], x.shape[3], self.factor);
        let mut data = Vec::with_capacity(out.iter().product());
        for plane in x.data.chunks(h * w) {
            for i in 0..h * fh {
                for j in 0..w * fw {
                    data.push(plane[(i / fh) * w + j / fw]);
                }
            }
        }
        Ok(vec![Tensor::new(out, data)])
    }

    fn flops(&self, _: &Shapes, _: &Shapes) -> u64 {
        0
    }
}

/// Upsampling's gradient: dx[i, j] = Σ over its fh×fw block of dy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpsampleGrad {
    pub factor: [usize; 2],
}

impl OpRule for UpsampleGrad {
    fn name(&self) -> &'static str {
        "upsample_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "upsample_grad").then(|| Ok(UpsampleGrad { factor: t.positive_pair("factor")? }))
    }

    fn attrs(&self) -> String {
        format!("factor={:?}", self.factor)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        let dy = ins[0];
        rank(dy, 4, "upsample_grad's input")?;
        let [fh, fw] = self.factor;
        if !dy[2].is_multiple_of(fh) || !dy[3].is_multiple_of(fw) {
            return Err(format!("{dy:?} is not an upsampling by {:?}", self.factor));
        }
        Ok(vec![vec![dy[0], dy[1], dy[2] / fh, dy[3] / fw]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let dy = ins[0];
        let out = self.infer(&[dy.shape.as_slice()])?.remove(0);
        let (h, w, [fh, fw]) = (out[2], out[3], self.factor);
        let mut data = vec![T::zero(); out.iter().product()];
        for (plane, dx) in dy.data.chunks(h * fh * w * fw).zip(data.chunks_mut(h * w)) {
            for i in 0..h {
                for j in 0..w {
                    let mut s = T::zero();
                    for a in 0..fh {
                        for b in 0..fw {
                            s += plane[(i * fh + a) * w * fw + j * fw + b];
                        }
                    }
                    dx[i * w + j] = s;
                }
            }
        }
        Ok(vec![Tensor::new(out, data)])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        super::numel(ins[0])
    }
}

/// One output's two taps on one axis of a bilinear upsampling, relative to its input
/// position i (the output is o = f·i + r): inputs i + d0 and i + d1 with weights w0, w1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearTap {
    pub d0: i64,
    pub d1: i64,
    pub w0: f32,
    pub w1: f32,
}

/// PyTorch's `align_corners=False` rule on an axis of `n` inputs upsampled by `f`, for
/// output o = f·i + r: the source position s = max((o + ½)/f − ½, 0), taps ⌊s⌋ and
/// ⌊s⌋ + 1 (the last input twice at the far edge), weights 1 − λ and λ for λ = s − ⌊s⌋.
/// Computed exactly (in f64) and rounded once, so the weights repeat with period f.
pub fn linear_tap(n: usize, f: usize, i: usize, r: usize) -> LinearTap {
    let s = (((f * i + r) as f64 + 0.5) / f as f64 - 0.5).max(0.0);
    let i0 = (s.floor() as usize).min(n - 1);
    let i1 = (i0 + 1).min(n - 1);
    let l = s - i0 as f64;
    LinearTap { d0: i0 as i64 - i as i64, d1: i1 as i64 - i as i64, w0: (1.0 - l) as f32, w1: l as f32 }
}

/// Runs of consecutive input positions lo..hi on an axis whose taps (one per residue r)
/// are the same relative to i: the first and last positions, where the edge clamps, and
/// the interior between them.
pub fn linear_runs(n: usize, f: usize) -> Vec<(usize, usize, Vec<LinearTap>)> {
    let mut runs: Vec<(usize, usize, Vec<LinearTap>)> = vec![];
    for i in 0..n {
        let taps: Vec<LinearTap> = (0..f).map(|r| linear_tap(n, f, i, r)).collect();
        match runs.last_mut() {
            Some(run) if run.2 == taps => run.1 = i + 1,
            _ => runs.push((i, i + 1, taps)),
        }
    }
    runs
}

/// For every output of an [h, w] plane upsampled by [fh, fw], in row-major order: the
/// four (input index, weight) pairs, rows outer: (y0,x0), (y0,x1), (y1,x0), (y1,x1).
fn bilinear_taps(h: usize, w: usize, [fh, fw]: [usize; 2]) -> impl Iterator<Item = [(usize, f32, f32); 4]> {
    let axis = |n: usize, f: usize| -> Vec<(usize, usize, f32, f32)> {
        (0..n * f)
            .map(|o| {
                let t = linear_tap(n, f, o / f, o % f);
                let i = (o / f) as i64;
                ((i + t.d0) as usize, (i + t.d1) as usize, t.w0, t.w1)
            })
            .collect()
    };
    let (rows, cols) = (axis(h, fh), axis(w, fw));
    rows.into_iter().flat_map(move |(y0, y1, a0, a1)| {
        let cols = cols.clone();
        cols.into_iter().map(move |(x0, x1, b0, b1)| {
            [(y0 * w + x0, a0, b0), (y0 * w + x1, a0, b1), (y1 * w + x0, a1, b0), (y1 * w + x1, a1, b1)]
        })
    })
}

/// [N, C, H, W] → [N, C, H·fh, W·fw], bilinear with `align_corners=False` (PyTorch's
/// `nn.Upsample(scale_factor=f, mode="bilinear")`): y = a0·(b0·x00 + b1·x01) + a1·(b0·x10
/// + b1·x11) with the row weights a and column weights b of [`linear_tap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpsampleBilinear {
    pub factor: [usize; 2],
}

impl OpRule for UpsampleBilinear {
    fn name(&self) -> &'static str {
        "upsample_bilinear"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "upsample_bilinear").then(|| Ok(UpsampleBilinear { factor: t.positive_pair("factor")? }))
    }

    fn attrs(&self) -> String {
        format!("factor={:?}", self.factor)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        Upsample { factor: self.factor }.infer(ins)
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        Ok(vec![Some(cx.emit1(UpsampleBilinearGrad { factor: self.factor }, &[dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let x = ins[0];
        let out = self.infer(&[x.shape.as_slice()])?.remove(0);
        let (h, w) = (x.shape[2], x.shape[3]);
        let mut data = Vec::with_capacity(out.iter().product());
        let wt = |v: f32| T::from_f64(f64::from(v));
        for plane in x.data.chunks(h * w) {
            for [(i00, a0, b0), (i01, _, b1), (i10, a1, _), (i11, ..)] in bilinear_taps(h, w, self.factor) {
                let top = wt(b0) * plane[i00] + wt(b1) * plane[i01];
                let bottom = wt(b0) * plane[i10] + wt(b1) * plane[i11];
                data.push(wt(a0) * top + wt(a1) * bottom);
            }
        }
        Ok(vec![Tensor::new(out, data)])
    }

    fn flops(&self, _: &Shapes, outs: &Shapes) -> u64 {
        9 * super::numel(outs[0])
    }
}

/// Bilinear upsampling's gradient: each output's dy goes to its four inputs with their
/// weights' products, added in row-major output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpsampleBilinearGrad {
    pub factor: [usize; 2],
}

impl OpRule for UpsampleBilinearGrad {
    fn name(&self) -> &'static str {
        "upsample_bilinear_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "upsample_bilinear_grad").then(|| Ok(UpsampleBilinearGrad { factor: t.positive_pair("factor")? }))
    }

    fn attrs(&self) -> String {
        format!("factor={:?}", self.factor)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        UpsampleGrad { factor: self.factor }.infer(ins)
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let dy = ins[0];
        let out = self.infer(&[dy.shape.as_slice()])?.remove(0);
        let (h, w) = (out[2], out[3]);
        let mut data = vec![T::zero(); out.iter().product()];
        let wt = |v: f32| T::from_f64(f64::from(v));
        let big = dy.shape[2] * dy.shape[3];
        for (plane, dx) in dy.data.chunks(big).zip(data.chunks_mut(h * w)) {
            for (g, taps) in plane.iter().zip(bilinear_taps(h, w, self.factor)) {
                for (i, a, b) in taps {
                    dx[i] += wt(a) * wt(b) * *g;
                }
            }
        }
        Ok(vec![Tensor::new(out, data)])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        12 * super::numel(ins[0])
    }
}
