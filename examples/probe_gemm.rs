use percept::compiler::codegen::{compile, CodegenOptions};
use percept::compiler::exec::{Executable, Feed, StateLayout, StateStore};
use percept::compiler::ir::{Graph, Mode, Origin, OutputRole, Phase};
use percept::compiler::ops::{MatMul, Op, Source, SourceKind, StepCtx};
use std::time::Instant;

fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let n = 400;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / n as f64
}

fn main() {
    let (m, k, n) = (64, 784, 256);
    let flops = 2.0 * (m * k * n) as f64;
    for (ta, tb) in [(false, false), (false, true), (true, false)] {
        let o = Origin { tag: "g".into(), layer: None, phase: Phase::Forward };
        let mut g = Graph::new("g", m, Mode::Eval);
        let ashape = if ta { vec![k, m] } else { vec![m, k] };
        let bshape = if tb { vec![n, k] } else { vec![k, n] };
        let a = g.push(Op::Source(Source { kind: SourceKind::Data, shape: ashape }), &[], o.clone()).unwrap()[0];
        let b = g.push(Op::Source(Source { kind: SourceKind::Target, shape: bshape }), &[], o.clone()).unwrap()[0];
        let c = g.push(Op::MatMul(MatMul { trans_a: ta, trans_b: tb }), &[a, b], o).unwrap()[0];
        g.outputs.push((OutputRole::Prediction, c));
        let spec = percept::compiler::parse_and_check(&percept::compiler::SourceFile::new(
            "e.nn",
            "model e { input [1] relu }",
        ))
        .unwrap();
        let layout = StateLayout::new(&spec, &[]);
        let mut store = StateStore::new(layout.clone());
        let mut exe = compile(&g, &layout, CodegenOptions::default()).unwrap();
        let x = vec![0.5f32; m * k];
        let w = vec![0.25f32; k * n];
        let s = time(|| {
            exe.run(&mut store, &Feed { data: &x, target: Some(&w) }, &StepCtx::default()).unwrap();
        });
        println!(
            "matmul ta={ta} tb={tb}: {:.1} us, {:.1} GFLOP/s (includes copying {} KB in)",
            s * 1e6,
            flops / s / 1e9,
            (m * k + k * n) * 4 / 1024
        );
    }
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let s = time(|| unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    });
    println!("matrixmultiply NN: {:.1} us, {:.1} GFLOP/s", s * 1e6, flops / s / 1e9);
    let mut big = vec![0.0f32; m * k + k * n];
    let s = time(|| {
        big.copy_from_slice(&vec![0.1f32; m * k + k * n]);
    });
    println!("copying the inputs alone: {:.1} us", s * 1e6);
}
