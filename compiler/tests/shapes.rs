//! Shapes and parameter counts of the bundled examples.

mod common;

use common::{example, spec};

fn counts(name: &str) -> (usize, usize) {
    let s = spec(&example(name));
    (s.trainable_count(), s.running_count())
}

#[test]
fn parameter_counts_of_the_examples() {
    assert_eq!(counts("lenet5.nn"), (61_706, 0));
    assert_eq!(counts("mlp.nn"), (235_146, 0));
    assert_eq!(counts("cnn_bn.nn"), (421_834, 192));
    assert_eq!(counts("perceptron.nn"), (3, 0));
    assert_eq!(counts("xor.nn"), (33, 0));
    assert_eq!(counts("activations.nn"), (120_522, 0));
    assert_eq!(counts("residual.nn"), (5_034, 64));
    assert_eq!(counts("strided.nn"), (14_730, 0));
}

fn shapes(name: &str) -> Vec<(String, Vec<usize>)> {
    spec(&example(name)).layers.iter().map(|l| (l.prefix.clone(), l.out_shape.clone())).collect()
}

#[test]
fn output_shapes_of_strided() {
    let want: Vec<(&str, Vec<usize>)> = vec![
        ("0", vec![8, 14, 14]),
        ("1", vec![8, 14, 14]),
        ("2", vec![16, 7, 7]),
        ("3", vec![16, 7, 7]),
        ("4", vec![32, 4, 7]),
        ("5", vec![32, 4, 7]),
        ("6", vec![32, 3, 6]),
        ("7", vec![576]),
        ("8", vec![10]),
    ];
    let got = shapes("strided.nn");
    assert_eq!(got, want.into_iter().map(|(n, s)| (n.to_string(), s)).collect::<Vec<_>>());
}

#[test]
fn output_shapes_of_residual() {
    let got = shapes("residual.nn");
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["stem", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "head"]);
    for (name, shape) in &got[..9] {
        assert_eq!(shape, &[16, 28, 28], "{name}");
    }
    assert_eq!(got[9].1, [16, 14, 14]);
    assert_eq!(got[10].1, [16]);
    assert_eq!(got[11].1, [10]);
}

#[test]
fn pytorch_parameter_names() {
    let s = spec(&example("cnn_bn.nn"));
    let names: Vec<&str> = s.params().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
            "4.weight",
            "4.bias",
            "5.weight",
            "5.bias",
            "5.running_mean",
            "5.running_var",
            "5.num_batches_tracked",
            "9.weight",
            "9.bias",
            "11.weight",
            "11.bias"
        ]
    );
    let r = spec(&example("residual.nn"));
    assert_eq!(r.params().next().unwrap().name, "stem.weight");
    assert_eq!(r.params().last().unwrap().name, "head.bias");
}

#[test]
fn same_padding_gives_ceil_of_input_over_stride() {
    for (size, stride) in [(7usize, 2usize), (8, 2), (9, 3), (28, 2), (5, 1)] {
        let s = spec(&format!(
            "model m {{ input [1, {size}, {size}] conv2d(1, kernel: 3, stride: {stride}, padding: same) }}"
        ));
        assert_eq!(s.output_shape()[1], size.div_ceil(stride), "size {size} stride {stride}");
    }
}

#[test]
fn separators_and_comments_are_optional() {
    let a = spec("model m { input [4]; dense(3); relu; dense(2) }");
    let b = spec("model m {\n  input [4] # in\n  dense(3) // hidden\n  relu\n\n  dense(2)\n}\n");
    let c = spec("model m{input[4]dense(3)relu dense(2)}");
    assert_eq!(a.canonical, b.canonical);
    assert_eq!(a.canonical, c.canonical);
    let view = |s: &percept_compiler::ModelSpec| {
        s.layers.iter().map(|l| (l.layer.clone(), l.out_shape.clone())).collect::<Vec<_>>()
    };
    assert_eq!(view(&a), view(&c));
}

#[test]
fn integers_are_accepted_where_floats_are_expected() {
    let s = spec("model m { input [4] elu(alpha: 2) batchnorm(eps: 1, momentum: 0) }");
    assert_eq!(
        s.layers[0].layer,
        percept_compiler::layers::Layer::Activation(percept_compiler::layers::Activation::Elu { alpha: 2.0 })
    );
}

#[test]
fn a_model_without_loss_checks() {
    let s = spec("model m { input [4] dense(2) softmax }");
    assert!(s.loss.is_none());
    assert!(s.summary().contains("forward only"));
}

/// The checker's per-statement shapes (with diagnostics for users) and the ops' shape
/// rules (on the graph built from the checked model) are two statements of one rule: every
/// statement's output in the forward graph, in training and evaluation, has the checker's
/// shape — for every example and 300 random models.
#[test]
fn the_checker_agrees_with_the_ops_shape_rules() {
    use percept_compiler::build::{forward_graph, BuildOptions};
    use percept_compiler::ir::OutputRole;
    let agree = |spec: &percept_compiler::ModelSpec, what: &str| {
        for base in [BuildOptions::train(), BuildOptions::inference()] {
            let opts = BuildOptions { expose: (0..spec.layers.len()).collect(), ..base };
            let g = forward_graph(spec, 3, &opts).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            for l in &spec.layers {
                let v = g.output(&OutputRole::Activation(l.prefix.clone())).unwrap();
                let mut want = vec![3];
                want.extend(&l.out_shape);
                assert_eq!(g.shape(v), want.as_slice(), "{what}: statement {} ({})", l.prefix, l.text);
            }
        }
    };
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "nn") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            agree(&spec(&example(&name)), &name);
        }
    }
    let mut rng = common::Rng(0x5eed);
    for _ in 0..300 {
        let (text, _) = common::random_model(&mut rng);
        agree(&spec(&text), &text);
    }
}
