//! 2-D convolution (cross-correlation, NCHW) and its two backward passes.

use super::{arity, rank, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::shape::window_out;
use crate::tensor::{Real, Tensor};
use crate::Error;

/// Stride, zero padding (each side), dilation — each as (rows, cols) — and groups of a
/// convolution. Groups split the input channels and the filters into `groups` equal
/// parts; filter `o` sees only the input channels of its part (PyTorch's layout: the
/// weight is [F, C/groups, kh, kw]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvGeom {
    /// Stride and padding with no dilation and one group.
    pub fn plain(stride: [usize; 2], padding: [usize; 2]) -> ConvGeom {
        ConvGeom { stride, padding, dilation: [1, 1], groups: 1 }
    }

    /// Dilation and groups are printed only when they are not 1, so the IR of a plain
    /// convolution reads as before.
    fn attrs(&self) -> String {
        let mut s = format!("stride={:?} padding={:?}", self.stride, self.padding);
        if self.dilation != [1, 1] {
            s += &format!(" dilation={:?}", self.dilation);
        }
        if self.groups != 1 {
            s += &format!(" groups={}", self.groups);
        }
        s
    }

    fn from_text(t: &TextOp) -> Result<ConvGeom, String> {
        let dilation = if t.has("dilation") { t.positive_pair("dilation")? } else { [1, 1] };
        let groups = t.opt_usize("groups")?.unwrap_or(1);
        if groups == 0 {
            return Err("`groups=` must be at least 1".into());
        }
        Ok(ConvGeom { stride: t.positive_pair("stride")?, padding: t.pair("padding")?, dilation, groups })
    }

    /// The extent of a dilated kernel: (k − 1)·d + 1.
    pub fn span(&self, k: [usize; 2]) -> Option<[usize; 2]> {
        let one = |a: usize| k[a].checked_sub(1)?.checked_mul(self.dilation[a])?.checked_add(1);
        Some([one(0)?, one(1)?])
    }

    /// Output height and width for an input and a kernel.
    pub fn out_hw(&self, hw: [usize; 2], k: [usize; 2]) -> Option<[usize; 2]> {
        let k = self.span(k)?;
        Some([
            window_out(hw[0], self.padding[0].checked_mul(2)?, k[0], self.stride[0])?,
            window_out(hw[1], self.padding[1].checked_mul(2)?, k[1], self.stride[1])?,
        ])
    }

    /// The input coordinate read by output `o` at kernel offset `k`, if inside the input.
    #[inline]
    pub fn src(&self, axis: usize, o: usize, k: usize, n: usize) -> Option<usize> {
        let i = (o * self.stride[axis] + k * self.dilation[axis]).checked_sub(self.padding[axis])?;
        (i < n).then_some(i)
    }

    /// Checks that `channels` inputs and `filters` outputs split into the groups.
    fn check_groups(&self, channels: usize, filters: usize) -> Result<(), String> {
        if !channels.is_multiple_of(self.groups) || !filters.is_multiple_of(self.groups) {
            return Err(format!(
                "{channels} input channels and {filters} filters do not split into {} groups",
                self.groups
            ));
        }
        Ok(())
    }
}

/// The (input channel, weight row) pairs a filter reads: the channels of its group.
/// `cg` is the weight's second dimension (channels per group), `fg` filters per group.
#[inline]
fn group_channels(o: usize, cg: usize, fg: usize) -> impl Iterator<Item = (usize, usize)> {
    let first = o / fg * cg;
    (0..cg).map(move |cl| (first + cl, o * cg + cl))
}

/// y[n,f,oy,ox] = Σ_{c in f's group, ky, kx} x[n,c,oy·s+ky·d−p, ox·s+kx·d−p] · w[f,c mod C/g,ky,kx].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub geom: ConvGeom,
}

impl OpRule for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "conv2d").then(|| Ok(Conv2d { geom: ConvGeom::from_text(t)? }))
    }

    fn attrs(&self) -> String {
        self.geom.attrs()
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        rank(ins[0], 4, "input")?;
        rank(ins[1], 4, "weight")?;
        let (x, w) = (ins[0], ins[1]);
        self.geom.check_groups(x[1], w[0])?;
        if x[1] != w[1] * self.geom.groups {
            return Err(format!("input has {} channels, weight expects {}", x[1], w[1] * self.geom.groups));
        }
        let [ho, wo] = self.geom.out_hw([x[2], x[3]], [w[2], w[3]]).ok_or("kernel larger than padded input")?;
        Ok(vec![vec![x[0], w[0], ho, wo]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None, None]) };
        let (x, w) = (cx.inputs[0], cx.inputs[1]);
        let xs = cx.shape(x).to_vec();
        let ws = cx.shape(w).to_vec();
        let dx = cx.emit1(Conv2dGradInput { geom: self.geom, input_hw: [xs[2], xs[3]] }, &[dy, w])?;
        let dw = cx.emit1(Conv2dGradWeight { geom: self.geom, kernel: [ws[2], ws[3]] }, &[x, dy])?;
        Ok(vec![Some(dx), Some(dw)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, w) = (ins[0], ins[1]);
        let [n, c, h, wd] = x.shape[..] else { unreachable!() };
        let [f, cg, kh, kw] = w.shape[..] else { unreachable!() };
        let fg = f / self.geom.groups;
        let [ho, wo] = self.geom.out_hw([h, wd], [kh, kw]).unwrap();
        let mut y = Tensor::zeros(&[n, f, ho, wo]);
        for b in 0..n {
            for o in 0..f {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut s = T::zero();
                        for (ci, wrow) in group_channels(o, cg, fg) {
                            for ky in 0..kh {
                                let Some(iy) = self.geom.src(0, oy, ky, h) else { continue };
                                for kx in 0..kw {
                                    let Some(ix) = self.geom.src(1, ox, kx, wd) else { continue };
                                    s += x.data[((b * c + ci) * h + iy) * wd + ix] * w.data[(wrow * kh + ky) * kw + kx];
                                }
                            }
                        }
                        y.data[((b * f + o) * ho + oy) * wo + ox] = s;
                    }
                }
            }
        }
        Ok(vec![y])
    }

    fn flops(&self, ins: &Shapes, outs: &Shapes) -> u64 {
        let w = ins[1];
        2 * super::numel(outs[0]) * (w[1] * w[2] * w[3]) as u64
    }
}

/// dx of a convolution from dy and the weight: a transposed convolution, which is also
/// the forward op of `conv_transpose2d` (so it has a gradient of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGradInput {
    pub geom: ConvGeom,
    pub input_hw: [usize; 2],
}

impl OpRule for Conv2dGradInput {
    fn name(&self) -> &'static str {
        "conv2d_grad_input"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "conv2d_grad_input")
            .then(|| Ok(Conv2dGradInput { geom: ConvGeom::from_text(t)?, input_hw: t.pair("input_hw")? }))
    }

    fn attrs(&self) -> String {
        format!("{} input_hw={:?}", self.geom.attrs(), self.input_hw)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        rank(ins[0], 4, "dy")?;
        rank(ins[1], 4, "weight")?;
        let (dy, w) = (ins[0], ins[1]);
        self.geom.check_groups(w[1] * self.geom.groups, w[0])?;
        let out = self.geom.out_hw(self.input_hw, [w[2], w[3]]).ok_or("kernel larger than padded input")?;
        if dy[1] != w[0] || [dy[2], dy[3]] != out {
            return Err(format!("dy {dy:?} does not fit weight {w:?} and input {:?}", self.input_hw));
        }
        Ok(vec![vec![dy[0], w[1] * self.geom.groups, self.input_hw[0], self.input_hw[1]]])
    }

    /// dx = conv2d_grad_input(dy, w) is linear in each input: its cotangent g flows to dy
    /// through the convolution and to w through the weight gradient of (g, dy).
    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(g) = dys[0] else { return Ok(vec![None, None]) };
        let (dy, w) = (cx.inputs[0], cx.inputs[1]);
        let ws = cx.shape(w).to_vec();
        let d_dy = cx.emit1(Conv2d { geom: self.geom }, &[g, w])?;
        let d_w = cx.emit1(Conv2dGradWeight { geom: self.geom, kernel: [ws[2], ws[3]] }, &[g, dy])?;
        Ok(vec![Some(d_dy), Some(d_w)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (dy, w) = (ins[0], ins[1]);
        let [n, f, ho, wo] = dy.shape[..] else { unreachable!() };
        let [_, cg, kh, kw] = w.shape[..] else { unreachable!() };
        let (c, fg) = (cg * self.geom.groups, f / self.geom.groups);
        let [h, wd] = self.input_hw;
        let mut dx = Tensor::zeros(&[n, c, h, wd]);
        for b in 0..n {
            for o in 0..f {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let g = dy.data[((b * f + o) * ho + oy) * wo + ox];
                        for (ci, wrow) in group_channels(o, cg, fg) {
                            for ky in 0..kh {
                                let Some(iy) = self.geom.src(0, oy, ky, h) else { continue };
                                for kx in 0..kw {
                                    let Some(ix) = self.geom.src(1, ox, kx, wd) else { continue };
                                    dx.data[((b * c + ci) * h + iy) * wd + ix] +=
                                        g * w.data[(wrow * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(vec![dx])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        let w = ins[1];
        2 * super::numel(ins[0]) * (w[1] * w[2] * w[3]) as u64
    }
}

/// dw of a convolution from the input and dy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGradWeight {
    pub geom: ConvGeom,
    pub kernel: [usize; 2],
}

impl OpRule for Conv2dGradWeight {
    fn name(&self) -> &'static str {
        "conv2d_grad_weight"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "conv2d_grad_weight")
            .then(|| Ok(Conv2dGradWeight { geom: ConvGeom::from_text(t)?, kernel: t.pair("kernel")? }))
    }

    fn attrs(&self) -> String {
        format!("{} kernel={:?}", self.geom.attrs(), self.kernel)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        rank(ins[0], 4, "input")?;
        rank(ins[1], 4, "dy")?;
        let (x, dy) = (ins[0], ins[1]);
        self.geom.check_groups(x[1], dy[1])?;
        let out = self.geom.out_hw([x[2], x[3]], self.kernel).ok_or("kernel larger than padded input")?;
        if dy[0] != x[0] || [dy[2], dy[3]] != out {
            return Err(format!("dy {dy:?} does not fit input {x:?}"));
        }
        Ok(vec![vec![dy[1], x[1] / self.geom.groups, self.kernel[0], self.kernel[1]]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, dy) = (ins[0], ins[1]);
        let [n, c, h, wd] = x.shape[..] else { unreachable!() };
        let [_, f, ho, wo] = dy.shape[..] else { unreachable!() };
        let [kh, kw] = self.kernel;
        let (cg, fg) = (c / self.geom.groups, f / self.geom.groups);
        let mut dw = Tensor::zeros(&[f, cg, kh, kw]);
        for o in 0..f {
            for (ci, wrow) in group_channels(o, cg, fg) {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let mut s = T::zero();
                        for b in 0..n {
                            for oy in 0..ho {
                                let Some(iy) = self.geom.src(0, oy, ky, h) else { continue };
                                for ox in 0..wo {
                                    let Some(ix) = self.geom.src(1, ox, kx, wd) else { continue };
                                    s += x.data[((b * c + ci) * h + iy) * wd + ix]
                                        * dy.data[((b * f + o) * ho + oy) * wo + ox];
                                }
                            }
                        }
                        dw.data[(wrow * kh + ky) * kw + kx] = s;
                    }
                }
            }
        }
        Ok(vec![dw])
    }

    fn flops(&self, ins: &Shapes, outs: &Shapes) -> u64 {
        let dy = ins[1];
        2 * super::numel(outs[0]) * (dy[0] * dy[2] * dy[3]) as u64
    }
}
