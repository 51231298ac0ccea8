//! The graphs of the programs a runtime runs.

use crate::autodiff::{differentiate, GradOptions};
use crate::build::{forward_graph, BuildOptions};
use crate::diag::Diagnostic;
use crate::ir::{Graph, Mode, Origin, OutputRole, Phase};
use crate::ops::{self, Op, SourceKind};
use crate::spec::ModelSpec;

/// An optimizer with its fixed hyperparameters (the learning rate is per step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `torch.optim.SGD(momentum, nesterov, weight_decay)`, dampening 0.
    Sgd { momentum: f64, nesterov: bool, weight_decay: f64 },
    /// `torch.optim.Adam(betas=(beta1, beta2), eps, weight_decay)`.
    Adam { beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
}

impl Optimizer {
    /// The names of its per-parameter state, as PyTorch's `state_dict` calls them.
    pub fn state_suffixes(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd { momentum, .. } if *momentum != 0.0 => &["momentum_buffer"],
            Optimizer::Sgd { .. } => &[],
            Optimizer::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Adam { .. } => "adam",
        }
    }
}

/// Forward, loss and backward for a batch size: gradients of every trainable parameter
/// not in `frozen`, and the running-statistics updates.
pub fn grad_program(spec: &ModelSpec, batch: usize, frozen: &[String]) -> Result<Graph, Diagnostic> {
    if spec.loss.is_none() {
        return Err(Diagnostic::new(spec.span, format!("the model `{}` has no loss, so it cannot train", spec.name))
            .with_label("no `loss` statement")
            .with_help("end the model with a loss, like `loss softmax_cross_entropy`"));
    }
    let fwd = forward_graph(spec, batch, &BuildOptions::train())?;
    let params = crate::build::trainable_names(spec).into_iter().filter(|p| !frozen.contains(p)).collect();
    differentiate(&fwd, &GradOptions { params: Some(params), input_grad: false })
        .map_err(|e| Diagnostic::new(spec.span, format!("internal error in autodiff: {e}")))
}

/// The grad program of one process's shard of `local` samples of a global batch of
/// `global` split across processes: [`grad_program`] with batch norm split at collective
/// points ([`super::shard_batchnorm`]). Its state needs the exchange slots
/// ([`super::StateLayout::with_exchange`]).
pub fn grad_program_sharded(
    spec: &ModelSpec,
    local: usize,
    global: usize,
    frozen: &[String],
) -> Result<Graph, Diagnostic> {
    let g = grad_program(spec, local, frozen)?;
    super::shard_batchnorm(&g, local, global)
        .map_err(|e| Diagnostic::new(spec.span, format!("internal error in sharding batch norm: {e}")))
}

/// The optimizer's update of every trainable parameter not in `frozen`.
pub fn update_program(spec: &ModelSpec, opt: &Optimizer, frozen: &[String]) -> Graph {
    let mut g = Graph::new(&spec.name, 0, Mode::Train);
    for l in &spec.layers {
        for p in l.params.iter().filter(|p| p.role.trainable() && !frozen.contains(&p.name)) {
            let origin = Origin { tag: p.name.clone(), phase: Phase::Update };
            let mut source = |kind: SourceKind| {
                let src = Origin { tag: String::new(), phase: Phase::Update };
                g.push(Op::Source(ops::Source { kind, shape: p.shape.clone() }), &[], src).expect("source")[0]
            };
            let param = source(SourceKind::Param(p.name.clone()));
            let grad = source(SourceKind::Grad(p.name.clone()));
            let states: Vec<_> = opt
                .state_suffixes()
                .iter()
                .map(|s| (format!("{}.{s}", p.name), source(SourceKind::State(format!("{}.{s}", p.name)))))
                .collect();
            let op: Op = match *opt {
                Optimizer::Sgd { momentum, nesterov, weight_decay } => {
                    ops::SgdUpdate { momentum, nesterov, weight_decay }.into()
                }
                Optimizer::Adam { beta1, beta2, eps, weight_decay } => {
                    ops::AdamUpdate { beta1, beta2, eps, weight_decay }.into()
                }
            };
            let inputs: Vec<_> = [param, grad].into_iter().chain(states.iter().map(|(_, v)| *v)).collect();
            let outs = g.push(op, &inputs, origin).expect("update shapes match");
            g.outputs.push((OutputRole::Param(p.name.clone()), outs[0]));
            for ((name, _), v) in states.iter().zip(&outs[1..]) {
                g.outputs.push((OutputRole::State(name.clone()), *v));
            }
        }
    }
    g
}

/// The forward pass in evaluation mode: the prediction, the loss if `with_loss` (and the
/// model has one), and the outputs of the layers in `expose`.
pub fn eval_program(spec: &ModelSpec, batch: usize, with_loss: bool, expose: &[usize]) -> Result<Graph, Diagnostic> {
    let opts = BuildOptions { mode: Mode::Eval, loss: with_loss, expose: expose.to_vec() };
    forward_graph(spec, batch, &opts)
}
