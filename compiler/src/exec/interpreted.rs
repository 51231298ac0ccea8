//! The interpreter as an [`Executable`]: feeds sources from the store and the feed, runs
//! the graph with [`crate::interp::run`], writes state outputs back.

use super::{collective_points, Collectives, Executable, Feed, Fetch, SlotKind, StateStore};
use crate::interp;
use crate::ir::{Graph, OutputRole};
use crate::ops::{SourceKind, StepCtx};
use crate::tensor::Tensor;
use crate::Error;
use std::collections::HashMap;

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

/// The store slot an output is written to (`None`: it goes to the fetch).
fn slot_of_output(store: &StateStore, role: &OutputRole) -> Option<(SlotKind, String)> {
    match role {
        OutputRole::Grad(n) => Some((SlotKind::Grad, n.clone())),
        OutputRole::Param(n) => Some((SlotKind::Param, n.clone())),
        OutputRole::Exchange(n) => Some((SlotKind::Exchange, n.clone())),
        OutputRole::State(n) => slot_of(store, &SourceKind::State(n.clone())),
        _ => None,
    }
}

fn no_slot(role: &OutputRole) -> Error {
    Error::Exec(format!("the state has no slot for {role}"))
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
        // Every source is read before the run: the store is the collectives' while it runs.
        let mut sources = HashMap::new();
        for (kind, v) in g.sources() {
            let shape = g.shape(v).to_vec();
            let data = match kind {
                SourceKind::Data => Some(feed.data.to_vec()),
                SourceKind::Target => feed.target.map(<[f32]>::to_vec),
                other => slot_of(store, other).and_then(|(k, name)| store.get(k, &name).map(<[f32]>::to_vec)),
            };
            if let Some(data) = data.filter(|d| d.len() == shape.iter().product::<usize>()) {
                sources.insert(kind.clone(), Tensor::new(shape, data));
            }
        }
        let feed_fn = |kind: &SourceKind| sources.get(kind).cloned();
        let points = collective_points(g);
        let mut at_point = |i: usize, values: &mut [Option<Tensor<f32>>]| -> Result<(), Error> {
            for (_, point) in points.iter().filter(|(after, _)| *after == i) {
                // The values the point works on go to the store, and come back from it.
                for (role, v) in &g.outputs {
                    if let (Some(t), Some((k, name))) = (&values[v.0 as usize], slot_of_output(store, role)) {
                        store.get_mut(k, &name).ok_or_else(|| no_slot(role))?.copy_from_slice(&t.data);
                    }
                }
                collectives.at(point, store)?;
                for (role, v) in &g.outputs {
                    if let (Some(t), Some((k, name))) = (&mut values[v.0 as usize], slot_of_output(store, role)) {
                        t.data.copy_from_slice(store.get(k, &name).ok_or_else(|| no_slot(role))?);
                    }
                }
            }
            Ok(())
        };
        let run = interp::run_with_hook::<f32>(g, &feed_fn, cx, false, &mut at_point)
            .map_err(|e| Error::Exec(e.to_string()))?;
        let mut fetch = Fetch::default();
        for (role, v) in &g.outputs {
            let t = run.get(*v).expect("outputs are kept");
            match role {
                OutputRole::Loss => fetch.loss = Some(t.data[0]),
                OutputRole::Prediction => fetch.prediction = t.data.clone(),
                OutputRole::Activation(name) => fetch.activations.push((name.clone(), t.data.clone())),
                OutputRole::InputGrad => fetch.input_grad = Some(t.data.clone()),
                _ => {
                    if let Some((k, name)) = slot_of_output(store, role) {
                        store.get_mut(k, &name).ok_or_else(|| no_slot(role))?.copy_from_slice(&t.data);
                    }
                }
            }
        }
        Ok(fetch)
    }
}
