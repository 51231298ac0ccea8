//! The kernel builder: how lowerings write a kernel's [`LoopNest`].
//!
//! Lowerings describe kernels as nests of counted loops over constant bounds, with loads
//! and stores at `buffer[index]` where every index is an affine [`Idx`] whose range the
//! builder derives from its terms (loop bounds, the item extent, branch refinements,
//! clamps: `loops::range`). Each access is checked against its buffer as it is written,
//! so a lowering that could leave a buffer fails at the line that wrote it; the finished
//! nest is proved again, independently, by `loops::verify` before any code exists.
//! Nothing here writes CLIF: `codegen::emit` does, from the finished value.

use super::jit::{err, CgResult};
use super::loops::{
    range, types, width, Binary, BufId, Convert, Expr, FloatCC, Idx, ImmOp, IntCC, LoopNest, MathFn, MicroCall, Ptr,
    Stmt, Type, Unary, Val, Var,
};
use super::micro::MicroTile;

/// Where a buffer lives: the per-program arena, the model's state, or the calling
/// thread's own scratch space (packed panels, im2col matrices) at the end of the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    Arena,
    State,
    Scratch,
}

/// A buffer a kernel may touch: `len` floats at `offset` floats into its region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buf {
    pub region: Region,
    pub offset: usize,
    pub len: usize,
    /// For messages: `%12 (conv2d_0)`, `pack A`.
    pub name: String,
}

impl Buf {
    /// A sub-range of this buffer.
    pub fn slice(&self, start: usize, len: usize, name: &str) -> Buf {
        assert!(start + len <= self.len, "slice of {} out of range", self.name);
        Buf { region: self.region, offset: self.offset + start, len, name: format!("{} {name}", self.name) }
    }
}

/// Field offsets (bytes) of the step context every kernel receives (`executable::KernelCtx`,
/// whose layout a test checks against these).
pub mod ctx {
    pub const SEED: i32 = 0;
    pub const STEP: i32 = 8;
    pub const LR: i32 = 16;
    pub const ADAM_STEP_SIZE: i32 = 20;
    pub const ADAM_INV_SQRT_BC2: i32 = 24;

    /// The field's name, for the loop-nest text.
    pub fn name(offset: i32) -> &'static str {
        match offset {
            SEED => "seed",
            STEP => "step",
            LR => "lr",
            ADAM_STEP_SIZE => "adam_step_size",
            ADAM_INV_SQRT_BC2 => "adam_inv_sqrt_bc2",
            _ => "?",
        }
    }
}

/// CLIF's arithmetic as builder methods: `name(a, b)`, `name(a)`, `name(a, constant)`.
macro_rules! ops {
    (binary: $($b:ident => $bop:ident),*; unary: $($u:ident => $uop:ident),*; imm: $($i:ident => $iop:ident),*;) => {
        $(pub fn $b(&mut self, a: Val, b: Val) -> Val {
            self.binary(Binary::$bop, a, b)
        })*
        $(pub fn $u(&mut self, a: Val) -> Val {
            self.unary(Unary::$uop, a)
        })*
        $(pub fn $i(&mut self, a: Val, c: i64) -> Val {
            self.imm(ImmOp::$iop, a, c)
        })*
    };
}

pub struct Kb {
    pub name: String,
    pass: usize,
    bufs: Vec<Buf>,
    types: Vec<Type>,
    /// The range of every integer value where it is being used (refined inside branches).
    ranges: Vec<Option<range::Range>>,
    vars: Vec<Type>,
    /// The blocks being written, innermost last.
    blocks: Vec<Vec<Stmt>>,
    scratch: Option<(usize, usize)>,
    micro: Option<(String, usize, usize)>,
    narrow: Option<(String, usize, usize)>,
}

fn lane_type_of_compare(ty: Type) -> Type {
    if ty.is_vector() {
        ty.as_int()
    } else {
        types::I8
    }
}

impl Kb {
    /// Start pass `pass` of kernel `name`. `scratch`: (start, size per thread) of the
    /// scratch region, in floats; `micro`: the micro-kernel its GEMMs call (and its narrow
    /// one, which a GEMM may call instead).
    pub fn new(name: &str, pass: usize, scratch: Option<(usize, usize)>, micro: Option<&MicroTile>) -> Kb {
        let shape = |t: &MicroTile| (t.name.clone(), t.mr, t.nr);
        Kb {
            name: name.to_string(),
            pass,
            bufs: vec![],
            types: vec![],
            ranges: vec![],
            vars: vec![],
            blocks: vec![vec![]],
            scratch,
            micro: micro.map(shape),
            narrow: micro.and_then(|t| t.narrow.as_deref()).map(shape),
        }
    }

    /// The finished nest, without dead values.
    pub fn finish(mut self) -> LoopNest {
        assert_eq!(self.blocks.len(), 1, "kernel `{}`: unclosed block", self.name);
        let mut body = self.blocks.pop().expect("the top block");
        super::loops::dce::dce(self.types.len(), &mut body);
        LoopNest {
            name: self.name,
            pass: self.pass,
            bufs: self.bufs,
            types: self.types,
            vars: self.vars,
            scratch: self.scratch,
            micro: self.micro,
            narrow: self.narrow,
            body,
        }
    }

    fn push(&mut self, s: Stmt) {
        self.blocks.last_mut().expect("a block").push(s);
    }

    fn new_val(&mut self, ty: Type, r: Option<range::Range>) -> Val {
        self.types.push(ty);
        self.ranges.push(r);
        Val(self.types.len() as u32 - 1)
    }

    /// Define a value of type `ty` as `e`, with its derived range.
    fn def(&mut self, ty: Type, e: Expr) -> Val {
        let r = range::of_expr(&e, ty, &|v| self.ranges[v.0 as usize]);
        let v = self.new_val(ty, r);
        self.push(Stmt::Let(v, e));
        v
    }

    pub fn ty(&self, v: Val) -> Type {
        self.types[v.0 as usize]
    }

    fn buf_id(&mut self, b: &Buf) -> BufId {
        let i = match self.bufs.iter().position(|x| x == b) {
            Some(i) => i,
            None => {
                self.bufs.push(b.clone());
                self.bufs.len() - 1
            }
        };
        BufId(i as u32)
    }

    /// The access `width` floats at `buf[at]` must lie inside the buffer.
    fn check(&self, buf: &Buf, at: Idx, width: usize, what: &str) -> CgResult<()> {
        if at.lo < 0 || at.hi + width as i64 > buf.len as i64 {
            return err(format!(
                "kernel `{}`: {what} of {} at [{}, {}] (width {width}) is outside its {} elements",
                self.name, buf.name, at.lo, at.hi, buf.len
            ));
        }
        if buf.region == Region::Scratch && self.scratch.is_none() {
            return err(format!("kernel `{}` has no scratch space", self.name));
        }
        Ok(())
    }

    pub fn load(&mut self, ty: Type, buf: &Buf, at: Idx) -> CgResult<Val> {
        self.check(buf, at, width(ty), "load")?;
        let b = self.buf_id(buf);
        Ok(self.def(ty, Expr::Load { buf: b, at }))
    }

    pub fn store(&mut self, value: Val, buf: &Buf, at: Idx) -> CgResult<()> {
        self.check(buf, at, width(self.ty(value)), "store")?;
        let b = self.buf_id(buf);
        self.push(Stmt::Store { buf: b, at, value });
        Ok(())
    }

    /// `tile = A·B` over `kc` steps (see [`MicroCall`]); each pointer with the floats the
    /// micro-kernel reads or writes from it, and A's row offsets and B's step offsets if
    /// they are tables.
    #[allow(clippy::too_many_arguments)]
    pub fn call_micro(
        &mut self,
        tile: &MicroTile,
        kc: usize,
        (a_buf, a_at, a_len, a_strides): (&Buf, Idx, usize, (usize, usize)),
        a_rows: Option<std::sync::Arc<[i32]>>,
        (b_buf, b_at, b_len, b_stride): (&Buf, Idx, usize, usize),
        b_steps: Option<std::sync::Arc<[i32]>>,
        (tile_buf, tile_at, tile_len, tile_stride, accumulate): (&Buf, Idx, usize, usize, bool),
    ) -> CgResult<()> {
        let ptr = |kb: &mut Kb, (buf, at, len): (&Buf, Idx, usize)| -> CgResult<Ptr> {
            kb.check(buf, at, len, "pointer")?;
            Ok(Ptr { buf: kb.buf_id(buf), at, len })
        };
        let (a, b) = (ptr(self, (a_buf, a_at, a_len))?, ptr(self, (b_buf, b_at, b_len))?);
        let narrow = match (&self.micro, &self.narrow) {
            (Some(m), _) if m.0 == tile.name => false,
            (_, Some(m)) if m.0 == tile.name => true,
            _ => {
                return Err(crate::Error::Codegen(format!(
                    "kernel `{}`: a GEMM calls micro-kernel {}, which the kernel does not have",
                    self.name, tile.name
                )))
            }
        };
        let tile_ptr = ptr(self, (tile_buf, tile_at, tile_len))?;
        self.push(Stmt::CallMicro(Box::new(MicroCall {
            narrow,
            kc,
            a,
            a_strides,
            a_rows,
            b,
            b_stride,
            b_steps,
            tile: tile_ptr,
            tile_stride,
            accumulate,
        })));
        Ok(())
    }

    // Constants and the step context.

    pub fn iconst(&mut self, c: i64) -> Val {
        self.def(types::I64, Expr::Iconst(c))
    }

    /// An integer constant of type `ty` (splat over lanes for vectors).
    pub fn iconst_of(&mut self, ty: Type, c: i64) -> Val {
        self.def(ty, Expr::Iconst(c))
    }

    /// A float constant of type `ty` (f32 or f32x4).
    pub fn f(&mut self, ty: Type, x: f32) -> Val {
        self.def(ty, Expr::Fconst(x as f64))
    }

    pub fn f64const(&mut self, x: f64) -> Val {
        self.def(types::F64, Expr::Fconst(x))
    }

    pub fn ctx_i64(&mut self, offset: i32) -> Val {
        self.def(types::I64, Expr::Ctx { offset })
    }

    pub fn ctx_f32(&mut self, offset: i32) -> Val {
        self.def(types::F32, Expr::Ctx { offset })
    }

    // Indices.

    /// The value of an index (i64), with the index's range.
    pub fn value(&mut self, i: Idx) -> Val {
        match i.as_value() {
            Some(v) if self.ty(v) == types::I64 => v,
            _ => self.def(types::I64, Expr::Index(i)),
        }
    }

    /// An index from an integer value, with the range derived for it; an error if none
    /// could be derived (a value of unknown range must never index a buffer).
    pub fn idx(&mut self, v: Val) -> CgResult<Idx> {
        let v = if self.ty(v) == types::I64 { v } else { self.convert(Convert::Uextend, types::I64, v) };
        match self.ranges[v.0 as usize] {
            Some(r) => Ok(Idx::of(v, r)),
            None => err(format!("kernel `{}`: v{} indexes a buffer but has no proved range", self.name, v.0)),
        }
    }

    pub fn add(&mut self, a: Idx, b: Idx) -> Idx {
        a + b
    }

    pub fn mul(&mut self, a: Idx, c: i64) -> Idx {
        Idx::scale(a, c)
    }

    /// Σ idx·stride + base, the usual row-major address arithmetic. The sum of terms is
    /// computed here, once (a row's start, reused by every access along the row), and the
    /// result is that value plus the constant.
    pub fn affine(&mut self, base: i64, terms: &[(Idx, i64)]) -> Idx {
        let sum = terms.iter().fold(Idx::constant(base), |acc, &(i, s)| acc + Idx::scale(i, s));
        if sum.terms().len() < 2 && sum.terms().iter().all(|t| t.1 == 1) {
            return sum;
        }
        let v = self.def(types::I64, Expr::Index(sum.plus(-sum.off)));
        let r = self.ranges[v.0 as usize].expect("the range of a sum of ranged terms");
        Idx::of(v, r).plus(sum.off)
    }

    // Arithmetic (CLIF's instructions, on scalars or lanes).

    fn unary(&mut self, op: Unary, a: Val) -> Val {
        let ty = self.ty(a);
        self.def(ty, Expr::Unary(op, a))
    }

    fn binary(&mut self, op: Binary, a: Val, b: Val) -> Val {
        let ty = self.ty(a);
        self.def(ty, Expr::Binary(op, a, b))
    }

    fn imm(&mut self, op: ImmOp, a: Val, c: i64) -> Val {
        let ty = self.ty(a);
        self.def(ty, Expr::Imm(op, a, c))
    }

    ops! {
        binary: fadd => Fadd, fsub => Fsub, fmul => Fmul, fdiv => Fdiv, band => Band, bxor => Bxor,
            smax => Smax, smin => Smin;
        unary: fneg => Fneg, fabs => Fabs, sqrt => Sqrt;
        imm: iadd_imm => Iadd, imul_imm => Imul, ushr_imm => Ushr;
    }

    /// a·b + c: one instruction where the host has FMA, else fmul + fadd (`emit`).
    pub fn fma(&mut self, a: Val, b: Val, c: Val) -> Val {
        let ty = self.ty(a);
        self.def(ty, Expr::Fma(a, b, c))
    }

    /// A change of type (`ty` is the result's).
    pub fn convert(&mut self, op: Convert, ty: Type, a: Val) -> Val {
        self.def(ty, Expr::Convert(op, a))
    }

    pub fn fpromote(&mut self, a: Val) -> Val {
        self.convert(Convert::Fpromote, types::F64, a)
    }

    pub fn fdemote(&mut self, a: Val) -> Val {
        self.convert(Convert::Fdemote, types::F32, a)
    }

    pub fn fcmp(&mut self, cc: FloatCC, a: Val, b: Val) -> Val {
        let ty = lane_type_of_compare(self.ty(a));
        self.def(ty, Expr::Fcmp(cc, a, b))
    }

    pub fn icmp_imm(&mut self, cc: IntCC, a: Val, c: i64) -> Val {
        self.def(types::I8, Expr::IcmpImm(cc, a, c))
    }

    /// `mask ? a : b` (scalar or per lane).
    pub fn select(&mut self, mask: Val, a: Val, b: Val) -> Val {
        let ty = self.ty(a);
        self.def(ty, Expr::Select(mask, a, b))
    }

    /// max(a, b) as one compare and select (`vmaxps`-like): b if a < b, else a — so a NaN
    /// in `a` stays, a NaN in `b` does not (callers that need NaN put it back).
    pub fn max(&mut self, a: Val, b: Val) -> Val {
        let lt = self.fcmp(FloatCC::LessThan, a, b);
        self.select(lt, b, a)
    }

    pub fn min(&mut self, a: Val, b: Val) -> Val {
        let gt = self.fcmp(FloatCC::GreaterThan, a, b);
        self.select(gt, b, a)
    }

    /// `s` on every lane of `ty` (itself for a scalar type).
    pub fn splat(&mut self, ty: Type, s: Val) -> Val {
        if ty.is_vector() {
            self.def(ty, Expr::Splat(s))
        } else {
            s
        }
    }

    pub fn extractlane(&mut self, v: Val, lane: u8) -> Val {
        let ty = self.ty(v).lane_type();
        self.def(ty, Expr::ExtractLane(v, lane))
    }

    pub fn insertlane(&mut self, v: Val, s: Val, lane: u8) -> Val {
        let ty = self.ty(v);
        self.def(ty, Expr::InsertLane(v, s, lane))
    }

    /// e.g. eˣ, on a scalar or lanes (`loops::MathFn`).
    pub fn math(&mut self, f: MathFn, x: Val) -> Val {
        let ty = self.ty(x);
        self.def(ty, Expr::Math(f, x))
    }

    /// The sum of an f32x4's lanes, in lane order (a fixed order, so fixed bits).
    pub fn lane_sum(&mut self, v: Val) -> Val {
        let mut s = self.extractlane(v, 0);
        for l in 1..4 {
            let x = self.extractlane(v, l);
            s = self.fadd(s, x);
        }
        s
    }

    /// The 4×4 transpose of four f32x4 rows (unpack low/high, then move halves).
    /// Lanes of two f32x4 values: lane i of the result is lane `lanes[i]` of a‖b.
    pub fn shuffle(&mut self, a: Val, b: Val, lanes: [u8; 4]) -> Val {
        self.def(types::F32X4, Expr::Shuffle(a, b, lanes))
    }

    pub fn transpose4(&mut self, r: [Val; 4]) -> [Val; 4] {
        let mut sh = |a, b, lanes| self.def(types::F32X4, Expr::Shuffle(a, b, lanes));
        let t0 = sh(r[0], r[1], [0, 4, 1, 5]);
        let t1 = sh(r[0], r[1], [2, 6, 3, 7]);
        let t2 = sh(r[2], r[3], [0, 4, 1, 5]);
        let t3 = sh(r[2], r[3], [2, 6, 3, 7]);
        [sh(t0, t2, [0, 1, 4, 5]), sh(t0, t2, [2, 3, 6, 7]), sh(t1, t3, [0, 1, 4, 5]), sh(t1, t3, [2, 3, 6, 7])]
    }

    // Variables.

    pub fn var(&mut self, ty: Type) -> Var {
        self.vars.push(ty);
        Var(self.vars.len() as u32 - 1)
    }

    pub fn def_var(&mut self, var: Var, v: Val) {
        self.push(Stmt::Set(var, v));
    }

    pub fn use_var(&mut self, var: Var) -> Val {
        let ty = self.vars[var.0 as usize];
        self.def(ty, Expr::Get(var))
    }

    /// `acc = inits; for i in (lo..hi).step_by(step) { acc = f(i, acc) }`, the
    /// accumulators carried in variables; returns their final values.
    pub fn fold_n(
        &mut self,
        inits: &[Val],
        (lo, hi, step): (i64, i64, i64),
        mut f: impl FnMut(&mut Self, Idx, &[Val]) -> CgResult<Vec<Val>>,
    ) -> CgResult<Vec<Val>> {
        let vars: Vec<Var> = inits.iter().map(|&v| self.var(self.ty(v))).collect();
        for (&var, &v) in vars.iter().zip(inits) {
            self.def_var(var, v);
        }
        self.for_range(lo, hi, step, |kb, i| {
            let acc: Vec<Val> = vars.iter().map(|&var| kb.use_var(var)).collect();
            let next = f(kb, i, &acc)?;
            for (&var, v) in vars.iter().zip(next) {
                kb.def_var(var, v);
            }
            Ok(())
        })?;
        Ok(vars.iter().map(|&var| self.use_var(var)).collect())
    }

    /// [`Kb::fold_n`] with one accumulator.
    pub fn fold(
        &mut self,
        init: Val,
        range: (i64, i64, i64),
        mut f: impl FnMut(&mut Self, Idx, Val) -> CgResult<Val>,
    ) -> CgResult<Val> {
        Ok(self.fold_n(&[init], range, |kb, i, acc| Ok(vec![f(kb, i, acc[0])?]))?[0])
    }

    // Control flow.

    /// Write `body` into a block of its own and return the block.
    fn nested(&mut self, body: impl FnOnce(&mut Self) -> CgResult<()>) -> CgResult<Vec<Stmt>> {
        self.blocks.push(vec![]);
        let r = body(self);
        let b = self.blocks.pop().expect("the pushed block");
        r.map(|_| b)
    }

    /// `for i in (lo..hi).step_by(step)` with constant bounds; a single iteration is
    /// written straight (its index a constant), none writes nothing.
    pub fn for_range(
        &mut self,
        lo: i64,
        hi: i64,
        step: i64,
        mut body: impl FnMut(&mut Self, Idx) -> CgResult<()>,
    ) -> CgResult<()> {
        if lo >= hi {
            return Ok(());
        }
        if hi - lo <= step {
            return body(self, Idx::constant(lo));
        }
        let r = range::of_loop(lo, hi, step);
        let var = self.new_val(types::I64, Some(r));
        let block = self.nested(|kb| body(kb, Idx::of(var, r)))?;
        self.push(Stmt::For { var, lo, hi, step, body: block });
        Ok(())
    }

    /// `body(kb, i, ty)` over i in lo..hi: f32x4 steps of 4, then single f32 steps for
    /// the rest (the exact scalar remainder every vectorized loop has).
    pub fn for_lanes(
        &mut self,
        lo: i64,
        hi: i64,
        mut body: impl FnMut(&mut Self, Idx, Type) -> CgResult<()>,
    ) -> CgResult<()> {
        let vec_end = lo + (hi - lo).max(0) / 4 * 4;
        self.for_range(lo, vec_end, 4, |kb, i| body(kb, i, types::F32X4))?;
        self.for_range(vec_end, hi, 1, |kb, i| body(kb, i, types::F32))
    }

    /// buf[start .. start + len] = 0.
    pub fn zero(&mut self, buf: &Buf, start: Idx, len: usize) -> CgResult<()> {
        self.for_lanes(0, len as i64, |kb, i, ty| {
            let z = kb.f(ty, 0.0);
            let at = kb.add(start, i);
            kb.store(z, buf, at)
        })
    }

    /// The kernel's share of its parallel items: `for item in lo..hi`, the bounds given by
    /// the caller at run time, within `0..extent`.
    pub fn for_items(&mut self, extent: usize, body: impl FnOnce(&mut Self, Idx) -> CgResult<()>) -> CgResult<()> {
        let r = (0, extent as i64 - 1);
        let var = self.new_val(types::I64, Some(r));
        let block = self.nested(|kb| body(kb, Idx::of(var, r)))?;
        self.push(Stmt::Items { var, extent, body: block });
        Ok(())
    }

    /// `if i < limit { body(true, i) } else { body(false, i) }` for an index `i` that is one
    /// value; each branch gets `i` with its range refined (below: up to limit − 1).
    pub fn if_below(
        &mut self,
        i: Idx,
        limit: i64,
        body: &mut dyn FnMut(&mut Self, bool, Idx) -> CgResult<()>,
    ) -> CgResult<()> {
        let value = match i.as_value() {
            Some(v) => v,
            None => self.value(i),
        };
        let saved = self.ranges[value.0 as usize];
        let Some(r) = saved else {
            return err(format!("kernel `{}`: a branch on v{} whose range is not known", self.name, value.0));
        };
        let (below, rest) = range::refine_below(r, limit);
        self.ranges[value.0 as usize] = Some(below);
        let then = self.nested(|kb| body(kb, true, Idx::of(value, below)));
        self.ranges[value.0 as usize] = Some(rest);
        let otherwise = then.and_then(|t| Ok((t, self.nested(|kb| body(kb, false, Idx::of(value, rest)))?)));
        self.ranges[value.0 as usize] = saved;
        let (then, otherwise) = otherwise?;
        self.push(Stmt::IfBelow { value, limit, then, otherwise });
        Ok(())
    }

    /// The same index with the range its value has where it is being used.
    pub fn refined(&self, i: Idx) -> Idx {
        match range::of_index(&i, &|v| self.ranges[v.0 as usize]) {
            Some(r) => i.with_range(r),
            None => i,
        }
    }
}
