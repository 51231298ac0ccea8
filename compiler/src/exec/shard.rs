//! The training graph of one process's shard in data-parallel training: batch norm split
//! at collective points so that it normalizes with the global batch's statistics and its
//! gradient uses the global batch's sums, as PyTorch's `SyncBatchNorm` does.
//!
//! `batchnorm_train` becomes `batchnorm_stats` (the shard's mean and biased variance, into
//! the state's exchange slots; a collective point merges them) and `batchnorm_eval` (the
//! normalization, with the merged statistics); `batchnorm_train_grad` becomes
//! `batchnorm_grad_sums` (the shard's Σ dy·x̂ and Σ dy; a point sums them) and
//! `batchnorm_grad_input`. The running variance's unbiased correction uses the global
//! count. A graph without batch norm is returned unchanged.

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

/// `g` (a grad program for a shard of `local` samples) rewritten for a global batch of
/// `global` samples split across processes.
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
                let prefix = prefix_of(g, n.inputs[1])?;
                let (_, _, inner) = batchnorm_layout(g.shape(n.inputs[0]));
                let stats = out.push(ops::BatchNormStats.into(), &[ins[0]], n.origin.clone())?;
                out.outputs.push((OutputRole::Exchange(format!("{prefix}.batch_mean")), stats[0]));
                out.outputs.push((OutputRole::Exchange(format!("{prefix}.batch_var")), stats[1]));
                var_count.push((stats[1], inner * global));
                let eval = ops::BatchNormEval { eps: bn.eps };
                let y = out.push(eval.into(), &[ins[0], stats[0], stats[1], ins[1], ins[2]], n.origin.clone())?;
                vec![y[0], stats[0], stats[1]]
            }
            Op::BatchNormTrainGrad(bn) => {
                let prefix = prefix_of(g, n.inputs[3])?;
                let (_, _, inner) = batchnorm_layout(g.shape(n.inputs[0]));
                let sums_op = ops::BatchNormGradSums { eps: bn.eps };
                let sums = out.push(sums_op.into(), &[ins[0], ins[1], ins[2], ins[4]], n.origin.clone())?;
                out.outputs.push((OutputRole::Exchange(format!("{prefix}.sum_dy_xhat")), sums[0]));
                out.outputs.push((OutputRole::Exchange(format!("{prefix}.sum_dy")), sums[1]));
                let input =
                    ops::BatchNormGradInput { eps: bn.eps, count: inner * global, scale: global as f64 / local as f64 };
                out.push(input.into(), &[ins[0], ins[1], ins[2], ins[3], ins[4], sums[0], sums[1]], n.origin.clone())?
            }
            Op::RunningUpdate(r) if r.correction != 1.0 => {
                let count = var_count.iter().find(|(v, _)| *v == ins[1]).map(|&(_, c)| c);
                let count = count.ok_or_else(|| Error::Ir("a running variance update not fed by batch norm".into()))?;
                let op = ops::RunningUpdate { momentum: r.momentum, correction: count as f64 / (count - 1) as f64 };
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
