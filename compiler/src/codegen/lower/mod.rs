//! Lowering: one graph node → the body of one kernel, written with the kernel builder.
//! Each op family has its file; `lower_node` is the table that picks the lowering, and
//! `scratch_for` says how much temporary arena space a node's kernel needs.

mod dense;
mod elementwise;
mod epilogue;
mod gemm;
mod norm;
mod pool;
mod reduce;

pub use epilogue::{group_bufs, EpiOp};
pub use gemm::MicroKernel;
pub use reduce::lower_loss_with_grad;

use super::builder::{Buf, Kb};
use super::jit::{err, CgResult};
use crate::ir::{Graph, Node};
use crate::ops::Op;

/// The buffers of one node's kernel.
pub struct NodeBufs {
    pub inputs: Vec<Buf>,
    pub outputs: Vec<Buf>,
    /// Per-thread scratch (in the calling thread's scratch space).
    pub scratch: Vec<Buf>,
    /// Buffers shared by the kernel's threads (partial sums).
    pub shared: Vec<Buf>,
}

/// What a node's kernel needs besides its values: per-thread scratch, shared buffers, and
/// its phases (run one after the other, each split into this many independent items).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelShape {
    pub scratch: Vec<usize>,
    pub shared: Vec<usize>,
    pub phases: Vec<usize>,
}

/// What a kernel needs to know besides its buffers.
pub struct LowerCtx<'a> {
    pub graph: &'a Graph,
    pub node: &'a Node,
    pub micro: &'a MicroKernel,
    /// The threads the program is compiled for (GEMMs split their columns by it).
    pub threads: usize,
    /// Which phase of a multi-phase kernel is being built.
    pub phase: usize,
}

impl LowerCtx<'_> {
    pub fn in_shape(&self, i: usize) -> &[usize] {
        self.graph.shape(self.node.inputs[i])
    }

    pub fn out_shape(&self, i: usize) -> &[usize] {
        self.graph.shape(self.node.outputs[i])
    }
}

/// The scratch, shared buffers and phases of a node's kernel.
pub fn kernel_shape(graph: &Graph, node: &Node, micro: &MicroKernel, threads: usize) -> KernelShape {
    let shapes: Vec<&[usize]> = node.inputs.iter().map(|&v| graph.shape(v)).collect();
    match &node.op {
        Op::MatMul(m) => {
            let (mm, k, n) = m.dims(shapes[0], shapes[1]);
            let (nb, blocks) = dense::column_blocks(n, micro, threads);
            KernelShape { scratch: gemm::scratch((mm, k, nb), micro), shared: vec![], phases: vec![blocks] }
        }
        Op::Conv2d(_) | Op::Conv2dGradInput(_) | Op::Conv2dGradWeight(_) => dense::conv_shape(graph, node, micro),
        _ => KernelShape { scratch: vec![], shared: vec![], phases: vec![extent_of(graph, node)] },
    }
}

/// The number of independent work items a simple node's kernel splits into (threads take
/// ranges of items; items never share a reduction, so any split gives the same bits).
pub(crate) fn extent_of(graph: &Graph, node: &Node) -> usize {
    match &node.op {
        Op::Act(_)
        | Op::ActGrad(_)
        | Op::Add(_)
        | Op::BiasAdd(_)
        | Op::Dropout(_)
        | Op::MaxPool(_)
        | Op::MaxPoolGrad(_)
        | Op::AvgPool(_)
        | Op::AvgPoolGrad(_)
        | Op::GlobalAvgPool(_)
        | Op::GlobalAvgPoolGrad(_)
        | Op::Softmax(_)
        | Op::SoftmaxGrad(_)
        | Op::MaxoutReduce(_)
        | Op::MaxoutGrad(_)
        | Op::BatchNormEval(_) => graph.shape(node.outputs[0])[0],
        // Batch-norm statistics are per channel: one item per channel.
        Op::BatchNormTrain(_) | Op::BatchNormTrainGrad(_) => {
            crate::ops::batchnorm_layout(graph.shape(node.inputs[0])).1
        }
        _ => 1,
    }
}

/// Emit the kernel body of one node, with `epi` applied to each value of its first output
/// before it is stored (a fused group; empty for a node of its own).
pub fn lower_node(kb: &mut Kb, cx: &LowerCtx, bufs: &NodeBufs, epi: &[EpiOp]) -> CgResult<()> {
    let op = &cx.node.op;
    if !epi.is_empty() && crate::codegen::fuse::producer(op).is_none() {
        return err(format!("`{}` cannot take an epilogue", op.name()));
    }
    match op {
        Op::MatMul(m) => dense::lower_matmul(kb, cx, bufs, m, epi),
        Op::Conv2d(c) => dense::lower_conv2d(kb, cx, bufs, c, epi),
        Op::Conv2dGradInput(c) => dense::lower_conv2d_grad_input(kb, cx, bufs, c),
        Op::Conv2dGradWeight(c) => dense::lower_conv2d_grad_weight(kb, cx, bufs, c),
        Op::Act(_)
        | Op::ActGrad(_)
        | Op::Add(_)
        | Op::BiasAdd(_)
        | Op::RunningUpdate(_)
        | Op::SgdUpdate(_)
        | Op::AdamUpdate(_)
        | Op::MseGrad(_)
        | Op::BceWithLogitsGrad(_)
        | Op::Dropout(_) => elementwise::lower(kb, cx, bufs, epi),
        Op::BiasGrad(_) => reduce::lower_bias_grad(kb, cx, bufs),
        Op::Softmax(_)
        | Op::SoftmaxGrad(_)
        | Op::SoftmaxCrossEntropy(_)
        | Op::SoftmaxCrossEntropyGrad(_)
        | Op::BceWithLogits(_)
        | Op::Mse(_) => reduce::lower_rows(kb, cx, bufs),
        Op::MaxPool(_)
        | Op::MaxPoolGrad(_)
        | Op::AvgPool(_)
        | Op::AvgPoolGrad(_)
        | Op::GlobalAvgPool(_)
        | Op::GlobalAvgPoolGrad(_)
        | Op::MaxoutReduce(_)
        | Op::MaxoutGrad(_) => pool::lower(kb, cx, bufs, epi),
        Op::BatchNormTrain(_) | Op::BatchNormTrainGrad(_) | Op::BatchNormEval(_) => norm::lower(kb, cx, bufs, epi),
        Op::Source(_) | Op::Reshape(_) => err(format!("`{}` has no kernel (the memory plan handles it)", op.name())),
    }
}
