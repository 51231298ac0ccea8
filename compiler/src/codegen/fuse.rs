//! Fusion: the graph's nodes → kernel groups, each compiled as one kernel.
//!
//! A value computed inside a group and read by nothing outside it is never stored. With
//! fusion off, every node is its own kernel (`--unfused`, for comparison).
//!
//! Groups:
//! - GEMM + epilogue: a matmul or convolution followed by a chain of elementwise ops
//!   applied to each output tile in registers before it is stored: bias, activation,
//!   activation derivative (in backward: `relu_grad(y, dx)` where `dx` is the GEMM), and
//!   residual `add`. A chain link is fused only if the previous value has no other reader
//!   and is not a program output.

use crate::ir::{Graph, ValueId};
use crate::ops::Op;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// One node.
    Single,
    /// A matmul or convolution, then elementwise ops on its output tiles.
    GemmEpilogue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelGroup {
    pub kind: GroupKind,
    /// Graph node indices, in order; the first is the group's main op.
    pub nodes: Vec<usize>,
}

/// Whether a node gets a kernel at all (sources are fed, reshapes are aliases).
pub fn has_kernel(op: &Op) -> bool {
    !matches!(op, Op::Source(_) | Op::Reshape(_))
}

/// The input position at which `op` can take the previous link of an epilogue chain.
fn epilogue_link(op: &Op, graph: &Graph, node_inputs: &[ValueId], chain: ValueId) -> bool {
    let same_shape = |i: usize| graph.shape(node_inputs[i]) == graph.shape(chain);
    match op {
        Op::BiasAdd(_) | Op::Act(_) => node_inputs[0] == chain,
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
        let gemm = matches!(n.op, Op::MatMul(_) | Op::Conv2d(_));
        if fuse && gemm {
            let mut chain = n.outputs[0];
            while readers[chain.0 as usize] == 1 && !is_output[chain.0 as usize] {
                let Some(c) = consumer[chain.0 as usize] else { break };
                let cn = &graph.nodes[c];
                if taken[c] || !epilogue_link(&cn.op, graph, &cn.inputs, chain) {
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
        let kind = if nodes.len() > 1 { GroupKind::GemmEpilogue } else { GroupKind::Single };
        groups.push(KernelGroup { kind, nodes });
    }
    groups
}
