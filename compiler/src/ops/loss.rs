//! Losses and their gradients. A loss is the root of the training graph: its cotangent
//! is 1, so each gradient op computes d(loss)/d(input) directly.
//!
//! Reductions: softmax cross-entropy is the mean over the batch; binary cross-entropy and
//! MSE are means over all elements (as PyTorch's defaults).

use super::{arity, rank, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::tensor::{Real, Tensor};
use crate::Error;

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
pub struct SoftmaxCrossEntropy;

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
        t.named("softmax_cross_entropy", || SoftmaxCrossEntropy)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_class_loss(ins)?;
        Ok(vec![vec![]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        root_only(dys, self.name())?;
        let (z, t) = (cx.inputs[0], cx.inputs[1]);
        Ok(vec![Some(cx.emit1(SoftmaxCrossEntropyGrad, &[z, t])?), None])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, t) = (ins[0], ins[1]);
        let k = z.shape[1];
        let mut total = 0.0;
        for (row, &label) in z.data.chunks(k).zip(&t.data) {
            total += logsumexp(row) - row[class_index(label, k)?].as_f64();
        }
        Ok(vec![Tensor::scalar(T::from_f64(total / z.shape[0] as f64))])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        4 * super::numel(ins[0])
    }
}

/// (softmax(z) − onehot(label)) / N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxCrossEntropyGrad;

impl OpRule for SoftmaxCrossEntropyGrad {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("softmax_cross_entropy_grad", || SoftmaxCrossEntropyGrad)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_class_loss(ins)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, t) = (ins[0], ins[1]);
        let (n, k) = (z.shape[0], z.shape[1]);
        let inv_n = T::one() / T::from_usize(n);
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
pub struct BceWithLogits;

impl OpRule for BceWithLogits {
    fn name(&self) -> &'static str {
        "bce_with_logits"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("bce_with_logits", || BceWithLogits)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![vec![]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        root_only(dys, self.name())?;
        let (z, t) = (cx.inputs[0], cx.inputs[1]);
        Ok(vec![Some(cx.emit1(BceWithLogitsGrad, &[z, t])?), None])
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
        Ok(vec![Tensor::scalar(T::from_f64(total / z.data.len() as f64))])
    }
}

/// (sigmoid(z) − t) / (N·K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BceWithLogitsGrad;

impl OpRule for BceWithLogitsGrad {
    fn name(&self) -> &'static str {
        "bce_with_logits_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("bce_with_logits_grad", || BceWithLogitsGrad)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, t) = (ins[0], ins[1]);
        let inv = T::one() / T::from_usize(z.data.len());
        let sig = crate::layers::Activation::Sigmoid;
        let data = z.data.iter().zip(&t.data).map(|(&z, &t)| (sig.apply(z) - t) * inv).collect();
        Ok(vec![Tensor::new(z.shape.clone(), data)])
    }
}

/// mean (y − t)².
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mse;

impl OpRule for Mse {
    fn name(&self) -> &'static str {
        "mse"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("mse", || Mse)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![vec![]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        root_only(dys, self.name())?;
        let (y, t) = (cx.inputs[0], cx.inputs[1]);
        Ok(vec![Some(cx.emit1(MseGrad, &[y, t])?), None])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (y, t) = (ins[0], ins[1]);
        let total: f64 = y.data.iter().zip(&t.data).map(|(y, t)| (y.as_f64() - t.as_f64()).powi(2)).sum();
        Ok(vec![Tensor::scalar(T::from_f64(total / y.data.len() as f64))])
    }
}

/// 2(y − t) / (N·K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MseGrad;

impl OpRule for MseGrad {
    fn name(&self) -> &'static str {
        "mse_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("mse_grad", || MseGrad)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        infer_pair(ins)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (y, t) = (ins[0], ins[1]);
        let k = T::from_f64(2.0) / T::from_usize(y.data.len());
        let data = y.data.iter().zip(&t.data).map(|(&y, &t)| (y - t) * k).collect();
        Ok(vec![Tensor::new(y.shape.clone(), data)])
    }
}
