//! Executables: what the runtime runs.
//!
//! A training step is two programs with a point between them where all gradients are
//! ready (for a collective such as an allreduce): the *grad* program (forward, loss,
//! backward; running statistics updated) and the *update* program (the optimizer).
//! Evaluation and inference are programs too. Every program reads and writes the model's
//! state in one flat [`StateStore`] whose [`StateLayout`] (parameters, running
//! statistics, gradients contiguously, optimizer state) is fixed before compilation, so a
//! back end can bake every offset into its code.

mod interpreted;
mod layout;
mod programs;

pub use interpreted::InterpExecutable;
pub use layout::{Slot, SlotKind, StateLayout, StateStore};
pub use programs::{eval_program, grad_program, update_program, Optimizer};

use crate::ir::Graph;
use crate::ops::StepCtx;
use crate::Error;

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

/// A compiled program.
pub trait Executable: Send {
    /// The graph it was compiled from.
    fn graph(&self) -> &Graph;

    /// Run once: read the feed and the store, write state outputs into the store.
    fn run(&mut self, store: &mut StateStore, feed: &Feed, cx: &StepCtx) -> Result<Fetch, Error>;

    /// Which back end runs it (`interp`, `jit`).
    fn backend(&self) -> &'static str;

    /// For inspection: the concrete executable (e.g. a JIT program with its kernels).
    fn as_any(&self) -> &dyn std::any::Any;

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}
