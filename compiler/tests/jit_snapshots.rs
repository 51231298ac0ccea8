//! Snapshots of the kernel plan of lenet5.nn and of the CLIF of one small kernel, so
//! changes to lowering and memory planning show up in review. Update with
//! `UPDATE_EXPECT=1 cargo test -p percept-compiler --test jit_snapshots`.

mod common;

use common::{example, spec};
use expect_test::expect_file;
use percept_compiler::codegen::{compile, CodegenOptions, MicroChoice};
use percept_compiler::exec::{self, Optimizer, StateLayout};

#[test]
fn lenet5_training_plan() {
    let spec = spec(&example("lenet5.nn"));
    let opt = Optimizer::Sgd { momentum: 0.9, nesterov: false, weight_decay: 0.0 };
    let layout = StateLayout::new(&spec, opt.state_suffixes());
    // The portable micro-kernel, so the snapshot does not depend on the host's features.
    let opts = CodegenOptions { micro: MicroChoice::Cranelift, ..CodegenOptions::default() };
    let grad = compile(&exec::grad_program(&spec, 64, &[]).unwrap(), &layout, opts).unwrap();
    let update = compile(&exec::update_program(&spec, &opt, &[]), &layout, opts).unwrap();
    let text = grad.program().plan_text(false) + &update.program().plan_text(false);
    expect_file!["snapshots/lenet5_plan.txt"].assert_eq(&text);
}

#[test]
fn clif_of_a_small_kernel() {
    let spec = spec("model tiny { input [6] leaky_relu }");
    let layout = StateLayout::new(&spec, &[]);
    let eval = compile(&exec::eval_program(&spec, 2, false, &[]).unwrap(), &layout, CodegenOptions::default()).unwrap();
    let k = &eval.program().kernels[0];
    assert_eq!(k.name(), "fwd.leaky_relu_0.leaky_relu");
    expect_file!["snapshots/leaky_relu_kernel.clif"].assert_eq(&k.text.clif);
}

/// The fusion groups of a training step: which ops run in which kernel.
fn fused_plan(file: &str) -> String {
    let spec = spec(&example(file));
    let opt = Optimizer::Sgd { momentum: 0.9, nesterov: false, weight_decay: 0.0 };
    let layout = StateLayout::new(&spec, opt.state_suffixes());
    let opts = CodegenOptions { micro: MicroChoice::Cranelift, ..CodegenOptions::default() };
    let grad = compile(&exec::grad_program(&spec, 64, &[]).unwrap(), &layout, opts).unwrap();
    let update = compile(&exec::update_program(&spec, &opt, &[]), &layout, opts).unwrap();
    let mut out = String::new();
    for k in grad.program().kernels.iter().chain(&update.program().kernels) {
        out += &format!("{:<44} {}\n", k.name(), k.ops.join(" + "));
    }
    out
}

/// The evaluation program of cnn_bn: convolution + bias + batch norm (running
/// statistics) + relu in one kernel each.
#[test]
fn fused_evaluation_plan_of_cnn_bn() {
    let spec = spec(&example("cnn_bn.nn"));
    let layout = StateLayout::new(&spec, &[]);
    let opts = CodegenOptions { micro: MicroChoice::Cranelift, ..CodegenOptions::default() };
    let eval = compile(&exec::eval_program(&spec, 64, false, &[]).unwrap(), &layout, opts).unwrap();
    let text: String =
        eval.program().kernels.iter().map(|k| format!("{:<44} {}\n", k.name(), k.ops.join(" + "))).collect();
    expect_file!["snapshots/cnn_bn_eval_fused.txt"].assert_eq(&text);
}

#[test]
fn fused_plans_of_lenet5_cnn_bn_and_residual() {
    expect_file!["snapshots/lenet5_fused.txt"].assert_eq(&fused_plan("lenet5.nn"));
    expect_file!["snapshots/cnn_bn_fused.txt"].assert_eq(&fused_plan("cnn_bn.nn"));
    expect_file!["snapshots/residual_fused.txt"].assert_eq(&fused_plan("residual.nn"));
}

/// A pooling gradient takes the activation derivative only where its windows are
/// disjoint (overlapping windows add several contributions into one element).
#[test]
fn pooling_gradient_fuses_only_disjoint_windows() {
    let kernels = |pool: &str| {
        let spec = spec(&format!(
            "model p {{ input [2, 6, 6] conv2d(2, kernel: 3, padding: 1) tanh {pool} flatten dense(2) loss mse }}"
        ));
        let layout = StateLayout::new(&spec, &[]);
        let opts = CodegenOptions { micro: MicroChoice::Cranelift, ..CodegenOptions::default() };
        let grad = compile(&exec::grad_program(&spec, 2, &[]).unwrap(), &layout, opts).unwrap();
        grad.program().kernels.iter().map(|k| k.ops.join(" + ")).collect::<Vec<_>>()
    };
    let disjoint = kernels("maxpool(2)");
    assert!(disjoint.contains(&"maxpool_grad + tanh_grad".to_string()), "{disjoint:?}");
    assert!(kernels("avgpool(3)").contains(&"avgpool_grad + tanh_grad".to_string()));
    let overlapping = kernels("maxpool(2, stride: 1)");
    assert!(overlapping.contains(&"maxpool_grad".to_string()), "{overlapping:?}");
    assert!(overlapping.contains(&"tanh_grad".to_string()), "{overlapping:?}");
}

/// `--emit asm` decodes the bytes that run: for every kernel of two examples' training
/// steps, every byte of code is one decoded instruction (no `(bad)`), padding or a
/// constant, every branch names a block the listing defines, and a GEMM's call names
/// its micro-kernel.
#[test]
fn the_assembly_of_every_kernel_accounts_for_every_byte() {
    for file in ["lenet5.nn", "cnn_bn.nn"] {
        let spec = spec(&example(file));
        let opt = Optimizer::Sgd { momentum: 0.9, nesterov: false, weight_decay: 0.0 };
        let layout = StateLayout::new(&spec, opt.state_suffixes());
        let opts = CodegenOptions { micro: MicroChoice::Cranelift, ..CodegenOptions::default() };
        let grad = compile(&exec::grad_program(&spec, 8, &[]).unwrap(), &layout, opts).unwrap();
        let update = compile(&exec::update_program(&spec, &opt, &[]), &layout, opts).unwrap();
        let micro = &grad.program().micro_text;
        let kernels = grad.program().kernels.iter().chain(&update.program().kernels);
        for (name, text) in kernels.map(|k| (k.name(), &k.text)).chain([("micro", micro)]) {
            let asm = text.asm(true);
            assert!(!asm.contains("(bad)"), "{name}:\n{asm}");
            let mut bytes = 0;
            for line in asm.lines().filter(|l| l.starts_with("  ")) {
                let rest = line[8..].trim_start();
                bytes += if let Some(p) = rest.strip_prefix("; ") {
                    p.split(' ').next().unwrap().parse::<usize>().unwrap()
                } else if let Some(words) = rest.strip_prefix(".long ") {
                    4 * words.split(';').next().unwrap().split(',').count()
                } else if let Some(b) = rest.strip_prefix(".byte ") {
                    b.split(',').count()
                } else {
                    rest.split(' ').next().unwrap().len() / 2
                };
            }
            assert_eq!(bytes, text.code_bytes, "{name}: the listing covers {bytes} of {} bytes", text.code_bytes);
            for target in asm.split_whitespace().filter(|w| w.starts_with("block") && !w.ends_with(':')) {
                assert!(
                    asm.contains(&format!("\n{target}:\n")) || asm.starts_with(&format!("{target}:")),
                    "{name}: {target}"
                );
            }
            if name != "micro" && text.clif.contains("call fn") {
                assert!(asm.contains("; percept_micro_cranelift"), "{name}:\n{asm}");
            }
        }
    }
}

/// Loads of what a kernel never writes are pure to Cranelift (`readonly can_move`), so they
/// are hoisted out of loops; loads of what it writes are not. An SGD step with momentum
/// updates the parameter and its velocity in place and only reads the gradient; the
/// evaluation kernel of a convolution with batch norm computes the scale (an f64 square
/// root) once per channel, not once per vector stored.
#[test]
fn loads_of_read_only_buffers_are_pure() {
    let spec = spec("model m { input [1, 6, 6] conv2d(4, kernel: 3, padding: 1) batchnorm relu flatten dense(2) loss softmax_cross_entropy }");
    let opt = Optimizer::Sgd { momentum: 0.9, nesterov: false, weight_decay: 0.0 };
    let layout = StateLayout::new(&spec, opt.state_suffixes());
    let update = compile(&exec::update_program(&spec, &opt, &[]), &layout, CodegenOptions::default()).unwrap();
    let sgd =
        update.program().kernels.iter().find(|k| k.name() == "upd.0.weight.sgd_update").expect("the update kernel");
    let loads: Vec<&str> = sgd.text.clif.lines().filter(|l| l.contains(" = load.")).collect();
    let pure = loads.iter().filter(|l| l.contains("readonly can_move")).count();
    // Per element: the gradient (pure), the parameter and the velocity (both written).
    assert!(pure > 0 && pure < loads.len(), "{}", sgd.text.clif);
    for l in loads.iter().filter(|l| !l.contains("readonly")) {
        assert!(l.contains("notrap"), "{l}");
    }
    let eval = compile(&exec::eval_program(&spec, 2, false, &[]).unwrap(), &layout, CodegenOptions::default()).unwrap();
    let conv = &eval.program().kernels[0];
    assert!(conv.name().starts_with("fwd.conv2d_0+batchnorm_1"), "{}", conv.name());
    let asm: String = conv.text.code.iter().map(|c| percept_compiler::codegen::asm::listing(c, false)).collect();
    let sqrts = asm.lines().filter(|l| l.contains("sqrt")).count();
    assert_eq!(sqrts, 1, "one square root, in the channel loop:\n{asm}");
}
