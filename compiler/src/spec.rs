//! A checked model, what the checker produces and everything after it reads: the input,
//! each statement with its resolved layer, operands, per-sample shapes and parameters
//! (with their PyTorch names), and the loss.

use crate::layers::{Layer, Loss};
use crate::span::Span;
use crate::text::{fmt_shape, group_digits};
use std::fmt::Write;

/// A statement's operand: the model's input, or an earlier statement's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    Input,
    Layer(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub name: Option<String>,
    pub shape: Vec<usize>,
    pub span: Span,
}

/// What a parameter is, which decides its initialization and whether it trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    Weight {
        fan_in: usize,
        fan_out: usize,
    },
    Bias {
        fan_in: usize,
    },
    /// Batch-norm scale γ (initialized to 1).
    Scale,
    /// Batch-norm shift β (initialized to 0).
    Shift,
    RunningMean,
    RunningVar,
    /// `num_batches_tracked` (an I64 scalar in PyTorch's files).
    BatchesTracked,
}

impl ParamRole {
    pub fn trainable(self) -> bool {
        matches!(self, ParamRole::Weight { .. } | ParamRole::Bias { .. } | ParamRole::Scale | ParamRole::Shift)
    }

    /// Running statistics: float state updated in training, not by the optimizer.
    pub fn running(self) -> bool {
        matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// The PyTorch-compatible key: `0.weight`, `stem.running_mean`.
    pub name: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// 0-based index among the model's layer statements (not counting `input`, `loss`).
    pub index: usize,
    pub label: Option<String>,
    /// The layer's name in the language, from the layer table (`conv2d`, `relu`).
    pub kind: &'static str,
    /// The parameter prefix: the label, or else the index.
    pub prefix: String,
    pub layer: Layer,
    pub input: Ref,
    /// The other operands of `add`, in order.
    pub others: Vec<Ref>,
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    pub params: Vec<ParamSpec>,
    pub span: Span,
    /// The statement's canonical text.
    pub text: String,
}

impl LayerSpec {
    /// `conv2d_0`, `stem`: a short tag naming the statement in kernel names.
    pub fn tag(&self) -> String {
        match &self.label {
            Some(l) => l.clone(),
            None => format!("{}_{}", self.kind_name(), self.index),
        }
    }

    /// The layer's name in the language (`conv2d`, `relu`).
    pub fn kind_name(&self) -> &'static str {
        self.kind
    }

    pub fn param(&self, suffix: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name.rsplit('.').next() == Some(suffix))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSpec {
    pub loss: Loss,
    pub span: Span,
}

/// A checked model: every statement resolved, every shape known.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub input: InputSpec,
    pub layers: Vec<LayerSpec>,
    pub loss: Option<LossSpec>,
    /// The canonical text of the model (no comments, normalized spacing); its hash
    /// identifies the model in weights files.
    pub canonical: String,
    pub span: Span,
}

impl ModelSpec {
    pub fn output_shape(&self) -> &[usize] {
        self.layers.last().map_or(&self.input.shape, |l| &l.out_shape)
    }

    pub fn params(&self) -> impl Iterator<Item = &ParamSpec> {
        self.layers.iter().flat_map(|l| &l.params)
    }

    pub fn trainable_count(&self) -> usize {
        self.params().filter(|p| p.role.trainable()).map(|p| p.numel()).sum()
    }

    pub fn running_count(&self) -> usize {
        self.params().filter(|p| p.role.running()).map(|p| p.numel()).sum()
    }

    /// The per-sample shape of an operand.
    pub fn shape_of(&self, r: Ref) -> &[usize] {
        match r {
            Ref::Input => &self.input.shape,
            Ref::Layer(i) => &self.layers[i].out_shape,
        }
    }

    /// Find a layer by its label or its index (as a string).
    pub fn find_layer(&self, name: &str) -> Option<&LayerSpec> {
        self.layers.iter().find(|l| l.prefix == name || l.label.as_deref() == Some(name) || l.tag() == name)
    }

    /// `0 (conv2d_0), 1 (relu_1), stem, ...`: how statements can be named, for messages.
    pub fn layer_names(&self) -> String {
        let names: Vec<String> = self
            .layers
            .iter()
            .map(|l| if l.label.is_some() { l.prefix.clone() } else { format!("{} ({})", l.prefix, l.tag()) })
            .collect();
        names.join(", ")
    }

    /// FNV-1a of the canonical text, as 16 hex digits.
    pub fn text_hash(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.canonical.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("{h:016x}")
    }

    /// The Keras-like summary `percept check` prints.
    pub fn summary(&self) -> String {
        let mut rows: Vec<[String; 4]> = vec![["name".into(), "layer".into(), "output shape".into(), "params".into()]];
        let input_name = self.input.name.clone().unwrap_or_else(|| "input".into());
        rows.push([input_name, "input".into(), fmt_shape(&self.input.shape), "0".into()]);
        for l in &self.layers {
            let count: usize = l.params.iter().filter(|p| p.role.trainable()).map(|p| p.numel()).sum();
            rows.push([l.prefix.clone(), l.text.clone(), fmt_shape(&l.out_shape), group_digits(count)]);
        }
        let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        let _ = writeln!(out, "model {}", self.name);
        let total: usize = widths.iter().sum::<usize>() + 6;
        for (i, r) in rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            );
            if i == 0 {
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        let _ = writeln!(out, "{}", "-".repeat(total));
        let _ = writeln!(out, "trainable parameters: {}", group_digits(self.trainable_count()));
        let _ = writeln!(out, "running statistics:   {}", group_digits(self.running_count()));
        match &self.loss {
            Some(l) => {
                let _ = writeln!(out, "loss: {}", l.loss.name());
            }
            None => {
                let _ = writeln!(out, "loss: none (forward only; `train` needs a `loss` statement)");
            }
        }
        out
    }
}
