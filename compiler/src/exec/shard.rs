//! The training graph of one process's shard in data-parallel training: batch norm split
//! at collective points so that it normalizes with the global batch's statistics and its
//! gradient uses the global batch's sums, as PyTorch's `SyncBatchNorm` does.
//!
//! `batchnorm_train` becomes its merge of the per-sample partials (`batchnorm_stats`, which
//! each shard computes for its own samples) in two steps, each ending in per-channel sums
//! that a collective point adds up across processes (in the state's exchange slots):
//! `batchnorm_sum` (Σ x), `batchnorm_sqdev` (Σ (x − mean)² about the global mean, each
//! sample's moved from its own centre), then `batchnorm_apply` (the normalization,
//! computed as `batchnorm_train` computes it);
//! `batchnorm_train_grad` becomes `batchnorm_grad_sums` (Σ dy·x̂ and Σ dy; a point adds
//! them up) and `batchnorm_grad_input`. So a shard computes, up to the order of f64
//! additions, the statistics one process computes for the whole batch. The running
//! variance's unbiased correction uses the global count, and the loss divides by the
//! global batch, so each sample's gradient is what one process computes for it.

use crate::ir::{Graph, OutputRole, ValueId};
use crate::ops::{self, batchnorm_layout, Op, SourceKind};
use crate::Error;

/// The statement prefix of a batch-norm node, from its γ source (`P.weight`).
fn prefix_of(g: &Graph, gamma: ValueId) -> Result<String, Error> {
    match &g.producer(gamma).op {
        Op::Source(s) => match &s.kind {
            SourceKind::Param(p) => p.strip_suffix(".weight").map(str::to_string),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| Error::Ir("a batch norm's γ is not a parameter source".into()))
}

fn push(out: &mut Graph, op: impl Into<Op>, ins: &[ValueId], n: &crate::ir::Node) -> Result<Vec<ValueId>, Error> {
    out.push(op.into(), ins, n.origin.clone())
}

/// `g` (a grad program for a shard of `local` samples) rewritten for a global batch of
/// `global` samples split across processes: the shards' gradients add up to the batch's.
pub fn shard_batchnorm(g: &Graph, local: usize, global: usize) -> Result<Graph, Error> {
    if local == 0 || global < local {
        return Err(Error::Ir(format!("a shard of {local} samples cannot be part of a batch of {global}")));
    }
    let mut out = Graph::new(g.name.clone(), g.batch, g.mode);
    let mut map: Vec<Option<ValueId>> = vec![None; g.values.len()];
    // Batch variances (new values) → their global count per channel.
    let mut var_count: Vec<(ValueId, usize)> = vec![];
    let m = |map: &[Option<ValueId>], v: &ValueId| map[v.0 as usize].expect("inputs are mapped before use");
    for n in &g.nodes {
        let ins: Vec<ValueId> = n.inputs.iter().map(|v| m(&map, v)).collect();
        let results = match &n.op {
            Op::BatchNormTrain(bn) => {
                let prefix = prefix_of(g, n.inputs[2])?;
                let (_, _, inner) = batchnorm_layout(g.shape(n.inputs[0]));
                let count = inner * global;
                let (x, partials) = (ins[0], ins[1]);
                let sum = out.push(ops::BatchNormSum.into(), &[partials], n.origin.clone())?[0];
                out.outputs.push((OutputRole::Exchange(format!("{prefix}.batch_sum")), sum));
                let sq_op = ops::BatchNormSqDev { count, inner };
                let sq = out.push(sq_op.into(), &[partials, sum], n.origin.clone())?[0];
                out.outputs.push((OutputRole::Exchange(format!("{prefix}.batch_sqdev")), sq));
                let apply = ops::BatchNormApply { eps: bn.eps, count };
                let r = out.push(apply.into(), &[x, sum, sq, ins[2], ins[3]], n.origin.clone())?;
                var_count.push((r[2], count));
                r
            }
            Op::BatchNormTrainGrad(bn) => {
                let prefix = prefix_of(g, n.inputs[3])?;
                let (_, _, inner) = batchnorm_layout(g.shape(n.inputs[0]));
                let sums_op = ops::BatchNormGradSums { eps: bn.eps };
                let sums = out.push(sums_op.into(), &[ins[0], ins[1], ins[2], ins[4]], n.origin.clone())?[0];
                out.outputs.push((OutputRole::Exchange(format!("{prefix}.grad_sums")), sums));
                let input = ops::BatchNormGradInput { eps: bn.eps, count: inner * global };
                let dx_in = [ins[0], ins[1], ins[2], ins[3], ins[4], sums];
                out.push(input.into(), &dx_in, n.origin.clone())?
            }
            // Each shard's loss is its sum over the global batch's count, so its per-sample
            // gradients are one process's, and the shards' gradients add up to the batch's.
            Op::SoftmaxCrossEntropy(_) => push(&mut out, ops::SoftmaxCrossEntropy { samples: Some(global) }, &ins, n)?,
            Op::SoftmaxCrossEntropyGrad(_) => {
                push(&mut out, ops::SoftmaxCrossEntropyGrad { samples: Some(global) }, &ins, n)?
            }
            Op::BceWithLogits(_) => push(&mut out, ops::BceWithLogits { samples: Some(global) }, &ins, n)?,
            Op::BceWithLogitsGrad(_) => push(&mut out, ops::BceWithLogitsGrad { samples: Some(global) }, &ins, n)?,
            Op::Mse(_) => push(&mut out, ops::Mse { samples: Some(global) }, &ins, n)?,
            Op::MseGrad(_) => push(&mut out, ops::MseGrad { samples: Some(global) }, &ins, n)?,
            Op::RunningUpdate(r) if r.correction != 1.0 => {
                let count = var_count.iter().find(|(v, _)| *v == ins[1]).map(|&(_, c)| c);
                let count = count.ok_or_else(|| Error::Ir("a running variance update not fed by batch norm".into()))?;
                let op = ops::RunningUpdate { momentum: r.momentum, correction: count as f64 / (count as f64 - 1.0) };
                out.push(op.into(), &ins, n.origin.clone())?
            }
            op => out.push(op.clone(), &ins, n.origin.clone())?,
        };
        for (old, new) in n.outputs.iter().zip(results) {
            map[old.0 as usize] = Some(new);
        }
    }
    for (role, v) in &g.outputs {
        out.outputs.push((role.clone(), m(&map, v)));
    }
    Ok(out)
}
