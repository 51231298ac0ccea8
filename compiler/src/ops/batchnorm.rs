//! Batch normalization: training form (batch statistics), its gradient, evaluation form
//! (running statistics), and the running-statistics update.
//!
//! Statistics are per feature of [N, F] or per channel of [N, C, H, W]: `batchnorm_stats`
//! gives each sample's partials — its sum and its squared deviations about its own mean
//! (two-pass over the sample's run of values) — and `batchnorm_train` merges them in f64,
//! in sample order, into the mean and the biased variance (never a one-pass sum of
//! squares). The running variance uses the unbiased one.

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
    let named: Vec<(usize, &str)> = vectors.iter().enumerate().map(|(i, &what)| (i + 1, what)).collect();
    check_vectors(ins, c, &named)?;
    Ok(c)
}

/// Inputs `i` (named `what`) are per-channel vectors [C].
fn check_vectors(ins: &Shapes, c: usize, vectors: &[(usize, &str)]) -> Result<(), String> {
    for &(i, what) in vectors {
        if ins[i] != [c] {
            return Err(format!("{what} must be [{c}], found {:?}", ins[i]));
        }
    }
    Ok(())
}

/// An x-shaped result and two per-channel vectors (computed in f64) as an op's outputs.
fn with_channel_vectors<T: Real>(y: Tensor<T>, a: &[f64], b: &[f64]) -> Vec<Tensor<T>> {
    let to_t = |v: &[f64]| Tensor::new(vec![v.len()], v.iter().map(|&x| T::from_f64(x)).collect());
    vec![y, to_t(a), to_t(b)]
}

/// Per-sample partial statistics [N, 2, C] of x: row 0 of sample b holds each channel's
/// Σ x over the sample's values, row 1 Σ (x − c)² about c, the sample's mean rounded to T
/// ([`mean_of`], from the stored sum, as `batchnorm_train` recomputes it); both summed in
/// f64 and stored rounded to T.
fn sample_partials<T: Real>(x: &Tensor<T>) -> Tensor<T> {
    let (n, c, inner) = channel_layout(&x.shape);
    let mut out = vec![T::zero(); n * 2 * c];
    for b in 0..n {
        for ch in 0..c {
            let run = &x.data[(b * c + ch) * inner..(b * c + ch + 1) * inner];
            let sum = T::from_f64(run.iter().map(|v| v.as_f64()).sum());
            let centre = mean_of::<T>(sum.as_f64(), inner);
            let sq = run.iter().map(|v| (v.as_f64() - centre).powi(2)).sum();
            out[b * 2 * c + ch] = sum;
            out[b * 2 * c + c + ch] = T::from_f64(sq);
        }
    }
    Tensor::new(vec![n, 2, c], out)
}

/// Per-channel mean and biased variance from per-sample partials [N, 2, C] of runs of
/// `inner` values, merged in f64 in sample order: the sum of Σ x gives the mean μ, and
/// each sample adds its squared deviations moved from its centre c to μ — Q + 2(c − μ)(S −
/// n·c) + n(c − μ)², exact in real arithmetic (Chan, Golub and LeVeque's update for
/// shifted data) — so the variance never comes from a sum of squares.
pub fn merged_stats<T: Real>(partials: &Tensor<T>, inner: usize) -> (Vec<f64>, Vec<f64>) {
    let count = (partials.shape[0] * inner) as f64;
    let mean: Vec<f64> = partial_sums(partials).iter().map(|s| s / count).collect();
    let var = (0..mean.len()).map(|ch| moved_sqdev(partials, ch, inner, mean[ch]) / count).collect();
    (mean, var)
}

/// Σ x per channel from partials [N, 2, C], in f64, in sample order.
fn partial_sums<T: Real>(partials: &Tensor<T>) -> Vec<f64> {
    let (n, c) = (partials.shape[0], partials.shape[2]);
    (0..c).map(|ch| (0..n).map(|b| partials.data[b * 2 * c + ch].as_f64()).sum()).collect()
}

/// Σ (x − μ)² of channel `ch` from partials [N, 2, C] of runs of `inner` values: each
/// sample's Q about its centre c moved to μ, Q + (c − μ)·(2·(S − inner·c) + inner·(c − μ)),
/// added in f64 in sample order.
fn moved_sqdev<T: Real>(partials: &Tensor<T>, ch: usize, inner: usize, mu: f64) -> f64 {
    let (n, c) = (partials.shape[0], partials.shape[2]);
    let size = inner as f64;
    (0..n)
        .map(|b| {
            let (s, q) = (partials.data[b * 2 * c + ch].as_f64(), partials.data[b * 2 * c + c + ch].as_f64());
            let centre = mean_of::<T>(s, inner);
            let d = centre - mu;
            q + d * (2.0 * (s - size * centre) + size * d)
        })
        .sum()
}

fn check_partials(s: &[usize], what: &str) -> Result<usize, String> {
    match s {
        [_, 2, c] => Ok(*c),
        _ => Err(format!("{what} must be per-sample partial statistics [N, 2, C], found {s:?}")),
    }
}

/// x → [N, 2, C]: each sample's partial statistics per channel, Σ x and Σ (x − c)² about
/// the sample's own mean c, which `batchnorm_train` merges. A sample's partials depend on
/// that sample alone, so the kernel that has just stored it can compute them (fusion's
/// `conv_with_batchnorm_stats`) while it is in cache.
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
        Ok(vec![vec![ins[0][0], 2, c]])
    }

    /// The statistics are x's own, and `batchnorm_train`'s gradient with respect to x is
    /// batch norm's whole one (through the statistics too), so nothing flows back here.
    fn vjp(&self, _: &mut VjpCtx, _: &[Option<ValueId>]) -> Result<Grads, Error> {
        Ok(vec![None])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        Ok(vec![sample_partials(ins[0])])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        4 * super::numel(ins[0])
    }
}

/// y = (x − mean)·istd·γ + β per channel, and the two statistics: batch norm in training
/// from its statistics.
fn normalize_with<T: Real>(
    x: &Tensor<T>,
    (mean, var): (&[f64], &[f64]),
    gamma: &[T],
    beta: &[T],
    eps: f64,
) -> Vec<Tensor<T>> {
    let (_, c, inner) = channel_layout(&x.shape);
    let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let y = x
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / inner) % c;
            T::from_f64((v.as_f64() - mean[ch]) * istd[ch]) * gamma[ch] + beta[ch]
        })
        .collect();
    with_channel_vectors(Tensor::new(x.shape.clone(), y), mean, var)
}

/// 1/√(var + ε) of stored per-channel variances.
fn inv_stds<T: Real>(var: &Tensor<T>, eps: f64) -> Vec<f64> {
    var.data.iter().map(|v| 1.0 / (v.as_f64() + eps).sqrt()).collect()
}

/// (Σ dy·x̂, Σ dy) per channel in f64: the sums of batch norm's gradient.
fn gradient_sums<T: Real>(x: &Tensor<T>, mean: &Tensor<T>, istd: &[f64], dy: &Tensor<T>) -> (Vec<f64>, Vec<f64>) {
    let (_, c, inner) = channel_layout(&x.shape);
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    for i in 0..x.data.len() {
        let ch = (i / inner) % c;
        let xhat = (x.data[i].as_f64() - mean.data[ch].as_f64()) * istd[ch];
        dbeta[ch] += dy.data[i].as_f64();
        dgamma[ch] += dy.data[i].as_f64() * xhat;
    }
    (dgamma, dbeta)
}

/// dx = γ·istd·(dy − (Σ dy + x̂·Σ dy·x̂)/m), the sums over `m` values per channel.
fn input_gradient<T: Real>(
    x: &Tensor<T>,
    (mean, istd): (&Tensor<T>, &[f64]),
    gamma: &Tensor<T>,
    dy: &Tensor<T>,
    (dgamma, dbeta): (&[f64], &[f64]),
    m: f64,
) -> Tensor<T> {
    let (_, c, inner) = channel_layout(&x.shape);
    let dx = (0..x.data.len())
        .map(|i| {
            let ch = (i / inner) % c;
            let xhat = (x.data[i].as_f64() - mean.data[ch].as_f64()) * istd[ch];
            let g = gamma.data[ch].as_f64() * istd[ch];
            T::from_f64(g * (dy.data[i].as_f64() - dbeta[ch] / m - xhat * dgamma[ch] / m))
        })
        .collect();
    Tensor::new(x.shape.clone(), dx)
}

/// (x, partials [N, 2, C] = `batchnorm_stats`(x), γ, β) → (y, batch mean, biased batch
/// variance).
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
        arity(ins, 4)?;
        check_x(ins[0])?;
        let (n, c, inner) = channel_layout(ins[0]);
        if ins[1] != [n, 2, c] {
            return Err(format!("the partial statistics must be [{n}, 2, {c}], found {:?}", ins[1]));
        }
        check_vectors(ins, c, &[(2, "γ"), (3, "β")])?;
        if n * inner < 2 {
            return Err(format!(
                "batch norm in training needs more than one value per channel, found {} (batch {n})",
                n * inner
            ));
        }
        Ok(vec![ins[0].to_vec(), vec![c], vec![c]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None, None, None, None]) };
        let (x, gamma) = (cx.inputs[0], cx.inputs[2]);
        let (mean, var) = (cx.outputs[1], cx.outputs[2]);
        // The partials are x's statistics: dx is the gradient through them as well.
        let g = cx.emit(BatchNormTrainGrad { eps: self.eps }, &[x, mean, var, gamma, dy])?;
        Ok(vec![Some(g[0]), None, Some(g[1]), Some(g[2])])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (mean, var) = merged_stats(ins[1], channel_layout(&ins[0].shape).2);
        Ok(normalize_with(ins[0], (&mean, &var), &ins[2].data, &ins[3].data, self.eps))
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        // The normalization; the statistics' passes are `batchnorm_stats`' (4 per value),
        // so the pair counts the 7 per value it always has.
        3 * super::numel(ins[0])
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
        let (n, _, inner) = channel_layout(&x.shape);
        let istd = inv_stds(var, self.eps);
        let (dgamma, dbeta) = gradient_sums(x, mean, &istd, dy);
        let dx = input_gradient(x, (mean, &istd), gamma, dy, (&dgamma, &dbeta), (n * inner) as f64);
        Ok(with_channel_vectors(dx, &dgamma, &dbeta))
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
// (`exec::shard_batchnorm`). It computes what `batchnorm_train` computes, two-pass, with
// each pass's per-channel sums added up across processes at a point before they are used:
// `batchnorm_sum` (Σ x of the shard), then `batchnorm_sqdev` (Σ (x − mean)² about the
// global mean), then `batchnorm_apply`; for the gradient, `batchnorm_grad_sums` then
// `batchnorm_grad_input`. What crosses a point is f64, each value carried as two f32s
// (`split_f64`: hi = the value rounded to f32, lo = the rest rounded) in a [2, C] or
// [4, C] tensor in the state's exchange slot. Autodiff never sees these ops: the split
// rewrites a differentiated graph.

/// v as (hi, lo): hi = v rounded to T, lo = (v − hi) rounded; hi + lo is v to about 2⁻⁴⁸.
pub fn split_f64<T: Real>(v: f64) -> (T, T) {
    let hi = T::from_f64(v);
    (hi, T::from_f64(v - hi.as_f64()))
}

/// An exchange buffer of `c` channels ([2·k, C]: value r's hi row 2r, lo row 2r + 1) read
/// back as its k·C f64 values, value by value. The one decoding of the layout, for the
/// interpreter and for the collectives (`runtime::parallel`).
pub fn exchange_values<T: Real>(data: &[T], c: usize) -> Vec<f64> {
    data.chunks(2 * c).flat_map(|pair| (0..c).map(move |ch| pair[ch].as_f64() + pair[c + ch].as_f64())).collect()
}

/// k·C f64 values (value by value) as an exchange buffer [2·k, C]: the inverse of
/// [`exchange_values`], to `split_f64`'s precision.
pub fn exchange_data<T: Real>(values: &[f64], c: usize) -> Vec<T> {
    let mut data = vec![T::zero(); 2 * values.len()];
    for (pair, v) in data.chunks_mut(2 * c).zip(values.chunks(c)) {
        for ch in 0..c {
            (pair[ch], pair[c + ch]) = split_f64(v[ch]);
        }
    }
    data
}

/// Value `r` of every channel of an exchange tensor, as f64.
fn joined<T: Real>(t: &Tensor<T>, r: usize) -> Vec<f64> {
    let c = t.shape[1];
    exchange_values(&t.data[2 * r * c..2 * (r + 1) * c], c)
}

/// Per-channel f64 vectors as an exchange tensor [2·len, C].
fn exchange_tensor<T: Real>(vectors: &[&[f64]]) -> Tensor<T> {
    let c = vectors[0].len();
    Tensor::new(vec![2 * vectors.len(), c], exchange_data(&vectors.concat(), c))
}

fn check_exchange(s: &[usize], rows: usize, c: usize, what: &str) -> Result<(), String> {
    if s == [rows, c] {
        Ok(())
    } else {
        Err(format!("{what} must be [{rows}, {c}], found {s:?}"))
    }
}

/// The mean of `count` values from their sum, rounded to T: what `batchnorm_train`
/// normalizes and centres with, and a sample's centre in `batchnorm_stats`.
fn mean_of<T: Real>(sum: f64, count: usize) -> f64 {
    T::from_f64(sum / count as f64).as_f64()
}

/// partials [N, 2, C] (`batchnorm_stats`) → [2, C]: the shard's Σ x per channel, in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormSum;

impl OpRule for BatchNormSum {
    fn name(&self) -> &'static str {
        "batchnorm_sum"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("batchnorm_sum", || BatchNormSum)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        let c = check_partials(ins[0], "the input")?;
        Ok(vec![vec![2, c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        Ok(vec![exchange_tensor(&[&partial_sums(ins[0])])])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        super::numel(ins[0]) / 2
    }
}

/// (partials [N, 2, C] of runs of `inner` values, Σ x [2, C] of the global batch of
/// `count` values per channel) → [2, C]: the shard's Σ (x − mean)² per channel in f64,
/// about the global mean rounded to f32, each sample's moved from its own centre as
/// `batchnorm_train` moves it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormSqDev {
    pub count: usize,
    pub inner: usize,
}

impl OpRule for BatchNormSqDev {
    fn name(&self) -> &'static str {
        "batchnorm_sqdev"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_sqdev").then(|| Ok(BatchNormSqDev { count: t.usize("count")?, inner: t.usize("inner")? }))
    }

    fn attrs(&self) -> String {
        format!("count={} inner={}", self.count, self.inner)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        let c = check_partials(ins[0], "the first input")?;
        check_exchange(ins[1], 2, c, "Σ x")?;
        if self.inner == 0 {
            return Err("batch norm's runs must have at least one value".into());
        }
        Ok(vec![vec![2, c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (partials, sum) = (ins[0], ins[1]);
        let sq: Vec<f64> = joined(sum, 0)
            .into_iter()
            .enumerate()
            .map(|(ch, s)| moved_sqdev(partials, ch, self.inner, mean_of::<T>(s, self.count)))
            .collect();
        Ok(vec![exchange_tensor(&[&sq])])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        4 * super::numel(ins[0])
    }
}

/// (x, Σ x [2, C], Σ (x − mean)² [2, C], γ, β) → (y, mean, biased variance), the sums
/// being the global batch's (`count` values per channel): batch norm in training after
/// its statistics, as `batchnorm_train` computes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormApply {
    pub eps: f64,
    pub count: usize,
}

impl OpRule for BatchNormApply {
    fn name(&self) -> &'static str {
        "batchnorm_apply"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_apply").then(|| Ok(BatchNormApply { eps: t.f64("eps")?, count: t.usize("count")? }))
    }

    fn attrs(&self) -> String {
        format!("eps={} count={}", self.eps, self.count)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 5)?;
        check_x(ins[0])?;
        let (_, c, _) = channel_layout(ins[0]);
        check_exchange(ins[1], 2, c, "Σ x")?;
        check_exchange(ins[2], 2, c, "Σ (x − mean)²")?;
        check_vectors(ins, c, &[(3, "γ"), (4, "β")])?;
        if self.count < 2 {
            return Err(format!("batch norm in training needs more than one value per channel, found {}", self.count));
        }
        Ok(vec![ins[0].to_vec(), vec![c], vec![c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, sum, sq, gamma, beta) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
        let mean: Vec<f64> = joined(sum, 0).into_iter().map(|s| mean_of::<T>(s, self.count)).collect();
        let var: Vec<f64> = joined(sq, 0).into_iter().map(|s| s / self.count as f64).collect();
        Ok(normalize_with(x, (&mean, &var), &gamma.data, &beta.data, self.eps))
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        4 * super::numel(ins[0])
    }
}

/// (x, mean, var, dy) → sums [4, C]: the shard's Σ dy·x̂ (rows 0–1) and Σ dy (rows 2–3)
/// per channel, in f64.
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
        Ok(vec![vec![4, c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, mean, var, dy) = (ins[0], ins[1], ins[2], ins[3]);
        let (dgamma, dbeta) = gradient_sums(x, mean, &inv_stds(var, self.eps), dy);
        Ok(vec![exchange_tensor(&[&dgamma, &dbeta])])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        5 * super::numel(ins[0])
    }
}

/// (x, mean, var, γ, dy, sums [4, C]) → (dx, dγ, dβ) with the global batch's sums
/// (`count` values per channel): dx = γ·istd·(dy − (Σ dy + x̂·Σ dy·x̂)/count), dγ and dβ
/// the sums rounded to f32 — `batchnorm_train_grad` after its sums. (dγ and dβ are then
/// the whole batch's on every process: the gradients' collective must not add them up
/// again.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormGradInput {
    pub eps: f64,
    pub count: usize,
}

impl OpRule for BatchNormGradInput {
    fn name(&self) -> &'static str {
        "batchnorm_grad_input"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "batchnorm_grad_input")
            .then(|| Ok(BatchNormGradInput { eps: t.f64("eps")?, count: t.usize("count")? }))
    }

    fn attrs(&self) -> String {
        format!("eps={} count={}", self.eps, self.count)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 6)?;
        check_x(ins[0])?;
        let (_, c, _) = channel_layout(ins[0]);
        check_vectors(ins, c, &[(1, "mean"), (2, "var"), (3, "γ")])?;
        super::same(ins[0], ins[4], "x and dy")?;
        check_exchange(ins[5], 4, c, "the gradient sums")?;
        if self.count < 2 {
            return Err(format!("batch norm in training needs more than one value per channel, found {}", self.count));
        }
        Ok(vec![ins[0].to_vec(), vec![c], vec![c]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, mean, var, gamma, dy, sums) = (ins[0], ins[1], ins[2], ins[3], ins[4], ins[5]);
        let istd = inv_stds(var, self.eps);
        let (dgamma, dbeta) = (joined(sums, 0), joined(sums, 1));
        let dx = input_gradient(x, (mean, &istd), gamma, dy, (&dgamma, &dbeta), self.count as f64);
        Ok(with_channel_vectors(dx, &dgamma, &dbeta))
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        6 * super::numel(ins[0])
    }
}
