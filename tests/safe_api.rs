//! Safe code cannot break what the JIT's bounds proofs rely on. Every public way to change
//! sizes or layouts after compilation is refused: at compile time (trybuild cases in
//! tests/safety/: the store's buffer and layout, a program's plan, are private; a store
//! lends a fixed-length slice) or at run time (a store of another layout is refused
//! before any kernel runs). `TRYBUILD=overwrite` updates the expected errors.

use percept::compiler::codegen::{compile, CodegenOptions};
use percept::compiler::exec::{self, Executable, Feed, StateLayout, StateStore};
use percept::compiler::ops::StepCtx;

#[test]
fn changing_what_compiled_code_relies_on_does_not_compile() {
    trybuild::TestCases::new().compile_fail("tests/safety/*.rs");
}

#[test]
fn a_store_of_another_layout_is_refused_before_any_kernel_runs() {
    let src = percept::compiler::SourceFile::new("m.nn", "model m { input [3] dense(4) relu dense(2) loss mse }");
    let spec = percept::compiler::parse_and_check(&src).unwrap();
    let layout = StateLayout::new(&spec, &[]);
    let grad = exec::grad_program(&spec, 2, &[]).unwrap();
    let mut jit = compile(&grad, &layout, CodegenOptions::default()).unwrap();
    let (x, t) = (vec![0.5; 6], vec![0.0; 4]);
    let feed = Feed { data: &x, target: Some(&t) };
    // A smaller store (no gradients' room for an optimizer's state, another model).
    let other = percept::compiler::parse_and_check(&percept::compiler::SourceFile::new(
        "o.nn",
        "model o { input [3] dense(1) loss mse }",
    ))
    .unwrap();
    let mut small = StateStore::new(StateLayout::new(&other, &[]));
    let e = jit.run(&mut small, &feed, &StepCtx::default()).unwrap_err();
    assert!(e.to_string().contains("does not have the layout this program was compiled for"), "{e}");
    assert!(jit.run_kernel_items(&mut small, 0, 0, 1).is_err());
    // The same layout runs.
    let mut store = StateStore::new(layout);
    jit.run(&mut store, &feed, &StepCtx::default()).unwrap();
}
