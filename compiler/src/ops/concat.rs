//! Concatenation along channels (`concat(a, b, ...)`: PyTorch's `torch.cat(..., dim=1)`)
//! and its gradient, the slice of a channel range. Both move data only.

use super::{arity, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::tensor::{Real, Tensor};
use crate::Error;

/// (batch, channels, values per channel) of [N, C] or [N, C, H, W].
fn layout(s: &[usize]) -> (usize, usize, usize) {
    (s[0], s[1], s[2..].iter().product())
}

/// [N, C₀, …], [N, C₁, …], … → [N, ΣCᵢ, …]: every input's channels of a sample, in
/// order (the inputs' other dimensions equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat;

impl OpRule for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("concat", || Concat)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        if ins.len() < 2 {
            return Err(format!("expects 2 or more inputs, found {}", ins.len()));
        }
        let first = ins[0];
        if first.len() != 2 && first.len() != 4 {
            return Err(format!("concat's inputs must be [N, C] or [N, C, H, W], found {first:?}"));
        }
        let mut channels = 0;
        for s in ins {
            if s.len() != first.len() || s[0] != first[0] || s[2..] != first[2..] {
                return Err(format!("concat's inputs must agree but in channels: {first:?} and {s:?}"));
            }
            channels += s[1];
        }
        let mut out = first.to_vec();
        out[1] = channels;
        Ok(vec![out])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None; cx.inputs.len()]) };
        let mut start = 0;
        let mut grads = vec![];
        for &x in &cx.inputs.clone() {
            let len = cx.shape(x)[1];
            grads.push(Some(cx.emit1(SliceChannels { start, len }, &[dy])?));
            start += len;
        }
        Ok(grads)
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (n, _, inner) = layout(&ins[0].shape);
        let shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape.as_slice()).collect();
        let out_shape = self.infer(&shapes)?.remove(0);
        let mut data = Vec::with_capacity(out_shape.iter().product());
        for b in 0..n {
            for t in ins {
                let run = t.shape[1] * inner;
                data.extend_from_slice(&t.data[b * run..(b + 1) * run]);
            }
        }
        Ok(vec![Tensor::new(out_shape, data)])
    }

    fn flops(&self, _: &Shapes, _: &Shapes) -> u64 {
        0
    }
}

/// [N, C, …] → [N, len, …]: channels `start .. start + len` of every sample (concat's
/// gradient for one of its inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceChannels {
    pub start: usize,
    pub len: usize,
}

impl OpRule for SliceChannels {
    fn name(&self) -> &'static str {
        "slice_channels"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "slice_channels").then(|| Ok(SliceChannels { start: t.usize("start")?, len: t.usize("len")? }))
    }

    fn attrs(&self) -> String {
        format!("start={} len={}", self.start, self.len)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        let s = ins[0];
        if s.len() != 2 && s.len() != 4 {
            return Err(format!("slice_channels' input must be [N, C] or [N, C, H, W], found {s:?}"));
        }
        if self.len == 0 || self.start + self.len > s[1] {
            return Err(format!(
                "channels {}..{} are not within the {} of {s:?}",
                self.start,
                self.start + self.len,
                s[1]
            ));
        }
        let mut out = s.to_vec();
        out[1] = self.len;
        Ok(vec![out])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let x = ins[0];
        let (n, c, inner) = layout(&x.shape);
        let out_shape = self.infer(&[x.shape.as_slice()])?.remove(0);
        let mut data = Vec::with_capacity(n * self.len * inner);
        for b in 0..n {
            let at = (b * c + self.start) * inner;
            data.extend_from_slice(&x.data[at..at + self.len * inner]);
        }
        Ok(vec![Tensor::new(out_shape, data)])
    }

    fn flops(&self, _: &Shapes, _: &Shapes) -> u64 {
        0
    }
}
