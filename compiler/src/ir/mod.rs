//! The graph IR: a DAG of typed primitive ops, specialized to one batch size.
//!
//! A [`Graph`] is a list of [`Node`]s in topological order. Each node applies one [`Op`]
//! to values and defines one or more new values (SSA); every value has a static shape
//! (all tensors are f32 in kernels, any [`crate::tensor::Real`] in the interpreter). The
//! forward graph, the training graph (forward + loss + backward) and the optimizer update
//! are all graphs of this one type, printable in a stable text form ([`print`]) that
//! parses back ([`parse`]).

pub mod parse;
pub mod print;

use crate::ops::Op;
use crate::Error;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub shape: Vec<usize>,
    pub node: NodeId,
    /// Which output of its node this value is.
    pub index: usize,
}

impl ValueInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Which part of the step a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Forward,
    Loss,
    Backward,
    Update,
}

/// Where a node comes from: the statement (for diagnostics and kernel names) and phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The statement's tag (`conv2d_0`, `stem`, `loss`); empty for graph sources.
    pub tag: String,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub origin: Origin,
}

/// What a graph output means to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OutputRole {
    /// The scalar loss.
    Loss,
    /// The model's output (the last statement's value).
    Prediction,
    /// The gradient of the loss with respect to a parameter.
    Grad(String),
    /// The new value of a running statistic or optimizer state.
    State(String),
    /// The new value of a parameter (after the optimizer update).
    Param(String),
    /// The output of a statement, exposed for feature extraction.
    Activation(String),
    /// The gradient of the loss with respect to the data input.
    InputGrad,
    /// A value of this process's shard that a collective point right after its node merges
    /// across processes (data-parallel batch norm: the batch statistics, the gradient's
    /// sums), in the state's `Exchange` slot of that name.
    Exchange(String),
}

impl fmt::Display for OutputRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputRole::Loss => f.write_str("loss"),
            OutputRole::Prediction => f.write_str("prediction"),
            OutputRole::Grad(n) => write!(f, "grad \"{n}\""),
            OutputRole::State(n) => write!(f, "state \"{n}\""),
            OutputRole::Param(n) => write!(f, "param \"{n}\""),
            OutputRole::Activation(n) => write!(f, "activation \"{n}\""),
            OutputRole::InputGrad => f.write_str("input_grad"),
            OutputRole::Exchange(n) => write!(f, "exchange \"{n}\""),
        }
    }
}

/// Whether batch norm and dropout run in training or evaluation form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Train,
    Eval,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Train => "train",
            Mode::Eval => "eval",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    pub batch: usize,
    pub mode: Mode,
    pub values: Vec<ValueInfo>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<(OutputRole, ValueId)>,
}

impl Graph {
    pub fn new(name: impl Into<String>, batch: usize, mode: Mode) -> Graph {
        Graph { name: name.into(), batch, mode, values: vec![], nodes: vec![], outputs: vec![] }
    }

    pub fn value(&self, v: ValueId) -> &ValueInfo {
        &self.values[v.0 as usize]
    }

    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v.0 as usize].shape
    }

    pub fn producer(&self, v: ValueId) -> &Node {
        &self.nodes[self.value(v).node.0 as usize]
    }

    pub fn output(&self, role: &OutputRole) -> Option<ValueId> {
        self.outputs.iter().find(|(r, _)| r == role).map(|(_, v)| *v)
    }

    /// Append a node, inferring the shapes of its outputs from the op's shape rule.
    pub fn push(&mut self, op: Op, inputs: &[ValueId], origin: Origin) -> Result<Vec<ValueId>, Error> {
        let in_shapes: Vec<&[usize]> = inputs.iter().map(|&v| self.shape(v)).collect();
        let out_shapes = op.infer(&in_shapes).map_err(|e| {
            let shapes: Vec<String> = in_shapes.iter().map(|s| crate::text::fmt_shape(s)).collect();
            Error::Ir(format!("{} ({}) on inputs {}: {e}", op.name(), origin.tag, shapes.join(", ")))
        })?;
        if let Some(big) = out_shapes.iter().find(|s| crate::shape::elements(s).is_none()) {
            return Err(Error::Ir(format!(
                "{} ({}) gives a tensor {} of more than 2^40 elements",
                op.name(),
                origin.tag,
                crate::text::fmt_shape(big)
            )));
        }
        let node = NodeId(self.nodes.len() as u32);
        let outputs: Vec<ValueId> = out_shapes
            .into_iter()
            .enumerate()
            .map(|(index, shape)| {
                self.values.push(ValueInfo { shape, node, index });
                ValueId(self.values.len() as u32 - 1)
            })
            .collect();
        self.nodes.push(Node { op, inputs: inputs.to_vec(), outputs: outputs.clone(), origin });
        Ok(outputs)
    }

    /// The graph's sources of one kind (data, targets, parameters, states), in order.
    pub fn sources(&self) -> impl Iterator<Item = (&crate::ops::SourceKind, ValueId)> {
        self.nodes.iter().filter_map(|n| match &n.op {
            Op::Source(s) => Some((&s.kind, n.outputs[0])),
            _ => None,
        })
    }

    pub fn source(&self, kind: &crate::ops::SourceKind) -> Option<ValueId> {
        self.sources().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }

    /// For every value, the index of the last node that reads it (or `None`).
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for v in &n.inputs {
                last[v.0 as usize] = Some(i);
            }
        }
        last
    }

    /// Remove nodes whose values reach no output (sources are kept: they are the
    /// graph's interface), renumbering values densely in the same order.
    pub fn prune(&self) -> Graph {
        let mut live = vec![false; self.values.len()];
        for (_, v) in &self.outputs {
            live[v.0 as usize] = true;
        }
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            let is_source = matches!(n.op, Op::Source(_));
            if is_source || n.outputs.iter().any(|v| live[v.0 as usize]) {
                keep[i] = true;
                for v in &n.inputs {
                    live[v.0 as usize] = true;
                }
            }
        }
        let mut g = Graph::new(self.name.clone(), self.batch, self.mode);
        let mut map: Vec<Option<ValueId>> = vec![None; self.values.len()];
        for (n, _) in self.nodes.iter().zip(&keep).filter(|(_, k)| **k) {
            let inputs: Vec<ValueId> = n.inputs.iter().map(|v| map[v.0 as usize].expect("topological order")).collect();
            let node = NodeId(g.nodes.len() as u32);
            let mut outputs = Vec::with_capacity(n.outputs.len());
            for (index, v) in n.outputs.iter().enumerate() {
                g.values.push(ValueInfo { shape: self.shape(*v).to_vec(), node, index });
                let id = ValueId(g.values.len() as u32 - 1);
                map[v.0 as usize] = Some(id);
                outputs.push(id);
            }
            g.nodes.push(Node { op: n.op.clone(), inputs, outputs, origin: n.origin.clone() });
        }
        g.outputs =
            self.outputs.iter().map(|(r, v)| (r.clone(), map[v.0 as usize].expect("outputs are live"))).collect();
        g
    }
}
