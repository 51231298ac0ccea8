//! Shape-only and simple elementwise ops: reshape, add, dropout.

use super::{arity, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::tensor::{Real, Tensor};
use crate::Error;

/// Same data, new shape (flatten). Free at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl OpRule for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "reshape").then(|| Ok(Reshape { shape: t.list("shape")? }))
    }

    fn attrs(&self) -> String {
        format!("shape={:?}", self.shape)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        if crate::shape::elements(ins[0]) != crate::shape::elements(&self.shape) {
            return Err(format!("cannot reshape {:?} to {:?}", ins[0], self.shape));
        }
        Ok(vec![self.shape.clone()])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        let shape = cx.shape(cx.inputs[0]).to_vec();
        Ok(vec![Some(cx.emit1(Reshape { shape }, &[dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        Ok(vec![Tensor::new(self.shape.clone(), ins[0].data.clone())])
    }

    fn flops(&self, _: &Shapes, _: &Shapes) -> u64 {
        0
    }
}

/// a + b, equal shapes (no broadcasting). Also sums gradient contributions in autodiff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Add;

impl OpRule for Add {
    fn name(&self) -> &'static str {
        "add"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("add", || Add)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        super::same(ins[0], ins[1], "operands")?;
        Ok(vec![ins[0].to_vec()])
    }

    fn vjp(&self, _: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        Ok(vec![dys[0], dys[0]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let data = ins[0].data.iter().zip(&ins[1].data).map(|(&a, &b)| a + b).collect();
        Ok(vec![Tensor::new(ins[0].shape.clone(), data)])
    }
}

/// SplitMix64's finalizer: a good 64-bit mixing function, cheap to emit as machine code.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// The per-step key of a dropout statement's mask.
pub fn dropout_key(seed: u64, step: u64, stream: u64) -> u64 {
    mix64(seed ^ mix64(step.wrapping_add(0x632be59bd9b4e019) ^ mix64(stream.wrapping_add(0x9e3779b97f4a7c15))))
}

/// The threshold on 24 random bits below which an element is dropped.
pub fn dropout_threshold(p: f64) -> u64 {
    (p * (1u64 << 24) as f64).round() as u64
}

/// Whether element `index` is kept: a counter-based hash of (seed, step, statement,
/// element), so masks need no state and the backward pass recomputes the same mask.
pub fn dropout_keep(key: u64, index: u64, threshold: u64) -> bool {
    (mix64(key ^ index.wrapping_mul(0x9e3779b97f4a7c15)) >> 40) >= threshold
}

/// Inverted dropout: kept values are scaled by 1/(1−p). Its own VJP: the mask depends
/// only on the element's index, so dx = dropout(dy) with the same key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub p: f64,
    /// The statement's layer index, which separates the masks of different statements.
    pub stream: u64,
}

impl OpRule for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "dropout").then(|| Ok(Dropout { p: t.f64("p")?, stream: t.u64("stream")? }))
    }

    fn attrs(&self) -> String {
        format!("p={} stream={}", self.p, self.stream)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        Ok(vec![Some(cx.emit1(*self, &[dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], cx: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let key = dropout_key(cx.seed, cx.step, self.stream);
        let threshold = dropout_threshold(self.p);
        let scale = T::from_f64(1.0 / (1.0 - self.p));
        let data = ins[0]
            .data
            .iter()
            .enumerate()
            .map(|(i, &x)| if dropout_keep(key, i as u64, threshold) { x * scale } else { T::zero() })
            .collect();
        Ok(vec![Tensor::new(ins[0].shape.clone(), data)])
    }
}
