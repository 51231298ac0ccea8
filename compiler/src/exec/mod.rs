//! Executables: what the runtime runs.
//!
//! A training step is two programs: the *grad* program (forward, loss, backward; running
//! statistics updated), which ends at a [`CollectivePoint`] where all gradients are ready
//! (for an allreduce across processes), and the *update* program (the optimizer). The
//! grad program of one process's shard in data-parallel training ([`grad_program_sharded`])
//! has more points inside it, where batch norm's statistics and gradient sums are merged.
//! Evaluation and inference are programs too. Every program reads and writes the model's
//! state in one flat [`StateStore`] whose [`StateLayout`] (parameters, running
//! statistics, gradients contiguously, optimizer state) is fixed before compilation, so a
//! back end can bake every offset into its code.

mod interpreted;
mod layout;
mod programs;
mod shard;

pub use interpreted::InterpExecutable;
pub use layout::{Slot, SlotKind, StateLayout, StateStore, EXCHANGE_VECTORS};
pub use programs::{eval_program, grad_program, grad_program_sharded, update_program, Optimizer};
pub use shard::shard_batchnorm;

use crate::ir::Graph;
use crate::ops::StepCtx;
use crate::Error;
use std::fmt;

/// The inputs of one run: the batch (N × input shape, row-major) and its targets.
#[derive(Clone, Copy, Debug)]
pub struct Feed<'a> {
    pub data: &'a [f32],
    pub target: Option<&'a [f32]>,
}

impl Feed<'_> {
    pub const EMPTY: Feed<'static> = Feed { data: &[], target: None };
}

/// What a run hands back (state outputs go to the store instead).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetch {
    pub loss: Option<f32>,
    /// The model's output for the batch, row-major.
    pub prediction: Vec<f32>,
    /// Exposed statement outputs (feature extraction), by parameter prefix.
    pub activations: Vec<(String, Vec<f32>)>,
    /// The gradient of the loss with respect to the input, if the program computes it.
    pub input_grad: Option<Vec<f32>>,
}

/// A point in a program where a collective may run: everything before it has been
/// computed, nothing after it has started. With one process nothing runs there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CollectivePoint {
    /// A shard's per-channel sums are in the exchange slot `exchange` (f64 values, each
    /// as two f32 rows: batch norm's Σ x, Σ (x − mean)², or its gradient's Σ dy·x̂ and
    /// Σ dy): data-parallel training replaces them by their sum over processes.
    Sum { exchange: String },
    /// Every gradient is in the state, contiguously ([`StateLayout::grads`]): data-parallel
    /// training sums them across processes here, before the update program — all but the
    /// `global` ones, which the program computed from sums already merged across processes
    /// (batch norm's dγ and dβ in a shard's program), the same on every process.
    GradientsReady { global: Vec<String> },
}

impl fmt::Display for CollectivePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectivePoint::Sum { exchange } => write!(f, "sum of `{exchange}`"),
            CollectivePoint::GradientsReady { .. } => f.write_str("gradients ready"),
        }
    }
}

/// The collective points of a graph: (the node after which, the point), in node order:
/// after each node whose output is an exchange output (the split batch norm's sums), and
/// after the last node of a program with gradients.
pub fn collective_points(g: &Graph) -> Vec<(usize, CollectivePoint)> {
    use crate::ir::OutputRole;
    let exchange = |v: crate::ir::ValueId| {
        g.outputs.iter().find_map(|(r, o)| match r {
            OutputRole::Exchange(name) if *o == v => Some(name.clone()),
            _ => None,
        })
    };
    let mut points: Vec<(usize, CollectivePoint)> = g
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let name = n.outputs.iter().find_map(|&v| exchange(v))?;
            Some((i, CollectivePoint::Sum { exchange: name }))
        })
        .collect();
    let grads = g.outputs.iter().any(|(r, _)| matches!(r, OutputRole::Grad(_)));
    if grads && !g.nodes.is_empty() {
        let global = g
            .outputs
            .iter()
            .filter_map(|(r, v)| match r {
                OutputRole::Grad(p) if matches!(g.producer(*v).op, crate::ops::Op::BatchNormGradInput(_)) => {
                    Some(p.clone())
                }
                _ => None,
            })
            .collect();
        points.push((g.nodes.len() - 1, CollectivePoint::GradientsReady { global }));
    }
    points
}

/// What runs at a program's collective points (an allreduce with MPI).
pub trait Collectives {
    fn at(&mut self, point: &CollectivePoint, store: &mut StateStore) -> Result<(), Error>;
}

/// One process: the points cost nothing.
pub struct SingleProcess;

impl Collectives for SingleProcess {
    fn at(&mut self, _: &CollectivePoint, _: &mut StateStore) -> Result<(), Error> {
        Ok(())
    }
}

/// For inspection: a program as its concrete type (a JIT program with its kernels).
pub trait AsAny {
    fn as_any(&self) -> &dyn std::any::Any;
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

impl<T: std::any::Any> AsAny for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A compiled program.
pub trait Executable: Send + AsAny {
    /// The graph it was compiled from.
    fn graph(&self) -> &Graph;

    /// Run once: read the feed and the store, write state outputs into the store, and at
    /// each collective point call `collectives`.
    fn run_with(
        &mut self,
        store: &mut StateStore,
        feed: &Feed,
        cx: &StepCtx,
        collectives: &mut dyn Collectives,
    ) -> Result<Fetch, Error>;

    /// [`Executable::run_with`] in one process.
    fn run(&mut self, store: &mut StateStore, feed: &Feed, cx: &StepCtx) -> Result<Fetch, Error> {
        self.run_with(store, feed, cx, &mut SingleProcess)
    }

    /// Which back end runs it (`interp`, `jit`).
    fn backend(&self) -> &'static str;
}
