//! The pure-Cranelift GEMM micro-kernel: the portable tile, for hosts without the native
//! ones (and for comparison). It has the native kernels' signature, so the loop nests call
//! either; it is written directly in CLIF because it is all register blocking and no loop
//! structure.

use super::{signature, MicroKernel, MicroTile};
use crate::codegen::jit::CodeModule;
use crate::codegen::jit::{CgResult, FunctionBuilder, FunctionBuilderContext, FunctionText, OptLevel};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, BlockArg, InstBuilder, MemFlagsData, Value};
use cranelift_module::Linkage;
use cranelift_module::Module;

/// Rows and columns of the Cranelift tile.
pub const MR: usize = 6;
pub const NR: usize = 8;

pub fn tile() -> MicroTile {
    MicroTile { mr: MR, nr: NR, name: "cranelift-6x8".into(), narrow: None }
}

/// The pure-Cranelift micro-kernel: a 6×8 tile in twelve f32x4 accumulators; per step one
/// broadcast of each A value and two loads of B. Compiled at `opt_level=none`: measured
/// faster than `speed`, whose e-graph hoists the loads and spills accumulators.
pub fn define<M: Module>(jit: &mut CodeModule<M>, fma: bool) -> CgResult<(MicroKernel, FunctionText)> {
    let (mr, nr) = (MR, NR);
    let sig = signature(jit);
    let name = "percept_micro_cranelift_6x8";
    let id = jit.declare(name, &sig, Linkage::Local)?;
    let mut func = jit.new_function(id, sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut fb = FunctionBuilder::new(&mut func, &mut fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    fb.seal_block(entry);
    let p = fb.block_params(entry).to_vec();
    let (kc, b0, b_steps, tile) = (p[0], p[5], p[7], p[8]);
    // In bytes: from one step's B row to the next, from one step's A column to the next.
    let b_step = fb.ins().ishl_imm_u(p[6], 2);
    let a_step = fb.ins().ishl_imm_u(p[3], 2);
    let flags = MemFlagsData::new().with_notrap();
    // A's first row and, in bytes, from it to row i: at one stride, or at the offsets of a
    // table (a direct weight gradient's taps), read once here.
    let (a0, a_rows) = {
        let (strided, table, rows) = (fb.create_block(), fb.create_block(), fb.create_block());
        let params: Vec<Value> = (0..mr).map(|_| fb.append_block_param(rows, types::I64)).collect();
        let no_table = fb.ins().icmp_imm_s(IntCC::Equal, p[4], 0);
        fb.ins().brif(no_table, strided, &[], table, &[]);
        fb.switch_to_block(strided);
        fb.seal_block(strided);
        let a_row = fb.ins().ishl_imm_u(p[2], 2);
        let mut args = vec![p[1]];
        args.extend((1..mr as i64).map(|i| fb.ins().imul_imm_s(a_row, i)));
        fb.ins().jump(rows, &args.into_iter().map(BlockArg::Value).collect::<Vec<_>>());
        fb.switch_to_block(table);
        fb.seal_block(table);
        let offsets: Vec<Value> = (0..mr)
            .map(|i| {
                let o = fb.ins().sload32(flags, p[4], (4 * i) as i32);
                fb.ins().ishl_imm_u(o, 2)
            })
            .collect();
        let mut args = vec![fb.ins().iadd(p[1], offsets[0])];
        args.extend(offsets[1..].iter().map(|&o| fb.ins().isub(o, offsets[0])));
        fb.ins().jump(rows, &args.into_iter().map(BlockArg::Value).collect::<Vec<_>>());
        fb.switch_to_block(rows);
        fb.seal_block(rows);
        (params[0], params)
    };
    let zero = fb.ins().f32const(0.0);
    let zero = fb.ins().splat(types::F32X4, zero);
    let accs: Vec<_> = (0..mr * nr / 4).map(|_| fb.declare_var(types::F32X4)).collect();
    for &v in &accs {
        fb.def_var(v, zero);
    }
    let (av, bv, kv) = (fb.declare_var(types::I64), fb.declare_var(types::I64), fb.declare_var(types::I64));
    fb.def_var(av, a0);
    fb.def_var(bv, b0);
    fb.def_var(kv, kc);
    // One step of the k loop: rank-1 update of the tile from the A column at a and the B
    // row at b.
    // Each FMA gets its own single-use broadcast of the A value: Cranelift folds a
    // single-use `splat(load)` into one `vbroadcastss mem`, and since x64's FMA writes
    // its result over its first operand, a single-use first operand needs no copy. Each
    // row's address is computed once per step (at opt_level none every `iadd` written is
    // an instruction), row 0's is `a` itself.
    let step = |fb: &mut FunctionBuilder, a: Value, b: Value| {
        let bs: Vec<_> = (0..nr / 4).map(|j| fb.ins().load(types::F32X4, flags, b, (16 * j) as i32)).collect();
        for i in 0..mr {
            let ai = if i == 0 { a } else { fb.ins().iadd(a, a_rows[i]) };
            for (j, &bj) in bs.iter().enumerate() {
                let s = fb.ins().load(types::F32, flags, ai, 0);
                let s = fb.ins().splat(types::F32X4, s);
                let var = accs[i * (nr / 4) + j];
                let acc = fb.use_var(var);
                let next = if fma {
                    fb.ins().fma(s, bj, acc)
                } else {
                    let m = fb.ins().fmul(s, bj);
                    fb.ins().fadd(m, acc)
                };
                fb.def_var(var, next);
            }
        }
    };
    // The k loop, unrolled by UNROLL, then single steps for the rest; with step offsets,
    // one step at a time, B's row at b + offset.
    const UNROLL: usize = 8;
    let head4 = fb.create_block();
    let body4 = fb.create_block();
    let head1 = fb.create_block();
    let body1 = fb.create_block();
    let head_t = fb.create_block();
    let body_t = fb.create_block();
    let done = fb.create_block();
    let sv = fb.declare_var(types::I64);
    fb.def_var(sv, b_steps);
    let strided = fb.ins().icmp_imm_s(IntCC::Equal, b_steps, 0);
    fb.ins().brif(strided, head4, &[], head_t, &[]);
    fb.switch_to_block(head_t);
    let k = fb.use_var(kv);
    let more = fb.ins().icmp_imm_s(IntCC::SignedGreaterThan, k, 0);
    fb.ins().brif(more, body_t, &[], done, &[]);
    fb.switch_to_block(body_t);
    fb.seal_block(body_t);
    let (a, s) = (fb.use_var(av), fb.use_var(sv));
    let off = fb.ins().sload32(flags, s, 0);
    let off = fb.ins().ishl_imm_u(off, 2);
    let b = fb.ins().iadd(b0, off);
    step(&mut fb, a, b);
    let a2 = fb.ins().iadd(a, a_step);
    let s2 = fb.ins().iadd_imm_s(s, 4);
    let k = fb.use_var(kv);
    let k2 = fb.ins().iadd_imm_s(k, -1);
    fb.def_var(av, a2);
    fb.def_var(sv, s2);
    fb.def_var(kv, k2);
    fb.ins().jump(head_t, &[]);
    fb.seal_block(head_t);
    fb.switch_to_block(head4);
    let k = fb.use_var(kv);
    let more4 = fb.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, k, UNROLL as i64);
    fb.ins().brif(more4, body4, &[], head1, &[]);
    fb.switch_to_block(body4);
    fb.seal_block(body4);
    let (mut a, mut b) = (fb.use_var(av), fb.use_var(bv));
    for _ in 0..UNROLL {
        step(&mut fb, a, b);
        a = fb.ins().iadd(a, a_step);
        b = fb.ins().iadd(b, b_step);
    }
    let (a2, b2) = (a, b);
    let k = fb.use_var(kv);
    let k2 = fb.ins().iadd_imm_s(k, -(UNROLL as i64));
    fb.def_var(av, a2);
    fb.def_var(bv, b2);
    fb.def_var(kv, k2);
    fb.ins().jump(head4, &[]);
    fb.seal_block(head4);
    fb.switch_to_block(head1);
    let k = fb.use_var(kv);
    let more1 = fb.ins().icmp_imm_s(IntCC::SignedGreaterThan, k, 0);
    fb.ins().brif(more1, body1, &[], done, &[]);
    fb.switch_to_block(body1);
    fb.seal_block(body1);
    let (a, b) = (fb.use_var(av), fb.use_var(bv));
    step(&mut fb, a, b);
    let a2 = fb.ins().iadd(a, a_step);
    let b2 = fb.ins().iadd(b, b_step);
    let k = fb.use_var(kv);
    let k2 = fb.ins().iadd_imm_s(k, -1);
    fb.def_var(av, a2);
    fb.def_var(bv, b2);
    fb.def_var(kv, k2);
    fb.ins().jump(head1, &[]);
    fb.seal_block(head1);
    fb.switch_to_block(done);
    fb.seal_block(done);
    // The tile's rows are `ldc` floats apart (NR for the tile buffer, C's row stride when
    // the tile is C); with `add`, C + Σ.
    let ldc = fb.ins().ishl_imm_u(p[9], 2);
    let (set, add, end) = (fb.create_block(), fb.create_block(), fb.create_block());
    let adds = fb.ins().icmp_imm_s(IntCC::NotEqual, p[10], 0);
    fb.ins().brif(adds, add, &[], set, &[]);
    for (blk, adding) in [(set, false), (add, true)] {
        fb.switch_to_block(blk);
        fb.seal_block(blk);
        let mut row = tile;
        for i in 0..mr {
            for j in 0..nr / 4 {
                let mut v = fb.use_var(accs[i * (nr / 4) + j]);
                if adding {
                    let old = fb.ins().load(types::F32X4, flags, row, (16 * j) as i32);
                    v = fb.ins().fadd(old, v);
                }
                fb.ins().store(flags, v, row, (16 * j) as i32);
            }
            row = fb.ins().iadd(row, ldc);
        }
        fb.ins().jump(end, &[]);
    }
    fb.switch_to_block(end);
    fb.seal_block(end);
    fb.ins().return_(&[]);
    fb.finalize(jit.frontend_config());
    let text = jit.define(id, func, OptLevel::None)?;
    Ok((MicroKernel { id, narrow: None, tile: self::tile() }, text))
}
