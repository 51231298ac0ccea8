//! The inline polynomial exp-based functions of the JIT, swept over their whole range
//! against f64: relative error ≤ 1e-6 where the f64 result is a normal f32 (below that,
//! absolute error ≤ 1e-37), exact saturation at the ends, NaN propagated. The
//! log-sum-exp of the cross-entropy is held to 1e-6 relative to max(loss, 1).

use percept_compiler::codegen::{compile, CodegenOptions};
use percept_compiler::exec::{Executable, Feed, StateLayout, StateStore};
use percept_compiler::ir::{Graph, Mode, Origin, OutputRole, Phase};
use percept_compiler::layers::Activation;
use percept_compiler::ops::{self, Op, Source, SourceKind, StepCtx};

fn run(op: Op, xs: &[f32], dys: Option<&[f32]>) -> Vec<f32> {
    let n = xs.len();
    let origin = Origin { tag: "sweep".into(), phase: Phase::Forward };
    let mut g = Graph::new("sweep", n, Mode::Eval);
    let x = g.push(Op::Source(Source { kind: SourceKind::Data, shape: vec![n, 1] }), &[], origin.clone()).unwrap()[0];
    let mut ins = vec![x];
    if dys.is_some() {
        ins.push(
            g.push(Op::Source(Source { kind: SourceKind::Target, shape: vec![n, 1] }), &[], origin.clone()).unwrap()[0],
        );
    }
    let y = g.push(op, &ins, origin).unwrap()[0];
    g.outputs.push((OutputRole::Prediction, y));
    let spec =
        percept_compiler::parse_and_check(&percept_compiler::SourceFile::new("e.nn", "model e { input [1] relu }"))
            .unwrap();
    let layout = StateLayout::new(&spec, &[]);
    let mut store = StateStore::new(layout.clone());
    let mut exe = compile(&g, &layout, CodegenOptions::default()).unwrap();
    exe.run(&mut store, &Feed { data: xs, target: dys }, &StepCtx::default()).unwrap().prediction
}

fn sweep() -> Vec<f32> {
    let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-4).collect();
    xs.extend((-300..=300).map(|i| i as f32 * 0.5));
    xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 88.0, 89.0, -87.0, -104.0, -110.0, 1e30, -1e30]);
    xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, 3.4e38, -3.4e38]);
    xs
}

fn check(name: &str, got: &[f32], xs: &[f32], want: impl Fn(f64) -> f64) {
    let mut worst = (0.0f64, 0.0f32);
    for (&g, &x) in got.iter().zip(xs) {
        let w = want(x as f64);
        let g = g as f64;
        if w.is_nan() {
            assert!(g.is_nan(), "{name}({x}) = {g}, want NaN");
            continue;
        }
        if w.abs() < f32::MIN_POSITIVE as f64 {
            assert!((g - w).abs() <= 1e-37, "{name}({x}) = {g:e}, want {w:e}");
            continue;
        }
        if w.abs() > f32::MAX as f64 {
            assert!(g.is_infinite() && g.signum() == w.signum(), "{name}({x}) = {g}, want overflow to {w}");
            continue;
        }
        let rel = (g - w).abs() / w.abs();
        if rel > worst.0 {
            worst = (rel, x);
        }
        assert!(rel <= 1e-6, "{name}({x}) = {g:e}, want {w:e} (relative error {rel:e})");
    }
    eprintln!("{name}: worst relative error {:e} at x = {}", worst.0, worst.1);
}

fn expm1(x: f64) -> f64 {
    x.exp_m1()
}

#[test]
fn exp_based_functions_are_accurate_over_their_whole_range() {
    let xs = sweep();
    let act = |a| Op::Act(ops::Act { act: a });
    check("sigmoid", &run(act(Activation::Sigmoid), &xs, None), &xs, |x| 1.0 / (1.0 + (-x).exp()));
    check("tanh", &run(act(Activation::Tanh), &xs, None), &xs, |x| x.tanh());
    check("elu", &run(act(Activation::Elu { alpha: 1.0 }), &xs, None), &xs, |x| if x > 0.0 { x } else { expm1(x) });
    // elu′ for x ≤ 0 is α·eˣ, computed from the input with the plain exp when α < 0.
    let ones = vec![1.0f32; xs.len()];
    let grad = Op::ActGrad(ops::ActGrad { act: Activation::Elu { alpha: -1.0 } });
    check("exp (elu′, α = −1)", &run(grad, &xs, Some(&ones)), &xs, |x| if x > 0.0 { 1.0 } else { -x.exp() });
}

#[test]
fn nan_propagates_through_every_activation() {
    let xs = [f32::NAN, 1.0, f32::NAN];
    for a in [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Elu { alpha: 1.0 },
    ] {
        let y = run(Op::Act(ops::Act { act: a }), &xs, None);
        assert!(y[0].is_nan() && y[2].is_nan() && !y[1].is_nan(), "{a:?}: {y:?}");
    }
}

#[test]
fn log_sum_exp_is_accurate() {
    // softmax_cross_entropy of logits [0, t] with label 0 is log(1 + eᵗ).
    for i in -40..=40 {
        let t = i as f32 * 2.5;
        let origin = Origin { tag: "lse".into(), phase: Phase::Loss };
        let mut g = Graph::new("lse", 1, Mode::Eval);
        let z =
            g.push(Op::Source(Source { kind: SourceKind::Data, shape: vec![1, 2] }), &[], origin.clone()).unwrap()[0];
        let l =
            g.push(Op::Source(Source { kind: SourceKind::Target, shape: vec![1] }), &[], origin.clone()).unwrap()[0];
        let y =
            g.push(Op::SoftmaxCrossEntropy(ops::SoftmaxCrossEntropy { samples: None }), &[z, l], origin).unwrap()[0];
        g.outputs.push((OutputRole::Loss, y));
        let spec =
            percept_compiler::parse_and_check(&percept_compiler::SourceFile::new("e.nn", "model e { input [1] relu }"))
                .unwrap();
        let layout = StateLayout::new(&spec, &[]);
        let mut store = StateStore::new(layout.clone());
        let mut exe = compile(&g, &layout, CodegenOptions::default()).unwrap();
        let got = exe
            .run(&mut store, &Feed { data: &[0.0, t], target: Some(&[0.0]) }, &StepCtx::default())
            .unwrap()
            .loss
            .unwrap();
        let want = (t as f64).exp().ln_1p();
        // log of a sum s in [1, K] of f32 terms: about 1e-6 relative for large values,
        // 1e-6 absolute where the loss itself is below 1 (the sum rounds to ~1e-7).
        let err = (got as f64 - want).abs() / want.max(1.0);
        assert!(err <= 1e-6, "log(1 + e^{t}) = {got}, want {want} ({err:e})");
    }
}
