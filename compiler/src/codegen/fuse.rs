//! Fusion: a graph → the [`Kernel`]s that compute it, each compiled as one function per
//! pass. What the memory plan places, the lowering writes, `--emit plan` prints and
//! `percept bench` times are these values.
//!
//! A kernel is a *main op*, the nodes its pass also computes (*siblings*, which share its
//! reads), and an *epilogue*: a chain of elementwise links applied to each value of the
//! main op's first output just before it is stored, so the values in between are never
//! written. Which links a main op can take depends on how its kernel stores that output
//! (`lower::Storage`, part of each op's lowering rule); what a link computes is its op's
//! element function (`lower::Element`).
//!
//! Fusion is a short list of named [`RULES`], tried in order at each node not yet in a
//! kernel (tinygrad's pattern rewrites are the model); a node no rule takes is a kernel of
//! its own (`single`). With fusion off (`--unfused`), every node is `single`, with the same
//! lowering, micro-kernel and work split.

use super::lower::{Element, NodeCx, Storage, Work};
use super::micro::MicroTile;
use crate::ir::{Graph, Phase, ValueId};
use crate::ops::Op;

/// One elementwise op applied at the main op's store.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub node: usize,
    pub element: Element,
    /// Its inputs other than the chained value (a bias, a residual, the value a
    /// derivative is taken from, batch-norm statistics), which exist before the kernel runs.
    pub operands: Vec<ValueId>,
}

/// A kernel: what one fused (or single) pass computes.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// `fwd.conv2d_0+relu_1`: phase, then the statements of its nodes (see [`kernel_name`]).
    pub name: String,
    /// The rule that made it (`single` for a node of its own).
    pub rule: &'static str,
    /// The main op's node.
    pub main: usize,
    /// Nodes its pass also computes from the same reads (softmax cross-entropy's gradient
    /// with the loss); their outputs follow the main op's.
    pub siblings: Vec<usize>,
    /// Applied, in order, to each value of the main op's first output before it is stored.
    pub epilogue: Vec<Link>,
    /// Scratch, shared buffers and passes, from the main op's lowering rule.
    pub work: Work,
    /// The first stored value when only the kernel itself reads it (and it is no program
    /// output): a convolution's image that its kernel pools, in evaluation (or in training
    /// with the layers before the pooling frozen). It is kept one
    /// image at a time in per-thread scratch — the last of `work.scratch` — and never in
    /// the arena, so the full-resolution activation is stored only where the backward pass
    /// reads it.
    pub internal: Option<ValueId>,
}

impl Kernel {
    /// Its nodes in graph order (the main op first: every other node reads what it makes),
    /// as the plan lists its ops and the explorer stacks them: data flows down the list.
    pub fn nodes(&self) -> Vec<usize> {
        let mut n = vec![self.main];
        n.extend(&self.siblings);
        n.extend(self.epilogue.iter().map(|l| l.node));
        n.sort_unstable();
        n
    }

    /// The values it stores in the arena or the state: [`Kernel::computed`] but the
    /// [`Kernel::internal`] one.
    pub fn stored(&self, g: &Graph) -> Vec<ValueId> {
        let mut out = self.computed(g);
        out.retain(|&v| Some(v) != self.internal);
        out
    }

    /// The values its lowering writes: the main op's outputs (the first replaced by the end
    /// of the epilogue chain), then the siblings' outputs.
    pub fn computed(&self, g: &Graph) -> Vec<ValueId> {
        let mut out = g.nodes[self.main].outputs.clone();
        out[0] = chain_end(g, self.main, &self.epilogue);
        for &s in &self.siblings {
            out.extend(&g.nodes[s].outputs);
        }
        out
    }

    /// What it reads from outside: the main op's and siblings' inputs, then the links'
    /// operands, each once — not what it computes itself (a sibling reading the main op's
    /// output takes each value as it is stored).
    pub fn reads(&self, g: &Graph) -> Vec<ValueId> {
        let mut ins: Vec<ValueId> = self.computed(g);
        let own = ins.len();
        let nodes = std::iter::once(self.main).chain(self.siblings.iter().copied());
        let all = nodes
            .flat_map(|n| g.nodes[n].inputs.iter().copied())
            .chain(self.epilogue.iter().flat_map(|l| l.operands.iter().copied()));
        for v in all {
            if !ins.contains(&v) {
                ins.push(v);
            }
        }
        ins.split_off(own)
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Forward => "fwd",
        Phase::Loss => "loss",
        Phase::Backward => "bwd",
        Phase::Update => "upd",
    }
}

/// `fwd.dense_7+relu_8`: the phase, then the statements of the nodes (in graph order,
/// as [`Kernel::nodes`] gives them); a kernel of one node adds its op
/// (`bwd.dense_7.matmul`).
pub fn kernel_name(g: &Graph, nodes: &[usize]) -> String {
    let mut tags: Vec<&str> = vec![];
    for &n in nodes {
        let tag = g.nodes[n].origin.tag.as_str();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let first = &g.nodes[nodes[0]];
    let base = format!("{}.{}", phase_name(first.origin.phase), tags.join("+"));
    if nodes.len() == 1 {
        format!("{base}.{}", first.op.name())
    } else {
        base
    }
}

/// What the rules look at: the graph, its readers, and what each work split depends on.
pub struct FuseCx<'a> {
    pub graph: &'a Graph,
    pub micro: &'a MicroTile,
    pub threads: usize,
    readers: Vec<usize>,
    consumer: Vec<Option<usize>>,
    is_output: Vec<bool>,
    taken: Vec<bool>,
}

impl FuseCx<'_> {
    fn node(&self, i: usize) -> NodeCx<'_> {
        NodeCx { graph: self.graph, node: &self.graph.nodes[i] }
    }

    /// The only reader of `v`, if it has exactly one, is not taken, and `v` is not a
    /// program output (an output must be stored).
    fn sole_reader(&self, v: ValueId) -> Option<usize> {
        let i = v.0 as usize;
        if self.readers[i] != 1 || self.is_output[i] {
            return None;
        }
        self.consumer[i].filter(|&c| !self.taken[c])
    }
}

/// What a rule takes besides the main op: siblings and epilogue links.
pub struct Match {
    pub siblings: Vec<usize>,
    pub epilogue: Vec<Link>,
}

/// A named fusion rule: `apply` looks at a node not yet in a kernel and, if it matches,
/// returns the other nodes the kernel with that main op takes.
pub struct Rule {
    pub name: &'static str,
    /// What applying it removes.
    pub removes: &'static str,
    apply: fn(&FuseCx, usize) -> Option<Match>,
}

/// The fusion rules, tried in order.
pub const RULES: &[Rule] = &[
    Rule {
        name: "loss_with_grad",
        removes: "a second pass over the logits: softmax cross-entropy and its gradient read the same \
                  logits and targets, so one pass computes each row's softmax once for both",
        apply: loss_with_grad,
    },
    Rule {
        name: "bias_grad_with_batchnorm_grad",
        removes: "a pass over a convolution's output gradient: batch norm's gradient sums each \
                  channel's input gradient into the bias gradient of the layer before while it stores \
                  it, per channel as the bias gradient does (the same bits)",
        apply: bias_grad_with_batchnorm_grad,
    },
    Rule {
        name: "conv_with_batchnorm_stats",
        removes: "a pass over a convolution's output before batch norm: each image's partial statistics \
                  (its sum, then its squared deviations about its own mean, per channel) are computed \
                  by the convolution's kernel right after it stores the image, from cache, as \
                  `batchnorm_stats` computes them (the same bits); the convolution takes its \
                  epilogue as gemm_epilogue gives it",
        apply: conv_with_batchnorm_stats,
    },
    Rule {
        name: "conv_with_pooling",
        removes: "a pass over a convolution's output before max or average pooling: the convolution's \
                  kernel pools each image right after it stores it, from cache, with the pooling \
                  kernel's own loops (the same bits); the convolution takes its epilogue as \
                  gemm_epilogue gives it (bias, batch norm in evaluation, activation, residual add), \
                  so convolution, bias, batch norm, activation and pooling are one kernel",
        apply: conv_with_pooling,
    },
    Rule {
        name: "batchnorm_with_pooling",
        removes: "a pass over batch norm's output before max or average pooling: batch norm's kernel \
                  (training; its items are channels) pools each channel of every sample right after \
                  normalizing it, from cache, with the pooling kernel's own loops (the same bits); it \
                  takes its epilogue as pointwise_epilogue gives it (activation, residual add), so \
                  normalization, activation and pooling are one kernel",
        apply: batchnorm_with_pooling,
    },
    Rule {
        name: "gemm_epilogue",
        removes: "a pass over C per link: bias, batch norm in evaluation mode, activation, activation \
                  derivative and residual add are applied to each GEMM tile while it is hot",
        apply: gemm_epilogue,
    },
    Rule {
        name: "pointwise_epilogue",
        removes: "a pass per link after an op that stores each element once (elementwise ops, pooling, \
                  maxout, batch norm): chains of activations, derivatives and adds",
        apply: pointwise_epilogue,
    },
    Rule {
        name: "scatter_epilogue",
        removes: "the pass of an activation derivative after a pooling gradient whose windows do not \
                  overlap: applied to each contribution (at most one per element, so the same bits)",
        apply: scatter_epilogue,
    },
];

fn loss_with_grad(cx: &FuseCx, i: usize) -> Option<Match> {
    let g = cx.graph;
    let n = &g.nodes[i];
    if !matches!(n.op, Op::SoftmaxCrossEntropy(_)) {
        return None;
    }
    let grad = (i + 1..g.nodes.len()).find(|&c| {
        matches!(g.nodes[c].op, Op::SoftmaxCrossEntropyGrad(_)) && g.nodes[c].inputs == n.inputs && !cx.taken[c]
    })?;
    Some(Match { siblings: vec![grad], epilogue: vec![] })
}

fn bias_grad_with_batchnorm_grad(cx: &FuseCx, i: usize) -> Option<Match> {
    let g = cx.graph;
    if !matches!(g.nodes[i].op, Op::BatchNormTrainGrad(_) | Op::BatchNormGradInput(_)) {
        return None;
    }
    let dx = g.nodes[i].outputs[0];
    // Per-channel sums over planes (a dense layer's bias gradient sums features in
    // another order), and dx stored anyway: read by more than the bias gradient.
    let d = dx.0 as usize;
    if g.shape(dx)[2..].iter().product::<usize>() < 2 || cx.readers[d] < 2 && !cx.is_output[d] {
        return None;
    }
    let bias = (i + 1..g.nodes.len())
        .find(|&c| matches!(g.nodes[c].op, Op::BiasGrad(_)) && g.nodes[c].inputs == [dx] && !cx.taken[c])?;
    Some(Match { siblings: vec![bias], epilogue: vec![] })
}

fn conv_with_batchnorm_stats(cx: &FuseCx, i: usize) -> Option<Match> {
    if !matches!(cx.graph.nodes[i].op, Op::Conv2d(_)) {
        return None;
    }
    with_reader(cx, i, |_| true, |op| matches!(op, Op::BatchNormStats(_))).map(|(m, _)| m)
}

fn conv_with_pooling(cx: &FuseCx, i: usize) -> Option<Match> {
    if !matches!(cx.graph.nodes[i].op, Op::Conv2d(_)) {
        return None;
    }
    with_pooling(cx, i, |_| true)
}

fn batchnorm_with_pooling(cx: &FuseCx, i: usize) -> Option<Match> {
    let g = cx.graph;
    if !matches!(g.nodes[i].op, Op::BatchNormTrain(_) | Op::BatchNormApply(_)) {
        return None;
    }
    let m = with_pooling(cx, i, pointwise_links)?;
    // Batch norm's lowering stores its value in the arena: something besides the pooling
    // must read it (the backward pass does, unless the layers up to here are frozen).
    let v = chain_end(g, i, &m.epilogue).0 as usize;
    (cx.readers[v] > 1 || cx.is_output[v]).then_some(m)
}

/// Node `i` with the links `accepts` allows, and as its sibling a max or average pooling
/// of what it stores — unless the pooling's own epilogue would remove a pass (a sibling
/// stores its value as it is).
fn with_pooling(cx: &FuseCx, i: usize, accepts: fn(&Element) -> bool) -> Option<Match> {
    let (m, pool) = with_reader(cx, i, accepts, |op| matches!(op, Op::MaxPool(_) | Op::AvgPool(_)))?;
    pointwise_epilogue(cx, pool).is_none().then_some(m)
}

/// Node `i` with the chain of links `accepts` allows, and as its sibling the first node
/// not yet taken whose op `wants` and whose only input is the value the kernel stores —
/// which the main op's lowering computes as it goes (a convolution per image once the
/// image is stored, `lower::dense`'s `AfterImage`; batch norm per channel once it is
/// normalized). Also returns that node.
fn with_reader(cx: &FuseCx, i: usize, accepts: fn(&Element) -> bool, wants: fn(&Op) -> bool) -> Option<(Match, usize)> {
    let g = cx.graph;
    let mut m = chain(cx, i, accepts).unwrap_or(Match { siblings: vec![], epilogue: vec![] });
    let stored = chain_end(g, i, &m.epilogue);
    let reader =
        (i + 1..g.nodes.len()).find(|&c| wants(&g.nodes[c].op) && g.nodes[c].inputs == [stored] && !cx.taken[c])?;
    m.siblings.push(reader);
    Some((m, reader))
}

/// The value a kernel with main op `i` and this epilogue stores first: the end of the chain.
fn chain_end(g: &Graph, i: usize, epilogue: &[Link]) -> ValueId {
    epilogue.last().map_or(g.nodes[i].outputs[0], |l| g.nodes[l.node].outputs[0])
}

/// Grow the chain of links after node `i`'s first output, taking what `accepts` allows.
fn chain(cx: &FuseCx, i: usize, accepts: fn(&Element) -> bool) -> Option<Match> {
    let g = cx.graph;
    let mut links = vec![];
    let mut value = g.nodes[i].outputs[0];
    while let Some(c) = cx.sole_reader(value) {
        let cn = &g.nodes[c];
        let Some(element) = cn.op.lowering().element() else { break };
        if !accepts(&element) {
            break;
        }
        let Some(operands) = element.operands(g, &cn.inputs, value) else { break };
        // Every other operand must exist before the kernel runs.
        if operands.iter().any(|&v| g.value(v).node.0 as usize > i) {
            break;
        }
        links.push(Link { node: c, element, operands });
        value = cn.outputs[0];
    }
    (!links.is_empty()).then_some(Match { siblings: vec![], epilogue: links })
}

fn gemm_epilogue(cx: &FuseCx, i: usize) -> Option<Match> {
    match cx.graph.nodes[i].op.lowering().storage(&cx.node(i)) {
        Storage::Gemm(_) => chain(cx, i, |_| true),
        _ => None,
    }
}

fn pointwise_epilogue(cx: &FuseCx, i: usize) -> Option<Match> {
    match cx.graph.nodes[i].op.lowering().storage(&cx.node(i)) {
        Storage::Pointwise => chain(cx, i, pointwise_links),
        _ => None,
    }
}

/// What an op that stores each element once takes: activations, derivatives and adds.
fn pointwise_links(e: &Element) -> bool {
    matches!(e, Element::Act(_) | Element::ActGrad(_) | Element::Add)
}

fn scatter_epilogue(cx: &FuseCx, i: usize) -> Option<Match> {
    match cx.graph.nodes[i].op.lowering().storage(&cx.node(i)) {
        Storage::Scatter => chain(cx, i, |e| matches!(e, Element::ActGrad(_))),
        _ => None,
    }
}

/// The kernels of `graph`, in order (fused by [`RULES`] when `fuse`).
pub fn kernels(graph: &Graph, fuse: bool, micro: &MicroTile, threads: usize) -> Vec<Kernel> {
    let nv = graph.values.len();
    let mut cx = FuseCx {
        graph,
        micro,
        threads,
        readers: vec![0; nv],
        consumer: vec![None; nv],
        is_output: vec![false; nv],
        taken: vec![false; graph.nodes.len()],
    };
    for (i, n) in graph.nodes.iter().enumerate() {
        for v in &n.inputs {
            cx.readers[v.0 as usize] += 1;
            cx.consumer[v.0 as usize] = Some(i);
        }
    }
    for (_, v) in &graph.outputs {
        cx.is_output[v.0 as usize] = true;
    }
    let mut out = vec![];
    for i in 0..graph.nodes.len() {
        let node = cx.node(i);
        if cx.taken[i] || node.node.op.lowering().storage(&node) == Storage::Kernelless {
            continue;
        }
        cx.taken[i] = true;
        let found = if fuse { RULES.iter().find_map(|r| (r.apply)(&cx, i).map(|m| (r.name, m))) } else { None };
        let (rule, Match { siblings, epilogue }) =
            found.unwrap_or(("single", Match { siblings: vec![], epilogue: vec![] }));
        for n in siblings.iter().copied().chain(epilogue.iter().map(|l| l.node)) {
            cx.taken[n] = true;
        }
        let node = cx.node(i);
        let work = node.node.op.lowering().work(&node, micro, threads);
        let mut k = Kernel { name: String::new(), rule, main: i, siblings, epilogue, work, internal: None };
        k.name = kernel_name(graph, &k.nodes());
        // Only a convolution's lowering writes its value one image at a time into scratch.
        let first = k.computed(graph)[0];
        let f = first.0 as usize;
        if matches!(graph.nodes[i].op, Op::Conv2d(_))
            && !cx.is_output[f]
            && cx.readers[f] == 1
            && cx.consumer[f].is_some_and(|c| k.siblings.contains(&c))
        {
            k.internal = Some(first);
            k.work.scratch.push(graph.value(first).numel() / graph.shape(first)[0]);
        }
        out.push(k);
    }
    // Kernels of the same statements and op are told apart by a count.
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for k in &mut out {
        let count = seen.entry(k.name.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            k.name = format!("{}#{count}", k.name);
        }
    }
    out
}

/// The kernels as text, one per line (the `fusion` file tests, `--emit plan`'s grouping).
pub fn kernels_text(g: &Graph, kernels: &[Kernel]) -> String {
    let mut out = String::new();
    for k in kernels {
        let ops: Vec<&str> = k.nodes().iter().map(|&n| g.nodes[n].op.name()).collect();
        let passes: Vec<String> = k.work.passes.iter().map(|p| p.to_string()).collect();
        out += &format!("{} [{}] {} (items {})\n", k.name, k.rule, ops.join(" + "), passes.join(", "));
    }
    out
}
