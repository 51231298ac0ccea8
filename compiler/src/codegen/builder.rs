//! The kernel builder: the loop-nest layer between an op's lowering and Cranelift IR.
//!
//! Lowerings describe kernels as nests of counted loops over constant bounds, with loads
//! and stores at `buffer[index]` where every index is an affine value with a known range.
//! Each access is proved in bounds when it is emitted (a kernel that could read or write
//! outside a buffer is a compile error, never code); with `checks` the kernel also tests
//! every access at run time and reports the first bad one (see `exec`). Constant parts of
//! an index fold into the instruction's immediate offset, so unrolled code costs nothing.

use super::jit::{err, CgResult, FunctionBuilder, Variable};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, Block, FuncRef, InstBuilder, MemFlagsData, Type, Value};
use cranelift_codegen::isa::TargetFrontendConfig;

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

/// An index `v + off` (v absent for constants) known to lie in `lo..=hi`.
#[derive(Clone, Copy, Debug)]
pub struct Idx {
    pub v: Option<Value>,
    pub off: i64,
    pub lo: i64,
    pub hi: i64,
}

impl Idx {
    pub fn constant(c: i64) -> Idx {
        Idx { v: None, off: c, lo: c, hi: c }
    }

    pub fn plus(self, c: i64) -> Idx {
        Idx { v: self.v, off: self.off + c, lo: self.lo + c, hi: self.hi + c }
    }
}

/// Field offsets (bytes) of the step context every kernel receives (`exec::KernelCtx`).
pub mod ctx {
    pub const SEED: i32 = 0;
    pub const STEP: i32 = 8;
    pub const LR: i32 = 16;
    pub const ADAM_STEP_SIZE: i32 = 20;
    pub const ADAM_INV_SQRT_BC2: i32 = 24;
}

pub struct Kb<'f> {
    pub fb: FunctionBuilder<'f>,
    arena: Value,
    state: Value,
    ctx: Value,
    pub lo: Value,
    pub hi: Value,
    pub tid: Value,
    pub fma: bool,
    pub name: String,
    /// (reporter, kernel id, return block) when run-time bounds checks are on.
    checks: Option<(FuncRef, u32, Block)>,
    /// What each checked access is, by access id (ids start at `access_base`).
    pub accesses: Vec<String>,
    pub access_base: usize,
    exit: Block,
    config: TargetFrontendConfig,
    /// The calling thread's scratch space: arena + start + thread · size (bytes).
    scratch: Option<Value>,
}

fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl<'f> Kb<'f> {
    /// Start a kernel: `fb` is a fresh builder of a function with the kernel signature.
    /// `scratch`: (start, size per thread) of the scratch region, in floats.
    pub fn new(
        mut fb: FunctionBuilder<'f>,
        config: TargetFrontendConfig,
        name: &str,
        fma: bool,
        checks: Option<(FuncRef, u32)>,
        scratch: Option<(usize, usize)>,
    ) -> Kb<'f> {
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        fb.seal_block(entry);
        let p = fb.block_params(entry).to_vec();
        let exit = fb.create_block();
        let scratch = scratch.map(|(start, per_thread)| {
            let t = fb.ins().imul_imm_s(p[5], (per_thread * 4) as i64);
            let a = fb.ins().iadd(p[0], t);
            fb.ins().iadd_imm_s(a, (start * 4) as i64)
        });
        Kb {
            fb,
            arena: p[0],
            state: p[1],
            ctx: p[2],
            lo: p[3],
            hi: p[4],
            tid: p[5],
            fma,
            name: name.to_string(),
            checks: checks.map(|(f, id)| (f, id, exit)),
            accesses: vec![],
            access_base: 0,
            exit,
            config,
            scratch,
        }
    }

    /// Close the kernel (return) and hand back the function.
    pub fn finish(mut self) {
        self.fb.ins().jump(self.exit, &[]);
        self.fb.switch_to_block(self.exit);
        self.fb.seal_block(self.exit);
        self.fb.ins().return_(&[]);
        self.fb.seal_all_blocks();
        self.fb.finalize(self.config);
    }

    pub fn iconst(&mut self, c: i64) -> Value {
        self.fb.ins().iconst(types::I64, c)
    }

    /// The full value of an index.
    pub fn value(&mut self, i: Idx) -> Value {
        match i.v {
            Some(v) if i.off == 0 => v,
            Some(v) => self.fb.ins().iadd_imm_s(v, i.off),
            None => self.iconst(i.off),
        }
    }

    pub fn add(&mut self, a: Idx, b: Idx) -> Idx {
        let v = match (a.v, b.v) {
            (Some(x), Some(y)) => Some(self.fb.ins().iadd(x, y)),
            (x, None) => x,
            (None, y) => y,
        };
        Idx { v, off: a.off + b.off, lo: a.lo + b.lo, hi: a.hi + b.hi }
    }

    pub fn mul(&mut self, a: Idx, c: i64) -> Idx {
        assert!(c >= 0, "index scale must be non-negative");
        let v = a.v.map(|x| if c == 1 { x } else { self.fb.ins().imul_imm_s(x, c) });
        Idx { v, off: a.off * c, lo: a.lo * c, hi: a.hi * c }
    }

    /// Σ idx·stride + base, the usual row-major address arithmetic.
    pub fn affine(&mut self, base: i64, terms: &[(Idx, i64)]) -> Idx {
        let mut acc = Idx::constant(base);
        for &(i, s) in terms {
            let t = self.mul(i, s);
            acc = self.add(acc, t);
        }
        acc
    }

    /// The address of `width` floats at `buf[idx]`, proved in bounds; returns (base
    /// address, immediate byte offset).
    pub fn addr(&mut self, buf: &Buf, idx: Idx, width: usize, what: &str) -> CgResult<(Value, i32)> {
        if idx.lo < 0 || idx.hi + width as i64 > buf.len as i64 {
            return err(format!(
                "kernel `{}`: {what} of {} at [{}, {}] (width {width}) is outside its {} elements",
                self.name, buf.name, idx.lo, idx.hi, buf.len
            ));
        }
        if let Some((report, kernel, exit)) = self.checks {
            let id = (self.access_base + self.accesses.len()) as i64;
            self.accesses.push(format!("{what} of {} (width {width}, {} elements)", buf.name, buf.len));
            let full = self.value(idx);
            let limit = self.iconst(buf.len as i64 - width as i64 + 1);
            let ok = self.fb.ins().icmp(IntCC::UnsignedLessThan, full, limit);
            let fail = self.fb.create_block();
            let cont = self.fb.create_block();
            self.fb.set_cold_block(fail);
            self.fb.ins().brif(ok, cont, &[], fail, &[]);
            self.fb.switch_to_block(fail);
            self.fb.seal_block(fail);
            let k = self.fb.ins().iconst(types::I32, kernel as i64);
            let a = self.iconst(id);
            self.fb.ins().call(report, &[k, a, full]);
            self.fb.ins().jump(exit, &[]);
            self.fb.switch_to_block(cont);
            self.fb.seal_block(cont);
        }
        let base = match buf.region {
            Region::Arena => self.arena,
            Region::State => self.state,
            Region::Scratch => match self.scratch {
                Some(s) => s,
                None => return err(format!("kernel `{}` has no scratch space", self.name)),
            },
        };
        let byte_off = (buf.offset as i64 + idx.off) * 4;
        let Ok(imm) = i32::try_from(byte_off) else {
            return err(format!("kernel `{}`: offset {byte_off} does not fit an immediate", self.name));
        };
        let addr = match idx.v {
            Some(v) => {
                let scaled = self.fb.ins().ishl_imm_s(v, 2);
                self.fb.ins().iadd(base, scaled)
            }
            None => base,
        };
        Ok((addr, imm))
    }

    fn width(ty: Type) -> usize {
        if ty.is_vector() {
            ty.lane_count() as usize
        } else {
            1
        }
    }

    pub fn load(&mut self, ty: Type, buf: &Buf, idx: Idx) -> CgResult<Value> {
        let (a, imm) = self.addr(buf, idx, Self::width(ty), "load")?;
        Ok(self.fb.ins().load(ty, flags(), a, imm))
    }

    pub fn store(&mut self, v: Value, buf: &Buf, idx: Idx) -> CgResult<()> {
        let ty = self.fb.func.dfg.value_type(v);
        let (a, imm) = self.addr(buf, idx, Self::width(ty), "store")?;
        self.fb.ins().store(flags(), v, a, imm);
        Ok(())
    }

    /// A raw pointer to `buf[idx]` for a call (the callee's extent is proved by `len`).
    pub fn ptr(&mut self, buf: &Buf, idx: Idx, len: usize) -> CgResult<Value> {
        let (a, imm) = self.addr(buf, idx, len, "pointer")?;
        Ok(self.fb.ins().iadd_imm_s(a, imm as i64))
    }

    /// A float constant of type `ty` (f32 or f32x4).
    pub fn f(&mut self, ty: Type, x: f32) -> Value {
        let s = self.fb.ins().f32const(x);
        if ty.is_vector() {
            self.fb.ins().splat(ty, s)
        } else {
            s
        }
    }

    pub fn splat(&mut self, ty: Type, s: Value) -> Value {
        if ty.is_vector() {
            self.fb.ins().splat(ty, s)
        } else {
            s
        }
    }

    /// a·b + c: one instruction with FMA, else fmul + fadd.
    pub fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.fb.ins().fma(a, b, c)
        } else {
            let m = self.fb.ins().fmul(a, b);
            self.fb.ins().fadd(m, c)
        }
    }

    /// `cond ? a : b` for a float comparison mask (scalar or vector).
    pub fn select(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let ty = self.fb.func.dfg.value_type(a);
        if ty.is_vector() {
            let mask = self.fb.ins().bitcast(ty, MemFlagsData::new(), mask);
            self.fb.ins().bitselect(mask, a, b)
        } else if ty.is_float() {
            // x86 has no conditional move for xmm registers: Cranelift branches on a float
            // select, which mispredicts on data such as relu's signs. Select the bits in
            // integer registers instead (a cmov).
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

    /// The sum of an f32x4's lanes, in lane order (a fixed order, so fixed bits).
    pub fn lane_sum(&mut self, v: Value) -> Value {
        let mut s = self.fb.ins().extractlane(v, 0);
        for l in 1..4 {
            let x = self.fb.ins().extractlane(v, l);
            s = self.fb.ins().fadd(s, x);
        }
        s
    }

    /// Lanes of `a` and `b` (f32x4; b's lanes numbered 4..8) picked by `lanes`.
    fn shuffle4(&mut self, a: Value, b: Value, lanes: [u8; 4]) -> Value {
        let le = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let bytes: Vec<u8> = lanes.iter().flat_map(|&l| (0..4).map(move |i| 4 * l + i)).collect();
        let imm = self.fb.func.dfg.immediates.push(cranelift_codegen::ir::ConstantData::from(bytes));
        let (a8, b8) = (self.fb.ins().bitcast(types::I8X16, le, a), self.fb.ins().bitcast(types::I8X16, le, b));
        let r = self.fb.ins().shuffle(a8, b8, imm);
        self.fb.ins().bitcast(types::F32X4, le, r)
    }

    /// The 4×4 transpose of four f32x4 rows (unpack low/high, then move halves).
    pub fn transpose4(&mut self, r: [Value; 4]) -> [Value; 4] {
        let t0 = self.shuffle4(r[0], r[1], [0, 4, 1, 5]);
        let t1 = self.shuffle4(r[0], r[1], [2, 6, 3, 7]);
        let t2 = self.shuffle4(r[2], r[3], [0, 4, 1, 5]);
        let t3 = self.shuffle4(r[2], r[3], [2, 6, 3, 7]);
        [
            self.shuffle4(t0, t2, [0, 1, 4, 5]),
            self.shuffle4(t0, t2, [2, 3, 6, 7]),
            self.shuffle4(t1, t3, [0, 1, 4, 5]),
            self.shuffle4(t1, t3, [2, 3, 6, 7]),
        ]
    }

    pub fn fcmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.fb.ins().fcmp(cc, a, b)
    }

    /// max(a, b) as one compare and select (`vmaxps`-like; returns `a` when either is
    /// NaN and `a` is NaN... see callers): b if a < b, else a.
    pub fn max(&mut self, a: Value, b: Value) -> Value {
        let lt = self.fcmp(FloatCC::LessThan, a, b);
        self.select(lt, b, a)
    }

    pub fn min(&mut self, a: Value, b: Value) -> Value {
        let gt = self.fcmp(FloatCC::GreaterThan, a, b);
        self.select(gt, b, a)
    }

    pub fn ctx_i64(&mut self, off: i32) -> Value {
        self.fb.ins().load(types::I64, flags(), self.ctx, off)
    }

    pub fn ctx_f32(&mut self, off: i32) -> Value {
        self.fb.ins().load(types::F32, flags(), self.ctx, off)
    }

    pub fn var(&mut self, ty: Type) -> Variable {
        self.fb.declare_var(ty)
    }

    /// `for i in (lo..hi).step_by(step)` with constant bounds; a single iteration is
    /// emitted straight (its index a constant), none emits nothing.
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
        let last = lo + (hi - lo - 1) / step * step;
        let iv = self.var(types::I64);
        let start = self.iconst(lo);
        self.fb.def_var(iv, start);
        let body_block = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.ins().jump(body_block, &[]);
        self.fb.switch_to_block(body_block);
        let i = self.fb.use_var(iv);
        body(self, Idx { v: Some(i), off: 0, lo, hi: last })?;
        let next = self.fb.ins().iadd_imm_s(i, step);
        self.fb.def_var(iv, next);
        let more = self.fb.ins().icmp_imm_s(IntCC::SignedLessThan, next, hi);
        self.fb.ins().brif(more, body_block, &[], exit, &[]);
        self.fb.seal_block(body_block);
        self.fb.switch_to_block(exit);
        self.fb.seal_block(exit);
        Ok(())
    }

    /// `if cond { body(true) } else { body(false) }` (cond: an i8 truth value).
    pub fn if_else(&mut self, cond: Value, body: &mut dyn FnMut(&mut Self, bool) -> CgResult<()>) -> CgResult<()> {
        let (a, b, join) = (self.fb.create_block(), self.fb.create_block(), self.fb.create_block());
        self.fb.ins().brif(cond, a, &[], b, &[]);
        self.fb.switch_to_block(a);
        self.fb.seal_block(a);
        body(self, true)?;
        self.fb.ins().jump(join, &[]);
        self.fb.switch_to_block(b);
        self.fb.seal_block(b);
        body(self, false)?;
        self.fb.ins().jump(join, &[]);
        self.fb.switch_to_block(join);
        self.fb.seal_block(join);
        Ok(())
    }

    /// The kernel's share of its parallel items: `for item in lo..hi` (run-time bounds
    /// from the caller, at most `extent`).
    pub fn for_items(&mut self, extent: usize, mut body: impl FnMut(&mut Self, Idx) -> CgResult<()>) -> CgResult<()> {
        let iv = self.var(types::I64);
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
        body(self, Idx { v: Some(i), off: 0, lo: 0, hi: extent as i64 - 1 })?;
        let next = self.fb.ins().iadd_imm_s(i, 1);
        self.fb.def_var(iv, next);
        self.fb.ins().jump(head, &[]);
        self.fb.seal_block(head);
        self.fb.switch_to_block(exit);
        self.fb.seal_block(exit);
        Ok(())
    }
}
