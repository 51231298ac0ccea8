//! Elementwise activations, their derivatives, and softmax.
//!
//! NaN propagates: the "negative" branch is taken for `x <= 0`, which NaN fails.

use super::{arity, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::layers::Activation;
use crate::tensor::{Real, Tensor};
use crate::Error;

impl Activation {
    /// Whether the derivative is computed from the output rather than the input, so the
    /// backward pass keeps only the output alive (and a forward GEMM can fuse its
    /// activation without storing the pre-activation). The output determines the
    /// derivative for sigmoid and tanh, and for relu, leaky_relu with a positive slope
    /// and elu with a positive α (y > 0 exactly when x > 0; elu′ = y + α for x ≤ 0).
    pub fn grad_uses_output(self) -> bool {
        match self {
            Activation::Sigmoid | Activation::Tanh | Activation::Relu => true,
            Activation::LeakyRelu { slope } => slope > 0.0,
            Activation::Elu { alpha } => alpha > 0.0,
        }
    }

    pub fn apply<T: Real>(self, x: T) -> T {
        let c = T::from_f64;
        match self {
            Activation::Relu => {
                if x <= T::zero() {
                    T::zero()
                } else {
                    x
                }
            }
            Activation::LeakyRelu { slope } => {
                if x <= T::zero() {
                    c(slope) * x
                } else {
                    x
                }
            }
            Activation::Elu { alpha } => {
                if x <= T::zero() {
                    c(alpha) * x.exp_m1()
                } else {
                    x
                }
            }
            Activation::Sigmoid => {
                if x >= T::zero() {
                    T::one() / (T::one() + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (T::one() + e)
                }
            }
            Activation::Tanh => x.tanh(),
        }
    }

    /// dy · f′, where `v` is the output if [`Self::grad_uses_output`], else the input.
    /// At 0: relu′ = 0, leaky_relu′ = slope, elu′ = α.
    pub fn derivative<T: Real>(self, v: T, dy: T) -> T {
        let c = T::from_f64;
        let from_output = self.grad_uses_output();
        match self {
            Activation::Relu => {
                if v > T::zero() {
                    dy
                } else {
                    T::zero()
                }
            }
            Activation::LeakyRelu { slope } => {
                if v > T::zero() {
                    dy
                } else {
                    dy * c(slope)
                }
            }
            Activation::Elu { alpha } => {
                if v > T::zero() {
                    dy
                } else if from_output {
                    dy * (v + c(alpha))
                } else {
                    dy * c(alpha) * v.exp()
                }
            }
            Activation::Sigmoid => dy * v * (T::one() - v),
            Activation::Tanh => dy * (T::one() - v * v),
        }
    }

    /// The activation an IR op name (`relu`, `leaky_relu`, …) with `t`'s attributes gives.
    fn from_text(name: &str, t: &TextOp) -> Option<Result<Activation, String>> {
        Some(match name {
            "sigmoid" => Ok(Activation::Sigmoid),
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            "leaky_relu" => t.f64("slope").map(|slope| Activation::LeakyRelu { slope }),
            "elu" => t.f64("alpha").map(|alpha| Activation::Elu { alpha }),
            _ => return None,
        })
    }

    fn attrs(self) -> String {
        match self {
            Activation::LeakyRelu { slope } => format!("slope={slope}"),
            Activation::Elu { alpha } => format!("alpha={alpha}"),
            _ => String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Act {
    pub act: Activation,
}

impl OpRule for Act {
    fn name(&self) -> &'static str {
        self.act.name()
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        Activation::from_text(t.name, t).map(|r| r.map(|act| Act { act }))
    }

    fn attrs(&self) -> String {
        self.act.attrs()
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        let v = if self.act.grad_uses_output() { cx.outputs[0] } else { cx.inputs[0] };
        Ok(vec![Some(cx.emit1(ActGrad { act: self.act }, &[v, dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        Ok(vec![ins[0].map(|x| self.act.apply(x))])
    }
}

/// dx = dy · f′ (from the input or the output, see [`Activation::grad_uses_output`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActGrad {
    pub act: Activation,
}

impl OpRule for ActGrad {
    fn name(&self) -> &'static str {
        match self.act {
            Activation::Sigmoid => "sigmoid_grad",
            Activation::Tanh => "tanh_grad",
            Activation::Relu => "relu_grad",
            Activation::LeakyRelu { .. } => "leaky_relu_grad",
            Activation::Elu { .. } => "elu_grad",
        }
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.name.strip_suffix("_grad").and_then(|n| Activation::from_text(n, t)).map(|r| r.map(|act| ActGrad { act }))
    }

    fn attrs(&self) -> String {
        self.act.attrs()
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        super::same(ins[0], ins[1], "value and dy")?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (v, dy) = (ins[0], ins[1]);
        let data = v.data.iter().zip(&dy.data).map(|(&v, &g)| self.act.derivative(v, g)).collect();
        Ok(vec![Tensor::new(v.shape.clone(), data)])
    }
}

/// Softmax over the features of [N, K] (max-subtracted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax;

pub(crate) fn softmax_row<T: Real>(x: &[T], out: &mut [T]) {
    let m = x.iter().fold(T::neg_infinity(), |m, &v| if v > m || v.is_nan() { v } else { m });
    let mut s = T::zero();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m).exp();
        s += *o;
    }
    for o in out.iter_mut() {
        *o = *o / s;
    }
}

impl OpRule for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("softmax", || Softmax)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        super::rank(ins[0], 2, "input")?;
        Ok(vec![ins[0].to_vec()])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        let y = cx.outputs[0];
        Ok(vec![Some(cx.emit1(SoftmaxGrad, &[y, dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let x = ins[0];
        let k = x.shape[1];
        let mut y = Tensor::zeros(&x.shape);
        for (xr, yr) in x.data.chunks(k).zip(y.data.chunks_mut(k)) {
            softmax_row(xr, yr);
        }
        Ok(vec![y])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        4 * super::numel(ins[0])
    }
}

/// dx = y ⊙ (dy − Σ dy⊙y), per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxGrad;

impl OpRule for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("softmax_grad", || SoftmaxGrad)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        super::same(ins[0], ins[1], "y and dy")?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (y, dy) = (ins[0], ins[1]);
        let k = y.shape[1];
        let mut dx = Tensor::zeros(&y.shape);
        for ((yr, gr), dr) in y.data.chunks(k).zip(dy.data.chunks(k)).zip(dx.data.chunks_mut(k)) {
            let dot: T = yr.iter().zip(gr).map(|(&a, &b)| a * b).sum();
            for ((d, &yv), &g) in dr.iter_mut().zip(yr).zip(gr) {
                *d = yv * (g - dot);
            }
        }
        Ok(vec![dx])
    }
}
