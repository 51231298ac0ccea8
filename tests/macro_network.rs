//! `network!`: the same model in Rust and in `.nn` compiles to the same IR and trains to
//! the same weights; its constants agree with `percept check`; bad models are compile
//! errors at the offending token (trybuild, with `.stderr` snapshots in tests/ui/;
//! `TRYBUILD=overwrite` updates them).

use percept_compiler::exec;
use percept_runtime::tensorfile::Data;
use percept_runtime::{Model, TrainConfig, Trainer};

percept::network! {
    model Lenet5 {
        input [1, 28, 28]
        conv2d(6, kernel: 5, padding: 2)
        relu
        maxpool(2)
        conv2d(16, kernel: 5)
        relu
        maxpool(2)
        flatten
        dense(120)
        relu
        dense(84)
        relu
        dense(10)
        loss softmax_cross_entropy
    }
}

percept::network! {
    pub(crate) model CnnBn {
        input [1, 28, 28]
        conv2d(32, kernel: 3, padding: 1); batchnorm; relu; maxpool(2)
        conv2d(64, kernel: 3, padding: 1); batchnorm; relu; maxpool(2)
        flatten; dense(128); relu; dense(10)
        loss softmax_cross_entropy
    }
}

percept::network! {
    model Residual {
        input x: [1, 28, 28]
        stem: conv2d(16, kernel: 3, padding: same)
        relu
        conv2d(16, kernel: 3, padding: same)
        batchnorm
        relu
        conv2d(16, kernel: 3, padding: same)
        batchnorm
        add(stem)
        relu
        maxpool(2)
        global_avgpool
        head: dense(10)
        loss softmax_cross_entropy
    }
}

fn example(name: &str) -> Model {
    Model::from_file(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn constants_match_the_checker() {
    assert_eq!(Lenet5::NAME, "lenet5");
    assert_eq!(Lenet5::INPUT_SHAPE, [1, 28, 28]);
    assert_eq!(Lenet5::OUTPUT_SHAPE, [10]);
    assert_eq!(Lenet5::PARAMETERS, 61_706);
    assert_eq!(CnnBn::PARAMETERS, 421_834);
    assert_eq!(CnnBn::RUNNING_STATISTICS, 192);
    for (spec, file) in [(Lenet5::spec(), "lenet5.nn"), (CnnBn::spec(), "cnn_bn.nn"), (Residual::spec(), "residual.nn")]
    {
        let nn = example(file).spec;
        assert_eq!(spec.trainable_count(), nn.trainable_count(), "{file}");
        assert_eq!(spec.running_count(), nn.running_count(), "{file}");
        assert_eq!(spec.output_shape(), nn.output_shape(), "{file}");
        // The summary `percept check` prints, line for line.
        assert_eq!(spec.summary(), nn.summary(), "{file}");
    }
}

#[test]
fn the_macro_and_the_file_compile_to_the_same_ir() {
    for (spec, file) in [(Lenet5::spec(), "lenet5.nn"), (CnnBn::spec(), "cnn_bn.nn"), (Residual::spec(), "residual.nn")]
    {
        let nn = example(file).spec;
        assert_eq!(spec.canonical, nn.canonical, "{file}");
        let a = exec::grad_program(&spec, 8, &[]).unwrap().to_string();
        let b = exec::grad_program(&nn, 8, &[]).unwrap().to_string();
        assert_eq!(a, b, "{file}: training graphs differ");
    }
    assert_eq!(Lenet5::TEXT, example("lenet5.nn").spec.canonical);
}

#[test]
fn the_macro_and_the_file_train_to_the_same_weights() {
    let cfg = TrainConfig { batch: 8, seed: 3, lr: 0.02, ..TrainConfig::default() };
    let mut net = Lenet5::with_config(cfg.clone()).unwrap();
    let mut file = example("lenet5.nn");
    Trainer::new(cfg.clone()).unwrap().init_model(&mut file).unwrap();
    for (step, s) in (0..3u64).enumerate() {
        let step = step as u64;
        let x: Vec<f32> = (0..8 * 784).map(|i| ((i as u64 * 31 + s * 7) % 97) as f32 / 97.0).collect();
        let y: Vec<f32> = (0..8).map(|i| ((i + s as usize) % 10) as f32).collect();
        let l1 = net.train_step(&x, &y).unwrap();
        let cx = percept_compiler::ops::StepCtx { seed: cfg.seed, step, lr: cfg.lr };
        let l2 = file.grad_step(&x, &y, &cx).unwrap().loss.unwrap();
        file.update_step(&cx).unwrap();
        assert_eq!(l1.to_bits(), l2.to_bits(), "step {s}");
    }
    let (a, b) = (net.model().weights(), file.weights());
    for (ta, tb) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(ta.name, tb.name);
        match (&ta.data, &tb.data) {
            (Data::F32(x), Data::F32(y)) => {
                assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "{}", ta.name)
            }
            (x, y) => assert_eq!(x, y),
        }
    }
}

#[test]
fn the_generated_type_exposes_forward_kernels_and_weights() {
    let mut net = Lenet5::new(4).unwrap();
    let y = net.forward(&vec![0.5; 2 * 784]).unwrap();
    assert_eq!(y.len(), 2 * Lenet5::OUTPUT_SHAPE[0]);
    let kernels = net.kernels().unwrap();
    assert!(kernels.iter().any(|k| k.name() == "fwd.conv2d_0+relu_1+maxpool_2" && k.text.clif.contains("f32x4")));
    let path = std::env::temp_dir().join(format!("percept-macro-{}.safetensors", std::process::id()));
    net.save(&path).unwrap();
    let mut other = Lenet5::new(4).unwrap();
    other.load(&path).unwrap();
    assert_eq!(other.forward(&vec![0.5; 784]).unwrap(), net.forward(&vec![0.5; 784]).unwrap());
    // A batch that is not a whole number of samples is an error, not a panic.
    assert!(net.forward(&[1.0; 5]).is_err());
}

#[test]
fn bad_models_are_compile_errors_at_the_offending_token() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/*.rs");
}
