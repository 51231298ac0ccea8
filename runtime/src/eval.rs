//! Evaluation: loss, accuracy, per-class accuracy and the confusion matrix of a data set,
//! batched through the compiled forward pass. Accuracy follows the loss (DESIGN.md):
//! argmax = label for softmax cross-entropy (and mse with k > 1 on classes), p ≥ 0.5 =
//! target for binary cross-entropy.

use crate::data::{Dataset, Targets};
use crate::error::Result;
use crate::model::Model;
use percept_compiler::layers::Loss;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    pub samples: usize,
    /// Mean loss over the samples (None for a model without a loss).
    pub loss: Option<f64>,
    /// Fraction correct (None where accuracy is not defined, e.g. mse on float targets).
    pub accuracy: Option<f64>,
    /// Per class: the fraction of its samples classified correctly.
    pub per_class: Vec<f64>,
    /// confusion[true class][predicted class].
    pub confusion: Vec<Vec<u64>>,
    pub classes: Vec<String>,
    /// For a reconstruction (`DataMeta::target_input`): the peak signal-to-noise ratio in
    /// dB of the outputs against the inputs, in pixel units (the normalization undone,
    /// pixels in [0, 1]): 10·log10(1 / mean squared pixel error).
    pub psnr: Option<f64>,
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// (correct, counted) for one batch's predictions against its targets, as the loss
/// defines accuracy. `targets` is what the loss consumed.
pub fn count_correct(loss: Option<Loss>, pred: &[f32], targets: &[f32], k: usize, classes: bool) -> (usize, usize) {
    let n = pred.len() / k.max(1);
    match loss {
        Some(Loss::SoftmaxCrossEntropy) => {
            let c = pred.chunks(k).zip(targets).filter(|(row, &t)| argmax(row) == t as usize).count();
            (c, n)
        }
        Some(Loss::BinaryCrossEntropy) => {
            let c = pred.iter().zip(targets).filter(|(&p, &t)| ((p >= 0.5) as u8 as f32) == t).count();
            (c, pred.len())
        }
        Some(Loss::Mse) if k > 1 && classes => {
            let c = pred.chunks(k).zip(targets.chunks(k)).filter(|(row, t)| argmax(row) == argmax(t)).count();
            (c, n)
        }
        _ => (0, 0),
    }
}

/// The class a prediction row stands for (classification sets only).
fn predicted_class(loss: Option<Loss>, row: &[f32]) -> usize {
    match loss {
        Some(Loss::BinaryCrossEntropy) if row.len() == 1 => (row[0] >= 0.5) as usize,
        _ => argmax(row),
    }
}

/// Loss, accuracy, per-class accuracy and confusion matrix of `ds`, in batches of `batch`.
pub fn evaluate(model: &mut Model, ds: &Dataset, batch: usize) -> Result<EvalReport> {
    evaluate_shared(model, ds, batch, &crate::parallel::Solo)
}

/// [`evaluate`] split across the processes of `group`: the batches are dealt out in turn
/// (process r evaluates batches r, r + K, ...: the same batches as one process, so every
/// prediction is the same), and the counts and loss sums are added up, so every process
/// gets the single-process report (the same counts exactly).
pub fn evaluate_shared(
    model: &mut Model,
    ds: &Dataset,
    batch: usize,
    group: &dyn crate::parallel::Group,
) -> Result<EvalReport> {
    let loss = model.spec.loss.map(|l| l.loss);
    let k: usize = model.spec.output_shape().iter().product();
    let classes = ds.class_names().map(|c| c.to_vec()).unwrap_or_default();
    let is_classes = matches!(ds.targets, Targets::Classes { .. });
    let nc = classes.len();
    // Totals: loss sum, correct, counted, squared pixel error, then the confusion matrix
    // row by row.
    let mut totals = vec![0.0f64; 4 + nc * nc];
    let reconstruction = model.data_meta.target_input;
    let norm = model.data_meta.norm.clone();
    let plane = ds.sample_len() / norm.mean.len();
    let (mut x, mut t) = (Vec::new(), Vec::new());
    let order: Vec<u32> = (0..ds.len() as u32).collect();
    let (rank, size) = (group.rank(), group.size());
    for chunk in order.chunks(batch.max(1)).skip(rank).step_by(size) {
        ds.gather_x(chunk, &mut x);
        if let Some(l) = loss {
            ds.gather_targets(chunk, l, k, &mut t);
        }
        let fetch = model.forward(&x, loss.map(|_| t.as_slice()), &[])?;
        if let Some(l) = fetch.loss {
            totals[0] += l as f64 * chunk.len() as f64;
        }
        let (c, n) = count_correct(loss, &fetch.prediction, &t, k, is_classes);
        totals[1] += c as f64;
        totals[2] += n as f64;
        if reconstruction {
            // Back in pixels: a normalized difference times its channel's deviation.
            for (j, (p, q)) in fetch.prediction.iter().zip(&x).enumerate() {
                let std = norm.std[if norm.std.len() == 1 { 0 } else { (j % ds.sample_len()) / plane }];
                totals[3] += (f64::from(p - q) * f64::from(std)).powi(2);
            }
        }
        if is_classes {
            for (row, &i) in fetch.prediction.chunks(k).zip(chunk) {
                let truth = ds.label(i as usize).expect("classes") as usize;
                let guess = predicted_class(loss, row).min(nc.saturating_sub(1));
                totals[4 + truth * nc + guess] += 1.0;
            }
        }
    }
    group.allreduce_sum(&mut totals)?;
    let (loss_sum, correct, counted) = (totals[0], totals[1] as usize, totals[2] as usize);
    let confusion: Vec<Vec<u64>> =
        (0..nc).map(|r| totals[4 + r * nc..4 + (r + 1) * nc].iter().map(|&v| v as u64).collect()).collect();
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: u64 = row.iter().sum();
            if total == 0 {
                0.0
            } else {
                row[c] as f64 / total as f64
            }
        })
        .collect();
    Ok(EvalReport {
        samples: ds.len(),
        loss: loss.map(|_| loss_sum / ds.len().max(1) as f64),
        accuracy: (counted > 0).then(|| correct as f64 / counted as f64),
        per_class,
        confusion,
        classes,
        psnr: reconstruction.then(|| {
            let mse = totals[3] / (ds.len() * ds.sample_len()).max(1) as f64;
            10.0 * (1.0 / mse).log10()
        }),
    })
}
