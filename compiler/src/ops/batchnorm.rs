//! Batch normalization: training form (batch statistics), its gradient, evaluation form
//! (running statistics), and the running-statistics update.
//!
//! Statistics are per feature of [N, F] or per channel of [N, C, H, W], computed two-pass
//! in f64: mean, then the biased variance. The running variance uses the unbiased one.

use super::{arity, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::tensor::{Real, Tensor};
use crate::Error;

/// (batch, channels, elements per channel per sample) of an [N, C] or [N, C, H, W] shape.
pub fn channel_layout(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2..].iter().product())
}

fn check_x(x: &[usize]) -> Result<(), String> {
    if x.len() == 2 || x.len() == 4 {
        Ok(())
    } else {
        Err(format!("batch norm input must be [N, F] or [N, C, H, W], found {x:?}"))
    }
}

/// `count` inputs: x, then one per-channel vector [C] for each of `vectors` (named for
/// messages, from input 1 on); returns C.
fn check_inputs(ins: &Shapes, count: usize, vectors: &[&str]) -> Result<usize, String> {
    arity(ins, count)?;
    check_x(ins[0])?;
    let (_, c, _) = channel_layout(ins[0]);
    for (v, what) in ins[1..].iter().zip(vectors) {
        if *v != [c] {
            return Err(format!("{what} must be [{c}], found {v:?}"));
        }
    }
    Ok(c)
}

/// An x-shaped result and two per-channel vectors (computed in f64) as an op's outputs.
fn with_channel_vectors<T: Real>(y: Tensor<T>, a: &[f64], b: &[f64]) -> Vec<Tensor<T>> {
    let to_t = |v: &[f64]| Tensor::new(vec![v.len()], v.iter().map(|&x| T::from_f64(x)).collect());
    vec![y, to_t(a), to_t(b)]
}

/// Per-channel mean and biased variance, two-pass in f64.
pub fn channel_stats<T: Real>(x: &Tensor<T>) -> (Vec<f64>, Vec<f64>) {
    let (n, c, inner) = channel_layout(&x.shape);
    let count = (n * inner) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals = || (0..n).flat_map(move |b| (0..inner).map(move |i| x.data[(b * c + ch) * inner + i].as_f64()));
        let m = vals().sum::<f64>() / count;
        mean[ch] = m;
        var[ch] = vals().map(|v| (v - m) * (v - m)).sum::<f64>() / count;
    }
    (mean, var)
}

/// (x, γ, β) → (y, batch mean, biased batch variance).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormTrain {
    pub eps: f64,
}

impl OpRule for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batchnorm_train"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_train").then(|| Ok(BatchNormTrain { eps: t.f64("eps")? }))
    }

    fn attrs(&self) -> String {
        format!("eps={}", self.eps)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        let c = check_inputs(ins, 3, &["γ", "β"])?;
        let (n, _, inner) = channel_layout(ins[0]);
        if n * inner < 2 {
            return Err(format!(
                "batch norm in training needs more than one value per channel, found {} (batch {n})",
                n * inner
            ));
        }
        Ok(vec![ins[0].to_vec(), vec![c], vec![c]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None, None, None]) };
        let (x, gamma) = (cx.inputs[0], cx.inputs[1]);
        let (mean, var) = (cx.outputs[1], cx.outputs[2]);
        let g = cx.emit(BatchNormTrainGrad { eps: self.eps }, &[x, mean, var, gamma, dy])?;
        Ok(vec![Some(g[0]), Some(g[1]), Some(g[2])])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, gamma, beta) = (ins[0], ins[1], ins[2]);
        let (_, c, inner) = channel_layout(&x.shape);
        let (mean, var) = channel_stats(x);
        let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let y = x
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / inner) % c;
                T::from_f64((v.as_f64() - mean[ch]) * istd[ch]) * gamma.data[ch] + beta.data[ch]
            })
            .collect();
        Ok(with_channel_vectors(Tensor::new(x.shape.clone(), y), &mean, &var))
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        7 * super::numel(ins[0])
    }
}

/// (x, mean, var, γ, dy) → (dx, dγ, dβ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormTrainGrad {
    pub eps: f64,
}

impl OpRule for BatchNormTrainGrad {
    fn name(&self) -> &'static str {
        "batchnorm_train_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_train_grad").then(|| Ok(BatchNormTrainGrad { eps: t.f64("eps")? }))
    }

    fn attrs(&self) -> String {
        format!("eps={}", self.eps)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        let c = check_inputs(ins, 5, &["mean", "var", "γ"])?;
        super::same(ins[0], ins[4], "x and dy")?;
        Ok(vec![ins[0].to_vec(), vec![c], vec![c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, mean, var, gamma, dy) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
        let (n, c, inner) = channel_layout(&x.shape);
        let m = (n * inner) as f64;
        let istd: Vec<f64> = var.data.iter().map(|v| 1.0 / (v.as_f64() + self.eps).sqrt()).collect();
        let xhat = |i: usize, ch: usize| (x.data[i].as_f64() - mean.data[ch].as_f64()) * istd[ch];
        let mut dbeta = vec![0.0; c];
        let mut dgamma = vec![0.0; c];
        for i in 0..x.data.len() {
            let ch = (i / inner) % c;
            dbeta[ch] += dy.data[i].as_f64();
            dgamma[ch] += dy.data[i].as_f64() * xhat(i, ch);
        }
        let dx = (0..x.data.len())
            .map(|i| {
                let ch = (i / inner) % c;
                let g = gamma.data[ch].as_f64() * istd[ch];
                T::from_f64(g * (dy.data[i].as_f64() - dbeta[ch] / m - xhat(i, ch) * dgamma[ch] / m))
            })
            .collect();
        Ok(with_channel_vectors(Tensor::new(x.shape.clone(), dx), &dgamma, &dbeta))
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        10 * super::numel(ins[0])
    }
}

/// (x, running mean, running var, γ, β) → y, normalizing with the running statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormEval {
    pub eps: f64,
}

impl OpRule for BatchNormEval {
    fn name(&self) -> &'static str {
        "batchnorm_eval"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_eval").then(|| Ok(BatchNormEval { eps: t.f64("eps")? }))
    }

    fn attrs(&self) -> String {
        format!("eps={}", self.eps)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        check_inputs(ins, 5, &["running mean", "running var", "γ", "β"])?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, rm, rv, gamma, beta) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
        let (_, c, inner) = channel_layout(&x.shape);
        let y = x
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / inner) % c;
                let istd = 1.0 / (rv.data[ch].as_f64() + self.eps).sqrt();
                T::from_f64((v.as_f64() - rm.data[ch].as_f64()) * istd) * gamma.data[ch] + beta.data[ch]
            })
            .collect();
        Ok(vec![Tensor::new(x.shape.clone(), y)])
    }
}

/// r ← (1−m)·r + m·correction·stat (correction = M/(M−1) turns the biased batch variance
/// into the unbiased one for `running_var`, as PyTorch does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunningUpdate {
    pub momentum: f64,
    pub correction: f64,
}

impl OpRule for RunningUpdate {
    fn name(&self) -> &'static str {
        "running_update"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "running_update")
            .then(|| Ok(RunningUpdate { momentum: t.f64("momentum")?, correction: t.f64("correction")? }))
    }

    fn attrs(&self) -> String {
        format!("momentum={} correction={}", self.momentum, self.correction)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        super::same(ins[0], ins[1], "running value and statistic")?;
        Ok(vec![ins[0].to_vec()])
    }

    fn vjp(&self, _: &mut VjpCtx, _: &[Option<ValueId>]) -> Result<Grads, Error> {
        Ok(vec![None, None])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let m = self.momentum;
        let data = ins[0]
            .data
            .iter()
            .zip(&ins[1].data)
            .map(|(&r, &s)| T::from_f64((1.0 - m) * r.as_f64() + m * self.correction * s.as_f64()))
            .collect();
        Ok(vec![Tensor::new(ins[0].shape.clone(), data)])
    }
}

// Batch norm split at collective points, for data-parallel training
// (`exec::shard_batchnorm`): the statistics of one process's shard (x → mean, biased
// variance) are merged across processes at a point, then normalized with `BatchNormEval`;
// the gradient's two sums of a shard are summed across processes at another point, then
// applied by `BatchNormGradInput`. Autodiff never sees these ops: the split rewrites a
// differentiated graph.

/// x → (mean, biased variance) per channel, two-pass in f64: one shard's statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormStats;

impl OpRule for BatchNormStats {
    fn name(&self) -> &'static str {
        "batchnorm_stats"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("batchnorm_stats", || BatchNormStats)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        let c = check_inputs(ins, 1, &[])?;
        Ok(vec![vec![c], vec![c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (mean, var) = channel_stats(ins[0]);
        let mut out = with_channel_vectors(Tensor::new(vec![0], vec![]), &mean, &var);
        out.remove(0);
        Ok(out)
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        3 * super::numel(ins[0])
    }
}

/// (x, mean, var, dy) → (Σ dy·x̂, Σ dy) per channel, in f64: one shard's sums of the
/// batch-norm gradient (dγ and dβ of the shard).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormGradSums {
    pub eps: f64,
}

impl OpRule for BatchNormGradSums {
    fn name(&self) -> &'static str {
        "batchnorm_grad_sums"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_grad_sums").then(|| Ok(BatchNormGradSums { eps: t.f64("eps")? }))
    }

    fn attrs(&self) -> String {
        format!("eps={}", self.eps)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        let c = check_inputs(ins, 4, &["mean", "var"])?;
        super::same(ins[0], ins[3], "x and dy")?;
        Ok(vec![vec![c], vec![c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, mean, var, dy) = (ins[0], ins[1], ins[2], ins[3]);
        let (_, c, inner) = channel_layout(&x.shape);
        let istd: Vec<f64> = var.data.iter().map(|v| 1.0 / (v.as_f64() + self.eps).sqrt()).collect();
        let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
        for i in 0..x.data.len() {
            let ch = (i / inner) % c;
            let xhat = (x.data[i].as_f64() - mean.data[ch].as_f64()) * istd[ch];
            dbeta[ch] += dy.data[i].as_f64();
            dgamma[ch] += dy.data[i].as_f64() * xhat;
        }
        let mut out = with_channel_vectors(Tensor::new(vec![0], vec![]), &dgamma, &dbeta);
        out.remove(0);
        Ok(out)
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        5 * super::numel(ins[0])
    }
}

/// (x, mean, var, γ, dy, Σ dy·x̂, Σ dy) → (dx, dγ, dβ), the sums being the global batch's
/// (`count` values per channel):
/// dx = γ·istd·(dy − scale·(Σ dy + x̂·Σ dy·x̂)/count). `scale` is the global batch over
/// this shard's: each process's loss is the mean over its own shard, so its dy is `scale`
/// times the global loss's, and so are dx and everything upstream (the gradients' collective
/// weights them back). dγ and dβ are the global sums.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormGradInput {
    pub eps: f64,
    pub count: usize,
    pub scale: f64,
}

impl OpRule for BatchNormGradInput {
    fn name(&self) -> &'static str {
        "batchnorm_grad_input"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_grad_input")
            .then(|| Ok(BatchNormGradInput { eps: t.f64("eps")?, count: t.usize("count")?, scale: t.f64("scale")? }))
    }

    fn attrs(&self) -> String {
        format!("eps={} count={} scale={}", self.eps, self.count, self.scale)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        // dy (input 4) is x-shaped: the vectors are checked by position.
        arity(ins, 7)?;
        check_x(ins[0])?;
        let (_, c, _) = channel_layout(ins[0]);
        for (i, what) in [(1, "mean"), (2, "var"), (3, "γ"), (5, "Σ dy·x̂"), (6, "Σ dy")] {
            if ins[i] != [c] {
                return Err(format!("{what} must be [{c}], found {:?}", ins[i]));
            }
        }
        super::same(ins[0], ins[4], "x and dy")?;
        if self.count < 2 {
            return Err(format!("batch norm in training needs more than one value per channel, found {}", self.count));
        }
        Ok(vec![ins[0].to_vec(), vec![c], vec![c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, mean, var, gamma, dy, sdx, sd) = (ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ins[6]);
        let (_, c, inner) = channel_layout(&x.shape);
        let m = self.count as f64;
        let istd: Vec<f64> = var.data.iter().map(|v| 1.0 / (v.as_f64() + self.eps).sqrt()).collect();
        let dx = (0..x.data.len())
            .map(|i| {
                let ch = (i / inner) % c;
                let xhat = (x.data[i].as_f64() - mean.data[ch].as_f64()) * istd[ch];
                let g = gamma.data[ch].as_f64() * istd[ch];
                let mix = self.scale * (sd.data[ch].as_f64() + xhat * sdx.data[ch].as_f64()) / m;
                T::from_f64(g * (dy.data[i].as_f64() - mix))
            })
            .collect();
        Ok(vec![Tensor::new(x.shape.clone(), dx), sdx.clone(), sd.clone()])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        6 * super::numel(ins[0])
    }
}
