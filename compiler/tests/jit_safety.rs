//! The JIT's safety nets: accesses are proved in bounds at compile time; a debug mode
//! checks them at run time and reports which kernel and access failed; the memory plan is
//! verified; a debug mode poisons freed memory so a use after the planned last use shows.

mod common;

use common::spec;
use cranelift_codegen::ir::types;
use percept_compiler::codegen::builder::{Buf, Kb, Region};
use percept_compiler::codegen::jit::{FunctionBuilder, FunctionBuilderContext, JitModule};
use percept_compiler::codegen::loops::verify::verify;
use percept_compiler::codegen::loops::{Idx, Stmt};
use percept_compiler::codegen::{compile, plan, CodegenOptions};
use percept_compiler::exec::{self, Executable, Feed, StateLayout, StateStore};
use percept_compiler::ops::StepCtx;

#[test]
fn an_access_outside_its_buffer_is_a_compile_error() {
    let mut kb = Kb::new("probe", 0, None, None);
    let buf = Buf { region: Region::Arena, offset: 0, len: 10, name: "%3".into() };
    assert!(kb.load(types::F32, &buf, Idx::constant(9)).is_ok());
    let e = kb.load(types::F32X4, &buf, Idx::constant(7)).unwrap_err();
    assert!(e.to_string().contains("kernel `probe`: load of %3 at [7, 7] (width 4) is outside its 10 elements"), "{e}");
    // A loop index is proved over its whole range.
    let e = kb.for_range(0, 11, 1, |kb, i| kb.load(types::F32, &buf, i).map(|_| ())).unwrap_err();
    assert!(e.to_string().contains("at [0, 10]"), "{e}");
}

/// The verifier proves a finished loop nest on its own, re-deriving every range: a nest
/// changed after the builder checked it (here a loop made one iteration longer) is refused.
#[test]
fn the_loop_nest_verifier_rederives_every_range() {
    let mut kb = Kb::new("probe", 0, None, None);
    let buf = Buf { region: Region::Arena, offset: 0, len: 10, name: "%3".into() };
    kb.for_range(0, 10, 1, |kb, i| {
        let v = kb.load(types::F32, &buf, i)?;
        kb.store(v, &buf, i)
    })
    .unwrap();
    let mut nest = kb.finish();
    verify(&nest).unwrap();
    let Stmt::For { hi, .. } = &mut nest.body[0] else { panic!("a loop: {nest}") };
    *hi = 11;
    let e = verify(&nest).unwrap_err();
    assert!(e.to_string().contains("load of %3 at [0, 10] (width 1) is outside its 10 elements"), "{e}");
}

/// An index over a value with no derivable range (here a hash of the step) is refused.
#[test]
fn an_index_without_a_proved_range_is_refused() {
    let mut kb = Kb::new("probe", 0, None, None);
    let step = kb.ctx_i64(percept_compiler::codegen::builder::ctx::STEP);
    let e = kb.idx(step).unwrap_err();
    assert!(e.to_string().contains("indexes a buffer but has no proved range"), "{e}");
    // A clamp gives it one.
    let lo = kb.iconst(0);
    let hi = kb.iconst(9);
    let clamped = kb.smax(step, lo);
    let clamped = kb.smin(clamped, hi);
    let i = kb.idx(clamped).unwrap();
    assert_eq!((i.lo, i.hi), (0, 9));
}

#[test]
fn run_time_checks_report_the_kernel_and_the_access() {
    let spec = spec("model m { input [5] relu }");
    let layout = StateLayout::new(&spec, &[]);
    let g = exec::eval_program(&spec, 3, false, &[]).unwrap();
    let mut exe = compile(&g, &layout, CodegenOptions { checks: true, ..CodegenOptions::default() }).unwrap();
    let mut store = StateStore::new(layout.clone());
    let x = vec![1.0; 15];
    let out = exe.run(&mut store, &Feed { data: &x, target: None }, &StepCtx::default()).unwrap();
    assert_eq!(out.prediction, x, "checked code computes the same");
    // Items 0..3 are the batch; 0..5 walks past the end of both buffers.
    assert!(exe.run_kernel_items(&mut store, 0, 0, 3).is_ok());
    let e = exe.run_kernel_items(&mut store, 0, 0, 5).unwrap_err();
    assert!(e.to_string().starts_with("bounds check failed in kernel `fwd.relu_0.relu`: load of %0"), "{e}");
    assert!(e.to_string().contains("at index 15"), "{e}");
    // Without checks, an out-of-range call is refused rather than run.
    let mut unchecked = compile(&g, &layout, CodegenOptions::default()).unwrap();
    assert!(unchecked.run_kernel_items(&mut store, 0, 0, 5).unwrap_err().to_string().contains("exceed the extent"));
}

#[test]
fn the_plan_verifier_rejects_overlapping_live_buffers() {
    let spec = spec("model m { input [8] dense(4) relu dense(3) loss mse }");
    let layout = StateLayout::new(&spec, &[]);
    let g = exec::grad_program(&spec, 2, &[]).unwrap();
    let exe = compile(&g, &layout, CodegenOptions::default()).unwrap();
    let mut bad = exe.program().plan.clone();
    assert!(plan::verify(&g, &bad).is_ok());
    // Move one allocation onto another that is live at the same time.
    let (i, j) = (0..bad.allocs.len())
        .flat_map(|i| (0..bad.allocs.len()).map(move |j| (i, j)))
        .find(|&(i, j)| {
            i != j
                && bad.allocs[i].from <= bad.allocs[j].to
                && bad.allocs[j].from <= bad.allocs[i].to
                && bad.allocs[i].len > 0
                && bad.allocs[j].len > 0
        })
        .unwrap();
    bad.allocs[i].offset = bad.allocs[j].offset;
    let e = plan::verify(&g, &bad).unwrap_err();
    assert!(e.to_string().contains("are live together and overlap"), "{e}");
}

#[test]
fn poisoning_exposes_a_value_read_after_its_planned_last_use() {
    let spec = spec("model m { input [6] dense(5) tanh dense(3) loss mse }");
    let layout = StateLayout::new(&spec, &[]);
    let g = exec::grad_program(&spec, 4, &[]).unwrap();
    let mut store = StateStore::new(layout.clone());
    for (i, v) in store.data_mut().iter_mut().enumerate() {
        *v = ((i % 7) as f32 - 3.0) * 0.1;
    }
    let x: Vec<f32> = (0..24).map(|i| (i % 5) as f32 * 0.2).collect();
    let t = vec![0.5; 12];
    let feed = Feed { data: &x, target: Some(&t) };
    let opts = CodegenOptions { poison: true, ..CodegenOptions::default() };
    let mut good = compile(&g, &layout, opts).unwrap();
    let loss = good.run(&mut store.clone(), &feed, &StepCtx::default()).unwrap().loss.unwrap();
    assert!(loss.is_finite(), "a correct plan computes the same with poisoning on");
    // Pretend the first hidden activation dies right after it is made (the backward
    // pass still reads it): its memory is poisoned, and the gradients become NaN.
    let mut bad = compile(&g, &layout, opts).unwrap();
    bad.poison_early("(tanh").unwrap();
    let mut s = store.clone();
    bad.run(&mut s, &feed, &StepCtx::default()).unwrap();
    let grad = s.get(exec::SlotKind::Grad, "2.weight").unwrap();
    assert!(grad.iter().any(|v| v.is_nan()), "{grad:?}");
}

#[test]
fn jit_code_can_call_only_allowlisted_symbols() {
    use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature};
    let mut jit = JitModule::new(&[], true).unwrap();
    // A function that calls libc's `malloc`, which is not on the (empty) allowlist.
    let mut sig = Signature::new(jit.call_conv());
    sig.params.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I64));
    let malloc = jit.declare("malloc", &sig, cranelift_module::Linkage::Import).unwrap();
    let id = jit.declare("caller", &sig, cranelift_module::Linkage::Local).unwrap();
    let mut func = jit.new_function(id, sig);
    let callee = jit.import(malloc, &mut func);
    let mut fctx = FunctionBuilderContext::new();
    let mut fb = FunctionBuilder::new(&mut func, &mut fctx);
    let b = fb.create_block();
    fb.append_block_params_for_function_params(b);
    fb.switch_to_block(b);
    fb.seal_block(b);
    let n = fb.block_params(b)[0];
    let call = fb.ins().call(callee, &[n]);
    let r = fb.inst_results(call)[0];
    fb.ins().return_(&[r]);
    fb.finalize(jit.frontend_config());
    let e = jit.define(id, func, percept_compiler::codegen::jit::OptLevel::Speed).unwrap_err();
    assert!(e.to_string().contains("JIT code may not call `malloc`: it is not on the allowlist"), "{e}");
}

/// Buffers are addressed as a region's base plus a 64-bit offset: an arena past 2 GiB (here
/// a buffer 12 GiB in) compiles, the offset added as a 64-bit constant where it does not
/// fit an instruction's 32-bit immediate.
#[test]
fn offsets_past_two_gigabytes_are_64_bit() {
    use percept_compiler::codegen::emit::{emit, EmitCx};
    use percept_compiler::codegen::jit::{kernel_signature, OptLevel};
    let far = 3usize << 30;
    let buf = Buf { region: Region::Arena, offset: far, len: 64, name: "%9".into() };
    let mut kb = Kb::new("far", 0, None, None);
    kb.for_items(64, |kb, i| {
        let v = kb.load(types::F32, &buf, i)?;
        let w = kb.fadd(v, v);
        kb.store(w, &buf, i)
    })
    .unwrap();
    let nest = kb.finish();
    verify(&nest).unwrap();
    let mut jit = JitModule::new(&[], true).unwrap();
    let sig = kernel_signature(jit.call_conv());
    let id = jit.declare("far", &sig, cranelift_module::Linkage::Local).unwrap();
    let mut func = jit.new_function(id, sig);
    let cx = EmitCx { fma: false, micro: None, narrow: None, checks: None, access_base: 0 };
    emit(&nest, &mut func, jit.frontend_config(), cx).unwrap();
    let text = jit.define(id, func, OptLevel::Speed).unwrap();
    // 12 GiB = 0x3_0000_0000 bytes, as Cranelift prints it.
    assert_eq!(far * 4, 0x3_0000_0000);
    assert!(text.clif.contains("iconst.i64 0x0003_0000_0000"), "{}", text.clif);
}

/// A program whose arena exceeds the memory budget is refused before anything is allocated.
#[test]
fn a_program_over_the_memory_budget_is_refused() {
    let spec = spec("model m { input [64] dense(32) relu dense(3) loss mse }");
    let layout = StateLayout::new(&spec, &[]);
    let g = exec::grad_program(&spec, 8, &[]).unwrap();
    let fits = compile(&g, &layout, CodegenOptions::default()).unwrap().program().plan.peak_bytes() as u64;
    let opts = |b| CodegenOptions { memory_budget: Some(b), ..CodegenOptions::default() };
    assert!(compile(&g, &layout, opts(fits)).is_ok());
    match compile(&g, &layout, opts(fits - 1)) {
        Err(percept_compiler::Error::Memory(m)) => assert!(m.contains(&format!("needs {fits} bytes")), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("compiled over the budget"),
    }
}
