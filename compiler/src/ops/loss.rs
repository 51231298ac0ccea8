//! Losses and their gradients. A loss is the root of the training graph: its cotangent
//! is 1, so each gradient op computes d(loss)/d(input) directly.
//!
//! Reductions: softmax cross-entropy is the mean over the batch; binary cross-entropy and
//! MSE are means over all elements (as PyTorch's defaults).

use super::{arity, rank, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::tensor::{Real, Tensor};
use crate::Error;

/// What a loss divides its sum by: `per_sample` terms for each of `samples` samples — the
/// graph's batch `n` unless given (a data-parallel shard's loss is its sum over the global
/// batch's count, so that its per-sample gradients are the single-process ones, bit for bit).
pub fn mean_count(samples: Option<usize>, n: usize, per_sample: usize) -> usize {
    samples.unwrap_or(n) * per_sample
}

fn samples_attr(samples: Option<usize>) -> String {
    samples.map(|s| format!("samples={s}")).unwrap_or_default()
}

fn root_only(dys: &[Option<ValueId>], name: &str) -> Result<(), Error> {
    match dys[0] {
        None => Ok(()),
        Some(_) => Err(Error::Ir(format!("`{name}` must be the root of the graph"))),
    }
}

/// The class index stored (as a float) in a target, checked against the class count.
pub fn class_index<T: Real>(t: T, classes: usize) -> Result<usize, String> {
    let v = t.as_f64();
    if v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes {
        Ok(v as usize)
    } else {
        Err(format!("target {v} is not a class index in 0..{classes}"))
    }
}

/// mean_n [ logsumexp(z_n) − z_n[label_n] ].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxCrossEntropy {
    /// The samples the mean is over, when not the graph's batch ([`mean_count`]).
    pub samples: Option<usize>,
}

/// log Σ exp(z), max-subtracted.
pub fn logsumexp<T: Real>(z: &[T]) -> f64 {
    let m = z.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.as_f64()));
    if z.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    m + z.iter().map(|v| (v.as_f64() - m).exp()).sum::<f64>().ln()
}

fn infer_class_loss(ins: &Shapes) -> Result<(), String> {
    arity(ins, 2)?;
    rank(ins[0], 2, "logits")?;
    if ins[1] != [ins[0][0]] {
        return Err(format!("labels must be [{}], found {:?}", ins[0][0], ins[1]));
    }
    Ok(())
}

impl OpRule for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "softmax_cross_entropy").then(|| Ok(SoftmaxCrossEntropy { samples: t.opt_usize("samples")? }))
    }

    fn attrs(&self) -> String {
        samples_attr(self.samples)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_class_loss(ins)?;
        Ok(vec![vec![]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        root_only(dys, self.name())?;
        let (z, t) = (cx.inputs[0], cx.inputs[1]);
        Ok(vec![Some(cx.emit1(SoftmaxCrossEntropyGrad { samples: self.samples }, &[z, t])?), None])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, t) = (ins[0], ins[1]);
        let k = z.shape[1];
        let mut total = 0.0;
        for (row, &label) in z.data.chunks(k).zip(&t.data) {
            total += logsumexp(row) - row[class_index(label, k)?].as_f64();
        }
        Ok(vec![Tensor::scalar(T::from_f64(total / mean_count(self.samples, z.shape[0], 1) as f64))])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        4 * super::numel(ins[0])
    }
}

/// (softmax(z) − onehot(label)) / N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxCrossEntropyGrad {
    /// The samples the mean is over, when not the graph's batch ([`mean_count`]).
    pub samples: Option<usize>,
}

impl OpRule for SoftmaxCrossEntropyGrad {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "softmax_cross_entropy_grad")
            .then(|| Ok(SoftmaxCrossEntropyGrad { samples: t.opt_usize("samples")? }))
    }

    fn attrs(&self) -> String {
        samples_attr(self.samples)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_class_loss(ins)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, t) = (ins[0], ins[1]);
        let (n, k) = (z.shape[0], z.shape[1]);
        let inv_n = T::one() / T::from_usize(mean_count(self.samples, n, 1));
        let mut dz = Tensor::zeros(&z.shape);
        for ((row, out), &label) in z.data.chunks(k).zip(dz.data.chunks_mut(k)).zip(&t.data) {
            super::activation::softmax_row(row, out);
            out[class_index(label, k)?] -= T::one();
            for v in out.iter_mut() {
                *v *= inv_n;
            }
        }
        Ok(vec![dz])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        4 * super::numel(ins[0])
    }
}

fn infer_pair(ins: &Shapes) -> Result<(), String> {
    arity(ins, 2)?;
    rank(ins[0], 2, "prediction")?;
    super::same(ins[0], ins[1], "prediction and target")
}

/// mean [ max(z,0) − z·t + log(1 + e^−|z|) ]: binary cross-entropy on logits, stable for
/// any z (the model's final `sigmoid` is folded into it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BceWithLogits {
    /// The samples the mean is over, when not the graph's batch ([`mean_count`]).
    pub samples: Option<usize>,
}

impl OpRule for BceWithLogits {
    fn name(&self) -> &'static str {
        "bce_with_logits"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "bce_with_logits").then(|| Ok(BceWithLogits { samples: t.opt_usize("samples")? }))
    }

    fn attrs(&self) -> String {
        samples_attr(self.samples)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![vec![]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        root_only(dys, self.name())?;
        let (z, t) = (cx.inputs[0], cx.inputs[1]);
        Ok(vec![Some(cx.emit1(BceWithLogitsGrad { samples: self.samples }, &[z, t])?), None])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, t) = (ins[0], ins[1]);
        let total: f64 = z
            .data
            .iter()
            .zip(&t.data)
            .map(|(z, t)| {
                let (z, t) = (z.as_f64(), t.as_f64());
                z.max(0.0) - z * t + (-z.abs()).exp().ln_1p()
            })
            .sum();
        let count = mean_count(self.samples, z.shape[0], z.shape[1]);
        Ok(vec![Tensor::scalar(T::from_f64(total / count as f64))])
    }
}

/// (sigmoid(z) − t) / (N·K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BceWithLogitsGrad {
    /// The samples the mean is over, when not the graph's batch ([`mean_count`]).
    pub samples: Option<usize>,
}

impl OpRule for BceWithLogitsGrad {
    fn name(&self) -> &'static str {
        "bce_with_logits_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "bce_with_logits_grad").then(|| Ok(BceWithLogitsGrad { samples: t.opt_usize("samples")? }))
    }

    fn attrs(&self) -> String {
        samples_attr(self.samples)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, t) = (ins[0], ins[1]);
        let inv = T::one() / T::from_usize(mean_count(self.samples, z.shape[0], z.shape[1]));
        let sig = crate::layers::Activation::Sigmoid;
        let data = z.data.iter().zip(&t.data).map(|(&z, &t)| (sig.apply(z) - t) * inv).collect();
        Ok(vec![Tensor::new(z.shape.clone(), data)])
    }
}

/// mean (y − t)².
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mse {
    /// The samples the mean is over, when not the graph's batch ([`mean_count`]).
    pub samples: Option<usize>,
}

impl OpRule for Mse {
    fn name(&self) -> &'static str {
        "mse"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "mse").then(|| Ok(Mse { samples: t.opt_usize("samples")? }))
    }

    fn attrs(&self) -> String {
        samples_attr(self.samples)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![vec![]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        root_only(dys, self.name())?;
        let (y, t) = (cx.inputs[0], cx.inputs[1]);
        Ok(vec![Some(cx.emit1(MseGrad { samples: self.samples }, &[y, t])?), None])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (y, t) = (ins[0], ins[1]);
        let total: f64 = y.data.iter().zip(&t.data).map(|(y, t)| (y.as_f64() - t.as_f64()).powi(2)).sum();
        let count = mean_count(self.samples, y.shape[0], y.shape[1]);
        Ok(vec![Tensor::scalar(T::from_f64(total / count as f64))])
    }
}

/// 2(y − t) / (N·K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MseGrad {
    /// The samples the mean is over, when not the graph's batch ([`mean_count`]).
    pub samples: Option<usize>,
}

impl OpRule for MseGrad {
    fn name(&self) -> &'static str {
        "mse_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "mse_grad").then(|| Ok(MseGrad { samples: t.opt_usize("samples")? }))
    }

    fn attrs(&self) -> String {
        samples_attr(self.samples)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (y, t) = (ins[0], ins[1]);
        let k = T::from_f64(2.0) / T::from_usize(mean_count(self.samples, y.shape[0], y.shape[1]));
        let data = y.data.iter().zip(&t.data).map(|(&y, &t)| (y - t) * k).collect();
        Ok(vec![Tensor::new(y.shape.clone(), data)])
    }
}
