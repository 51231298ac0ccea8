//! Graph sources: the data batch, the targets, parameters and running statistics.

use super::{OpRule, Shapes, StepCtx, TextOp};
use crate::tensor::{Real, Tensor};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// The input batch [N, ...input shape].
    Data,
    /// The targets: class indices [N] (as floats) or float targets [N, k].
    Target,
    /// A trainable parameter, by its PyTorch name.
    Param(String),
    /// A running statistic or optimizer state, by name.
    State(String),
    /// The gradient of a parameter (an input of the optimizer's update).
    Grad(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub kind: SourceKind,
    pub shape: Vec<usize>,
}

impl OpRule for Source {
    fn name(&self) -> &'static str {
        match self.kind {
            SourceKind::Data => "data",
            SourceKind::Target => "target",
            SourceKind::Param(_) => "param",
            SourceKind::State(_) => "state",
            SourceKind::Grad(_) => "grad",
        }
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        let kind = match t.name {
            "data" => SourceKind::Data,
            "target" => SourceKind::Target,
            "param" => SourceKind::Param(String::new()),
            "state" => SourceKind::State(String::new()),
            "grad" => SourceKind::Grad(String::new()),
            _ => return None,
        };
        Some((|| {
            let kind = match kind {
                SourceKind::Param(_) => SourceKind::Param(t.quoted()?),
                SourceKind::State(_) => SourceKind::State(t.quoted()?),
                SourceKind::Grad(_) => SourceKind::Grad(t.quoted()?),
                k => k,
            };
            Ok(Source { kind, shape: t.shape()? })
        })())
    }

    fn attrs(&self) -> String {
        match &self.kind {
            SourceKind::Param(n) | SourceKind::State(n) | SourceKind::Grad(n) => format!("\"{n}\""),
            _ => String::new(),
        }
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        super::arity(ins, 0)?;
        Ok(vec![self.shape.clone()])
    }

    fn eval<T: Real>(&self, _: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        Err(format!("the {} source is fed by the caller, not evaluated", self.name()))
    }

    fn flops(&self, _: &Shapes, _: &Shapes) -> u64 {
        0
    }
}
