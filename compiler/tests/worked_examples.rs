//! The two worked examples of the course (DESIGN.md), as exact unit tests.

mod common;

use common::spec;
use percept_compiler::build::{forward_graph, BuildOptions};
use percept_compiler::interp;
use percept_compiler::ir::OutputRole;
use percept_compiler::ops::{Op, SourceKind, StepCtx};
use percept_compiler::tensor::Tensor;

#[test]
fn padding_convolution_matches_the_slide_exactly() {
    let spec = spec("model pad { input [1, 3, 3] conv2d(1, kernel: 2, padding: 1, bias: false) }");
    assert_eq!(spec.output_shape(), [1, 4, 4]);
    let g = forward_graph(&spec, 1, &BuildOptions::inference()).unwrap();
    let x = Tensor::new(vec![1, 1, 3, 3], (0..9).map(|v| v as f32).collect());
    let w = Tensor::new(vec![1, 1, 2, 2], vec![0.0f32, 1.0, 2.0, 3.0]);
    let feed = |k: &SourceKind| match k {
        SourceKind::Data => Some(x.clone()),
        SourceKind::Param(n) if n == "0.weight" => Some(w.clone()),
        _ => None,
    };
    let run = interp::run(&g, &feed, &StepCtx::default(), false).unwrap();
    let y = run.output(&g, &OutputRole::Prediction).unwrap();
    let expected = [[0.0, 3.0, 8.0, 4.0], [9.0, 19.0, 25.0, 10.0], [21.0, 37.0, 43.0, 16.0], [6.0, 7.0, 8.0, 0.0]];
    assert_eq!(y.data, expected.concat());
}

#[test]
fn batch_norm_statistics_match_the_slide() {
    // On the slide each row is one feature across the batch's 3 samples.
    let rows = [[1.0, 3.0, 8.0], [3.0, 4.0, 3.0], [5.0, 6.0, 2.0], [7.0, 2.0, 1.0]];
    let spec = spec("model bn { input [4] batchnorm }");
    let g = forward_graph(&spec, 3, &BuildOptions::train()).unwrap();
    let x: Vec<f64> = (0..3).flat_map(|s| rows.iter().map(move |r| r[s])).collect();
    let feed = |k: &SourceKind| match k {
        SourceKind::Data => Some(Tensor::new(vec![3, 4], x.clone())),
        SourceKind::Param(n) if n.ends_with("weight") => Some(Tensor::full(&[4], 1.0)),
        SourceKind::Param(_) => Some(Tensor::zeros(&[4])),
        SourceKind::State(n) if n.ends_with("running_var") => Some(Tensor::full(&[4], 1.0)),
        SourceKind::State(_) => Some(Tensor::zeros(&[4])),
        _ => None,
    };
    let run = interp::run::<f64>(&g, &feed, &StepCtx::default(), true).unwrap();
    let bn = g.nodes.iter().find(|n| matches!(n.op, Op::BatchNormTrain(_))).unwrap();
    let mean = &run.get(bn.outputs[1]).unwrap().data;
    let std: Vec<f64> = run.get(bn.outputs[2]).unwrap().data.iter().map(|v| v.sqrt()).collect();
    // The slide shows its numbers cut to the digits shown (1.6997 appears as 1.69), so
    // each value, truncated to the slide's decimals, must be exactly the slide's number.
    let shown = |x: f64, decimals: i32| (x * 10f64.powi(decimals)).trunc() / 10f64.powi(decimals);
    for (got, (want, d)) in mean.iter().zip([(4.0, 0), (3.33, 2), (4.33, 2), (3.33, 2)]) {
        assert!((shown(*got, d) - want).abs() < 1e-9, "mean {got} vs the slide's {want}");
    }
    for (got, (want, d)) in std.iter().zip([(2.94, 2), (0.471, 3), (1.69, 2), (2.62, 2)]) {
        assert!((shown(*got, d) - want).abs() < 1e-9, "std {got} vs the slide's {want}");
    }
    let exact_std = [(26.0f64 / 3.0).sqrt(), (2.0f64 / 9.0).sqrt(), (26.0f64 / 9.0).sqrt(), (62.0f64 / 9.0).sqrt()];
    for (got, want) in std.iter().zip(exact_std) {
        assert!((got - want).abs() < 1e-12, "std {got} vs {want}");
    }
    // The normalized output of feature 1, sample 3: (8 − 4) / sqrt(26/3 + 1e-5).
    let y = run.output(&g, &OutputRole::Prediction).unwrap();
    assert!((y.data[2 * 4] - 4.0 / (26.0f64 / 3.0 + 1e-5).sqrt()).abs() < 1e-12);
    // Running statistics: r ← 0.9·r + 0.1·stat, with the unbiased variance.
    let rv = run.output(&g, &OutputRole::State("0.running_var".into())).unwrap();
    assert!((rv.data[0] - (0.9 + 0.1 * 13.0)).abs() < 1e-12, "unbiased variance of 1,3,8 is 13");
}
