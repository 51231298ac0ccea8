use percept_compiler::ops::StepCtx;
use percept_runtime::{Backend, Model};

fn run(file: &str, batch: usize) {
    let text = std::fs::read_to_string(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut a = Model::from_source(file, &text).unwrap();
    let mut b = Model::from_source(file, &text).unwrap();
    let t = percept_runtime::Trainer::new(percept_runtime::TrainConfig::default()).unwrap();
    t.init_model(&mut a).unwrap();
    t.init_model(&mut b).unwrap();
    b.set_backend(Backend::Jit).unwrap();
    let per: usize = a.spec.input.shape.iter().product();
    for step in 0..5u64 {
        let x: Vec<f32> = (0..batch * per).map(|i| ((i as u64 * 37 + step * 11) % 101) as f32 / 101.0).collect();
        let y: Vec<f32> = (0..batch).map(|i| ((i as u64 + step) % 10) as f32).collect();
        let cx = StepCtx { seed: 1, step, lr: 0.05 };
        let fa = a.grad_step(&x, &y, &cx).unwrap();
        let fb = b.grad_step(&x, &y, &cx).unwrap();
        a.update_step(&cx).unwrap();
        b.update_step(&cx).unwrap();
        let mut worst = (0.0f32, 0usize);
        for (i, (p, q)) in a.store.data.iter().zip(&b.store.data).enumerate() {
            if (p - q).abs() > worst.0 {
                worst = ((p - q).abs(), i);
            }
        }
        let slot = a
            .store
            .layout
            .slots
            .iter()
            .find(|s| s.range().contains(&worst.1))
            .map(|s| format!("{:?} {}", s.kind, s.name));
        println!(
            "{file} step {step}: loss interp {:?} jit {:?}; max state diff {:e} in {:?}",
            fa.loss, fb.loss, worst.0, slot
        );
    }
}

#[test]
fn smoke() {
    run("lenet5.nn", 8);
    run("cnn_bn.nn", 4);
    run("activations.nn", 5);
    run("residual.nn", 3);
    run("strided.nn", 3);
}
