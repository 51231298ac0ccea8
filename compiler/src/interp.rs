//! The reference interpreter: runs any graph with the plain loops of each op's
//! [`crate::ops::OpRule::eval`], in `f32` or `f64`. It is the oracle the JIT back end is
//! tested against, and a back end users can pick (`--backend interp`).

use crate::ir::{Graph, OutputRole, ValueId};
use crate::ops::{Op, SourceKind, StepCtx};
use crate::tensor::{Real, Tensor};
use crate::Error;

/// Values computed by a run: outputs always, other values if asked to keep them.
pub struct Run<T> {
    pub values: Vec<Option<Tensor<T>>>,
}

impl<T: Real> Run<T> {
    pub fn get(&self, v: ValueId) -> Option<&Tensor<T>> {
        self.values[v.0 as usize].as_ref()
    }

    pub fn output(&self, g: &Graph, role: &OutputRole) -> Option<&Tensor<T>> {
        g.output(role).and_then(|v| self.get(v))
    }
}

/// Run `g`. `feed` supplies every source (data, targets, parameters, states). With
/// `keep_all`, every intermediate value is kept (tests compare them); otherwise a value
/// is freed after its last use unless it is an output.
pub fn run<T: Real>(
    g: &Graph,
    feed: &dyn Fn(&SourceKind) -> Option<Tensor<T>>,
    cx: &StepCtx,
    keep_all: bool,
) -> Result<Run<T>, Error> {
    run_with_hook(g, feed, cx, keep_all, &mut |_, _| Ok(()))
}

/// What runs after a node (by index), with the values computed so far: a collective point
/// may read and replace them.
pub type AfterNode<'a, T> = dyn FnMut(usize, &mut [Option<Tensor<T>>]) -> Result<(), Error> + 'a;

/// [`run`], calling `after` after every node.
pub fn run_with_hook<T: Real>(
    g: &Graph,
    feed: &dyn Fn(&SourceKind) -> Option<Tensor<T>>,
    cx: &StepCtx,
    keep_all: bool,
    after: &mut AfterNode<T>,
) -> Result<Run<T>, Error> {
    let mut values: Vec<Option<Tensor<T>>> = vec![None; g.values.len()];
    let last_use = g.last_uses();
    let is_output: Vec<bool> = {
        let mut o = vec![false; g.values.len()];
        for (_, v) in &g.outputs {
            o[v.0 as usize] = true;
        }
        o
    };
    for (i, n) in g.nodes.iter().enumerate() {
        let err = |message: String| Error::Interp { tag: n.origin.tag.clone(), op: n.op.name().to_string(), message };
        let results = if let Op::Source(s) = &n.op {
            let t = feed(&s.kind).ok_or_else(|| err(format!("no value was fed for {:?}", s.kind)))?;
            if t.shape != s.shape {
                return Err(err(format!(
                    "fed a tensor of shape {:?} for {:?}, expected {:?}",
                    t.shape, s.kind, s.shape
                )));
            }
            vec![t]
        } else {
            let ins: Vec<&Tensor<T>> =
                n.inputs.iter().map(|v| values[v.0 as usize].as_ref().expect("inputs computed before use")).collect();
            n.op.eval(&ins, cx).map_err(err)?
        };
        for (v, t) in n.outputs.iter().zip(results) {
            debug_assert_eq!(t.shape, g.shape(*v), "{} produced a wrong shape", n.op.name());
            values[v.0 as usize] = Some(t);
        }
        if !keep_all {
            for v in &n.inputs {
                if last_use[v.0 as usize] == Some(i) && !is_output[v.0 as usize] {
                    values[v.0 as usize] = None;
                }
            }
        }
        after(i, &mut values)?;
    }
    Ok(Run { values })
}
