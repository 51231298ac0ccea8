// A compiled program's plan (the arena size its proofs assumed) cannot be changed.
use percept::compiler::codegen::{compile, CodegenOptions};
use percept::compiler::exec::{self, StateLayout};

fn main() {
    let spec = percept::compiler::parse_and_check(&percept::compiler::SourceFile::new("m.nn", "model m { input [2] dense(2) }")).unwrap();
    let layout = StateLayout::new(&spec, &[]);
    let mut exe = compile(&exec::eval_program(&spec, 1, false, &[]).unwrap(), &layout, CodegenOptions::default()).unwrap();
    exe.program.plan.size = 0;
}
