//! Loop nest → CLIF: the one place kernels' Cranelift IR is written.
//!
//! Every kernel function has the signature (arena, state, ctx, lo, hi, thread). A buffer
//! is addressed as its region's base (the arena or state pointer passed in, or the calling
//! thread's scratch: arena + start + thread·size) plus Σ cᵢ·vᵢ·4 plus a byte offset;
//! offsets that fit 32 bits fold into the instruction's immediate, larger ones are added
//! as 64-bit constants, so arenas past 2 GiB work. A sum of terms is computed once per
//! block and reused by every access in it. Intrinsics become inline polynomials
//! ([`super::math`]). With run-time checks on, every access is also tested against its
//! buffer and the first failure reported (see `executable`).

use super::builder::Region;
use super::jit::{err, CgResult, FunctionBuilder, FunctionBuilderContext, Variable};
use super::loops::{
    width, Binary, BufId, Convert, Expr, Idx, ImmOp, IntCC, LoopNest, MathFn, Stmt, Type, Unary, Val, MAX_TERMS,
};
use super::math;
use cranelift_codegen::ir::{
    types, Block, FuncRef, Function, InstBuilder, MemFlagsData, StackSlot, StackSlotData, StackSlotKind, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use std::collections::HashMap;

/// What emission needs besides the nest.
pub struct EmitCx {
    /// Emit `fma` (the host has AVX and FMA), else fmul + fadd.
    pub fma: bool,
    /// The micro-kernel, imported into the function (if the nest calls it).
    pub micro: Option<FuncRef>,
    /// The narrow micro-kernel, imported (if the nest calls it).
    pub narrow: Option<FuncRef>,
    /// (reporter, kernel id) when every access is also checked at run time.
    pub checks: Option<(FuncRef, u32)>,
    /// Id of the first checked access (ids count across a kernel's passes).
    pub access_base: usize,
}

fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// A load Cranelift may treat as a pure value: merge with equal ones and hoist out of the
/// loops it does not depend on (see `loops::readonly` for when that is sound).
fn pure_load() -> MemFlagsData {
    flags().with_readonly().with_can_move()
}

type Terms = ([(Val, i64); MAX_TERMS], usize);

/// The CLIF being written for one nest, and helpers shared with `math`.
pub struct Clif<'f> {
    pub fb: FunctionBuilder<'f>,
    pub fma: bool,
    vals: Vec<Option<Value>>,
    vars: Vec<Variable>,
    arena: Value,
    state: Value,
    ctx: Value,
    lo: Value,
    hi: Value,
    scratch: Option<Value>,
    checks: Option<(FuncRef, u32, Block)>,
    micro: Option<FuncRef>,
    narrow: Option<FuncRef>,
    /// What each checked access is, by id (from `access_base`).
    accesses: Vec<String>,
    access_base: usize,
    /// Σ cᵢ·vᵢ already computed, per enclosing block.
    sums: Vec<HashMap<Terms, Value>>,
    /// The micro-kernel calls' step-offset tables, each in a stack slot written once at
    /// the function's entry (not at every call inside the loops).
    tables: Vec<(std::sync::Arc<[i32]>, StackSlot)>,
    /// Per buffer, whether the nest never writes it (`LoopNest::read_only`).
    read_only: Vec<bool>,
    /// How many `if_below` branches enclose the statement being written.
    branches: usize,
}

impl Clif<'_> {
    /// A float constant of type `ty` (f32, f64, or f32x4).
    pub fn f(&mut self, ty: Type, x: f64) -> Value {
        if ty == types::F64 {
            return self.fb.ins().f64const(x);
        }
        let s = self.fb.ins().f32const(x as f32);
        if ty.is_vector() {
            self.fb.ins().splat(ty, s)
        } else {
            s
        }
    }

    pub fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.fb.ins().fma(a, b, c)
        } else {
            let m = self.fb.ins().fmul(a, b);
            self.fb.ins().fadd(m, c)
        }
    }

    pub fn ty(&self, v: Value) -> Type {
        self.fb.func.dfg.value_type(v)
    }

    /// `mask ? a : b`. Vectors: one `bitselect`. Scalar floats: the bits are selected in
    /// integer registers (a `cmov`) — x86 has no conditional move for xmm registers and
    /// Cranelift branches on a float `select`, which mispredicts on data like relu's signs.
    pub fn select(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let ty = self.ty(a);
        if ty.is_vector() {
            let mask = if self.ty(mask) == ty { mask } else { self.fb.ins().bitcast(ty, MemFlagsData::new(), mask) };
            self.fb.ins().bitselect(mask, a, b)
        } else if ty.is_float() {
            let ity = ty.as_int();
            let (ia, ib) = (
                self.fb.ins().bitcast(ity, MemFlagsData::new(), a),
                self.fb.ins().bitcast(ity, MemFlagsData::new(), b),
            );
            let r = self.fb.ins().select(mask, ia, ib);
            self.fb.ins().bitcast(ty, MemFlagsData::new(), r)
        } else {
            self.fb.ins().select(mask, a, b)
        }
    }

    /// b if a < b, else a (see `Kb::max`).
    pub fn max(&mut self, a: Value, b: Value) -> Value {
        let lt = self.fb.ins().fcmp(cranelift_codegen::ir::condcodes::FloatCC::LessThan, a, b);
        self.select(lt, b, a)
    }

    pub fn min(&mut self, a: Value, b: Value) -> Value {
        let gt = self.fb.ins().fcmp(cranelift_codegen::ir::condcodes::FloatCC::GreaterThan, a, b);
        self.select(gt, b, a)
    }

    fn val(&self, v: Val) -> Value {
        self.vals[v.0 as usize].expect("verified: defined before use")
    }

    /// Σ cᵢ·vᵢ of an index (no constant part), or `None` for a constant index.
    fn sum(&mut self, idx: &Idx) -> Option<Value> {
        let terms = idx.terms();
        if terms.is_empty() {
            return None;
        }
        let mut key: Terms = ([(Val(0), 0); MAX_TERMS], terms.len());
        key.0[..terms.len()].copy_from_slice(terms);
        if let Some(&v) = self.sums.iter().rev().find_map(|m| m.get(&key)) {
            return Some(v);
        }
        let mut acc: Option<Value> = None;
        for &(v, c) in terms {
            let x = self.val(v);
            let t = if c == 1 { x } else { self.fb.ins().imul_imm_s(x, c) };
            acc = Some(match acc {
                Some(a) => self.fb.ins().iadd(a, t),
                None => t,
            });
        }
        let s = acc.expect("at least one term");
        self.sums.last_mut().expect("a block").insert(key, s);
        Some(s)
    }

    fn index_value(&mut self, idx: &Idx) -> Value {
        match self.sum(idx) {
            Some(s) if idx.off == 0 => s,
            Some(s) => self.fb.ins().iadd_imm_s(s, idx.off),
            None => self.fb.ins().iconst(types::I64, idx.off),
        }
    }

    /// The address of `w` floats at `buf[at]`: (base, immediate byte offset).
    fn addr(&mut self, nest: &LoopNest, buf: BufId, at: &Idx, w: usize, what: &str) -> CgResult<(Value, i32)> {
        let b = nest.buf(buf);
        if let Some((report, kernel, exit)) = self.checks {
            let id = (self.access_base + self.accesses.len()) as i64;
            self.accesses.push(format!("{what} of {} (width {w}, {} elements)", b.name, b.len));
            let full = self.index_value(at);
            let limit = self.fb.ins().iconst(types::I64, b.len as i64 - w as i64 + 1);
            let ok = self.fb.ins().icmp(IntCC::UnsignedLessThan, full, limit);
            let fail = self.fb.create_block();
            let cont = self.fb.create_block();
            self.fb.set_cold_block(fail);
            self.fb.ins().brif(ok, cont, &[], fail, &[]);
            self.fb.switch_to_block(fail);
            self.fb.seal_block(fail);
            let k = self.fb.ins().iconst(types::I32, kernel as i64);
            let a = self.fb.ins().iconst(types::I64, id);
            self.fb.ins().call(report, &[k, a, full]);
            self.fb.ins().jump(exit, &[]);
            self.fb.switch_to_block(cont);
            self.fb.seal_block(cont);
        }
        let base = match b.region {
            Region::Arena => self.arena,
            Region::State => self.state,
            Region::Scratch => match self.scratch {
                Some(s) => s,
                None => return err(format!("kernel `{}` has no scratch space", nest.name)),
            },
        };
        let addr = match self.sum(at) {
            Some(s) => {
                let scaled = self.fb.ins().ishl_imm_s(s, 2);
                self.fb.ins().iadd(base, scaled)
            }
            None => base,
        };
        let byte_off = (b.offset as i64 + at.off) * 4;
        Ok(match i32::try_from(byte_off) {
            Ok(imm) => (addr, imm),
            Err(_) => (self.fb.ins().iadd_imm_s(addr, byte_off), 0),
        })
    }

    fn expr(&mut self, nest: &LoopNest, ty: Type, e: &Expr) -> CgResult<Value> {
        Ok(match *e {
            Expr::Fconst(x) => self.f(ty, x),
            Expr::Iconst(c) => {
                let s = self.fb.ins().iconst(ty.lane_type(), c);
                if ty.is_vector() {
                    self.fb.ins().splat(ty, s)
                } else {
                    s
                }
            }
            Expr::Load { buf, ref at } => {
                // Not inside a branch (its index may be in bounds only there), nor with
                // run-time checks (the load must stay behind its check).
                let pure = self.read_only[buf.0 as usize] && self.branches == 0 && self.checks.is_none();
                let (a, imm) = self.addr(nest, buf, at, width(ty), "load")?;
                self.fb.ins().load(ty, if pure { pure_load() } else { flags() }, a, imm)
            }
            Expr::Ctx { offset } => {
                // The step context: a fixed struct no kernel writes.
                let c = self.ctx;
                self.fb.ins().load(ty, pure_load(), c, offset)
            }
            Expr::Index(ref i) => self.index_value(i),
            Expr::Get(var) => {
                let v = self.vars[var.0 as usize];
                self.fb.use_var(v)
            }
            Expr::Unary(op, a) => {
                let a = self.val(a);
                match op {
                    Unary::Fneg => self.fb.ins().fneg(a),
                    Unary::Fabs => self.fb.ins().fabs(a),
                    Unary::Sqrt => self.fb.ins().sqrt(a),
                }
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.val(a), self.val(b));
                let i = self.fb.ins();
                match op {
                    Binary::Fadd => i.fadd(a, b),
                    Binary::Fsub => i.fsub(a, b),
                    Binary::Fmul => i.fmul(a, b),
                    Binary::Fdiv => i.fdiv(a, b),
                    Binary::Iadd => i.iadd(a, b),
                    Binary::Isub => i.isub(a, b),
                    Binary::Band => i.band(a, b),
                    Binary::Bor => i.bor(a, b),
                    Binary::Bxor => i.bxor(a, b),
                    Binary::Smax => i.smax(a, b),
                    Binary::Smin => i.smin(a, b),
                }
            }
            Expr::Imm(op, a, c) => {
                let a = self.val(a);
                let i = self.fb.ins();
                match op {
                    ImmOp::Iadd => i.iadd_imm_s(a, c),
                    ImmOp::Imul => i.imul_imm_s(a, c),
                    ImmOp::Ishl => i.ishl_imm_s(a, c),
                    ImmOp::Ushr => i.ushr_imm_s(a, c),
                    ImmOp::Sshr => i.sshr_imm_s(a, c),
                    ImmOp::Band => i.band_imm_s(a, c),
                    ImmOp::Bor => i.bor_imm_s(a, c),
                }
            }
            Expr::Fma(a, b, c) => {
                let (a, b, c) = (self.val(a), self.val(b), self.val(c));
                self.fma(a, b, c)
            }
            Expr::Fcmp(cc, a, b) => {
                let (a, b) = (self.val(a), self.val(b));
                self.fb.ins().fcmp(cc, a, b)
            }
            Expr::IcmpImm(cc, a, c) => {
                let a = self.val(a);
                self.fb.ins().icmp_imm_s(cc, a, c)
            }
            Expr::Select(m, a, b) => {
                let (m, a, b) = (self.val(m), self.val(a), self.val(b));
                self.select(m, a, b)
            }
            Expr::Convert(op, a) => {
                let a = self.val(a);
                let i = self.fb.ins();
                match op {
                    Convert::Fpromote => i.fpromote(ty, a),
                    Convert::Fdemote => i.fdemote(ty, a),
                    Convert::FcvtToSintSat => i.fcvt_to_sint_sat(ty, a),
                    Convert::FcvtFromSint => i.fcvt_from_sint(ty, a),
                    Convert::Uextend => i.uextend(ty, a),
                    Convert::Ireduce => i.ireduce(ty, a),
                    Convert::Bitcast => i.bitcast(ty, MemFlagsData::new(), a),
                }
            }
            Expr::Splat(a) => {
                let a = self.val(a);
                self.fb.ins().splat(ty, a)
            }
            Expr::ExtractLane(a, l) => {
                let a = self.val(a);
                self.fb.ins().extractlane(a, l)
            }
            Expr::InsertLane(a, b, l) => {
                let (a, b) = (self.val(a), self.val(b));
                self.fb.ins().insertlane(a, b, l)
            }
            Expr::Shuffle(a, b, lanes) => {
                let (a, b) = (self.val(a), self.val(b));
                math::shuffle4(self, a, b, lanes)
            }
            Expr::Math(f, a) => {
                let a = self.val(a);
                match f {
                    MathFn::Exp => math::exp(self, a),
                    MathFn::Expm1 => math::expm1(self, a),
                    MathFn::Sigmoid => math::sigmoid(self, a),
                    MathFn::Tanh => math::tanh(self, a),
                    MathFn::LogF64 => math::log_f64(self, a),
                }
            }
        })
    }

    fn block(&mut self, nest: &LoopNest, body: &[Stmt]) -> CgResult<()> {
        self.sums.push(HashMap::new());
        for s in body {
            self.stmt(nest, s)?;
        }
        self.sums.pop();
        Ok(())
    }

    fn stmt(&mut self, nest: &LoopNest, s: &Stmt) -> CgResult<()> {
        match s {
            Stmt::Let(v, e) => {
                let x = self.expr(nest, nest.ty(*v), e)?;
                self.vals[v.0 as usize] = Some(x);
            }
            Stmt::Store { buf, at, value } => {
                let x = self.val(*value);
                let w = width(nest.ty(*value));
                let (a, imm) = self.addr(nest, *buf, at, w, "store")?;
                self.fb.ins().store(flags(), x, a, imm);
            }
            Stmt::Set(var, v) => {
                let x = self.val(*v);
                self.fb.def_var(self.vars[var.0 as usize], x);
            }
            Stmt::For { var, lo, hi, step, body } => {
                let iv = self.fb.declare_var(types::I64);
                let start = self.fb.ins().iconst(types::I64, *lo);
                self.fb.def_var(iv, start);
                let body_block = self.fb.create_block();
                let exit = self.fb.create_block();
                self.fb.ins().jump(body_block, &[]);
                self.fb.switch_to_block(body_block);
                let i = self.fb.use_var(iv);
                self.vals[var.0 as usize] = Some(i);
                self.block(nest, body)?;
                let next = self.fb.ins().iadd_imm_s(i, *step);
                self.fb.def_var(iv, next);
                let more = self.fb.ins().icmp_imm_s(IntCC::SignedLessThan, next, *hi);
                self.fb.ins().brif(more, body_block, &[], exit, &[]);
                self.fb.seal_block(body_block);
                self.fb.switch_to_block(exit);
                self.fb.seal_block(exit);
            }
            Stmt::Items { var, body, .. } => {
                let iv = self.fb.declare_var(types::I64);
                let lo = self.lo;
                self.fb.def_var(iv, lo);
                let head = self.fb.create_block();
                let body_block = self.fb.create_block();
                let exit = self.fb.create_block();
                self.fb.ins().jump(head, &[]);
                self.fb.switch_to_block(head);
                let i = self.fb.use_var(iv);
                let more = self.fb.ins().icmp(IntCC::SignedLessThan, i, self.hi);
                self.fb.ins().brif(more, body_block, &[], exit, &[]);
                self.fb.switch_to_block(body_block);
                self.fb.seal_block(body_block);
                self.vals[var.0 as usize] = Some(i);
                self.block(nest, body)?;
                let next = self.fb.ins().iadd_imm_s(i, 1);
                self.fb.def_var(iv, next);
                self.fb.ins().jump(head, &[]);
                self.fb.seal_block(head);
                self.fb.switch_to_block(exit);
                self.fb.seal_block(exit);
            }
            Stmt::IfBelow { value, limit, then, otherwise } => {
                let x = self.val(*value);
                let cond = self.fb.ins().icmp_imm_s(IntCC::SignedLessThan, x, *limit);
                let (a, b, join) = (self.fb.create_block(), self.fb.create_block(), self.fb.create_block());
                self.fb.ins().brif(cond, a, &[], b, &[]);
                self.branches += 1;
                for (blk, body) in [(a, then), (b, otherwise)] {
                    self.fb.switch_to_block(blk);
                    self.fb.seal_block(blk);
                    self.block(nest, body)?;
                    self.fb.ins().jump(join, &[]);
                }
                self.branches -= 1;
                self.fb.switch_to_block(join);
                self.fb.seal_block(join);
            }
            Stmt::CallMicro(call) => {
                let Some(micro) = (if call.narrow { self.narrow } else { self.micro }) else {
                    return err(format!("kernel `{}` calls the micro-kernel but does not import it", nest.name));
                };
                // (kc, a, a's row stride, a's step stride, a's row offsets, b, b's step
                // stride, b's step offsets, tile, tile's row stride, add)
                let ptr = |s: &mut Self, p: &super::loops::Ptr, what: &str| -> CgResult<Value> {
                    let (addr, imm) = s.addr(nest, p.buf, &p.at, p.len, what)?;
                    Ok(s.fb.ins().iadd_imm_s(addr, imm as i64))
                };
                let (a, b, tile) = (
                    ptr(self, &call.a, "pointer A")?,
                    ptr(self, &call.b, "pointer B")?,
                    ptr(self, &call.tile, "pointer tile")?,
                );
                let table = |s: &mut Self, t: &Option<std::sync::Arc<[i32]>>| -> CgResult<Value> {
                    match t {
                        Some(t) => {
                            let Some(&(_, slot)) = s.tables.iter().find(|(u, _)| u == t) else {
                                return err(format!("kernel `{}`: an offset table that was not written", nest.name));
                            };
                            Ok(s.fb.ins().stack_addr(types::I64, slot, 0))
                        }
                        None => Ok(s.fb.ins().iconst(types::I64, 0)),
                    }
                };
                let (rows, steps) = (table(self, &call.a_rows)?, table(self, &call.b_steps)?);
                let mut int = |c: usize| self.fb.ins().iconst(types::I64, c as i64);
                let (kc, (ar, ak), bk) = (int(call.kc), call.a_strides, call.b_stride);
                let (ldc, add) = (int(call.tile_stride), int(call.accumulate as usize));
                let args = [kc, a, int(ar), int(ak), rows, b, int(bk), steps, tile, ldc, add];
                self.fb.ins().call(micro, &args);
            }
        }
        Ok(())
    }
}

/// Write `nest` as the body of `func` (a function with the kernel signature). Returns what
/// each run-time-checked access is (empty without checks).
pub fn emit(nest: &LoopNest, func: &mut Function, config: TargetFrontendConfig, cx: EmitCx) -> CgResult<Vec<String>> {
    let mut fctx = FunctionBuilderContext::new();
    let mut fb = FunctionBuilder::new(func, &mut fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    fb.seal_block(entry);
    let p = fb.block_params(entry).to_vec();
    let exit = fb.create_block();
    let scratch = nest.scratch.map(|(start, per_thread)| {
        let t = fb.ins().imul_imm_s(p[5], (per_thread * 4) as i64);
        let a = fb.ins().iadd(p[0], t);
        fb.ins().iadd_imm_s(a, (start * 4) as i64)
    });
    let vars = nest.vars.iter().map(|&ty| fb.declare_var(ty)).collect();
    let tables = nest
        .step_tables()
        .into_iter()
        .map(|t| {
            let data = StackSlotData::new(StackSlotKind::ExplicitSlot, (t.len() * 4) as u32, 2);
            let slot = fb.create_sized_stack_slot(data);
            for (i, &o) in t.iter().enumerate() {
                let v = fb.ins().iconst(types::I32, o as i64);
                fb.ins().stack_store(types::I64, v, slot, (i * 4) as i32);
            }
            (t, slot)
        })
        .collect();
    let mut c = Clif {
        fb,
        fma: cx.fma,
        vals: vec![None; nest.types.len()],
        vars,
        arena: p[0],
        state: p[1],
        ctx: p[2],
        lo: p[3],
        hi: p[4],
        scratch,
        checks: cx.checks.map(|(f, id)| (f, id, exit)),
        micro: cx.micro,
        narrow: cx.narrow,
        accesses: vec![],
        access_base: cx.access_base,
        sums: vec![],
        tables,
        read_only: nest.read_only(),
        branches: 0,
    };
    c.block(nest, &nest.body)?;
    c.fb.ins().jump(exit, &[]);
    c.fb.switch_to_block(exit);
    c.fb.seal_block(exit);
    c.fb.ins().return_(&[]);
    c.fb.seal_all_blocks();
    c.fb.finalize(config);
    Ok(c.accesses)
}
