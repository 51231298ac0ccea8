//! Epilogues: the elementwise ops a fused kernel applies to each value of its main op
//! just before storing it, so the intermediate values are never written (see `fuse`).
//! The main op's lowering calls [`apply`] at its store with the element's index.

use super::{ChannelAxis, Element};
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::{err, CgResult};
use crate::codegen::loops::{types, Idx, Val};
use crate::layers::Activation;

/// One elementwise op of an epilogue chain; its other operand, if any, is stored.
pub enum EpiOp {
    /// + bias[column] (a dense layer's C is [batch, features]).
    BiasCol(Buf),
    /// + bias[row] (a convolution's per-image C is [filters, pixels]).
    BiasRow(Buf),
    Act(Activation),
    /// f′ from the full-size operand (the value the derivative is taken from) times the value.
    ActGrad(Activation, Buf),
    /// + the full-size operand.
    Add(Buf),
    /// Batch norm in evaluation mode, one channel per row of C (a convolution) or per
    /// column (a dense layer): (v − mean)·γ/√(var + ε) + β.
    BatchNormEval {
        stats: [Buf; 4],
        eps: f64,
        by_row: bool,
    },
}

impl EpiOp {
    /// The link `element` with its operands' buffers, after a main op whose GEMM has its
    /// channels on `axis` (`None`: not a GEMM; bias and batch norm need one).
    pub fn new(element: Element, operands: Vec<Buf>, axis: Option<ChannelAxis>) -> CgResult<EpiOp> {
        let mut ops = operands.into_iter();
        let mut next = || ops.next().ok_or_else(|| crate::Error::Codegen("a link lacks an operand".into()));
        Ok(match (element, axis) {
            (Element::Bias, Some(ChannelAxis::Rows)) => EpiOp::BiasRow(next()?),
            (Element::Bias, Some(ChannelAxis::Columns)) => EpiOp::BiasCol(next()?),
            (Element::Act(a), _) => EpiOp::Act(a),
            (Element::ActGrad(a), _) => EpiOp::ActGrad(a, next()?),
            (Element::Add, _) => EpiOp::Add(next()?),
            (Element::BatchNormEval { eps }, Some(axis)) => EpiOp::BatchNormEval {
                stats: [next()?, next()?, next()?, next()?],
                eps,
                by_row: axis == ChannelAxis::Rows,
            },
            (e, None) => return err(format!("{e:?} can follow only a GEMM")),
        })
    }
}

/// Where the value being stored sits: its flat element index `at` in the chain's
/// (same-shaped) values, and for GEMMs its row and column in C (bias links only).
#[derive(Clone, Copy)]
pub struct At {
    pub at: Idx,
    pub row: Idx,
    pub col: Idx,
}

impl At {
    pub fn flat(at: Idx) -> At {
        At { at, row: Idx::constant(0), col: Idx::constant(0) }
    }
}

/// Apply an epilogue chain to `v` (scalar or lanes) at `pos`.
pub fn apply(kb: &mut Kb, ops: &[EpiOp], v: Val, pos: At) -> CgResult<Val> {
    apply_knowing(kb, ops, v, pos, None)
}

/// The same, where the caller already holds `known = (buffer, its value at pos.at)`: an
/// operand read from that buffer is not loaded again (max pooling's gradient knows the
/// winning input, which is the value a preceding activation's derivative is taken from).
pub fn apply_knowing(kb: &mut Kb, ops: &[EpiOp], mut v: Val, pos: At, known: Option<(&Buf, Val)>) -> CgResult<Val> {
    let ty = kb.ty(v);
    let operand = |kb: &mut Kb, b: &Buf| match known {
        Some((k, kv)) if k.region == b.region && k.offset == b.offset && ty == kb.ty(kv) => Ok(kv),
        _ => kb.load(ty, b, pos.at),
    };
    for op in ops {
        v = match op {
            EpiOp::BiasCol(b) => {
                let bv = kb.load(ty, b, pos.col)?;
                kb.fadd(v, bv)
            }
            EpiOp::BiasRow(b) => {
                let s = kb.load(types::F32, b, pos.row)?;
                let bv = kb.splat(ty, s);
                kb.fadd(v, bv)
            }
            EpiOp::Act(a) => super::element::activation(kb, *a, v),
            EpiOp::ActGrad(a, other) => {
                let o = operand(kb, other)?;
                super::element::activation_grad(kb, *a, o, v)
            }
            EpiOp::Add(other) => {
                let o = operand(kb, other)?;
                kb.fadd(v, o)
            }
            EpiOp::BatchNormEval { stats: [mean, var, gamma, beta], eps, by_row } => {
                let (mu, scale, shift) = if *by_row {
                    let m = kb.load(types::F32, mean, pos.row)?;
                    let (va, g) = (kb.load(types::F32, var, pos.row)?, kb.load(types::F32, gamma, pos.row)?);
                    let s = super::element::eval_scale(kb, va, g, *eps);
                    let b = kb.load(types::F32, beta, pos.row)?;
                    (kb.splat(ty, m), kb.splat(ty, s), kb.splat(ty, b))
                } else {
                    // One channel per lane: the scale lane by lane, as the kernel does.
                    let mut s = kb.f(ty, 0.0);
                    for l in 0..ty.lane_count() {
                        let at = pos.col.plus(l as i64);
                        let (va, g) = (kb.load(types::F32, var, at)?, kb.load(types::F32, gamma, at)?);
                        let sl = super::element::eval_scale(kb, va, g, *eps);
                        s = if ty.is_vector() { kb.insertlane(s, sl, l as u8) } else { sl };
                    }
                    (kb.load(ty, mean, pos.col)?, s, kb.load(ty, beta, pos.col)?)
                };
                let d = kb.fsub(v, mu);
                kb.fma(d, scale, shift)
            }
        };
    }
    Ok(v)
}
