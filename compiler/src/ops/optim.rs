//! Optimizer updates, as `torch.optim.SGD` and `torch.optim.Adam` compute them. The
//! learning rate and the step come from the [`StepCtx`], so a schedule needs no recompile.

use super::{arity, OpRule, Shapes, StepCtx, TextOp};
use crate::tensor::{Real, Tensor};

/// (p, g[, velocity]) → (p′[, velocity′]):
/// g ← g + wd·p; v ← μ·v + g; g ← nesterov ? g + μ·v : v; p ← p − lr·g.
/// (Without momentum there is no velocity. PyTorch's first step sets v = g, which is
/// what μ·0 + g gives; dampening is always 0.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdUpdate {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl SgdUpdate {
    pub fn has_velocity(&self) -> bool {
        self.momentum != 0.0
    }

    /// One element: returns (p′, v′).
    pub fn step(&self, p: f32, g: f32, v: f32, lr: f32) -> (f32, f32) {
        let mut g = g;
        if self.weight_decay != 0.0 {
            g += self.weight_decay as f32 * p;
        }
        let mut v2 = v;
        if self.has_velocity() {
            v2 = self.momentum as f32 * v + g;
            g = if self.nesterov { g + self.momentum as f32 * v2 } else { v2 };
        }
        (p - lr * g, v2)
    }
}

impl OpRule for SgdUpdate {
    fn name(&self) -> &'static str {
        "sgd_update"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "sgd_update").then(|| {
            Ok(SgdUpdate {
                momentum: t.f64("momentum")?,
                nesterov: t.bool("nesterov")?,
                weight_decay: t.f64("weight_decay")?,
            })
        })
    }

    fn attrs(&self) -> String {
        format!("momentum={} nesterov={} weight_decay={}", self.momentum, self.nesterov, self.weight_decay)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        let n = if self.has_velocity() { 3 } else { 2 };
        arity(ins, n)?;
        for s in &ins[1..] {
            super::same(ins[0], s, "parameter and its gradient/state")?;
        }
        Ok(ins[..n - 1].iter().map(|s| s.to_vec()).collect())
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], cx: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (p, g) = (ins[0], ins[1]);
        let lr = cx.lr as f32;
        let mut p2 = p.clone();
        let mut v2 = ins.get(2).map(|v| (*v).clone());
        for i in 0..p.data.len() {
            let v = v2.as_ref().map_or(0.0, |v| v.data[i].as_f64() as f32);
            let (np, nv) = self.step(p.data[i].as_f64() as f32, g.data[i].as_f64() as f32, v, lr);
            p2.data[i] = T::from_f64(np as f64);
            if let Some(v2) = v2.as_mut() {
                v2.data[i] = T::from_f64(nv as f64);
            }
        }
        Ok(std::iter::once(p2).chain(v2).collect())
    }
}

/// (p, g, m, v) → (p′, m′, v′) as `torch.optim.Adam` (L2 weight decay added to g;
/// t = step + 1 for the bias corrections).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamUpdate {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamUpdate {
    /// The per-step scalars: (lr / bias_correction1, 1 / sqrt(bias_correction2)).
    pub fn scalars(&self, lr: f64, step: u64) -> (f32, f32) {
        let t = (step + 1) as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        ((lr / bc1) as f32, (1.0 / bc2.sqrt()) as f32)
    }

    /// One element: returns (p′, m′, v′).
    pub fn step(&self, p: f32, g: f32, m: f32, v: f32, step_size: f32, inv_sqrt_bc2: f32) -> (f32, f32, f32) {
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let g = if self.weight_decay != 0.0 { g + self.weight_decay as f32 * p } else { g };
        let m = b1 * m + (1.0 - b1) * g;
        let v = b2 * v + (1.0 - b2) * g * g;
        let denom = v.sqrt() * inv_sqrt_bc2 + self.eps as f32;
        (p - step_size * m / denom, m, v)
    }
}

impl OpRule for AdamUpdate {
    fn name(&self) -> &'static str {
        "adam_update"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "adam_update").then(|| {
            Ok(AdamUpdate {
                beta1: t.f64("beta1")?,
                beta2: t.f64("beta2")?,
                eps: t.f64("eps")?,
                weight_decay: t.f64("weight_decay")?,
            })
        })
    }

    fn attrs(&self) -> String {
        format!("beta1={} beta2={} eps={} weight_decay={}", self.beta1, self.beta2, self.eps, self.weight_decay)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 4)?;
        for s in &ins[1..] {
            super::same(ins[0], s, "parameter and its gradient/state")?;
        }
        Ok(vec![ins[0].to_vec(); 3])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], cx: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (step_size, inv) = self.scalars(cx.lr, cx.step);
        let f = |t: &Tensor<T>, i: usize| t.data[i].as_f64() as f32;
        let (mut p2, mut m2, mut v2) = (ins[0].clone(), ins[2].clone(), ins[3].clone());
        for i in 0..p2.data.len() {
            let (p, m, v) = self.step(f(ins[0], i), f(ins[1], i), f(ins[2], i), f(ins[3], i), step_size, inv);
            p2.data[i] = T::from_f64(p as f64);
            m2.data[i] = T::from_f64(m as f64);
            v2.data[i] = T::from_f64(v as f64);
        }
        Ok(vec![p2, m2, v2])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        10 * super::numel(ins[0])
    }
}
