//! Data-parallel training without MPI: K members of a `ThreadGroup` (one thread each, in
//! this process) train one model, each on its shard of every mini-batch, and must train
//! the single-process model — batch norm included (its statistics and gradient sums are
//! merged across the shards at the grad program's collective points). The same trainer
//! code runs under `mpirun` with the `mpi` feature (`tests/mpi.rs`).

use percept_runtime::data::{self, Splits};
use percept_runtime::parallel::ThreadGroup;
use percept_runtime::tensorfile::TensorFile;
use percept_runtime::train::Trainer;
use percept_runtime::{Backend, Model, TrainConfig};
use std::path::{Path, PathBuf};
use std::rc::Rc;

fn root(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// 20 batches of 30 MNIST training images (a batch splits 15+15 and 10+10+10; the last
/// epoch's batch is partial, 9 images) and 200 test images.
fn mnist() -> Splits {
    let mut s = data::load(&root("data/mnist"), &[1, 28, 28]).unwrap();
    s.train = s.train.subset(&(0..609).collect::<Vec<u32>>(), "train".into());
    s.test = Some(s.test.unwrap().subset(&(0..200).collect::<Vec<u32>>(), "test".into()));
    s
}

fn config(steps: u64) -> TrainConfig {
    config_with_batch(steps, 30)
}

fn config_with_batch(steps: u64, batch: usize) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        steps: Some(steps),
        batch,
        eval_batch: 64,
        lr: 0.05,
        momentum: 0.9,
        schedule: "constant".into(),
        seed: 3,
        ..TrainConfig::default()
    }
}

/// What a run leaves: each member's parameters and running statistics (in layout order)
/// and its test accuracy counts.
struct Run {
    state: Vec<Vec<f32>>,
    correct: Vec<u64>,
}

fn state_of(m: &Model) -> Vec<f32> {
    use percept_compiler::exec::SlotKind;
    let l = m.store.layout();
    l.slots
        .iter()
        .filter(|s| matches!(s.kind, SlotKind::Param | SlotKind::Running))
        .flat_map(|s| m.store.data()[s.range()].to_vec())
        .collect()
}

/// Train `model` with `k` members for `steps` steps (from `resume` if given), member 0
/// writing `checkpoint` if given.
fn train(
    model: &str,
    k: usize,
    steps: u64,
    backend: Backend,
    resume: Option<&Path>,
    checkpoint: Option<PathBuf>,
    splits: &[Splits],
) -> Run {
    train_batch(model, k, steps, 30, backend, resume, checkpoint, splits)
}

#[allow(clippy::too_many_arguments)]
fn train_batch(
    model: &str,
    k: usize,
    steps: u64,
    batch: usize,
    backend: Backend,
    resume: Option<&Path>,
    checkpoint: Option<PathBuf>,
    splits: &[Splits],
) -> Run {
    let members = ThreadGroup::new(k);
    let results: Vec<(Vec<f32>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = members
            .into_iter()
            .enumerate()
            .map(|(r, g)| {
                let checkpoint = checkpoint.clone().filter(|_| r == 0);
                let data = &splits[r.min(splits.len() - 1)];
                s.spawn(move || {
                    let mut m = Model::from_file(root(&format!("examples/{model}.nn"))).unwrap();
                    m.set_backend(backend).unwrap();
                    m.set_threads(1);
                    let mut t = match resume {
                        Some(p) => {
                            let mut t = Trainer::resume(&mut m, &TensorFile::read(p).unwrap(), "checkpoint").unwrap();
                            t.config.steps = Some(steps);
                            t
                        }
                        None => {
                            let t = Trainer::new(config_with_batch(steps, batch)).unwrap();
                            t.init_model(&mut m).unwrap();
                            t
                        }
                    };
                    t.checkpoint = checkpoint;
                    t.group = Rc::new(g);
                    t.fit(&mut m, data, &mut ()).map(|_| {
                        let report = percept_runtime::eval::evaluate(&mut m, data.test.as_ref().unwrap(), 64).unwrap();
                        let correct: u64 = (0..10).map(|c| report.confusion[c][c]).sum();
                        (state_of(&m), correct)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    Run { state: results.iter().map(|r| r.0.clone()).collect(), correct: results.iter().map(|r| r.1).collect() }
}

/// max |a − b| over max |a|: the relative distance of two models' values.
fn distance(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
    a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs())) / scale
}

fn assert_members_agree(run: &Run) {
    for (r, s) in run.state.iter().enumerate() {
        assert!(s.iter().zip(&run.state[0]).all(|(a, b)| a.to_bits() == b.to_bits()), "member {r} differs from 0");
    }
}

/// K members against one process after `steps` steps, within `tolerance` (relative).
fn k_processes_train_the_single_process_model(model: &str, ks: &[usize], steps: u64, tolerance: f64) {
    let splits = [mnist()];
    let one = train(model, 1, steps, Backend::Jit, None, None, &splits);
    for &k in ks {
        let run = train(model, k, steps, Backend::Jit, None, None, &splits);
        assert_members_agree(&run);
        let d = distance(&one.state[0], &run.state[0]);
        assert!(d <= tolerance, "{model}: {k} processes are {d:e} (relative) from one after {steps} steps");
        assert_ne!(d, 0.0, "{model}: the split program was not used with {k} processes");
        assert_eq!(run.correct, vec![one.correct[0]; k]);
    }
}

// Results depend on K through rounding only: a shard's per-sample values are one
// process's (the loss divides by the global batch; batch norm's statistics and gradient
// sums are the global batch's, in f64), but the shards' weight gradients are added in
// another order than one process adds them (f32 partial sums, then f64 across shards).
// Over steps of SGD with momentum such differences grow, slowly until two nearly equal
// values of a max-pooling window trade places (docs/ARCHITECTURE.md, "Data parallelism",
// has the measured growth; `measure_distance_by_steps` prints it).

#[test]
fn lenet5_with_two_and_three_processes_trains_the_single_process_model_for_20_steps() {
    k_processes_train_the_single_process_model("lenet5", &[2, 3], 20, 1e-5);
}

#[test]
fn cnn_bn_with_three_processes_trains_the_single_process_model_for_20_steps() {
    // Batch norm over the global batch: with each shard's own statistics the runs would
    // differ by about 1e-2 after one step.
    k_processes_train_the_single_process_model("cnn_bn", &[3], 20, 1e-5);
}

#[test]
fn cnn_bn_with_two_processes_agrees_to_rounding_for_5_steps() {
    // With two processes a max-pooling near-tie flips between steps 5 and 10 on this data
    // (4e-5 after 10 steps): the issue-13 gap, recorded in docs/ARCHITECTURE.md.
    k_processes_train_the_single_process_model("cnn_bn", &[2], 5, 1e-6);
}

#[test]
fn uneven_shards_and_a_batch_too_small_to_split_train_the_single_process_model() {
    // Batches of 31 over 2 and 3 processes (16+15, 11+10+10), and over 5 the last batch
    // of the epoch (609 = 19·31 + 20 samples: 4 each), then over 11 processes the same
    // last batch of 20 < 2·11 samples, which every process computes whole.
    let splits = [mnist()];
    let one = train_batch("lenet5", 1, 20, 31, Backend::Jit, None, None, &splits);
    for k in [2, 3, 5, 11] {
        let run = train_batch("lenet5", k, 20, 31, Backend::Jit, None, None, &splits);
        assert_members_agree(&run);
        let d = distance(&one.state[0], &run.state[0]);
        assert!(d <= 1e-5 && d > 0.0, "{k} processes: {d:e}");
    }
}

#[test]
fn two_runs_with_the_same_processes_are_bit_identical() {
    let splits = [mnist()];
    let a = train("cnn_bn", 2, 6, Backend::Jit, None, None, &splits);
    let b = train("cnn_bn", 2, 6, Backend::Jit, None, None, &splits);
    assert_eq!(
        a.state[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.state[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn the_interpreter_runs_the_split_program_like_the_jit() {
    let splits = [mnist()];
    let jit = train("cnn_bn", 2, 3, Backend::Jit, None, None, &splits);
    let interp = train("cnn_bn", 2, 3, Backend::Interp, None, None, &splits);
    let d = distance(&jit.state[0], &interp.state[0]);
    assert!(d <= 1e-5, "interpreter and JIT differ by {d:e}");
    assert_members_agree(&interp);
}

#[test]
fn a_two_process_checkpoint_resumes_with_one_and_three() {
    let splits = [mnist()];
    let dir = std::env::temp_dir().join(format!("percept-dp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    let whole = train("cnn_bn", 1, 6, Backend::Jit, None, None, &splits);
    train("cnn_bn", 2, 3, Backend::Jit, None, Some(ckpt.clone()), &splits);
    for k in [1, 3] {
        let resumed = train("cnn_bn", k, 6, Backend::Jit, Some(&ckpt), None, &splits);
        assert_members_agree(&resumed);
        let d = distance(&whole.state[0], &resumed.state[0]);
        assert!(d <= 1e-6, "resumed with {k}: {d:e} from the uninterrupted single-process run");
        assert_ne!(d, 0.0, "the first 3 steps ran with 2 processes");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_process_with_different_data_stops_every_process() {
    let good = mnist();
    let mut bad = mnist();
    bad.train.x[5] += 0.25;
    let members = ThreadGroup::new(2);
    let errors: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = members
            .into_iter()
            .zip([&good, &bad])
            .map(|(g, data)| {
                s.spawn(move || {
                    let mut m = Model::from_file(root("examples/mlp.nn")).unwrap();
                    let mut t = Trainer::new(config(2)).unwrap();
                    t.init_model(&mut m).unwrap();
                    t.group = Rc::new(g);
                    t.fit(&mut m, data, &mut ()).unwrap_err().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in errors {
        assert_eq!(e, "process 1 of 2 has a different copy of the training data than process 0; every process must read the same files");
    }
}

#[test]
fn evaluation_split_across_processes_counts_exactly_what_one_process_counts() {
    let splits = mnist();
    let test = splits.test.as_ref().unwrap();
    let mut m = Model::from_file(root("examples/lenet5.nn")).unwrap();
    Trainer::new(config(1)).unwrap().init_model(&mut m).unwrap();
    let one = percept_runtime::eval::evaluate(&mut m, test, 64).unwrap();
    let members = ThreadGroup::new(3);
    let reports: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = members
            .into_iter()
            .map(|g| {
                let mut m = Model::from_file(root("examples/lenet5.nn")).unwrap();
                Trainer::new(config(1)).unwrap().init_model(&mut m).unwrap();
                s.spawn(move || percept_runtime::eval::evaluate_shared(&mut m, test, 64, &g).unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in reports {
        assert_eq!(r.confusion, one.confusion);
        assert_eq!(r.accuracy, one.accuracy);
        assert!((r.loss.unwrap() - one.loss.unwrap()).abs() <= 1e-9 * one.loss.unwrap());
    }
}

/// The distance of K-process runs from one process by step count, for the docs:
/// `cargo test --release --test data_parallel measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_distance_by_steps() {
    let splits = [mnist()];
    for model in ["lenet5", "cnn_bn"] {
        for steps in [1, 2, 5, 10, 20] {
            let one = train(model, 1, steps, Backend::Jit, None, None, &splits);
            for k in [2, 3] {
                let run = train(model, k, steps, Backend::Jit, None, None, &splits);
                let d = distance(&one.state[0], &run.state[0]);
                eprintln!("{model} steps {steps} k {k}: {d:.1e}");
                assert!(steps > 1 || d < 1e-7, "one step is rounding only");
            }
        }
    }
}
