//! Training through the library: determinism, resuming (between and within epochs),
//! weights round trips, and the perceptron/XOR story.

use percept_runtime::data::{self, Splits};
use percept_runtime::tensorfile::{Data, TensorFile};
use percept_runtime::train::{Observer, Outcome, Trainer};
use percept_runtime::{Model, TrainConfig};

fn root(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// The first 192 MNIST training images (3 batches of 64) and 100 test images.
fn small_mnist() -> Splits {
    let mut s = data::load(&root("data/mnist"), &[1, 28, 28]).unwrap();
    s.train = s.train.subset(&(0..190).collect::<Vec<u32>>(), "small train".into());
    s.test = Some(s.test.unwrap().subset(&(0..100).collect::<Vec<u32>>(), "small test".into()));
    s
}

/// A small network with every kind of state: conv, batch norm (running statistics,
/// num_batches_tracked), dropout (per-step masks), momentum.
const NET: &str = "model small {
    input [1, 28, 28]
    conv2d(4, kernel: 5, stride: 2)
    batchnorm
    relu
    maxpool(2)
    flatten
    dropout(p: 0.2)
    dense(10)
    loss softmax_cross_entropy
}";

fn config(epochs: u64) -> TrainConfig {
    TrainConfig { epochs, batch: 64, eval_batch: 50, lr: 0.05, seed: 7, ..TrainConfig::default() }
}

fn train(cfg: TrainConfig, splits: &Splits, checkpoint: Option<&std::path::Path>) -> (Model, Outcome) {
    let mut model = Model::from_source("small.nn", NET).unwrap();
    let mut t = Trainer::new(cfg).unwrap();
    t.checkpoint = checkpoint.map(|p| p.to_path_buf());
    t.init_model(&mut model).unwrap();
    let outcome = t.fit(&mut model, splits, &mut ()).unwrap();
    (model, outcome)
}

fn resume(checkpoint: &std::path::Path, epochs: u64, splits: &Splits) -> Model {
    let mut model = Model::from_source("small.nn", NET).unwrap();
    let file = TensorFile::read(checkpoint).unwrap();
    let mut t = Trainer::resume(&mut model, &file, "checkpoint").unwrap();
    t.config.epochs = epochs;
    t.config.steps = None;
    assert_eq!(t.fit(&mut model, splits, &mut ()).unwrap(), Outcome::Finished);
    model
}

fn bits(m: &Model) -> Vec<(String, Vec<u32>, Vec<i64>)> {
    m.weights()
        .tensors
        .iter()
        .map(|t| match &t.data {
            Data::F32(v) => (t.name.clone(), v.iter().map(|x| x.to_bits()).collect(), vec![]),
            Data::I64(v) => (t.name.clone(), vec![], v.clone()),
        })
        .collect()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("percept-training-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn same_seed_same_bits_and_resume_gives_identical_weights() {
    let splits = small_mnist();
    let (a, _) = train(config(2), &splits, None);
    let (a2, _) = train(config(2), &splits, None);
    assert_eq!(bits(&a), bits(&a2), "same seed, same bits");
    let (other, _) = train(TrainConfig { seed: 8, ..config(2) }, &splits, None);
    assert_ne!(bits(&a), bits(&other), "another seed gives other weights");
    assert_eq!(a.batches_tracked["1.num_batches_tracked"], 6);

    // Stop after the first epoch (its 3 steps), then resume for the second. (The
    // schedule is planned over the 2 epochs; `steps` only stops early.)
    let ck = tmp("between.safetensors");
    let (_, outcome) = train(TrainConfig { steps: Some(3), ..config(2) }, &splits, Some(&ck));
    assert_eq!(outcome, Outcome::StepLimit);
    assert_eq!(TensorFile::read(&ck).unwrap().metadata["position"], r#"{"epoch":1,"sample":0,"step":3}"#);
    let b = resume(&ck, 2, &splits);
    assert_eq!(bits(&a), bits(&b), "1 epoch + resume + 1 epoch = 2 epochs");

    // Stop in the middle of the first epoch (after 2 of its 3 batches), then resume.
    let ck = tmp("within.safetensors");
    let (_, outcome) = train(TrainConfig { steps: Some(2), ..config(2) }, &splits, Some(&ck));
    assert_eq!(outcome, Outcome::StepLimit);
    let pos = TensorFile::read(&ck).unwrap().metadata["position"].clone();
    assert_eq!(pos, r#"{"epoch":0,"sample":128,"step":2}"#);
    let c = resume(&ck, 2, &splits);
    assert_eq!(bits(&a), bits(&c), "resume from the middle of an epoch");
}

#[test]
fn any_thread_count_gives_the_same_bits() {
    let splits = small_mnist();
    let run = |threads: usize| {
        let mut model = Model::from_source("small.nn", NET).unwrap();
        model.set_threads(threads);
        let mut t = Trainer::new(config(2)).unwrap();
        t.init_model(&mut model).unwrap();
        t.fit(&mut model, &splits, &mut ()).unwrap();
        model
    };
    let one = bits(&run(1));
    assert_eq!(one, bits(&run(2)), "1 vs 2 threads");
    assert_eq!(one, bits(&run(3)), "1 vs 3 threads");
}

#[test]
fn weights_round_trip_and_mismatches_are_refused() {
    let splits = small_mnist();
    let (m, _) = train(TrainConfig { steps: Some(1), ..config(1) }, &splits, None);
    let path = tmp("round.safetensors");
    m.save_weights(&path).unwrap();
    let mut fresh = Model::from_source("small.nn", NET).unwrap();
    fresh.load_weights_file(&path).unwrap();
    assert_eq!(bits(&m), bits(&fresh));
    let file = TensorFile::read(&path).unwrap();
    assert_eq!(file.get("1.num_batches_tracked").unwrap().data, Data::I64(vec![1]));
    assert_eq!(file.metadata["model"], "small");

    // The same weights do not fit a model with another first layer.
    let mut other = Model::from_source("o.nn", &NET.replace("conv2d(4, kernel: 5", "conv2d(5, kernel: 5")).unwrap();
    let err = other.load_weights_file(&path).unwrap_err().0;
    assert!(err.contains("does not fit the model `small`"), "{err}");
    assert!(err.contains("`0.weight` has shape [4, 1, 5, 5], the model needs [5, 1, 5, 5]"), "{err}");
    assert!(err.contains("`1.running_mean` has shape [4], the model needs [5]"), "{err}");

    // Missing and unexpected names are listed too.
    let mut renamed = file.clone();
    renamed.tensors.iter_mut().find(|t| t.name == "6.bias").unwrap().name = "6.bais".into();
    let mut fresh = Model::from_source("small.nn", NET).unwrap();
    let err = fresh.load_weights(&renamed, "renamed.safetensors").unwrap_err().0;
    assert!(err.contains("missing `6.bias` [10]") && err.contains("unexpected `6.bais` [10]"), "{err}");
}

struct Count(usize);

impl Observer for Count {
    fn step(&mut self, _: &percept_runtime::train::StepProgress) {
        self.0 += 1;
    }
}

#[test]
fn the_last_partial_batch_trains_unless_dropped() {
    let splits = small_mnist(); // 190 samples: batches of 64, 64, 62.
    for (drop_last, steps) in [(false, 3), (true, 2)] {
        let mut model = Model::from_source("small.nn", NET).unwrap();
        let mut t = Trainer::new(TrainConfig { drop_last, ..config(1) }).unwrap();
        t.init_model(&mut model).unwrap();
        let mut count = Count(0);
        t.fit(&mut model, &splits, &mut count).unwrap();
        assert_eq!(count.0, steps, "drop_last {drop_last}");
    }
}

fn solves_xor(model_file: &str, seed: u64) -> bool {
    let mut model = Model::from_file(root(model_file)).unwrap();
    let cfg = TrainConfig { epochs: 300, batch: 4, lr: 0.1, seed, init: "glorot".into(), ..TrainConfig::default() };
    let mut t = Trainer::new(cfg).unwrap();
    t.init_model(&mut model).unwrap();
    let splits = data::xor();
    t.fit(&mut model, &splits, &mut ()).unwrap();
    let r = percept_runtime::eval::evaluate(&mut model, splits.test.as_ref().unwrap(), 4).unwrap();
    r.accuracy == Some(1.0)
}

#[test]
fn an_mlp_learns_xor_and_a_perceptron_cannot() {
    let mlp = (1..=10).filter(|&s| solves_xor("examples/xor.nn", s)).count();
    assert!(mlp >= 9, "the 2-8-1 MLP solved XOR for {mlp} of 10 seeds");
    let perceptron = (1..=10).filter(|&s| solves_xor("examples/perceptron.nn", s)).count();
    assert_eq!(perceptron, 0, "a single perceptron cannot separate XOR");
}
