//! Finite-difference gradient checks in f64 for every op and loss, through the whole
//! pipeline: a tiny model in the language → training graph (autodiff) → interpreter.
//! Analytic gradients of every parameter and of the input must match central
//! differences: |a − b| ≤ 1e-6·max(|a|, |b|) + 1e-9.

mod common;

use common::{random_feeds, spec, train_graph, Rng};
use percept_compiler::autodiff::{differentiate, GradOptions};
use percept_compiler::interp;
use percept_compiler::ir::{Graph, OutputRole};
use percept_compiler::ops::{SourceKind, StepCtx};
use percept_compiler::tensor::Tensor;
use std::collections::HashMap;

const CX: StepCtx = StepCtx { seed: 11, step: 5, lr: 0.1 };

fn loss(g: &Graph, feeds: &HashMap<SourceKind, Tensor<f64>>) -> f64 {
    let run = interp::run(g, &|k| feeds.get(k).cloned(), &CX, false).unwrap();
    run.output(g, &OutputRole::Loss).unwrap().data[0]
}

/// Check every gradient of the model at a random point; returns how many were checked.
fn gradcheck(text: &str, batch: usize, seed: u64) -> usize {
    let spec = spec(text);
    let fwd = train_graph(&spec, batch);
    let g = differentiate(&fwd, &GradOptions { params: None, input_grad: true }).unwrap();
    let mut rng = Rng(seed);
    let feeds = random_feeds::<f64>(&fwd, &spec, &mut rng);
    let run = interp::run(&g, &|k| feeds.get(k).cloned(), &CX, false).unwrap();
    let mut checked = 0;
    for (role, v) in &g.outputs {
        let kind = match role {
            OutputRole::Grad(name) => SourceKind::Param(name.clone()),
            OutputRole::InputGrad => SourceKind::Data,
            _ => continue,
        };
        let analytic = run.get(*v).unwrap();
        for i in 0..analytic.numel() {
            let h = 1e-5;
            let mut f = feeds.clone();
            let base = f[&kind].data[i];
            f.get_mut(&kind).unwrap().data[i] = base + h;
            let up = loss(&fwd, &f);
            f.get_mut(&kind).unwrap().data[i] = base - h;
            let down = loss(&fwd, &f);
            let numeric = (up - down) / (2.0 * h);
            let a = analytic.data[i];
            let tol = 1e-6 * a.abs().max(numeric.abs()) + 1e-9;
            assert!((a - numeric).abs() <= tol, "{role} [{i}] of {text}: analytic {a:e}, numeric {numeric:e}");
            checked += 1;
        }
    }
    assert!(checked > 0);
    checked
}

#[test]
fn dense_sigmoid_softmax_cross_entropy() {
    gradcheck("model m { input [5] dense(4) sigmoid dense(3) loss softmax_cross_entropy }", 3, 1);
}

#[test]
fn tanh_relu_flatten_mse() {
    gradcheck("model m { input [2, 2, 2] flatten dense(6) tanh dense(5) relu dense(2) loss mse }", 4, 2);
}

#[test]
fn conv2d_with_stride_2_and_padding() {
    gradcheck(
        "model m { input [2, 7, 6] conv2d(3, kernel: 3, stride: 2, padding: 1) flatten dense(3) loss softmax_cross_entropy }",
        2,
        3,
    );
    gradcheck(
        "model m { input [1, 6, 7] conv2d(2, kernel: [2, 3], stride: [2, 1], padding: [0, 2], bias: false) flatten loss mse }",
        3,
        4,
    );
    gradcheck(
        "model m { input [2, 5, 5] conv2d(2, kernel: 3, stride: 2, padding: same) flatten dense(2) loss mse }",
        2,
        5,
    );
}

#[test]
fn maxpool_without_ties() {
    gradcheck("model m { input [2, 6, 6] maxpool(2) flatten dense(3) loss softmax_cross_entropy }", 2, 6);
    // Overlapping windows add their gradients.
    gradcheck("model m { input [1, 5, 5] maxpool(3, stride: 1) flatten loss mse }", 2, 7);
}

#[test]
fn avgpool_and_global_avgpool() {
    gradcheck("model m { input [2, 5, 6] avgpool(2, stride: [1, 2]) flatten dense(2) loss mse }", 2, 8);
    gradcheck(
        "model m { input [3, 4, 4] conv2d(4, kernel: 3) global_avgpool dense(3) loss softmax_cross_entropy }",
        2,
        9,
    );
}

#[test]
fn global_maxpool_without_ties() {
    gradcheck(
        "model m { input [3, 4, 5] conv2d(4, kernel: 3, padding: 1) global_maxpool dense(3) loss softmax_cross_entropy }",
        2,
        19,
    );
    // A 1x1 plane: the only element wins.
    gradcheck("model m { input [2, 1, 1] global_maxpool dense(2) loss mse }", 3, 20);
}

#[test]
fn batchnorm_in_training_mode() {
    gradcheck("model m { input [4] dense(3) batchnorm dense(2) loss mse }", 5, 10);
    gradcheck(
        "model m { input [2, 3, 3] conv2d(3, kernel: 2) batchnorm(eps: 0.001) relu flatten dense(2) loss mse }",
        3,
        11,
    );
}

#[test]
fn maxout_elu_leaky_relu() {
    gradcheck("model m { input [4] maxout(3, pieces: 3) elu(alpha: 1.5) dense(2) loss softmax_cross_entropy }", 3, 12);
    gradcheck("model m { input [4] dense(5) leaky_relu dense(5) leaky_relu(slope: -0.3) dense(2) loss mse }", 3, 13);
}

#[test]
fn binary_cross_entropy_and_mse() {
    gradcheck("model m { input [3] dense(2) sigmoid loss binary_cross_entropy }", 4, 14);
    gradcheck("model m { input [3] dense(4) sigmoid loss mse }", 4, 15);
}

#[test]
fn add_of_a_named_statement() {
    gradcheck("model m { input x: [4] a: dense(4) tanh dense(4) add(a) add(x) dense(2) loss mse }", 3, 16);
}

#[test]
fn dropout_with_a_fixed_mask() {
    // The mask is a hash of (seed, step, statement, element): fixed within the check.
    let n = gradcheck("model m { input [8] dense(8) dropout(p: 0.5) dense(2) loss mse }", 4, 17);
    assert!(n > 0);
}

#[test]
fn softmax_as_an_output() {
    gradcheck("model m { input [4] dense(3) softmax loss mse }", 3, 18);
}

#[test]
fn dropout_masks_drop_about_p_and_scale_the_rest() {
    let spec = spec("model m { input [1000] dropout(p: 0.3) }");
    let g = percept_compiler::build::forward_graph(
        &spec,
        2,
        &percept_compiler::build::BuildOptions { loss: false, ..percept_compiler::build::BuildOptions::train() },
    )
    .unwrap();
    let x = Tensor::<f64>::full(&[2, 1000], 1.0);
    let y = |step| {
        let cx = StepCtx { seed: 1, step, lr: 0.0 };
        interp::run(&g, &|_| Some(x.clone()), &cx, false).unwrap().output(&g, &OutputRole::Prediction).unwrap().clone()
    };
    let a = y(0);
    let dropped = a.data.iter().filter(|&&v| v == 0.0).count();
    assert!((500..700).contains(&dropped), "dropped {dropped} of 2000 at p = 0.3");
    assert!(a.data.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-12));
    assert_ne!(a.data, y(1).data, "a new step draws a new mask");
    assert_eq!(a.data, y(0).data, "the same step gives the same mask");
}

/// Branches: a statement reading an earlier one with `from:` (both paths' gradients sum
/// where they meet) and one reading the input again.
#[test]
fn branches_with_from() {
    gradcheck(
        "model m { input [2, 5, 5] stem: conv2d(3, kernel: 3, padding: 1) tanh main: conv2d(3, kernel: 3, stride: 2, padding: 1) \
         conv2d(3, kernel: 1, stride: 2, from: stem) add(main) flatten dense(2) loss softmax_cross_entropy }",
        2,
        41,
    );
    gradcheck("model m { input x: [4] dense(3) s: sigmoid dense(3, from: x) add(s) dense(2) loss mse }", 3, 42);
    // One add of three operands: each gets the whole upstream gradient.
    gradcheck("model m { input x: [4] a: dense(4) b: tanh dense(4, from: x) add(a, b, x) dense(2) loss mse }", 3, 43);
}

/// Concatenation along channels: each operand gets its slice of the upstream gradient;
/// images (an Inception-style pair of branches) and flat features, the input included.
#[test]
fn concatenation() {
    gradcheck(
        "model m { input [2, 5, 5] stem: conv2d(3, kernel: 3, padding: 1) a: tanh conv2d(2, kernel: 1, from: stem) \
         relu concat(a, stem) conv2d(2, kernel: 3) flatten dense(2) loss softmax_cross_entropy }",
        2,
        44,
    );
    gradcheck("model m { input x: [4] a: dense(3) sigmoid dense(2) concat(x, a) dense(2) loss mse }", 3, 45);
}

/// Nearest-neighbour upsampling: each input gets the sum of its block's gradients.
#[test]
fn upsampling() {
    gradcheck(
        "model m { input [2, 3, 3] conv2d(2, kernel: 2) tanh upsample([2, 3]) conv2d(2, kernel: 3) flatten dense(2) \
         loss softmax_cross_entropy }",
        2,
        46,
    );
}

/// Grouped and dilated convolutions, depthwise among them: each filter sees its group.
#[test]
fn grouped_and_dilated_convolutions() {
    gradcheck(
        "model m { input [4, 6, 5] conv2d(6, kernel: 3, stride: [1, 2], padding: same, dilation: [2, 1], groups: 2) \
         tanh conv2d(6, kernel: 2, dilation: 2, groups: 6, bias: false) flatten dense(2) loss softmax_cross_entropy }",
        2,
        47,
    );
}

/// A transposed convolution: the forward is a convolution's input gradient, so its own
/// gradients are a convolution (to the input) and a weight gradient.
#[test]
fn transposed_convolutions() {
    gradcheck(
        "model m { input [2, 3, 4] conv_transpose2d(4, kernel: 3, stride: 2, padding: 1, output_padding: [1, 0]) \
         sigmoid conv_transpose2d(2, kernel: [2, 3], stride: [1, 2], dilation: [2, 1], groups: 2) flatten dense(2) \
         loss softmax_cross_entropy }",
        2,
        48,
    );
}

/// Padded pooling: max pooling never picks the padding; average pooling divides by the
/// whole window or by its positions inside the input.
#[test]
fn padded_pooling() {
    gradcheck(
        "model m { input [2, 5, 6] conv2d(2, kernel: 1) maxpool(3, stride: 2, padding: 1) tanh \
         avgpool(3, stride: 1, padding: 1) sigmoid avgpool([2, 3], stride: [1, 2], padding: [1, 1], \
         count_include_pad: false) flatten dense(2) loss softmax_cross_entropy }",
        2,
        49,
    );
}

/// mse on an image output (a reconstruction): every value compared, the mean over all.
#[test]
fn mse_on_an_image_output() {
    gradcheck(
        "model m { input [1, 4, 4] conv2d(2, kernel: 3, stride: 2, padding: 1) tanh \
         conv_transpose2d(1, kernel: 3, stride: 2, padding: 1, output_padding: 1) loss mse }",
        2,
        50,
    );
}

/// Bilinear upsampling (align_corners=False): edges clamp, interior weights repeat.
#[test]
fn bilinear_upsampling() {
    gradcheck(
        "model m { input [2, 3, 4] conv2d(2, kernel: 2) tanh upsample([2, 3], mode: bilinear) \
         upsample(1, mode: bilinear) conv2d(2, kernel: 3, stride: 2) flatten dense(2) loss softmax_cross_entropy }",
        2,
        51,
    );
    gradcheck("model m { input [1, 1, 5] upsample([3, 4], mode: bilinear) flatten dense(2) loss mse }", 2, 52);
}
