//! Every example model: a few training steps under the JIT give the same parameters and
//! running statistics as under the interpreter (per tensor: |jit − interp| ≤ 1e-5 +
//! 1e-4·max|interp|; the programs differ only in summation order and FMA contraction).
//! Gradients and optimizer state are not compared here: some are analytically zero (a
//! convolution's bias in front of batch norm) and hold only rounding noise, which the
//! per-step differential tests cover with an absolute tolerance.

use percept_runtime::data::{self, Splits};
use percept_runtime::{Backend, Model, TrainConfig, Trainer};

fn root(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// The first `n` training images, normalized as `percept train` does by default. (Raw
/// pixels are all ≥ 0: a convolution's weight gradient then multiplies the rounding
/// noise left in batch norm's analytically zero-mean input gradient by Σ pixels, which
/// makes single gradient entries differ by 1e-3 between any two correct summation
/// orders.)
fn mnist(n: u32) -> Splits {
    let mut s = data::load(&root("data/mnist"), &[1, 28, 28]).unwrap();
    s.train = s.train.subset(&(0..n).collect::<Vec<u32>>(), "train".into());
    s.test = None;
    let norm = data::Norm::of(&s.train);
    s.apply_norm(&norm);
    s
}

fn train(file: &str, backend: Backend, splits: &Splits, cfg: &TrainConfig) -> Model {
    let mut m = Model::from_file(root(&format!("examples/{file}"))).unwrap();
    m.set_backend(backend).unwrap();
    let mut t = Trainer::new(cfg.clone()).unwrap();
    t.init_model(&mut m).unwrap();
    t.fit(&mut m, splits, &mut ()).unwrap();
    m
}

#[test]
fn every_example_trains_the_same_under_the_jit_and_the_interpreter() {
    let images = mnist(3 * 16 + 5);
    // The autoencoder's targets are its inputs (`--target input`).
    let mut reconstruct = images.clone();
    reconstruct.inputs_as_targets();
    for (file, splits, cfg) in [
        ("mlp.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        ("lenet5.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        ("cnn_bn.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        (
            "activations.nn",
            &images,
            TrainConfig { epochs: 1, batch: 16, lr: 0.02, momentum: 0.5, ..TrainConfig::default() },
        ),
        ("residual.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        (
            "strided.nn",
            &images,
            TrainConfig {
                epochs: 1,
                batch: 16,
                lr: 0.02,
                nesterov: true,
                weight_decay: 1e-4,
                ..TrainConfig::default()
            },
        ),
        // The model zoo: projection shortcuts, depthwise convolutions, parallel branches.
        ("resnet8.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        ("mobilenet_tiny.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        ("inception_tiny.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        ("vgg_small.nn", &images, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        ("autoencoder.nn", &reconstruct, TrainConfig { epochs: 1, batch: 16, lr: 0.02, ..TrainConfig::default() }),
        ("xor.nn", &data::xor(), TrainConfig { epochs: 20, batch: 4, lr: 0.1, ..TrainConfig::default() }),
        ("perceptron.nn", &data::xor(), TrainConfig { epochs: 20, batch: 3, lr: 0.1, ..TrainConfig::default() }),
    ] {
        let a = train(file, Backend::Interp, splits, &cfg);
        let b = train(file, Backend::Jit, splits, &cfg);
        assert_eq!(a.store.layout(), b.store.layout());
        for slot in a.store.layout().slots.iter().filter(|s| {
            matches!(s.kind, percept_compiler::exec::SlotKind::Param | percept_compiler::exec::SlotKind::Running)
        }) {
            let (x, y) = (&b.store.data()[slot.range()], &a.store.data()[slot.range()]);
            let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-5 + 1e-4 * scale,
                    "{file}: {:?} {}[{i}]: jit {p} vs interp {q}",
                    slot.kind,
                    slot.name
                );
            }
        }
        assert_eq!(a.batches_tracked, b.batches_tracked);
    }
}
