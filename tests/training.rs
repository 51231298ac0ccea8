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

/// Augmentation changes what is trained on, identically on every run, every thread count
/// and across a resume (its draws are a function of seed, epoch and sample); and it is
/// recorded in the checkpoint, so a resumed run keeps it.
#[test]
fn augmentation_is_deterministic_and_resumes() {
    let splits = small_mnist();
    let aug = |threads: usize, cfg: TrainConfig| {
        let mut model = Model::from_source("small.nn", NET).unwrap();
        model.set_threads(threads);
        let mut t = Trainer::new(cfg).unwrap();
        t.init_model(&mut model).unwrap();
        t.fit(&mut model, &splits, &mut ()).unwrap();
        model
    };
    let with = TrainConfig { augment: "shift:2,flip,rotate:10".into(), ..config(2) };
    let a = bits(&aug(1, with.clone()));
    assert_eq!(a, bits(&aug(2, with.clone())), "1 vs 2 threads");
    assert_ne!(a, bits(&train(config(2), &splits, None).0), "augmentation changes the training");
    assert_ne!(a, bits(&aug(1, TrainConfig { augment: "shift:2".into(), ..config(2) })));

    let ck = tmp("augmented.safetensors");
    let mut model = Model::from_source("small.nn", NET).unwrap();
    let mut t = Trainer::new(TrainConfig { steps: Some(4), ..with.clone() }).unwrap();
    t.checkpoint = Some(ck.clone());
    t.init_model(&mut model).unwrap();
    assert_eq!(t.fit(&mut model, &splits, &mut ()).unwrap(), Outcome::StepLimit);
    assert!(TensorFile::read(&ck).unwrap().metadata["config"].contains(r#""augment":"shift:2,flip,rotate:10""#));
    assert_eq!(a, bits(&resume(&ck, 2, &splits)), "resumed in the second epoch, still augmented");

    let bad = Trainer::new(TrainConfig { augment: "blur".into(), ..config(1) }).err().unwrap();
    assert!(bad.0.contains("unknown augmentation `blur`"), "{}", bad.0);
}

/// Every epoch's report, for the validation-control tests.
struct Epochs(Vec<percept_runtime::train::EpochReport>);

impl Observer for Epochs {
    fn epoch(&mut self, _: &Model, r: &percept_runtime::train::EpochReport) -> percept_runtime::Result<()> {
        self.0.push(r.clone());
        Ok(())
    }
}

/// Early stopping on a small training set that overfits: it stops `patience` epochs after
/// the best validation loss; `keep_best` saved exactly that epoch's weights; the monitor
/// is in the checkpoint, and a run resumed from it stops at the same epoch with the same
/// weights.
#[test]
fn early_stopping_keeps_the_best_weights_and_resumes() {
    let mut splits = small_mnist();
    splits.hold_out(60, 7).unwrap();
    let cfg =
        TrainConfig { epochs: 40, early_stop: Some(2), keep_best: true, schedule: "constant".into(), ..config(40) };
    let (best, ck) = (tmp("best.safetensors"), tmp("early.safetensors"));
    let mut model = Model::from_source("small.nn", NET).unwrap();
    let mut t = Trainer::new(cfg.clone()).unwrap();
    (t.best_weights, t.checkpoint) = (Some(best.clone()), Some(ck.clone()));
    t.init_model(&mut model).unwrap();
    let mut seen = Epochs(vec![]);
    assert_eq!(t.fit(&mut model, &splits, &mut seen).unwrap(), Outcome::EarlyStopped);
    let (best_loss, best_epoch) = t.monitor.best.unwrap();
    let stopped = t.position.epoch;
    assert!(stopped < 40 && stopped == best_epoch + 2, "stopped after {stopped}, best {best_epoch}");
    let val = |r: &percept_runtime::train::EpochReport| r.val.as_ref().unwrap().loss.unwrap();
    let lowest = seen.0.iter().map(val).fold(f64::INFINITY, f64::min);
    assert_eq!((lowest, val(&seen.0[best_epoch as usize - 1])), (best_loss, best_loss));
    assert!(seen.0.iter().all(|r| r.best_epoch.unwrap() <= r.epoch));
    // The best weights give the best validation loss again.
    let mut again = Model::from_source("small.nn", NET).unwrap();
    again.load_weights_file(&best).unwrap();
    let report = percept_runtime::eval::evaluate(&mut again, splits.val.as_ref().unwrap(), 50).unwrap();
    assert_eq!(report.loss.unwrap(), best_loss);

    // Stop one epoch after the best, resume: the monitor carries over.
    let ck2 = tmp("early-cut.safetensors");
    let mut model2 = Model::from_source("small.nn", NET).unwrap();
    let mut t2 = Trainer::new(TrainConfig { steps: Some(3 * (best_epoch + 1)), ..cfg }).unwrap();
    t2.checkpoint = Some(ck2.clone());
    t2.init_model(&mut model2).unwrap();
    assert_eq!(t2.fit(&mut model2, &splits, &mut ()).unwrap(), Outcome::StepLimit);
    assert_eq!(t2.monitor.stale, 1);
    let file = TensorFile::read(&ck2).unwrap();
    let mut resumed = Model::from_source("small.nn", NET).unwrap();
    let mut t3 = Trainer::resume(&mut resumed, &file, "checkpoint").unwrap();
    t3.config.steps = None;
    assert_eq!(t3.monitor, t2.monitor);
    assert_eq!(t3.fit(&mut resumed, &splits, &mut ()).unwrap(), Outcome::EarlyStopped);
    assert_eq!(t3.position.epoch, stopped);
    assert_eq!(bits(&resumed), bits(&model));
}

/// The plateau schedule multiplies the rate by its factor after `patience` epochs
/// without a better validation loss, and watching anything needs a validation set.
#[test]
fn the_plateau_schedule_lowers_the_rate_when_the_validation_loss_stalls() {
    let mut splits = small_mnist();
    splits.hold_out(60, 7).unwrap();
    let mut model = Model::from_source("small.nn", NET).unwrap();
    let mut t = Trainer::new(TrainConfig { schedule: "plateau:1:0.5".into(), ..config(12) }).unwrap();
    t.init_model(&mut model).unwrap();
    let mut seen = Epochs(vec![]);
    t.fit(&mut model, &splits, &mut seen).unwrap();
    let mut scale = 1.0;
    for pair in seen.0.windows(2) {
        // Epoch e+1 runs at the rate left after epoch e's verdict.
        let improved = pair[0].best_epoch == Some(pair[0].epoch);
        if !improved {
            scale *= 0.5;
        }
        assert_eq!(pair[1].lr, 0.05 * scale, "epoch {}", pair[1].epoch);
    }
    assert!(scale < 1.0, "the loss never stalled in 12 epochs");

    let mut no_val = small_mnist();
    no_val.test = None;
    let mut model = Model::from_source("small.nn", NET).unwrap();
    let t = Trainer::new(TrainConfig { early_stop: Some(1), ..config(2) }).unwrap();
    t.init_model(&mut model).unwrap();
    let mut t = t;
    let err = t.fit(&mut model, &no_val, &mut ()).unwrap_err().0;
    assert!(err.contains("watch the validation loss, and there is none"), "{err}");
}
