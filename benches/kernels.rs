//! Kernel benchmarks: `cargo bench --bench kernels`.
//!
//! The dense layer [64,784]·[784,256] + bias + relu as Percept compiles it (NT: weights
//! stored [out, in] as in PyTorch), the plain NN product through the same GEMM, and the
//! `matrixmultiply` crate's sgemm on the same shapes, in one run; then LeNet-5's and
//! cnn_bn's convolutions with their relu. Percept's layers run in four variants: the
//! host's native micro-kernel or the pure-Cranelift one, fused (GEMM + bias + relu in one
//! kernel) or unfused (a kernel per op), all on one thread. Throughput is reported in
//! FLOPs of the GEMM (divan's `counter`), so the variants compare directly.

use divan::counter::ItemsCount;
use divan::Bencher;
use percept::compiler::codegen::{compile, CodegenOptions, JitExecutable, MicroChoice};
use percept::compiler::exec::{self, Executable, Feed, StateLayout, StateStore};
use percept::compiler::ir::{Graph, Mode, Origin, OutputRole, Phase};
use percept::compiler::ops::{MatMul, Op, Source, SourceKind, StepCtx};

fn main() {
    divan::main();
}

const M: usize = 64;
const K: usize = 784;
const N: usize = 256;

fn spec(text: &str) -> percept::compiler::ModelSpec {
    percept::compiler::parse_and_check(&percept::compiler::SourceFile::new("b.nn", text)).unwrap()
}

/// The compiled variants of a layer: micro-kernel × fusion.
const VARIANTS: [&str; 4] = ["native fused", "native unfused", "cranelift fused", "cranelift unfused"];

fn options(variant: &str) -> CodegenOptions {
    CodegenOptions {
        fuse: variant.ends_with(" fused"),
        micro: if variant.starts_with("native") { MicroChoice::Auto } else { MicroChoice::Cranelift },
        ..CodegenOptions::default()
    }
}

/// A compiled forward pass of a one-layer model, its state and an input.
fn forward(text: &str, batch: usize, opts: CodegenOptions) -> (JitExecutable, StateStore, Vec<f32>) {
    let spec = spec(text);
    let layout = StateLayout::new(&spec, &[]);
    let mut store = StateStore::new(layout.clone());
    for (i, v) in store.data_mut().iter_mut().enumerate() {
        *v = ((i % 17) as f32 - 8.0) * 0.01;
    }
    let g = exec::eval_program(&spec, batch, false, &[]).unwrap();
    let exe = compile(&g, &layout, opts).unwrap();
    let per: usize = spec.input.shape.iter().product();
    let x = (0..batch * per).map(|i| (i % 7) as f32 * 0.1).collect();
    (exe, store, x)
}

/// The GEMM FLOPs of a compiled program (what the counters count).
fn gemm_flops(exe: &JitExecutable) -> usize {
    exe.program().kernels.iter().filter(|k| k.micro.is_some()).map(|k| k.flops).sum::<u64>() as usize
}

#[divan::bench(args = VARIANTS)]
fn dense_784_256_bias_relu(b: Bencher, variant: &str) {
    let (mut exe, mut store, x) = forward("model d { input [784] dense(256) relu }", M, options(variant));
    b.counter(ItemsCount::new(2 * M * K * N)).bench_local(|| {
        exe.run(&mut store, &Feed { data: &x, target: None }, &StepCtx::default()).unwrap();
    });
}

#[divan::bench]
fn gemm_nn_64_784_256_percept(b: Bencher) {
    let o = Origin { tag: "g".into(), phase: Phase::Forward };
    let mut g = Graph::new("g", M, Mode::Eval);
    let a = g.push(Op::Source(Source { kind: SourceKind::Data, shape: vec![M, K] }), &[], o.clone()).unwrap()[0];
    let w = spec("model w { input [784] dense(256, bias: false) }");
    let layout = StateLayout::new(&w, &[]);
    // The weight slot holds 784·256 floats; read it as a [784, 256] matrix.
    let p =
        g.push(Op::Source(Source { kind: SourceKind::Param("0.weight".into()), shape: vec![K, N] }), &[], o.clone());
    let p = p.unwrap()[0];
    let c = g.push(Op::MatMul(MatMul { trans_a: false, trans_b: false }), &[a, p], o).unwrap()[0];
    g.outputs.push((OutputRole::Prediction, c));
    let mut store = StateStore::new(layout.clone());
    store.data_mut().iter_mut().for_each(|v| *v = 0.25);
    let mut exe = compile(&g, &layout, CodegenOptions::default()).unwrap();
    let x = vec![0.5f32; M * K];
    b.counter(ItemsCount::new(2 * M * K * N)).bench_local(|| {
        exe.run(&mut store, &Feed { data: &x, target: None }, &StepCtx::default()).unwrap();
    });
}

#[divan::bench]
fn gemm_nn_64_784_256_matrixmultiply(b: Bencher) {
    let a = vec![0.5f32; M * K];
    let w = vec![0.25f32; K * N];
    let mut c = vec![0.0f32; M * N];
    b.counter(ItemsCount::new(2 * M * K * N)).bench_local(|| {
        // SAFETY: the pointers and strides describe the three buffers above exactly.
        unsafe {
            matrixmultiply::sgemm(
                M,
                K,
                N,
                1.0,
                a.as_ptr(),
                K as isize,
                1,
                w.as_ptr(),
                N as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                N as isize,
                1,
            )
        }
    });
}

fn conv_bench(b: Bencher, model: &str, variant: &str) {
    let (mut exe, mut store, x) = forward(model, M, options(variant));
    b.counter(ItemsCount::new(gemm_flops(&exe))).bench_local(|| {
        exe.run(&mut store, &Feed { data: &x, target: None }, &StepCtx::default()).unwrap();
    });
}

#[divan::bench(args = VARIANTS)]
fn lenet5_conv1_relu(b: Bencher, variant: &str) {
    conv_bench(b, "model c { input [1, 28, 28] conv2d(6, kernel: 5, padding: 2) relu }", variant);
}

#[divan::bench(args = VARIANTS)]
fn lenet5_conv2_relu(b: Bencher, variant: &str) {
    conv_bench(b, "model c { input [6, 14, 14] conv2d(16, kernel: 5) relu }", variant);
}

#[divan::bench(args = VARIANTS)]
fn cnn_bn_conv2_relu(b: Bencher, variant: &str) {
    conv_bench(b, "model c { input [32, 14, 14] conv2d(64, kernel: 3, padding: 1) relu }", variant);
}
