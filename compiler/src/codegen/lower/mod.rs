//! Lowering: a [`Kernel`] → the loop nest of each of its passes.
//!
//! Every op of the graph IR has a [`LowerRule`], implemented beside its family's lowering
//! in this directory and reached through `Op::lowering`, which `ops::op_table!` generates
//! from the one list of ops: an op without a rule does not compile. The rule answers
//! everything fusion, the memory plan and lowering ask of an op: how its kernel stores
//! its output ([`Storage`], which decides the epilogues it can take), the element function
//! it contributes when it is itself fused into another op's store ([`Element`]), its
//! [`Work`] (scratch, shared buffers, passes over independent items), and its loop nest.

mod concat;
mod dense;
mod element;
mod elementwise;
mod epilogue;
mod gemm;
mod norm;
mod pool;
mod reduce;
mod upsample;

pub use epilogue::EpiOp;
pub use gemm::MicroTile;

use super::builder::{Buf, Kb};
use super::fuse::Kernel;
use super::jit::{err, CgResult};
use super::loops::{Idx, LoopNest};
use super::plan::ArenaPlan;
use crate::ir::{Graph, Node, ValueId};
use crate::layers::Activation;
use crate::Error;

/// A node and its graph, for the questions a rule answers before lowering.
#[derive(Clone, Copy)]
pub struct NodeCx<'a> {
    pub graph: &'a Graph,
    pub node: &'a Node,
}

impl NodeCx<'_> {
    pub fn in_shape(&self, i: usize) -> &[usize] {
        self.graph.shape(self.node.inputs[i])
    }

    pub fn out_shape(&self, i: usize) -> &[usize] {
        self.graph.shape(self.node.outputs[i])
    }
}

/// Which axis of a GEMM's C holds the channels (what a bias or batch norm indexes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelAxis {
    /// A convolution's per-image C is [filters, pixels].
    Rows,
    /// A dense layer's C is [batch, features].
    Columns,
}

/// How an op's kernel stores its first output: what can be applied at that store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// No kernel: a graph source (fed, or in the state) or a reshape (an alias).
    Kernelless,
    /// Tiles of a GEMM, row and column of C known: takes every [`Element`].
    Gemm(ChannelAxis),
    /// Each element stored once: takes activations, their derivatives and adds.
    Pointwise,
    /// Contributions added into a zeroed buffer, at most one per element (a pooling
    /// gradient with disjoint windows): takes what is linear in the value, a derivative.
    Scatter,
    /// Reductions and multi-pass kernels: no epilogue.
    Opaque,
}

/// What an elementwise op computes when it is a link of another op's epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Element {
    /// + bias[channel]
    Bias,
    Act(Activation),
    /// f′(from)·value: `from` is the op's first input (the activation's output or input).
    ActGrad(Activation),
    /// + the other operand (same shape).
    Add,
    /// (v − mean)·γ/√(var + ε) + β with the running statistics.
    BatchNormEval {
        eps: f64,
    },
}

impl Element {
    /// Whether `chained` is the input this element takes from the chain (for ops with two
    /// full-size inputs the other must have the same shape), and if so its other inputs.
    pub fn operands(&self, g: &Graph, inputs: &[ValueId], chained: ValueId) -> Option<Vec<ValueId>> {
        let same = |v: ValueId| g.shape(v) == g.shape(chained);
        match self {
            Element::Bias | Element::Act(_) | Element::BatchNormEval { .. } => {
                (inputs[0] == chained).then(|| inputs[1..].to_vec())
            }
            Element::ActGrad(_) => {
                (inputs[1] == chained && inputs[0] != chained && same(inputs[0])).then(|| vec![inputs[0]])
            }
            Element::Add => match (inputs[0] == chained, inputs[1] == chained) {
                (true, false) if same(inputs[1]) => Some(vec![inputs[1]]),
                (false, true) if same(inputs[0]) => Some(vec![inputs[0]]),
                _ => None,
            },
        }
    }
}

/// What an op's kernel needs besides its values: per-thread scratch, buffers its threads
/// share, and its passes (run one after the other, each split into this many independent
/// work items; threads take ranges of items, which never share a reduction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    pub scratch: Vec<usize>,
    pub shared: Vec<usize>,
    pub passes: Vec<usize>,
}

impl Work {
    /// One pass over `items` independent items, nothing else.
    pub fn items(items: usize) -> Work {
        Work { scratch: vec![], shared: vec![], passes: vec![items] }
    }
}

/// The buffers of a kernel: the main op's (and siblings') inputs and stored outputs,
/// scratch and shared buffers, and the epilogue with its operands' buffers.
pub struct KernelBufs {
    pub inputs: Vec<Buf>,
    pub outputs: Vec<Buf>,
    /// Per-thread scratch (in the calling thread's scratch space).
    pub scratch: Vec<Buf>,
    /// Buffers shared by the kernel's threads (partial sums).
    pub shared: Vec<Buf>,
    pub epilogue: Vec<EpiOp>,
}

/// What a lowering knows besides its buffers.
pub struct LowerCtx<'a> {
    pub graph: &'a Graph,
    pub node: &'a Node,
    pub kernel: &'a Kernel,
    pub micro: &'a MicroTile,
    /// The threads the program is compiled for (GEMMs split their columns by it).
    pub threads: usize,
    /// Which pass of a multi-pass kernel is being built.
    pub pass: usize,
}

impl LowerCtx<'_> {
    pub fn in_shape(&self, i: usize) -> &[usize] {
        self.graph.shape(self.node.inputs[i])
    }

    pub fn out_shape(&self, i: usize) -> &[usize] {
        self.graph.shape(self.node.outputs[i])
    }

    pub fn node_cx(&self) -> NodeCx<'_> {
        NodeCx { graph: self.graph, node: self.node }
    }
}

/// The code-generation rules of one op (see the module documentation).
pub trait LowerRule {
    /// How the op's kernel stores its first output.
    fn storage(&self, cx: &NodeCx) -> Storage;

    /// The element function the op contributes when fused into another op's store, or
    /// `None` if it cannot be a link.
    fn element(&self) -> Option<Element>;

    /// Scratch, shared buffers and passes of the op's kernel.
    fn work(&self, cx: &NodeCx, micro: &MicroTile, threads: usize) -> Work;

    /// Write pass `cx.pass` of the op's kernel, applying `bufs.epilogue` at the store of
    /// its first output.
    fn lower(&self, kb: &mut Kb, cx: &LowerCtx, bufs: &KernelBufs) -> CgResult<()>;
}

/// The lowering rules of a family's ops, one row per op:
/// `Op => storage, element, work, lower;` where `storage(&op, &NodeCx) -> Storage`,
/// `element(&op) -> Option<Element>`, `work(&op, &NodeCx, &MicroTile, threads) -> Work` and
/// `lower(&mut Kb, &LowerCtx, &KernelBufs, &op) -> CgResult<()>`. The shared answers are
/// the functions below (`pointwise`, `no_element`, `per_sample`, …).
macro_rules! lower_rules {
    ($($op:ty => $storage:expr, $element:expr, $work:expr, $lower:expr;)*) => {$(
        impl $crate::codegen::lower::LowerRule for $op {
            fn storage(&self, cx: &$crate::codegen::lower::NodeCx) -> $crate::codegen::lower::Storage {
                $storage(self, cx)
            }

            fn element(&self) -> Option<$crate::codegen::lower::Element> {
                $element(self)
            }

            fn work(
                &self,
                cx: &$crate::codegen::lower::NodeCx,
                tile: &$crate::codegen::lower::MicroTile,
                threads: usize,
            ) -> $crate::codegen::lower::Work {
                $work(self, cx, tile, threads)
            }

            fn lower(
                &self,
                kb: &mut $crate::codegen::builder::Kb,
                cx: &$crate::codegen::lower::LowerCtx,
                bufs: &$crate::codegen::lower::KernelBufs,
            ) -> $crate::codegen::jit::CgResult<()> {
                $lower(kb, cx, bufs, self)
            }
        }
    )*};
}
pub(crate) use lower_rules;

/// Stores each element once.
pub(crate) fn pointwise<T>(_: &T, _: &NodeCx) -> Storage {
    Storage::Pointwise
}

/// Takes no epilogue.
pub(crate) fn opaque<T>(_: &T, _: &NodeCx) -> Storage {
    Storage::Opaque
}

/// Cannot be a link of another op's epilogue.
pub(crate) fn no_element<T>(_: &T) -> Option<Element> {
    None
}

/// One work item per sample (the batch is the first axis of the output).
pub(crate) fn per_sample<T>(_: &T, cx: &NodeCx, _: &MicroTile, _: usize) -> Work {
    Work::items(cx.out_shape(0)[0])
}

/// One work item: a reduction over the batch, or an update of one parameter.
pub(crate) fn one_item<T>(_: &T, _: &NodeCx, _: &MicroTile, _: usize) -> Work {
    Work::items(1)
}

/// Sources and reshapes have no kernel: the memory plan places a source (fed, or in the
/// state) and makes a reshape an alias of its input.
fn kernelless<T>(_: &T, _: &NodeCx) -> Storage {
    Storage::Kernelless
}

fn no_work<T>(_: &T, _: &NodeCx, _: &MicroTile, _: usize) -> Work {
    Work::items(0)
}

fn no_kernel<T>(_: &mut Kb, cx: &LowerCtx, _: &KernelBufs, _: &T) -> CgResult<()> {
    err(format!("`{}` has no kernel (the memory plan handles it)", cx.node.op.name()))
}

lower_rules! {
    crate::ops::Source => kernelless, no_element, no_work, no_kernel;
    crate::ops::Reshape => kernelless, no_element, no_work, no_kernel;
}

/// Where image `img` of `per` floats starts in `buf`, and what to add to an index into it
/// to reach the same element in the batch's other values (an epilogue's operands): for a
/// buffer of the whole batch, the image's place and 0; for a kernel's
/// [`Kernel::internal`] value, in scratch one image at a time, 0 and the image's place
/// (with one image in the batch the two agree).
pub(crate) fn image_start(kb: &mut Kb, buf: &Buf, img: Idx, per: usize) -> (Idx, Idx) {
    let place = kb.mul(img, per as i64);
    if buf.len == per {
        (Idx::constant(0), place)
    } else {
        (place, Idx::constant(0))
    }
}

/// The buffers of kernel `k` in `plan`.
fn kernel_bufs(g: &Graph, k: &Kernel, plan: &ArenaPlan, index: usize) -> CgResult<KernelBufs> {
    let stored = |v: ValueId| match plan.locs[v.0 as usize] {
        Some(_) => Ok(plan.buf(v, format!("{v}"))),
        None => Err(Error::Codegen(format!("{v} is not stored"))),
    };
    let region = |name: &str, locs: &[super::plan::Loc]| -> Vec<Buf> {
        locs.iter()
            .enumerate()
            .map(|(s, l)| Buf { region: l.region, offset: l.offset, len: l.len, name: format!("{name}{s}") })
            .collect()
    };
    let main = &g.nodes[k.main];
    let own = k.computed(g);
    let mut inputs = main.inputs.iter().map(|&v| stored(v)).collect::<CgResult<Vec<_>>>()?;
    for &s in &k.siblings {
        for &v in &g.nodes[s].inputs {
            // A sibling reading what the kernel stores takes it as it is stored.
            if !main.inputs.contains(&v) && !own.contains(&v) {
                inputs.push(stored(v)?);
            }
        }
    }
    let scratch = region("scratch", &plan.scratch[index]);
    let outputs = own
        .into_iter()
        .map(|v| match (k.internal == Some(v), scratch.last()) {
            (true, Some(one_image)) => Ok(Buf { name: format!("{v}"), ..one_image.clone() }),
            _ => stored(v),
        })
        .collect::<CgResult<Vec<_>>>()?;
    let axis = match main.op.lowering().storage(&NodeCx { graph: g, node: main }) {
        Storage::Gemm(axis) => Some(axis),
        _ => None,
    };
    let epilogue = k
        .epilogue
        .iter()
        .map(|l| {
            let operands = l.operands.iter().map(|&v| stored(v)).collect::<CgResult<Vec<_>>>()?;
            EpiOp::new(l.element, operands, axis)
        })
        .collect::<CgResult<Vec<_>>>()?;
    Ok(KernelBufs { inputs, outputs, scratch, shared: region("shared", &plan.shared[index]), epilogue })
}

/// The loop nests of kernel `index` (one per pass), each proved in bounds.
pub fn lower_kernel(
    g: &Graph,
    k: &Kernel,
    index: usize,
    plan: &ArenaPlan,
    micro: &MicroTile,
    threads: usize,
) -> CgResult<Vec<LoopNest>> {
    let bufs = kernel_bufs(g, k, plan, index)?;
    let scratch = (!bufs.scratch.is_empty()).then_some((plan.scratch_start, plan.scratch_per_thread));
    let node = &g.nodes[k.main];
    let storage = node.op.lowering().storage(&NodeCx { graph: g, node });
    if !bufs.epilogue.is_empty() && matches!(storage, Storage::Opaque | Storage::Kernelless) {
        return err(format!("kernel `{}`: `{}` takes no epilogue", k.name, node.op.name()));
    }
    (0..k.work.passes.len())
        .map(|pass| {
            let mut kb = Kb::new(&k.name, pass, scratch, Some(micro));
            let cx = LowerCtx { graph: g, node, kernel: k, micro, threads, pass };
            node.op.lowering().lower(&mut kb, &cx, &bufs)?;
            let nest = kb.finish();
            super::loops::verify::verify(&nest)?;
            Ok(nest)
        })
        .collect()
}
