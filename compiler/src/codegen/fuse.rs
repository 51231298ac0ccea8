//! Fusion: the graph's nodes → kernel groups, each compiled as one kernel.
//!
//! A value computed inside a group and read by nothing outside it is never stored. With
//! fusion off, every node is its own kernel (`--unfused`, for comparison).
//!
//! A group is a main op and an epilogue: a chain of elementwise ops applied to each value
//! of the main op's first output just before it is stored. A chain link is fused only if
//! the previous value has no other reader and is not a program output, and if the link's
//! other operand exists before the group runs. What the chain may hold depends on how
//! the main op stores its output ([`Producer`]):
//! - a matmul or convolution: bias, batch norm in evaluation mode, activation, activation
//!   derivative (in backward, `relu_grad(y, dx)` where `dx` is the GEMM's product: the
//!   derivative is applied to the hot tile, so the backward GEMM's result is stored once)
//!   and residual `add`;
//! - an op that stores each element once (elementwise ops, pooling, maxout, batch
//!   normalization's output): activation, activation derivative and `add`, which makes a
//!   chain of elementwise ops one pass, and batch-norm + relu, or pooling + activation,
//!   one kernel;
//! - a pooling gradient, which scatters into a zeroed input gradient: only an activation
//!   derivative (linear in the gradient, so it can be applied to each contribution), and
//!   only where windows do not overlap (each element gets at most one contribution, so
//!   the bits are those of the unfused kernels).
//!
//! Besides, softmax cross-entropy and its gradient are one kernel (`LossWithGrad`).

use crate::ir::{Graph, ValueId};
use crate::ops::Op;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelGroup {
    pub kind: GroupKind,
    /// Graph node indices, in order; the first is the group's main op.
    pub nodes: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// The main op, then its epilogue (possibly empty).
    Epilogue,
    /// Softmax cross-entropy and its gradient, which read the same logits and targets:
    /// one pass computes each row's softmax once for both.
    LossWithGrad,
}

/// How an op that can start a group stores its first output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Producer {
    /// Tiles of a GEMM (rows and columns of C are known: bias links are possible).
    Gemm,
    /// Each element stored once.
    Pointwise,
    /// Contributions added into a zeroed buffer, at most one per element.
    Scatter,
}

/// Whether an op's kernel can apply an epilogue, and how it stores.
pub fn producer(op: &Op) -> Option<Producer> {
    let disjoint = |g: &crate::ops::PoolGeom| g.stride[0] >= g.size[0] && g.stride[1] >= g.size[1];
    match op {
        Op::MatMul(_) | Op::Conv2d(_) => Some(Producer::Gemm),
        Op::Act(_)
        | Op::ActGrad(_)
        | Op::Add(_)
        | Op::BiasAdd(_)
        | Op::MseGrad(_)
        | Op::BceWithLogitsGrad(_)
        | Op::MaxPool(_)
        | Op::AvgPool(_)
        | Op::GlobalAvgPool(_)
        | Op::GlobalAvgPoolGrad(_)
        | Op::MaxoutReduce(_)
        | Op::BatchNormTrain(_)
        | Op::BatchNormEval(_) => Some(Producer::Pointwise),
        Op::MaxPoolGrad(p) if disjoint(&p.geom) => Some(Producer::Scatter),
        Op::AvgPoolGrad(p) if disjoint(&p.geom) => Some(Producer::Scatter),
        Op::MaxoutGrad(_) => Some(Producer::Scatter),
        _ => None,
    }
}

/// Whether a node gets a kernel at all (sources are fed, reshapes are aliases).
pub fn has_kernel(op: &Op) -> bool {
    !matches!(op, Op::Source(_) | Op::Reshape(_))
}

/// Whether `op` can follow `chain` (the previous value) in the epilogue of a `producer`.
fn epilogue_link(producer: Producer, op: &Op, graph: &Graph, node_inputs: &[ValueId], chain: ValueId) -> bool {
    let same_shape = |i: usize| graph.shape(node_inputs[i]) == graph.shape(chain);
    match (producer, op) {
        (Producer::Scatter, Op::ActGrad(_)) => {}
        (Producer::Scatter, _) => return false,
        (Producer::Pointwise, Op::BiasAdd(_) | Op::BatchNormEval(_)) => return false,
        _ => {}
    }
    match op {
        Op::BiasAdd(_) | Op::Act(_) | Op::BatchNormEval(_) => node_inputs[0] == chain,
        Op::ActGrad(_) => node_inputs[1] == chain && same_shape(0) && node_inputs[0] != chain,
        Op::Add(_) => (node_inputs[0] == chain) != (node_inputs[1] == chain) && same_shape(0) && same_shape(1),
        _ => false,
    }
}

pub fn group(graph: &Graph, fuse: bool) -> Vec<KernelGroup> {
    let mut readers = vec![0usize; graph.values.len()];
    for n in &graph.nodes {
        for v in &n.inputs {
            readers[v.0 as usize] += 1;
        }
    }
    let mut is_output = vec![false; graph.values.len()];
    for (_, v) in &graph.outputs {
        is_output[v.0 as usize] = true;
    }
    let mut consumer = vec![None; graph.values.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for v in &n.inputs {
            consumer[v.0 as usize] = Some(i);
        }
    }
    let mut taken = vec![false; graph.nodes.len()];
    let mut groups = vec![];
    for (i, n) in graph.nodes.iter().enumerate() {
        if taken[i] || !has_kernel(&n.op) {
            continue;
        }
        taken[i] = true;
        let mut nodes = vec![i];
        if let (true, Op::SoftmaxCrossEntropy(_)) = (fuse, &n.op) {
            let grad = (i + 1..graph.nodes.len()).find(|&c| {
                matches!(graph.nodes[c].op, Op::SoftmaxCrossEntropyGrad(_)) && graph.nodes[c].inputs == n.inputs
            });
            if let Some(c) = grad.filter(|&c| !taken[c]) {
                taken[c] = true;
                groups.push(KernelGroup { kind: GroupKind::LossWithGrad, nodes: vec![i, c] });
                continue;
            }
        }
        if let (true, Some(producer)) = (fuse, producer(&n.op)) {
            let mut chain = n.outputs[0];
            while readers[chain.0 as usize] == 1 && !is_output[chain.0 as usize] {
                let Some(c) = consumer[chain.0 as usize] else { break };
                let cn = &graph.nodes[c];
                if taken[c] || !epilogue_link(producer, &cn.op, graph, &cn.inputs, chain) {
                    break;
                }
                // Every other input of the link must exist before the group runs.
                if cn.inputs.iter().any(|&v| v != chain && graph.value(v).node.0 as usize > i) {
                    break;
                }
                taken[c] = true;
                nodes.push(c);
                chain = cn.outputs[0];
            }
        }
        groups.push(KernelGroup { kind: GroupKind::Epilogue, nodes });
    }
    groups
}
