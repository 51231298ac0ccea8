//! The interpreter as an [`Executable`]: feeds sources from the store and the feed, runs
//! the graph with [`crate::interp::run`], writes state outputs back.

use super::{collective_points, Collectives, Executable, Feed, Fetch, SlotKind, StateStore};
use crate::interp;
use crate::ir::{Graph, OutputRole};
use crate::ops::{SourceKind, StepCtx};
use crate::tensor::Tensor;
use crate::Error;

pub struct InterpExecutable {
    graph: Graph,
}

impl InterpExecutable {
    pub fn new(graph: Graph) -> InterpExecutable {
        InterpExecutable { graph }
    }
}

/// The store slot a source or an output reads or writes.
fn slot_of(store: &StateStore, kind: &SourceKind) -> Option<(SlotKind, String)> {
    let (k, name) = match kind {
        SourceKind::Param(n) => (SlotKind::Param, n),
        SourceKind::Grad(n) => (SlotKind::Grad, n),
        SourceKind::State(n) if store.layout().find(SlotKind::Running, n).is_some() => (SlotKind::Running, n),
        SourceKind::State(n) => (SlotKind::OptState, n),
        _ => return None,
    };
    Some((k, name.clone()))
}

impl Executable for InterpExecutable {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn backend(&self) -> &'static str {
        "interp"
    }

    fn run_with(
        &mut self,
        store: &mut StateStore,
        feed: &Feed,
        cx: &StepCtx,
        collectives: &mut dyn Collectives,
    ) -> Result<Fetch, Error> {
        let g = &self.graph;
        let feed_fn = |kind: &SourceKind| -> Option<Tensor<f32>> {
            let shape = g.shape(g.source(kind)?).to_vec();
            let data = match kind {
                SourceKind::Data => feed.data.to_vec(),
                SourceKind::Target => feed.target?.to_vec(),
                other => {
                    let (k, name) = slot_of(store, other)?;
                    store.get(k, &name)?.to_vec()
                }
            };
            (data.len() == shape.iter().product::<usize>()).then(|| Tensor::new(shape, data))
        };
        let run = interp::run::<f32>(g, &feed_fn, cx, false).map_err(|e| Error::Exec(e.to_string()))?;
        let mut fetch = Fetch::default();
        for (role, v) in &g.outputs {
            let t = run.get(*v).expect("outputs are kept");
            let target = match role {
                OutputRole::Loss => {
                    fetch.loss = Some(t.data[0]);
                    continue;
                }
                OutputRole::Prediction => {
                    fetch.prediction = t.data.clone();
                    continue;
                }
                OutputRole::Activation(name) => {
                    fetch.activations.push((name.clone(), t.data.clone()));
                    continue;
                }
                OutputRole::InputGrad => {
                    fetch.input_grad = Some(t.data.clone());
                    continue;
                }
                OutputRole::Grad(n) => (SlotKind::Grad, n.clone()),
                OutputRole::Param(n) => (SlotKind::Param, n.clone()),
                OutputRole::State(n) => match slot_of(store, &SourceKind::State(n.clone())) {
                    Some(s) => s,
                    None => continue,
                },
            };
            let slot = store
                .get_mut(target.0, &target.1)
                .ok_or_else(|| Error::Exec(format!("the state has no slot for {role}")))?;
            slot.copy_from_slice(&t.data);
        }
        // The interpreter runs a graph whole: its points must come after the last node.
        for (after, point) in collective_points(g) {
            if after + 1 != g.nodes.len() {
                return Err(Error::Exec(format!("the interpreter cannot stop for `{point}` inside a program")));
            }
            collectives.at(&point, store)?;
        }
        Ok(fetch)
    }
}
