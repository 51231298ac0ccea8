//! The loop-nest level: what a kernel is between its op's lowering and Cranelift IR.
//!
//! A [`LoopNest`] is one function of a kernel (one pass): counted loops with constant
//! bounds, the parallel loop over the work items a thread was given, branches on an
//! index, loads and stores on named buffers at affine indices ([`Idx`]: Σ cᵢ·vᵢ + c with
//! the range it was proved to lie in), scalar and f32x4 arithmetic in SSA values, a few
//! intrinsics (exp and friends, expanded into polynomials only when CLIF is written), and
//! micro-kernel calls. Lowerings build it with [`crate::codegen::builder::Kb`]; [`verify`]
//! proves every access in bounds on this value, before [`crate::codegen::emit`] turns it
//! into CLIF; `percept inspect --emit loops` prints it ([`print`]).
//!
//! The instruction vocabulary deliberately mirrors CLIF's (same types, same condition
//! codes): this level adds structure — loops, indices with ranges, buffers by name — not
//! a second arithmetic.

pub mod dce;
mod print;
pub mod range;
mod readonly;
pub mod verify;

use crate::codegen::builder::Buf;
pub use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
pub use cranelift_codegen::ir::{types, Type};

/// An SSA value of a loop nest (loop indices are values too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Val(pub u32);

/// A mutable variable (accumulators carried around loops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub u32);

/// A buffer of the nest's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufId(pub u32);

/// Most terms an index can have (the deepest nests: image, channel, row, column, plus a
/// window offset and a tile position).
pub const MAX_TERMS: usize = 6;

/// An index Σ cᵢ·vᵢ + `off` over integer values (loop indices, clamped labels, pooling
/// winners), known to lie in `lo..=hi`. Built by `Kb`, which derives the range from the
/// ranges of the terms; [`verify`] derives it again on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idx {
    terms: [(Val, i64); MAX_TERMS],
    n: u8,
    pub off: i64,
    pub lo: i64,
    pub hi: i64,
}

impl Idx {
    pub fn constant(c: i64) -> Idx {
        Idx { terms: [(Val(0), 0); MAX_TERMS], n: 0, off: c, lo: c, hi: c }
    }

    /// `1·v` with `v` in `lo..=hi`.
    pub(crate) fn of(v: Val, (lo, hi): (i64, i64)) -> Idx {
        let mut i = Idx::constant(0);
        i.terms[0] = (v, 1);
        i.n = 1;
        (i.lo, i.hi) = (lo, hi);
        i
    }

    pub fn plus(self, c: i64) -> Idx {
        Idx { off: self.off + c, lo: self.lo + c, hi: self.hi + c, ..self }
    }

    pub fn terms(&self) -> &[(Val, i64)] {
        &self.terms[..self.n as usize]
    }

    pub fn is_constant(&self) -> bool {
        self.n == 0
    }

    /// The value when the index is `1·v` exactly.
    pub fn as_value(&self) -> Option<Val> {
        match self.terms() {
            [(v, 1)] if self.off == 0 => Some(*v),
            _ => None,
        }
    }

    /// c·a for c ≥ 0.
    pub fn scale(a: Idx, c: i64) -> Idx {
        assert!(c >= 0, "index scale must be non-negative");
        let mut out = Idx { off: a.off * c, lo: a.lo * c, hi: a.hi * c, ..a };
        if c == 0 {
            out.n = 0;
        }
        for t in &mut out.terms[..out.n as usize] {
            t.1 *= c;
        }
        out
    }

    /// The same index restricted to a range proved elsewhere (a branch's refinement).
    pub(crate) fn with_range(self, (lo, hi): (i64, i64)) -> Idx {
        Idx { lo, hi, ..self }
    }
}

/// a + b (terms of the same value merge); the range is the sum of the ranges.
impl std::ops::Add for Idx {
    type Output = Idx;

    fn add(self, b: Idx) -> Idx {
        let a = self;
        let mut out = Idx { off: a.off + b.off, lo: a.lo + b.lo, hi: a.hi + b.hi, ..a };
        for &(v, c) in b.terms() {
            match out.terms[..out.n as usize].iter_mut().find(|t| t.0 == v) {
                Some(t) => t.1 += c,
                None => {
                    assert!((out.n as usize) < MAX_TERMS, "an index with more than {MAX_TERMS} terms");
                    out.terms[out.n as usize] = (v, c);
                    out.n += 1;
                }
            }
        }
        // Drop terms that cancelled.
        let kept: Vec<(Val, i64)> = out.terms().iter().copied().filter(|t| t.1 != 0).collect();
        out.n = kept.len() as u8;
        out.terms[..kept.len()].copy_from_slice(&kept);
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Fneg,
    Fabs,
    Sqrt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Fadd,
    Fsub,
    Fmul,
    Fdiv,
    Iadd,
    Isub,
    Band,
    Bor,
    Bxor,
    Smax,
    Smin,
}

/// Integer ops with an immediate operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImmOp {
    Iadd,
    Imul,
    Ishl,
    Ushr,
    Sshr,
    Band,
    Bor,
}

/// Changes of type: float widths, float ↔ int, int widths, bit reinterpretation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convert {
    Fpromote,
    Fdemote,
    FcvtToSintSat,
    FcvtFromSint,
    Uextend,
    Ireduce,
    Bitcast,
}

/// Functions with no Cranelift instruction, expanded into inline polynomials when CLIF is
/// written (`codegen::math`): scalar or lanes of f32, `LogF64` on f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MathFn {
    Exp,
    Expm1,
    Sigmoid,
    Tanh,
    LogF64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A float constant (splat over lanes for vector types).
    Fconst(f64),
    /// An integer constant (splat over lanes for vector types).
    Iconst(i64),
    Load {
        buf: BufId,
        at: Idx,
    },
    /// A field of the step context (`builder::ctx`).
    Ctx {
        offset: i32,
    },
    /// The value of an index (i64).
    Index(Idx),
    Get(Var),
    Unary(Unary, Val),
    Binary(Binary, Val, Val),
    Imm(ImmOp, Val, i64),
    Fma(Val, Val, Val),
    Fcmp(FloatCC, Val, Val),
    IcmpImm(IntCC, Val, i64),
    /// `mask ? a : b`, the mask from a comparison (per lane for vectors).
    Select(Val, Val, Val),
    Convert(Convert, Val),
    Splat(Val),
    ExtractLane(Val, u8),
    InsertLane(Val, Val, u8),
    /// Lanes of `a` (0..4) and `b` (4..8) of two f32x4.
    Shuffle(Val, Val, [u8; 4]),
    Math(MathFn, Val),
}

impl Expr {
    /// The values it reads: its operands, and the terms of its index.
    pub fn operands(&self) -> Vec<Val> {
        match self {
            Expr::Fconst(_) | Expr::Iconst(_) | Expr::Ctx { .. } | Expr::Get(_) => vec![],
            Expr::Load { at, .. } | Expr::Index(at) => at.terms().iter().map(|t| t.0).collect(),
            Expr::Unary(_, a)
            | Expr::Imm(_, a, _)
            | Expr::IcmpImm(_, a, _)
            | Expr::Convert(_, a)
            | Expr::Splat(a)
            | Expr::ExtractLane(a, _)
            | Expr::Math(_, a) => vec![*a],
            Expr::Binary(_, a, b) | Expr::Fcmp(_, a, b) | Expr::InsertLane(a, b, _) | Expr::Shuffle(a, b, _) => {
                vec![*a, *b]
            }
            Expr::Fma(a, b, c) | Expr::Select(a, b, c) => vec![*a, *b, *c],
        }
    }
}

/// A pointer argument of a call: `len` floats at `buf[at]`, proved in bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ptr {
    pub buf: BufId,
    pub at: Idx,
    pub len: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Let(Val, Expr),
    Store {
        buf: BufId,
        at: Idx,
        value: Val,
    },
    Set(Var, Val),
    /// `for var in (lo..hi).step_by(step)`: at least two iterations (the builder emits a
    /// single one straight, with a constant index).
    For {
        var: Val,
        lo: i64,
        hi: i64,
        step: i64,
        body: Vec<Stmt>,
    },
    /// The work items `lo..hi` the calling thread was given, within `0..extent`.
    Items {
        var: Val,
        extent: usize,
        body: Vec<Stmt>,
    },
    /// `if value < limit { then } else { otherwise }`; each branch knows the refined range.
    IfBelow {
        value: Val,
        limit: i64,
        then: Vec<Stmt>,
        otherwise: Vec<Stmt>,
    },
    /// `tile (+)= A·B` over `kc` steps of panels (the GEMM micro-kernel).
    CallMicro(Box<MicroCall>),
}

/// `tile = A·B` over `kc` steps: A(i, p) = `a[i·a_strides.0 + p·a_strides.1]` for the
/// tile's MR rows i ((1, MR) when A is packed; A's own strides when it is read in place)
/// — or, with `a_rows`, `a[a_rows[i] + p·a_strides.1]` (a direct weight gradient's taps
/// in a bordered image; MR constants of the nest) —,
/// B's step p the NR floats at `b + p·b_stride` (NR when B is packed; a row of B itself
/// when read in place) — or, with `b_steps`, at `b + b_steps[p]` (a direct convolution's
/// taps in a padded image; the offsets are constants of the nest, so the bounds proof
/// sees them) —, the tile MR rows of NR floats `tile_stride` apart: the kernel's tile
/// buffer (`tile_stride` = NR), or C itself where the GEMM has no epilogue (C's row
/// stride; with `accumulate`, the micro-kernel adds the product to it).
#[derive(Clone, Debug, PartialEq)]
pub struct MicroCall {
    /// Whether it calls the nest's narrow micro-kernel (`LoopNest::narrow`).
    pub narrow: bool,
    pub kc: usize,
    pub a: Ptr,
    pub a_strides: (usize, usize),
    pub a_rows: Option<std::sync::Arc<[i32]>>,
    pub b: Ptr,
    pub b_stride: usize,
    pub b_steps: Option<std::sync::Arc<[i32]>>,
    pub tile: Ptr,
    pub tile_stride: usize,
    pub accumulate: bool,
}

impl MicroCall {
    /// Floats each pointer must have from where it points, for MR×NR tiles: what the
    /// micro-kernel reads of A (every row at every step) and of B (every step), and the
    /// tile it writes.
    pub fn extents(&self, (mr, nr): (usize, usize)) -> [usize; 3] {
        let (ar, ak) = self.a_strides;
        let last_row = match &self.a_rows {
            Some(rows) => rows.iter().map(|&r| r.max(0) as usize).max().unwrap_or(0),
            None => (mr - 1) * ar,
        };
        let a = last_row + (self.kc - 1) * ak + 1;
        let last_step = match &self.b_steps {
            Some(steps) => steps.iter().map(|&s| s.max(0) as usize).max().unwrap_or(0),
            None => (self.kc - 1) * self.b_stride,
        };
        [a, last_step + nr, (mr - 1) * self.tile_stride + nr]
    }
}

/// One function of a kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopNest {
    /// The kernel's name (as `--emit plan` gives it).
    pub name: String,
    /// Which of the kernel's passes this is.
    pub pass: usize,
    pub bufs: Vec<Buf>,
    /// The type of every value.
    pub types: Vec<Type>,
    /// The type of every variable.
    pub vars: Vec<Type>,
    /// The calling thread's scratch space: (start, floats per thread) at the arena's end.
    pub scratch: Option<(usize, usize)>,
    /// The micro-kernel `CallMicro` calls: (name, MR, NR).
    pub micro: Option<(String, usize, usize)>,
    /// The narrow one a call may choose instead (`MicroCall::narrow`).
    pub narrow: Option<(String, usize, usize)>,
    pub body: Vec<Stmt>,
}

impl LoopNest {
    pub fn ty(&self, v: Val) -> Type {
        self.types[v.0 as usize]
    }

    pub fn buf(&self, b: BufId) -> &Buf {
        &self.bufs[b.0 as usize]
    }

    /// Its micro-kernel calls, in program order.
    pub fn micro_calls(&self) -> Vec<&MicroCall> {
        fn walk<'a>(body: &'a [Stmt], out: &mut Vec<&'a MicroCall>) {
            for s in body {
                match s {
                    Stmt::CallMicro(call) => out.push(call),
                    Stmt::For { body, .. } | Stmt::Items { body, .. } => walk(body, out),
                    Stmt::IfBelow { then, otherwise, .. } => {
                        walk(then, out);
                        walk(otherwise, out);
                    }
                    Stmt::Let(..) | Stmt::Store { .. } | Stmt::Set(..) => {}
                }
            }
        }
        let mut out = vec![];
        walk(&self.body, &mut out);
        out
    }

    /// The distinct offset tables (A's rows, B's steps) of its micro-kernel calls, in order
    /// of first use: what `emit` writes into stack slots at entry and the printer lists
    /// once, by name.
    pub fn step_tables(&self) -> Vec<std::sync::Arc<[i32]>> {
        let mut out: Vec<std::sync::Arc<[i32]>> = vec![];
        let calls = self.micro_calls();
        for t in calls.into_iter().flat_map(|c| [c.a_rows.as_ref(), c.b_steps.as_ref()]).flatten() {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }

    /// Whether the nest calls the micro-kernel (so its function must import it).
    pub fn calls_micro(&self) -> bool {
        !self.micro_calls().is_empty()
    }

    /// Whether the nest calls its narrow micro-kernel (`narrow`) or its main one.
    pub fn calls_tile(&self, narrow: bool) -> bool {
        self.micro_calls().iter().any(|c| c.narrow == narrow)
    }

    /// The (name, MR, NR) of the micro-kernel `call` calls.
    pub fn tile_of(&self, call: &MicroCall) -> Option<&(String, usize, usize)> {
        if call.narrow {
            self.narrow.as_ref()
        } else {
            self.micro.as_ref()
        }
    }
}

/// Floats an access of type `ty` touches.
pub fn width(ty: Type) -> usize {
    if ty.is_vector() {
        ty.lane_count() as usize
    } else {
        1
    }
}
