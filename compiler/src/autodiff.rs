//! Reverse-mode autodiff as a compile-time graph transform: forward graph with a loss →
//! training graph (forward, loss, backward), printable like any graph. Nothing records a
//! tape at run time.
//!
//! Walking the nodes in reverse, each node whose outputs carry a cotangent emits its
//! VJP ([`crate::ops::OpRule::vjp`]); contributions to a value used more than once are
//! summed with `add`. Only values that depend on a differentiated source get gradients.

use crate::ir::{Graph, Origin, OutputRole, Phase, ValueId};
use crate::ops::{Op, SourceKind, VjpCtx};
use crate::Error;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GradOptions {
    /// Parameters to differentiate; `None`: all. (`--freeze` removes some.)
    pub params: Option<HashSet<String>>,
    /// Also output the gradient with respect to the data input.
    pub input_grad: bool,
}

pub fn differentiate(fwd: &Graph, opts: &GradOptions) -> Result<Graph, Error> {
    let loss =
        fwd.output(&OutputRole::Loss).ok_or_else(|| Error::Ir("the graph has no loss to differentiate".into()))?;
    let mut g = fwd.clone();

    // Which values depend on a differentiated source.
    let mut needs = vec![false; g.values.len()];
    let mut wrt: Vec<(String, ValueId)> = Vec::new();
    for n in &g.nodes {
        let flag = match &n.op {
            Op::Source(s) => match &s.kind {
                SourceKind::Param(name) => {
                    let on = opts.params.as_ref().is_none_or(|set| set.contains(name));
                    if on {
                        wrt.push((name.clone(), n.outputs[0]));
                    }
                    on
                }
                SourceKind::Data => opts.input_grad,
                _ => false,
            },
            _ => n.inputs.iter().any(|v| needs[v.0 as usize]),
        };
        for v in &n.outputs {
            needs[v.0 as usize] = flag;
        }
    }

    let mut cot: HashMap<ValueId, ValueId> = HashMap::new();
    let forward_len = g.nodes.len();
    for i in (0..forward_len).rev() {
        let node = g.nodes[i].clone();
        if matches!(node.op, Op::Source(_)) || !node.inputs.iter().any(|v| needs[v.0 as usize]) {
            continue;
        }
        let is_root = node.outputs.contains(&loss);
        let dys: Vec<Option<ValueId>> = node.outputs.iter().map(|v| cot.get(v).copied()).collect();
        if !is_root && dys.iter().all(Option::is_none) {
            continue;
        }
        let origin = Origin { phase: Phase::Backward, ..node.origin.clone() };
        let mut cx = VjpCtx { graph: &mut g, inputs: node.inputs.clone(), outputs: node.outputs.clone(), origin };
        let grads = node.op.vjp(&mut cx, &dys)?;
        for (input, grad) in node.inputs.iter().zip(grads) {
            let Some(grad) = grad else { continue };
            if !needs[input.0 as usize] {
                continue;
            }
            let total = match cot.get(input) {
                Some(&prev) => {
                    let origin = Origin { phase: Phase::Backward, ..node.origin.clone() };
                    g.push(crate::ops::Add.into(), &[prev, grad], origin)?[0]
                }
                None => grad,
            };
            cot.insert(*input, total);
        }
    }

    for (name, v) in wrt {
        let grad = cot.get(&v).ok_or_else(|| Error::Ir(format!("the parameter `{name}` does not affect the loss")))?;
        g.outputs.push((OutputRole::Grad(name), *grad));
    }
    if opts.input_grad {
        let data = g.source(&SourceKind::Data).expect("graphs have a data source");
        match cot.get(&data) {
            Some(&d) => g.outputs.push((OutputRole::InputGrad, d)),
            None => return Err(Error::Ir("the loss does not depend on the input".into())),
        }
    }
    // VJPs emit the gradients of every input; drop those nobody needs (e.g. the data's).
    Ok(g.prune())
}
