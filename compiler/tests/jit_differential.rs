//! The JIT against the reference interpreter: for every op, and for random small networks
//! (random sequences of the language's layers with random channel counts, kernel sizes,
//! strides, paddings, batch sizes including odd ones), the loss, the prediction, every
//! gradient, the running statistics and the parameters and optimizer state after the
//! update must agree, in training and in evaluation mode.
//!
//! Tolerance, per element of each compared tensor t:
//!     |jit − interp| ≤ atol + rtol · S(t),   atol = 1e-5, rtol = 2e-4,
//! where S(t), standing for Σ|terms| of the sums that make t's elements, is taken as the
//! largest |interp| element of t (each element of a layer sums terms of that scale; the
//! two sides differ only in summation order, FMA contraction and the polynomial exp).
//! Cases alternate between fused and unfused kernels, between the host's best native
//! micro-kernel, the AVX2 one and the pure-Cranelift one, and between 1, 2 and 3
//! threads — and every case is also run on the two other thread counts, which must give
//! the same bits. Half run with run-time bounds checks and freed-memory poisoning on.

mod common;

use common::{random_model, Rng};
use percept_compiler::codegen::{compile, CodegenOptions, MicroChoice};
use percept_compiler::exec::{self, Executable, Feed, InterpExecutable, Optimizer, SlotKind, StateLayout, StateStore};
use percept_compiler::ir::Graph;
use percept_compiler::layers::Loss;
use percept_compiler::ops::StepCtx;
use percept_compiler::{parse_and_check, ModelSpec, SourceFile};
use proptest::prelude::*;

const ATOL: f32 = 1e-5;
const RTOL: f32 = 2e-4;

fn close(what: &str, a: &[f32], b: &[f32], ctx: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ\n{ctx}");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = (x - y).abs() <= ATOL + RTOL * scale || (x.is_nan() && y.is_nan());
        assert!(ok, "{what}[{i}]: jit {x} vs interp {y} (scale {scale})\n{ctx}");
    }
}

fn random_store(layout: &StateLayout, rng: &mut Rng) -> StateStore {
    let mut store = StateStore::new(layout.clone());
    for slot in &layout.slots {
        let (lo, hi) = match slot.kind {
            SlotKind::Running if slot.name.ends_with("running_var") => (0.5, 1.5),
            SlotKind::OptState if slot.name.ends_with("exp_avg_sq") => (0.0, 0.01),
            SlotKind::Grad => (0.0, 0.0),
            _ => (-0.5, 0.5),
        };
        for v in &mut store.data_mut()[slot.range()] {
            *v = rng.uniform(lo, hi) as f32;
        }
    }
    store
}

fn targets(spec: &ModelSpec, batch: usize, rng: &mut Rng) -> Vec<f32> {
    // Values per sample (mse compares every value of an image output).
    let k: usize = spec.output_shape().iter().product();
    match spec.loss.map(|l| l.loss) {
        Some(Loss::SoftmaxCrossEntropy) => (0..batch).map(|_| rng.below(k) as f32).collect(),
        Some(Loss::BinaryCrossEntropy) => (0..batch * k).map(|_| rng.below(2) as f32).collect(),
        _ => (0..batch * k).map(|_| rng.uniform(-1.0, 1.0) as f32).collect(),
    }
}

/// Run `graph` on both back ends from the same store; compare fetches and stores.
fn compare(
    graph: &Graph,
    store: &StateStore,
    feed: &Feed,
    cx: &StepCtx,
    opts: CodegenOptions,
    ctx: &str,
) -> StateStore {
    let mut s_int = store.clone();
    let mut s_jit = store.clone();
    let f_int =
        InterpExecutable::new(graph.clone()).run(&mut s_int, feed, cx).unwrap_or_else(|e| panic!("interp: {e}\n{ctx}"));
    let mut jit = compile(graph, store.layout(), opts).unwrap_or_else(|e| panic!("compile: {e}\n{ctx}"));
    let f_jit = jit.run(&mut s_jit, feed, cx).unwrap_or_else(|e| panic!("jit: {e}\n{ctx}"));
    // Any other thread count computes the same bits.
    for threads in [1, 2, 3].into_iter().filter(|&t| t != opts.threads) {
        let mut other = compile(graph, store.layout(), CodegenOptions { threads, ..opts }).unwrap();
        let mut s_other = store.clone();
        let f_other = other.run(&mut s_other, feed, cx).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(s_other.data()), bits(s_jit.data()), "{threads} vs {} threads: state\n{ctx}", opts.threads);
        assert_eq!(bits(&f_other.prediction), bits(&f_jit.prediction), "{threads} threads: prediction\n{ctx}");
        assert_eq!(f_other.loss.map(f32::to_bits), f_jit.loss.map(f32::to_bits), "{threads} threads: loss\n{ctx}");
    }
    // Both back ends give a loss, or neither does.
    match (f_jit.loss, f_int.loss) {
        (Some(a), Some(b)) => close("loss", &[a], &[b], ctx),
        (None, None) => {}
        (a, b) => panic!("loss: jit {a:?} vs interp {b:?}\n{ctx}"),
    }
    assert_eq!(f_jit.input_grad.is_some(), f_int.input_grad.is_some(), "input gradient on one side only\n{ctx}");
    assert_eq!(f_jit.activations.len(), f_int.activations.len(), "activations\n{ctx}");
    close("prediction", &f_jit.prediction, &f_int.prediction, ctx);
    for slot in &store.layout().slots {
        close(&format!("{:?} {}", slot.kind, slot.name), &s_jit.data()[slot.range()], &s_int.data()[slot.range()], ctx);
    }
    s_int
}

/// Train step (grad + update) and evaluation of a model on both back ends.
fn check_model(text: &str, batch: usize, seed: u64, opt: Optimizer) {
    let src = SourceFile::new("gen.nn", text);
    let spec = parse_and_check(&src).unwrap_or_else(|d| panic!("{}", d.render(&src)));
    let mut rng = Rng(seed.wrapping_mul(0x9e3779b97f4a7c15) | 1);
    let layout = StateLayout::new(&spec, opt.state_suffixes());
    let store = random_store(&layout, &mut rng);
    let per: usize = spec.input.shape.iter().product();
    let data: Vec<f32> = (0..batch * per).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
    let t = targets(&spec, batch, &mut rng);
    let feed = Feed { data: &data, target: Some(&t) };
    let cx = StepCtx { seed, step: seed % 7, lr: 0.01 };
    let micro = [MicroChoice::Auto, MicroChoice::Cranelift, MicroChoice::Avx2][((seed / 3) % 3) as usize];
    let opts = CodegenOptions {
        micro,
        threads: 1 + (seed / 9 % 3) as usize,
        fuse: !seed.is_multiple_of(3),
        checks: seed.is_multiple_of(2),
        poison: seed.is_multiple_of(2),
        memory_budget: None,
    };
    let ctx = format!("model (batch {batch}, seed {seed}, {opt:?}):\n{text}");
    let grad = exec::grad_program(&spec, batch, &[]).unwrap_or_else(|d| panic!("{}\n{ctx}", d.render(&src)));
    let after = compare(&grad, &store, &feed, &cx, opts, &ctx);
    let update = exec::update_program(&spec, &opt, &[]);
    compare(&update, &after, &Feed::EMPTY, &cx, opts, &ctx);
    let eval = exec::eval_program(&spec, batch, true, &[]).unwrap();
    compare(&eval, &store, &feed, &cx, opts, &ctx);
}

fn optimizer(seed: u64) -> Optimizer {
    match seed % 3 {
        0 => Optimizer::Sgd { momentum: 0.9, nesterov: seed.is_multiple_of(2), weight_decay: 1e-3 },
        1 => Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay: 0.0 },
        _ => Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_networks_agree(seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let (text, batch) = random_model(&mut rng);
        check_model(&text, batch, seed, optimizer(seed));
    }
}

/// Each op of the IR, through a small model that uses it (odd sizes on purpose), and the
/// batch size it runs at.
const OP_CASES: &[(&str, usize)] = &[
        ("input [7] dense(5) loss softmax_cross_entropy", 3),
        ("input [7] dense(5, bias: false) relu dense(3) loss mse", 5),
        ("input [3, 9, 7] conv2d(5, kernel: 3, stride: 2, padding: 1) flatten dense(2) loss mse", 3),
        ("input [2, 8, 8] conv2d(3, kernel: [2, 4], stride: [1, 2], padding: [1, 0]) relu flatten dense(4) loss softmax_cross_entropy", 2),
        ("input [2, 9, 9] conv2d(4, kernel: 5, padding: same) maxpool(2) flatten dense(3) loss softmax_cross_entropy", 3),
        ("input [3, 7, 7] maxpool(3, stride: 2) avgpool(2, stride: 1) flatten dense(3) loss mse", 2),
        // A convolution that pools each image in its kernel after a residual add (in
        // evaluation from one-image scratch, the add's operand read at the image's place).
        ("input [2, 8, 8] stem: conv2d(3, kernel: 3, padding: same) relu conv2d(3, kernel: 3, padding: same) add(stem) relu maxpool(2) flatten dense(3) loss softmax_cross_entropy", 3),
        ("input x: [2, 8, 8] a: conv2d(4, kernel: 1, stride: 2) conv2d(4, kernel: 3, stride: 2, padding: 1, from: x) add(a) tanh avgpool(2) flatten dense(3) loss mse", 3),
        ("input [2, 7, 7] stem: conv2d(2, kernel: 3, padding: 1) conv2d(2, kernel: 3, padding: 1) add(stem) maxpool(3, stride: 1, padding: 1) flatten dense(2) loss mse", 1),
        ("input [4, 9, 9] conv2d(4, kernel: 3, padding: 2, dilation: 2, groups: 2) relu maxpool(2) flatten dense(2) loss mse", 1),
        ("input [3, 6, 6] conv2d(3, kernel: 3, padding: 1, groups: 3) elu avgpool(2, stride: 1) flatten dense(2) loss mse", 2),
        // Batch norm's kernel pooling each channel it normalizes (training).
        ("input [2, 8, 8] conv2d(3, kernel: 3, padding: 1) batchnorm relu maxpool(2) flatten dense(3) loss softmax_cross_entropy", 3),
        ("input [2, 7, 7] stem: conv2d(3, kernel: 3, padding: 1) conv2d(3, kernel: 3, padding: 1) batchnorm add(stem) relu avgpool(3, stride: 2) flatten dense(2) loss mse", 2),
        ("input [1, 9, 9] conv2d(2, kernel: 3) batchnorm tanh maxpool(3, stride: 2, padding: 1) flatten dense(2) loss mse", 3),
        ("input [3, 5, 6] global_avgpool dense(2) loss mse", 4),
        ("input [3, 5, 6] global_maxpool dense(2) loss mse", 4),
        ("input [2, 1, 1] global_maxpool dense(2) loss mse", 3),
        // global max pooling's gradient takes an activation derivative (one winner per plane).
        ("input [4, 3, 7] conv2d(5, kernel: 3, padding: 1) tanh global_maxpool dense(3) loss softmax_cross_entropy", 3),
        ("input [3, 5, 5] conv2d(4, kernel: 3) batchnorm relu flatten dense(2) loss mse", 3),
        ("input [9] dense(6) batchnorm(momentum: 0.3) tanh dense(2) loss mse", 5),
        ("input [9] maxout(4, pieces: 3) elu dense(3) loss softmax_cross_entropy", 3),
        ("input [9] dense(6) sigmoid dense(6) leaky_relu(slope: 0.05) dense(4) loss softmax_cross_entropy", 3),
        ("input [9] dense(6) dropout(p: 0.4) dense(3) sigmoid loss binary_cross_entropy", 7),
        ("input x: [6] a: dense(6) tanh add(a) add(x) dense(2) softmax loss mse", 3),
        ("input [1, 28, 28] conv2d(6, kernel: 5, padding: 2) relu maxpool(2) conv2d(16, kernel: 5) relu maxpool(2) flatten dense(120) relu dense(84) relu dense(10) loss softmax_cross_entropy", 5),
        ("input [300] dense(257) relu dense(300) loss softmax_cross_entropy", 13),
        // A batch of one: dense layers as dot products (odd depth and width: tails).
        ("input [13] dense(7) relu dense(5, bias: false) tanh dense(37) loss softmax_cross_entropy", 1),
        // Epilogues on non-GEMM kernels: pooling + activation, batch norm + activation, a
        // pooling gradient + activation derivative (disjoint windows), add + activation.
        ("input [2, 6, 6] conv2d(3, kernel: 3, padding: 1) sigmoid avgpool(2) tanh flatten dense(3) loss mse", 3),
        ("input [3, 7, 7] batchnorm elu maxpool(3) leaky_relu flatten dense(2) loss mse", 4),
        // Batch norm between a convolution and 2x2 max pooling (cnn_bn's block): the
        // convolution's bias gradient beside batch norm's, the pooling gradient with
        // derivatives; odd heights and widths leave a row or column no window covers.
        ("input [2, 9, 10] conv2d(4, kernel: 3, padding: 1) batchnorm relu maxpool(2) flatten dense(3) loss softmax_cross_entropy", 3),
        ("input [3, 6, 11] conv2d(3, kernel: 3, padding: 1) batchnorm tanh relu maxpool(2) flatten dense(2) loss mse", 2),
        // Batch norm's partials computed by the convolution that stores each image: a direct
        // convolution without a bias (its kernel has no epilogue), then im2col with one.
        ("input [1, 28, 28] conv2d(6, kernel: 5, padding: 2, bias: false) batchnorm relu maxpool(2) conv2d(5, kernel: 3, stride: 2) batchnorm flatten dense(3) loss softmax_cross_entropy", 3),
        ("input [2, 6, 6] tanh maxpool(2, stride: 1) relu flatten dense(2) loss mse", 2),
        ("input x: [8] tanh relu add(x) sigmoid dense(2) loss mse", 3),
        // Branches with `from:`: a ResNet downsampling block (1x1 strided shortcut), and a
        // statement reading the input again.
        ("input [2, 8, 8] stem: conv2d(4, kernel: 3, padding: 1) relu conv2d(6, kernel: 3, stride: 2, padding: 1) relu main: conv2d(6, kernel: 3, padding: 1) conv2d(6, kernel: 1, stride: 2, from: stem) add(main) relu flatten dense(3) loss softmax_cross_entropy", 3),
        ("input x: [5] dense(4) a: tanh dense(4, from: x) add(a) dense(2) loss mse", 4),
        ("input x: [6] a: dense(6) b: relu dense(6, from: x) add(a, b, x) dense(2) loss mse", 3),
        // Concatenation: an Inception-style block (two branches of the stem, the stem
        // itself) and flat features with the input.
        ("input [2, 6, 6] stem: conv2d(3, kernel: 3, padding: 1) relu a: conv2d(2, kernel: 1) b: conv2d(4, kernel: 3, padding: 1, from: stem) concat(a, stem) relu maxpool(2) flatten dense(3) loss softmax_cross_entropy", 3),
        ("input x: [5] a: dense(4) tanh dense(3) concat(x, a) batchnorm dense(2) loss mse", 4),
        // An encoder–decoder's step: downsample, upsample, join with the skip.
        ("input [2, 6, 6] skip: conv2d(3, kernel: 3, padding: 1) relu maxpool(2) conv2d(4, kernel: 1) upsample(2) concat(skip) relu conv2d(2, kernel: 3, stride: 2) flatten dense(3) loss softmax_cross_entropy", 3),
        ("input [1, 3, 5] upsample([3, 2]) tanh flatten dense(2) loss mse", 2),
        // Weight gradients computed transposed (dWᵀ = col·dyᵀ: many taps, more filters
        // than a tile row holds), one with a partial row tile (45 taps), one grouped.
        ("input [5, 7, 6] conv2d(12, kernel: 3, padding: 1) relu conv2d(16, kernel: 3, stride: 2, groups: 2) flatten dense(3) loss softmax_cross_entropy", 3),
        // A depthwise-separable block (MobileNet): depthwise 3x3, then pointwise 1x1.
        ("input [4, 7, 7] conv2d(4, kernel: 3, padding: 1, groups: 4) batchnorm relu conv2d(6, kernel: 1) relu flatten dense(3) loss softmax_cross_entropy", 3),
        ("input [4, 9, 8] conv2d(6, kernel: 3, stride: [2, 1], padding: same, dilation: [2, 3], groups: 2) tanh flatten dense(2) loss mse", 3),
        ("input [2, 5, 4] upsample(2, mode: bilinear) relu upsample([3, 1], mode: bilinear) conv2d(2, kernel: 3, stride: 2) flatten dense(3) loss softmax_cross_entropy", 2),
        ("input [1, 1, 1] upsample([4, 3], mode: bilinear) flatten dense(2) loss mse", 2),
        // A reconstruction: mse on an image output.
        ("input [1, 6, 6] conv2d(3, kernel: 3, stride: 2, padding: 1) relu conv_transpose2d(1, kernel: 3, stride: 2, padding: 1, output_padding: 1) loss mse", 3),
        // A ResNet stem's padded max pooling, padded average pooling both ways.
        ("input [2, 9, 8] conv2d(3, kernel: 3, padding: 1) relu maxpool(3, stride: 2, padding: 1) avgpool(3, stride: 1, padding: 1) avgpool([3, 2], stride: [2, 1], padding: [1, 1], count_include_pad: false) flatten dense(3) loss softmax_cross_entropy", 3),
        ("input [1, 5, 6] maxpool([3, 2], stride: 1, padding: [1, 1]) maxpool(2, padding: 1) flatten dense(2) loss mse", 2),
        // Direct convolutions (stride 1, the image itself as B at the taps' offsets):
        // dilated and grouped, an input gradient; two K blocks of 216 taps forward and 48
        // rows of input gradient.
        ("input [4, 20, 18] conv2d(8, kernel: 3, padding: 2, dilation: 2, groups: 2) relu conv2d(6, kernel: 3, padding: 1) relu flatten dense(3) loss softmax_cross_entropy", 2),
        ("input [6, 10, 12] conv2d(48, kernel: 3, padding: 1) relu conv2d(5, kernel: 3, padding: 1) tanh flatten dense(2) loss mse", 3),
        // Weight gradients in the panel form (colᵀ written from the image as GEMM-ready
        // rows; few filters on the tile's rows): strided, dilated, grouped with a partial
        // row tile (3 filters a group), then a 4-wide kernel's single vector runs.
        ("input [4, 19, 23] conv2d(6, kernel: 5, stride: [2, 1], padding: 2, dilation: [1, 2], groups: 2) relu conv2d(6, kernel: 4, padding: [2, 1]) tanh flatten dense(3) loss softmax_cross_entropy", 3),
        // Rows wider than im2col's straight-line runs (70 and 72 floats: a loop, then an
        // overlapping or scalar tail), a padded stride-2 row, a padding wider than the kernel.
        ("input [2, 3, 70] conv2d(3, kernel: 3, padding: 1) relu conv2d(2, kernel: [1, 3], stride: [1, 2], padding: [0, 2]) relu conv2d(2, kernel: 1, padding: 2) flatten dense(2) loss mse", 2),
        ("input [3, 4, 5] conv_transpose2d(4, kernel: 3, stride: 2, padding: 1, output_padding: 1) relu conv_transpose2d(2, kernel: [2, 3], dilation: 2, groups: 2, bias: false) flatten dense(3) loss softmax_cross_entropy", 2),
];

#[test]
fn every_op_agrees() {
    for (i, (body, batch)) in OP_CASES.iter().enumerate() {
        for seed in 0..3u64 {
            check_model(&format!("model op {{ {body} }}"), *batch, i as u64 * 10 + seed, optimizer(seed));
        }
    }
}

/// With the layers before a pooling frozen, nothing in the backward pass reads what the
/// pooling reads: a convolution that pools keeps its image in scratch, batch norm keeps its
/// pooling kernel apart (its lowering stores its value), and both agree with the
/// interpreter.
#[test]
fn frozen_layers_before_a_pooling() {
    let cases = [
        "model f { input [1, 6, 6] conv2d(2, kernel: 3, padding: 1) relu maxpool(2) flatten dense(2) loss mse }",
        "model g { input [2, 6, 6] conv2d(3, kernel: 3, padding: 1) batchnorm relu maxpool(2) flatten dense(3) loss softmax_cross_entropy }",
    ];
    for (i, text) in cases.into_iter().enumerate() {
        let src = SourceFile::new("gen.nn", text);
        let spec = parse_and_check(&src).unwrap_or_else(|d| panic!("{}", d.render(&src)));
        let mut rng = Rng(i as u64 + 11);
        let opt = Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay: 0.0 };
        let layout = StateLayout::new(&spec, opt.state_suffixes());
        let store = random_store(&layout, &mut rng);
        let per: usize = spec.input.shape.iter().product();
        let data: Vec<f32> = (0..3 * per).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        let t = targets(&spec, 3, &mut rng);
        let feed = Feed { data: &data, target: Some(&t) };
        let cx = StepCtx { seed: 1, step: 1, lr: 0.01 };
        // Every parameter but the dense layer's (the last two).
        let mut frozen: Vec<String> = spec.params().filter(|p| p.role.trainable()).map(|p| p.name.clone()).collect();
        frozen.truncate(frozen.len() - 2);
        let grad = exec::grad_program(&spec, 3, &frozen).unwrap();
        let kernels = |fuse: bool| {
            let opts = CodegenOptions { fuse, ..CodegenOptions::default() };
            compare(&grad, &store, &feed, &cx, opts, text);
            let exe = compile(&grad, store.layout(), opts).unwrap();
            exe.program().kernels.iter().map(|k| k.name().to_string()).collect::<Vec<_>>()
        };
        let fused = kernels(true);
        assert!(fused.iter().any(|k| k.ends_with("+maxpool_2") || k.ends_with("+maxpool_3")) == (i == 0), "{fused:?}");
        kernels(false);
    }
}

/// Fusion changes which values are stored, never a value: every rule applies the same
/// operations in the same order as the kernels it replaces (an epilogue at the store, a
/// sibling summing or pooling values as they are stored), so a training step and an
/// evaluation compute the same bits fused and unfused — for every op's model and the
/// examples.
#[test]
fn fusion_keeps_the_bits() {
    let examples = ["lenet5", "cnn_bn", "residual", "strided"].map(|m| {
        let path = format!("{}/../examples/{m}.nn", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    });
    let ops = OP_CASES.iter().map(|(body, batch)| (format!("model op {{ {body} }}"), *batch));
    for (i, (text, batch)) in ops.chain(examples.into_iter().map(|t| (t, 5))).enumerate() {
        let src = SourceFile::new("gen.nn", &text);
        let spec = parse_and_check(&src).unwrap_or_else(|d| panic!("{}", d.render(&src)));
        let mut rng = Rng((i as u64).wrapping_mul(0x9e3779b97f4a7c15) | 1);
        let layout = StateLayout::new(
            &spec,
            Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay: 0.0 }.state_suffixes(),
        );
        let store = random_store(&layout, &mut rng);
        let per: usize = spec.input.shape.iter().product();
        let data: Vec<f32> = (0..batch * per).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        let t = targets(&spec, batch, &mut rng);
        let feed = Feed { data: &data, target: Some(&t) };
        let cx = StepCtx { seed: i as u64, step: 1, lr: 0.01 };
        let grad = exec::grad_program(&spec, batch, &[]).unwrap();
        let run = |fuse: bool| {
            let opts = CodegenOptions { fuse, ..CodegenOptions::default() };
            let mut s = store.clone();
            let f = compile(&grad, store.layout(), opts).unwrap().run(&mut s, &feed, &cx).unwrap();
            (s, f)
        };
        let ((s_fused, f_fused), (s_unfused, f_unfused)) = (run(true), run(false));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for slot in &layout.slots {
            let (a, b) = (&s_fused.data()[slot.range()], &s_unfused.data()[slot.range()]);
            assert_eq!(bits(a), bits(b), "{:?} {}: fused and unfused differ\n{text}", slot.kind, slot.name);
        }
        assert_eq!(bits(&f_fused.prediction), bits(&f_unfused.prediction), "prediction\n{text}");
        assert_eq!(f_fused.loss.map(f32::to_bits), f_unfused.loss.map(f32::to_bits), "loss\n{text}");
        // Evaluation, where a convolution's pooled image never leaves its kernel.
        let eval = exec::eval_program(&spec, batch, true, &[]).unwrap();
        let predict = |fuse: bool| {
            let opts = CodegenOptions { fuse, ..CodegenOptions::default() };
            compile(&eval, store.layout(), opts).unwrap().run(&mut store.clone(), &feed, &cx).unwrap().prediction
        };
        assert_eq!(bits(&predict(true)), bits(&predict(false)), "evaluation's prediction\n{text}");
    }
}
