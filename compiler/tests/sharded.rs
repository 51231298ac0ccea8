//! The grad program of a data-parallel shard (`exec::shard_batchnorm`): batch norm split
//! at collective points where its sums are added up across processes. K identical shards
//! (each process holding the same samples, the collective multiplying by K) must train
//! exactly what one process trains on the K-fold batch — on both back ends, for batch
//! norm over features and channels, every loss, and models with two batch norms.

mod common;

use common::{spec, Rng};
use percept_compiler::codegen::{compile, CodegenOptions};
use percept_compiler::exec::{
    self, CollectivePoint, Collectives, Executable, Feed, InterpExecutable, SlotKind, StateLayout, StateStore,
};
use percept_compiler::ops::{exchange_data, exchange_values, StepCtx};
use percept_compiler::Error;

/// What K processes with the same shard would sum to: every exchanged sum and every
/// gradient (but the already global ones) times K.
struct Identical {
    k: f32,
    points: Vec<CollectivePoint>,
}

impl Collectives for Identical {
    fn at(&mut self, point: &CollectivePoint, store: &mut StateStore) -> Result<(), Error> {
        self.points.push(point.clone());
        match point {
            CollectivePoint::Sum { exchange } => {
                // The sums are f64, each as a hi row and a lo row: multiplied in f64.
                let slot = store.layout().find(SlotKind::Exchange, exchange).expect("exchange slot").clone();
                let c = slot.shape[1];
                let data = &mut store.data_mut()[slot.range()];
                let times_k: Vec<f64> = exchange_values(data, c).iter().map(|v| v * self.k as f64).collect();
                data.copy_from_slice(&exchange_data::<f32>(&times_k, c));
            }
            CollectivePoint::GradientsReady { global } => {
                let grads: Vec<_> = store
                    .layout()
                    .of_kind(SlotKind::Grad)
                    .filter(|s| !global.contains(&s.name))
                    .map(|s| s.range())
                    .collect();
                for r in grads {
                    for v in &mut store.data_mut()[r] {
                        *v *= self.k;
                    }
                }
            }
        }
        Ok(())
    }
}

const MODELS: [&str; 4] = [
    "model a { input [6] dense(5) batchnorm relu dense(3) loss softmax_cross_entropy }",
    "model b { input [2, 6, 6] conv2d(3, kernel: 3, padding: 1) batchnorm relu maxpool(2) flatten dense(4) \
     loss softmax_cross_entropy }",
    "model c { input [1, 5, 5] conv2d(4, kernel: 3) batchnorm tanh flatten dense(6) batchnorm dense(1) sigmoid \
     loss binary_cross_entropy }",
    "model d { input [3, 4, 4] conv2d(2, kernel: 1) batchnorm(momentum: 0.3) flatten dense(2) loss mse }",
];

fn store_for(layout: &StateLayout, rng: &mut Rng) -> StateStore {
    let mut store = StateStore::new(layout.clone());
    for s in layout.of_kind(SlotKind::Param).chain(layout.of_kind(SlotKind::Running)).cloned().collect::<Vec<_>>() {
        for v in &mut store.data_mut()[s.range()] {
            *v = if s.name.ends_with("running_var") { rng.uniform(0.5, 2.0) } else { rng.uniform(-0.5, 0.5) } as f32;
        }
    }
    store
}

fn targets(spec: &percept_compiler::ModelSpec, n: usize, rng: &mut Rng) -> Vec<f32> {
    let k: usize = spec.output_shape().iter().product();
    match spec.loss.unwrap().loss {
        percept_compiler::layers::Loss::SoftmaxCrossEntropy => (0..n).map(|i| (i % k) as f32).collect(),
        percept_compiler::layers::Loss::BinaryCrossEntropy => (0..n * k).map(|i| (i % 2) as f32).collect(),
        percept_compiler::layers::Loss::Mse => (0..n * k).map(|_| rng.uniform(-1.0, 1.0) as f32).collect(),
    }
}

/// The largest max |a − b| / (max |b| + 1e-3) of a tensor, over the parameters' gradients
/// and the running statistics, and where it is.
fn distance(a: &StateStore, b: &StateStore) -> (f64, String) {
    let l = b.layout();
    let slots = l.of_kind(SlotKind::Grad).chain(l.of_kind(SlotKind::Running));
    slots
        .map(|s| {
            let (x, y) = (a.get(s.kind, &s.name).unwrap(), &b.data()[s.range()]);
            let max = |v: &[f32]| v.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
            // A bias right before batch norm has no gradient in exact arithmetic: both sides
            // are rounding noise, which is all that is compared.
            if max(x) < 1e-6 && max(y) < 1e-6 {
                return (0.0, s.name.clone());
            }
            let scale = max(y) + 1e-3;
            let d = x.iter().zip(y).fold(0.0f64, |m, (&p, &q)| m.max((p as f64 - q as f64).abs())) / scale;
            (d, format!("{} {:?}", s.name, s.kind))
        })
        .fold((0.0, String::new()), |m, d| if d.0 > m.0 { d } else { m })
}

#[test]
fn k_identical_shards_train_what_one_process_trains_on_the_k_fold_batch() {
    let mut rng = Rng(7);
    for text in MODELS {
        let spec = spec(text);
        let per: usize = spec.input.shape.iter().product();
        for (n, k) in [(2, 2), (3, 3), (4, 2), (2, 5)] {
            let layout = StateLayout::new(&spec, &[]).with_exchange(&spec);
            let store = store_for(&layout, &mut rng);
            let x: Vec<f32> = (0..n * per).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
            let t = targets(&spec, n, &mut rng);
            let (xk, tk) = (x.repeat(k), t.repeat(k));
            let cx = StepCtx::default();
            let whole = exec::grad_program(&spec, n * k, &[]).unwrap();
            let shard = exec::grad_program_sharded(&spec, n, n * k, &[]).unwrap();
            let feed_k = Feed { data: &xk, target: Some(&tk) };
            let feed = Feed { data: &x, target: Some(&t) };
            let mut wholes: [Box<dyn Executable>; 2] = [
                Box::new(compile(&whole, &layout, CodegenOptions::default()).unwrap()),
                Box::new(InterpExecutable::new(whole.clone())),
            ];
            let mut shards: [Box<dyn Executable>; 2] = [
                Box::new(compile(&shard, &layout, CodegenOptions::default()).unwrap()),
                Box::new(InterpExecutable::new(shard.clone())),
            ];
            let mut results = vec![];
            for (w, sh) in wholes.iter_mut().zip(&mut shards) {
                let mut expected = store.clone();
                w.run(&mut expected, &feed_k, &cx).unwrap();
                let mut got = store.clone();
                let mut c = Identical { k: k as f32, points: vec![] };
                sh.run_with(&mut got, &feed, &cx, &mut c).unwrap();
                let (d, worst) = distance(&got, &expected);
                // The JIT centres with the mean rounded to f32 in both forms; the interpreter's
                // batchnorm_train centres with the f64 mean, its split form with the rounded one.
                let tolerance = if sh.backend() == "jit" { 1e-5 } else { 1e-4 };
                assert!(d < tolerance, "{} {} n {n} k {k}: {d:e} in {worst}", spec.name, sh.backend());
                // Three sums per batch norm, then the gradients.
                let bns = text.matches("batchnorm").count();
                assert_eq!(c.points.len(), 3 * bns + 1, "{}: {:?}", spec.name, c.points);
                results.push(got);
            }
            // The JIT against the interpreter, the oracle.
            let (d, worst) = distance(&results[0], &results[1]);
            assert!(d < 1e-4, "{} n {n} k {k}: JIT and interpreter differ by {d:e} in {worst}", spec.name);
        }
    }
}

#[test]
fn a_one_process_shard_is_the_grad_program_to_rounding() {
    // With the shard the whole batch and no other process, the split batch norm computes
    // what batchnorm_train computes: the same sums (in f64, carried as two f32s), so the
    // same bits but for the last place of a few values.
    let mut rng = Rng(11);
    for text in MODELS {
        let spec = spec(text);
        let per: usize = spec.input.shape.iter().product();
        let n = 6;
        let layout = StateLayout::new(&spec, &[]).with_exchange(&spec);
        let store = store_for(&layout, &mut rng);
        let x: Vec<f32> = (0..n * per).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        let t = targets(&spec, n, &mut rng);
        let feed = Feed { data: &x, target: Some(&t) };
        let cx = StepCtx::default();
        let mut expected = store.clone();
        let whole = exec::grad_program(&spec, n, &[]).unwrap();
        compile(&whole, &layout, CodegenOptions::default()).unwrap().run(&mut expected, &feed, &cx).unwrap();
        let shard = exec::grad_program_sharded(&spec, n, n, &[]).unwrap();
        let mut got = store.clone();
        compile(&shard, &layout, CodegenOptions::default()).unwrap().run(&mut got, &feed, &cx).unwrap();
        let (d, worst) = distance(&got, &expected);
        assert!(d < 1e-6, "{}: {d:e} in {worst}", spec.name);
    }
}

#[test]
fn sharded_graphs_print_and_parse_back() {
    for text in MODELS {
        let spec = spec(text);
        let g = exec::grad_program_sharded(&spec, 3, 7, &[]).unwrap();
        let printed = g.to_string();
        for op in ["batchnorm_sum", "batchnorm_sqdev", "batchnorm_apply", "batchnorm_grad_sums", "batchnorm_grad_input"]
        {
            assert!(printed.contains(op), "{}: no {op} in\n{printed}", spec.name);
        }
        assert!(!printed.contains("batchnorm_train"), "{printed}");
        assert!(printed.contains("samples=7"), "the loss divides by the global batch:\n{printed}");
        let back = percept_compiler::ir::parse::parse(&printed).unwrap();
        assert_eq!(back.to_string(), printed);
    }
}

#[test]
fn a_model_without_batch_norm_has_only_the_gradient_point() {
    let spec = spec("model m { input [4] dense(3) relu dense(2) loss softmax_cross_entropy }");
    let g = exec::grad_program_sharded(&spec, 2, 6, &[]).unwrap();
    assert_eq!(
        exec::collective_points(&g),
        vec![(g.nodes.len() - 1, CollectivePoint::GradientsReady { global: vec![] })]
    );
    assert!(exec::grad_program_sharded(&spec, 0, 6, &[]).is_err());
}
