//! The layout of a model's state in one flat f32 buffer.

use crate::spec::ModelSpec;
use std::collections::HashMap;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotKind {
    /// A trainable parameter.
    Param,
    /// A running statistic (batch norm).
    Running,
    /// A parameter's gradient; all gradients are contiguous, in parameter order.
    Grad,
    /// Optimizer state (`0.weight.momentum_buffer`, `0.weight.exp_avg`, ...).
    OptState,
    /// What a collective point merges across processes in data-parallel training
    /// (`0.batch_sum`, `0.grad_sums`, ...): scratch of one step, not saved.
    Exchange,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub kind: SlotKind,
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl Slot {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Where each parameter, statistic, gradient and optimizer state lives.
#[derive(Clone, Debug, PartialEq)]
pub struct StateLayout {
    pub slots: Vec<Slot>,
    pub len: usize,
    index: HashMap<(SlotKind, String), usize>,
}

/// What a batch-norm statement exchanges (see [`StateLayout::with_exchange`]): its name
/// and how many f64 per channel (each as two f32 rows).
pub const EXCHANGE_VECTORS: [(&str, usize); 3] = [("batch_sum", 1), ("batch_sqdev", 1), ("grad_sums", 2)];

/// Slots start on 16-float (64-byte) boundaries, so vector code never straddles two.
const ALIGN: usize = 16;

impl StateLayout {
    /// Parameters (statement order), running statistics, gradients, then the optimizer
    /// state named by `opt_suffixes` for every parameter.
    pub fn new(spec: &ModelSpec, opt_suffixes: &[&str]) -> StateLayout {
        let mut layout = StateLayout { slots: vec![], len: 0, index: HashMap::new() };
        let params: Vec<_> = spec.params().filter(|p| p.role.trainable()).collect();
        for p in &params {
            layout.push(SlotKind::Param, &p.name, &p.shape);
        }
        for p in spec.params().filter(|p| p.role.running()) {
            layout.push(SlotKind::Running, &p.name, &p.shape);
        }
        for p in &params {
            layout.push(SlotKind::Grad, &p.name, &p.shape);
        }
        for suffix in opt_suffixes {
            for p in &params {
                layout.push(SlotKind::OptState, &format!("{}.{suffix}", p.name), &p.shape);
            }
        }
        layout
    }

    /// The layout a graph's sources and outputs imply, for a graph read from text (file
    /// tests): parameters, running statistics (`…running_*`), gradients, then other state,
    /// each in order of first appearance.
    pub fn from_graph(g: &crate::ir::Graph) -> StateLayout {
        use crate::ir::OutputRole;
        use crate::ops::{Op, SourceKind};
        let mut named: Vec<(SlotKind, String, Vec<usize>)> = vec![];
        let state_kind = |n: &str| if n.contains("running_") { SlotKind::Running } else { SlotKind::OptState };
        for n in &g.nodes {
            if let Op::Source(s) = &n.op {
                let slot = match &s.kind {
                    SourceKind::Param(p) => (SlotKind::Param, p.clone()),
                    SourceKind::Grad(p) => (SlotKind::Grad, p.clone()),
                    SourceKind::State(p) => (state_kind(p), p.clone()),
                    SourceKind::Data | SourceKind::Target => continue,
                };
                named.push((slot.0, slot.1, s.shape.clone()));
            }
        }
        for (role, v) in &g.outputs {
            let slot = match role {
                OutputRole::Grad(p) => (SlotKind::Grad, p.clone()),
                OutputRole::State(p) => (state_kind(p), p.clone()),
                OutputRole::Param(p) => (SlotKind::Param, p.clone()),
                _ => continue,
            };
            named.push((slot.0, slot.1, g.shape(*v).to_vec()));
        }
        let mut layout = StateLayout { slots: vec![], len: 0, index: HashMap::new() };
        for kind in [SlotKind::Param, SlotKind::Running, SlotKind::Grad, SlotKind::OptState] {
            for (k, name, shape) in &named {
                if *k == kind && layout.find(kind, name).is_none() {
                    layout.push(kind, name, shape);
                }
            }
        }
        layout
    }

    /// With the slots data-parallel batch norm exchanges at its collective points (after
    /// every other slot, so nothing else moves): per batch-norm statement, the shard's
    /// Σ x (`P.batch_sum`, [2, C]), Σ (x − mean)² (`P.batch_sqdev`, [2, C]) and the
    /// gradient's two sums (`P.grad_sums`, [4, C]): f64 per channel, each as two f32 rows
    /// (`ops::split_f64`).
    pub fn with_exchange(mut self, spec: &ModelSpec) -> StateLayout {
        for l in spec.layers.iter().filter(|l| matches!(l.layer, crate::layers::Layer::BatchNorm { .. })) {
            for (v, values) in EXCHANGE_VECTORS {
                self.push(SlotKind::Exchange, &format!("{}.{v}", l.prefix), &[2 * values, l.in_shape[0]]);
            }
        }
        self
    }

    fn push(&mut self, kind: SlotKind, name: &str, shape: &[usize]) {
        let offset = self.len.div_ceil(ALIGN) * ALIGN;
        let slot = Slot { kind, name: name.to_string(), shape: shape.to_vec(), offset };
        self.len = offset + slot.len();
        self.index.insert((kind, name.to_string()), self.slots.len());
        self.slots.push(slot);
    }

    pub fn find(&self, kind: SlotKind, name: &str) -> Option<&Slot> {
        self.index.get(&(kind, name.to_string())).map(|&i| &self.slots[i])
    }

    pub fn of_kind(&self, kind: SlotKind) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(move |s| s.kind == kind)
    }

    /// The contiguous range holding every gradient (what an allreduce sums).
    pub fn grads(&self) -> Range<usize> {
        let mut g = self.of_kind(SlotKind::Grad);
        match (g.next(), g.last()) {
            (Some(first), Some(last)) => first.offset..last.offset + last.len(),
            (Some(only), None) => only.range(),
            _ => 0..0,
        }
    }
}

/// The model's state: one flat buffer laid out by a [`StateLayout`]. Both are private: a
/// compiled program addresses the buffer at fixed offsets, so its length and layout never
/// change once made; the values are reached as a slice.
#[derive(Clone, Debug, PartialEq)]
pub struct StateStore {
    layout: StateLayout,
    data: Vec<f32>,
}

impl StateStore {
    /// Zeros everywhere, except running variances, which start at 1.
    pub fn new(layout: StateLayout) -> StateStore {
        let mut data = vec![0.0; layout.len];
        for s in layout.of_kind(SlotKind::Running).filter(|s| s.name.ends_with("running_var")) {
            data[s.range()].fill(1.0);
        }
        StateStore { layout, data }
    }

    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// Every value, in layout order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Every value, to change in place (the length is fixed).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn get(&self, kind: SlotKind, name: &str) -> Option<&[f32]> {
        self.layout.find(kind, name).map(|s| &self.data[s.range()])
    }

    pub fn get_mut(&mut self, kind: SlotKind, name: &str) -> Option<&mut [f32]> {
        let r = self.layout.find(kind, name)?.range();
        Some(&mut self.data[r])
    }
}
