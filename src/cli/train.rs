use super::common::{group, load_data, parse_norm, pct, stderr_is_terminal};
use super::{CliResult, UserError};
use indicatif::{ProgressBar, ProgressStyle};
use percept_runtime::data::augment::Augment;
use percept_runtime::parallel::Group;
use percept_runtime::train::{EpochReport, Observer, OptimizerKind, Outcome, StepProgress};
use percept_runtime::{Model, TrainConfig, Trainer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::common::BackendArg;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The data: a directory of MNIST IDX files; of CIFAR-10 or CIFAR-100 binary files
    /// (data_batch_*.bin and test_batch.bin, or train.bin and test.bin; also the
    /// cifar-10-batches-bin/ folder the archive unpacks to); of class folders of PNG or
    /// JPEG images (optionally split into train/ and test/), which are resized to the
    /// model's input height and width and converted to its channels (greyscale, RGB;
    /// alpha dropped); or `xor`.
    #[arg(long, default_value = "data/mnist")]
    data: String,
    /// Passes over the training set [default: 3; on --resume, the checkpoint's].
    #[arg(long)]
    epochs: Option<u64>,
    /// Stop after this many mini-batches in all, then evaluate (the learning-rate schedule
    /// is still planned over --epochs, so a stopped run resumes on the same schedule).
    #[arg(long)]
    steps: Option<u64>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Batch size for evaluation.
    #[arg(long, default_value_t = 500)]
    eval_batch: usize,
    /// Learning rate (the peak rate under a schedule).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptArg,
    /// SGD momentum (0 for plain SGD).
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    nesterov: bool,
    /// L2 weight decay, added to the gradient as PyTorch's SGD and Adam do.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Learning-rate schedule: constant, step:EVERY:GAMMA (per epoch), cosine[:WARMUP]
    /// (per step), onecycle (per step: up from lr/10 over the first quarter of the run,
    /// then down to lr/1000 on a cosine) or plateau:PATIENCE:FACTOR (the rate times FACTOR
    /// whenever the validation loss has not improved for PATIENCE epochs).
    #[arg(long, default_value = "onecycle")]
    schedule: String,
    /// Seed of every random stream (initialization, shuffling, dropout, validation split).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the file order: mini-batch k holds samples k·B to k·B+B−1.
    #[arg(long)]
    no_shuffle: bool,
    /// Skip the last mini-batch of an epoch when it is smaller than --batch.
    #[arg(long)]
    drop_last: bool,
    /// Augment the training images (never validation or test data), a comma-separated
    /// list applied in order: shift:PIXELS (random translation up to PIXELS each way, blank
    /// fill), crop:PAD (pad and random crop, the same as shift:PAD), flip (left–right, half
    /// the time), rotate:DEGREES (up to DEGREES each way, bilinear). Each sample's changes
    /// are a function of (seed, epoch, sample), so any thread count and a resumed run give
    /// the same bits. Recorded in the metrics and the checkpoint.
    #[arg(long, value_name = "LIST", value_parser = parse_augment)]
    augment: Option<Augment>,
    /// Stop when the validation loss (--val, else the test split) has not improved for
    /// this many epochs.
    #[arg(long, value_name = "PATIENCE")]
    early_stop: Option<u64>,
    /// Also save the weights of the epoch with the lowest validation loss, beside the
    /// last ones as WEIGHTS.best.safetensors.
    #[arg(long)]
    keep_best: bool,
    /// What the model learns to output: `labels` (the data set's classes or values) or
    /// `input` (each sample's own normalized input: a reconstruction, for autoencoders
    /// with `loss mse`; `eval` then reports the error and the PSNR).
    #[arg(long, value_enum, default_value = "labels")]
    target: TargetArg,
    /// Hold out this many training samples for validation.
    #[arg(long, default_value_t = 0)]
    val: usize,
    /// Input normalization: auto (the training set's mean and std, per channel for colour
    /// images), none, MEAN,STD, or per channel M1,M2,M3/S1,S2,S3.
    #[arg(long, default_value = "auto")]
    normalize: String,
    /// Weight initialization: pytorch (PyTorch's default for Linear/Conv2d: weights and
    /// biases U(±1/√fan_in)), he (uniform, zero biases) or glorot (uniform, zero biases).
    #[arg(long, default_value = "pytorch")]
    weight_init: String,
    /// Start from these weights (Percept's or PyTorch's safetensors) instead of random ones.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Keep these statements' parameters fixed (names or indices, comma-separated).
    #[arg(long, value_delimiter = ',')]
    freeze: Vec<String>,
    /// Where to save the weights [default: runs/<model>/weights.safetensors].
    #[arg(long)]
    save: Option<PathBuf>,
    /// Where to write the resumable checkpoint [default: runs/<model>/checkpoint.safetensors].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Also write the checkpoint every this many steps (0: only at the end of each epoch
    /// and on an interrupt), so a killed run loses at most that many steps.
    #[arg(long, default_value_t = percept_runtime::train::DEFAULT_CHECKPOINT_EVERY)]
    checkpoint_every: u64,
    /// Continue a run from its checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Back end that runs the compiled programs.
    #[arg(long, value_enum, default_value = "jit")]
    backend: BackendArg,
    /// Worker threads [default: the number of cores, divided among the processes of this machine under mpirun].
    #[arg(long)]
    threads: Option<usize>,
    /// The micro-kernel of the JIT's matrix products.
    #[arg(long, value_enum, default_value = "native")]
    microkernel: super::common::MicroArg,
    /// Metrics, one JSON object per epoch [default: runs/<model>/metrics.jsonl].
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Draw the loss and accuracy curves to this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print one JSON object per epoch and a summary on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TargetArg {
    Labels,
    Input,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OptArg {
    Sgd,
    Adam,
}

struct Progress {
    json: bool,
    bar: Option<ProgressBar>,
    epochs: u64,
    weights: PathBuf,
    metrics: Option<std::fs::File>,
    history: Vec<EpochReport>,
}

impl Observer for Progress {
    fn step(&mut self, p: &StepProgress) {
        let Some(bar) = &self.bar else { return };
        if bar.length() != Some(p.batches as u64) {
            bar.reset();
            bar.set_length(p.batches as u64);
        }
        bar.set_position(p.batch as u64);
        bar.set_message(format!(
            "epoch {}/{}  loss {:.4}  acc {}  {} samples/s",
            p.epoch,
            self.epochs,
            p.loss,
            pct(p.accuracy),
            group(p.samples_per_s)
        ));
    }

    fn epoch(&mut self, model: &Model, r: &EpochReport) -> percept_runtime::Result<()> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        model.save_weights(&self.weights)?;
        let mut line =
            format!("epoch {}/{}  loss {:.4}  acc {}", r.epoch, self.epochs, r.train_loss, pct(r.train_accuracy));
        for (name, e) in [("val", &r.val), ("test", &r.test)] {
            match e {
                Some(e) if e.psnr.is_some() => {
                    line += &format!("  {name} loss {:.4} psnr {:.2} dB", e.loss.unwrap_or(f64::NAN), e.psnr.unwrap())
                }
                Some(e) => line += &format!("  {name} loss {:.4} acc {}", e.loss.unwrap_or(f64::NAN), pct(e.accuracy)),
                None => {}
            }
        }
        line += &format!("  {} samples/s  {:.1} s  lr {:.4}", group(r.samples_per_s), r.seconds, r.lr);
        if r.best_epoch == Some(r.epoch) {
            line += "  (best)";
        }
        if !r.complete {
            line += "  (partial epoch)";
        }
        // Long runs on tiny data (XOR: hundreds of one-step epochs) log about 20 lines.
        let every = (self.epochs / 20).max(1);
        if self.epochs <= 50 || r.epoch.is_multiple_of(every) || r.epoch == 1 || r.epoch == self.epochs || !r.complete {
            eprintln!("{line}");
        }
        let json = epoch_json(r);
        if self.json {
            outln!("{json}");
        }
        if let Some(f) = &mut self.metrics {
            writeln!(f, "{json}").map_err(|e| percept_runtime::Error(format!("cannot write the metrics file: {e}")))?;
        }
        self.history.push(r.clone());
        Ok(())
    }
}

fn epoch_json(r: &EpochReport) -> serde_json::Value {
    let e = |x: &Option<percept_runtime::eval::EvalReport>| {
        x.as_ref().map(|e| match e.psnr {
            Some(psnr) => serde_json::json!({"loss": e.loss, "psnr_db": psnr}),
            None => serde_json::json!({"loss": e.loss, "accuracy": e.accuracy}),
        })
    };
    serde_json::json!({
        "epoch": r.epoch,
        "steps": r.steps,
        "samples": r.samples,
        "loss": r.train_loss,
        "accuracy": r.train_accuracy,
        "seconds": r.seconds,
        "samples_per_s": r.samples_per_s,
        "lr": r.lr,
        "best_epoch": r.best_epoch,
        "val": e(&r.val),
        "test": e(&r.test),
        "complete": r.complete,
    })
}

fn run_dir(model: &Model) -> PathBuf {
    Path::new("runs").join(&model.spec.name)
}

pub fn run(a: Args) -> CliResult {
    let group = super::processes::process_group()?;
    match train(a, group.clone()) {
        // An error on one process must not leave the others waiting in a collective.
        Err(e) if group.size() > 1 => {
            let who = if group.rank() == 0 { String::new() } else { format!("process {}: ", group.rank()) };
            eprintln!("error: {who}{}", e.0.trim_end().trim_start_matches("error: "));
            group.abort(1)
        }
        r => r,
    }
}

fn train(a: Args, procs: Rc<dyn Group>) -> CliResult {
    // With several processes, process 0 alone prints, writes the metrics, weights and
    // checkpoints, and takes the run directory's lock; all of them train.
    let rank0 = procs.rank() == 0;
    let mut model = Model::from_file(&a.model)?;
    model.set_backend(a.backend.into())?;
    model.codegen.micro = a.microkernel.into();
    if let Some(t) = a.threads {
        model.set_threads(t);
    }
    let mut splits = load_data(&a.data, &model)?;
    let weights = a.save.clone().unwrap_or_else(|| run_dir(&model).join("weights.safetensors"));
    let checkpoint = a.checkpoint.clone().unwrap_or_else(|| run_dir(&model).join("checkpoint.safetensors"));

    let mut trainer = match &a.resume {
        Some(path) => {
            let file = percept_runtime::tensorfile::TensorFile::read(path)?;
            let mut t = Trainer::resume(&mut model, &file, &path.display().to_string())?;
            if let Some(e) = a.epochs {
                t.config.epochs = e;
            }
            if a.steps.is_some() {
                t.config.steps = a.steps;
            }
            if let Some(aug) = a.augment.as_ref().filter(|aug| aug.to_string() != t.config.augment) {
                return Err(UserError(format!(
                    "{} was trained with --augment `{}`; a resumed run keeps it (asked: `{aug}`)",
                    path.display(),
                    t.config.augment
                )));
            }
            rank0.then(|| {
                eprintln!(
                    "resuming from {} at epoch {}, sample {} (step {})",
                    path.display(),
                    t.position.epoch + 1,
                    t.position.sample,
                    t.position.step
                )
            });
            t
        }
        None => {
            let config = TrainConfig {
                epochs: a.epochs.unwrap_or(3),
                steps: a.steps,
                batch: a.batch,
                eval_batch: a.eval_batch,
                lr: a.lr,
                optimizer: match a.optimizer {
                    OptArg::Sgd => OptimizerKind::Sgd,
                    OptArg::Adam => OptimizerKind::Adam,
                },
                momentum: if a.optimizer == OptArg::Adam { 0.0 } else { a.momentum },
                nesterov: a.nesterov,
                weight_decay: a.weight_decay,
                schedule: a.schedule.clone(),
                seed: a.seed,
                shuffle: !a.no_shuffle,
                drop_last: a.drop_last,
                init: a.weight_init.clone(),
                freeze: a.freeze.clone(),
                augment: a.augment.as_ref().map(Augment::to_string).unwrap_or_default(),
                early_stop: a.early_stop,
                keep_best: a.keep_best,
                ..TrainConfig::default()
            };
            let t = Trainer::new(config)?;
            model.data_meta.norm = parse_norm(&a.normalize, &splits)?;
            match &a.init {
                Some(w) => {
                    model.load_weights_file(w)?;
                    t.attach(&mut model)?;
                }
                None => t.init_model(&mut model)?,
            }
            t
        }
    };
    if a.val > 0 {
        splits.hold_out(a.val, trainer.config.seed)?;
    }
    splits.apply_norm(&model.data_meta.norm);
    if a.target == TargetArg::Input || model.data_meta.target_input {
        if model.spec.loss.map(|l| l.loss) != Some(percept_compiler::layers::Loss::Mse) {
            return Err(UserError(format!(
                "--target input needs `loss mse`: the model `{}` learns to reproduce its input",
                model.spec.name
            )));
        }
        splits.inputs_as_targets();
        model.data_meta.target_input = true;
    }
    model.data_meta.classes = splits.train.class_names().map(|c| c.to_vec());
    trainer.checkpoint = rank0.then(|| checkpoint.clone());
    let best = best_weights_path(&weights);
    trainer.best_weights = (rank0 && trainer.config.keep_best).then(|| best.clone());
    trainer.group = procs.clone();

    trainer.checkpoint_every = a.checkpoint_every;
    trainer.interrupt = Some(Arc::new(AtomicBool::new(false)));
    // One run at a time writes into a run directory: the lock goes with the process, so a
    // killed run leaves none behind.
    let _lock = if rank0 { Some(lock_run_dir(&checkpoint)?) } else { None };
    let signal = watch_signals(&trainer)?;
    if !rank0 {
        return train_quietly(&mut trainer, &mut model, &splits, &signal);
    }
    let metrics_path = a.metrics.clone().unwrap_or_else(|| run_dir(&model).join("metrics.jsonl"));
    if let Some(dir) = metrics_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| UserError(format!("cannot create {}: {e}", dir.display())))?;
    }
    // A resumed run continues the metrics of the run it resumes.
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(a.resume.is_some())
        .write(true)
        .truncate(a.resume.is_none())
        .open(&metrics_path)
        .map_err(|e| UserError(format!("cannot create the metrics file {}: {e}", metrics_path.display())))?;
    let cfg = &trainer.config;
    let header = serde_json::json!({
        "run": {
            "model": model.spec.name,
            "model_file": a.model.display().to_string(),
            "data": splits.source,
            "train_samples": splits.train.len(),
            "normalize": {"mean": model.data_meta.norm.mean, "std": model.data_meta.norm.std},
            "backend": model.backend().name(),
            "threads": model.codegen.threads,
            "processes": procs.size(),
            "weights": weights.display().to_string(),
            "checkpoint": checkpoint.display().to_string(),
            "checkpoint_every": trainer.checkpoint_every,
            "resumed_at": a.resume.as_ref().map(|_| serde_json::json!(trainer.position)),
            "config": cfg,
        }
    });
    writeln!(metrics, "{header}").map_err(|e| UserError(format!("cannot write the metrics file: {e}")))?;
    eprintln!(
        "training {} ({} parameters) on {} samples{}: batch {}, {} lr {}{}, schedule {}, {} epoch(s){}, backend {}, {} thread(s)",
        model.spec.name,
        group(model.spec.trainable_count() as f64),
        group(splits.train.len() as f64),
        if cfg.augment.is_empty() { String::new() } else { format!(" augmented with {}", cfg.augment) },
        cfg.batch,
        cfg.optimizer().name(),
        cfg.lr,
        if cfg.optimizer == OptimizerKind::Sgd && cfg.momentum != 0.0 {
            format!(" momentum {}", cfg.momentum)
        } else {
            String::new()
        },
        cfg.schedule,
        cfg.epochs,
        cfg.steps.map(|s| format!(" (at most {s} steps)")).unwrap_or_default(),
        model.backend().name(),
        model.codegen.threads
    );
    if procs.size() > 1 {
        eprintln!(
            "{} processes: each trains on its shard of every mini-batch (about {} samples), {} thread(s) each",
            procs.size(),
            cfg.batch.div_ceil(procs.size()),
            model.codegen.threads
        );
    }
    let bar = stderr_is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}").expect("valid template"));
        b
    });
    let mut progress = Progress {
        json: a.json,
        bar,
        epochs: cfg.epochs,
        weights: weights.clone(),
        metrics: Some(metrics),
        history: vec![],
    };
    let outcome = trainer.fit(&mut model, &splits, &mut progress).map_err(|e| {
        let note = if checkpoint.exists() {
            format!("\nthe last good checkpoint is intact: {}", checkpoint.display())
        } else {
            String::new()
        };
        UserError(format!("{e}{note}"))
    })?;
    model.save_weights(&weights)?;
    if let Some(plot) = &a.plot {
        percept_runtime::viz::draw_curves(&progress.history, plot)?;
        eprintln!("plot: {}", plot.display());
    }
    let last = progress.history.last();
    let test_acc = last.and_then(|r| r.test.as_ref()).and_then(|t| t.accuracy);
    let test_psnr = last.and_then(|r| r.test.as_ref()).and_then(|t| t.psnr);
    let summary = serde_json::json!({
        "model": model.spec.name,
        "outcome": match outcome {
            Outcome::Finished => "finished",
            Outcome::StepLimit => "step_limit",
            Outcome::Interrupted => "interrupted",
            Outcome::EarlyStopped => "early_stopped",
        },
        "best_epoch": trainer.monitor.best.map(|(_, e)| e),
        "best_weights": trainer.best_weights.as_ref().map(|p| p.display().to_string()),
        "epochs": trainer.position.epoch,
        "steps": trainer.position.step,
        "test_accuracy": test_acc,
        "test_psnr_db": test_psnr,
        "test_loss": last.and_then(|r| r.test.as_ref()).and_then(|t| t.loss),
        "train_seconds": progress.history.iter().map(|r| r.seconds).sum::<f64>(),
        "compile_seconds": model.compile_time.as_secs_f64(),
        "weights": weights.display().to_string(),
        "checkpoint": checkpoint.display().to_string(),
        "metrics": metrics_path.display().to_string(),
    });
    if outcome == Outcome::EarlyStopped {
        eprintln!(
            "stopped early after epoch {}: the validation loss has not improved for {} epoch(s) (best: epoch {})",
            trainer.position.epoch,
            trainer.monitor.stale,
            trainer.monitor.best.map_or(0, |(_, e)| e)
        );
    }
    if a.json {
        outln!("{summary}");
    } else {
        match outcome {
            Outcome::Interrupted => outln!(
                "interrupted by {} after step {}; resume with: percept train {} --resume {}",
                signal_name(signal.load(Ordering::SeqCst)),
                trainer.position.step,
                a.model.display(),
                checkpoint.display()
            ),
            _ => {
                let score = match test_psnr {
                    Some(db) => format!("test PSNR {db:.2} dB"),
                    None => format!("test accuracy {}", pct(test_acc)),
                };
                outln!(
                    "trained {} for {} step(s): {score}; weights saved to {}",
                    model.spec.name,
                    trainer.position.step,
                    weights.display()
                );
                if let (Some(path), Some((loss, epoch))) = (&trainer.best_weights, trainer.monitor.best) {
                    outln!("best validation loss {loss:.4} at epoch {epoch}: weights saved to {}", path.display());
                }
            }
        }
    }
    if outcome == Outcome::Interrupted {
        exit_interrupted(&*procs, &signal);
    }
    Ok(())
}

/// Another process than 0 of a data-parallel run: it trains, and writes and prints nothing.
fn train_quietly(
    trainer: &mut Trainer,
    model: &mut Model,
    splits: &percept_runtime::data::Splits,
    signal: &Arc<AtomicUsize>,
) -> CliResult {
    if trainer.fit(model, splits, &mut ())? == Outcome::Interrupted {
        exit_interrupted(&*trainer.group, signal);
    }
    Ok(())
}

/// Exit after an interrupt with the shell's convention, 128 + the signal's number (SIGTERM's
/// on a process that stopped by the others' decision), once process 0 has written the
/// checkpoint.
fn exit_interrupted(procs: &dyn Group, signal: &AtomicUsize) -> ! {
    let sig = match signal.load(Ordering::SeqCst) {
        0 => signal_hook::consts::SIGTERM as usize,
        s => s,
    };
    let _ = procs.barrier();
    std::process::exit(128 + sig as i32);
}

/// Ctrl-C (SIGINT), SIGTERM (what `kill`, Slurm, Kubernetes and mpirun send) and SIGHUP
/// finish the current step, write the checkpoint and exit with 128 + the signal; the same
/// signal again exits at once. Returns where the signal's number is recorded.
fn watch_signals(trainer: &Trainer) -> Result<Arc<AtomicUsize>, UserError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = trainer.interrupt.clone().expect("set by the caller");
    let which = Arc::new(AtomicUsize::new(SIGINT as usize));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        let err = |e: std::io::Error| UserError(format!("cannot watch for signal {sig}: {e}"));
        // A second signal, once `stop` is set, exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone()).map_err(err)?;
        signal_hook::flag::register_usize(sig, which.clone(), sig as usize).map_err(err)?;
        signal_hook::flag::register(sig, stop.clone()).map_err(err)?;
    }
    Ok(which)
}

fn signal_name(sig: usize) -> &'static str {
    match sig as i32 {
        // No signal here: another process of a data-parallel run was stopped.
        0 => "a signal to another process",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "Ctrl-C",
    }
}

/// An exclusive lock on the run directory of `checkpoint` (`.percept.lock`), held while
/// the returned file is open; a second run writing there is refused.
fn lock_run_dir(checkpoint: &std::path::Path) -> Result<std::fs::File, UserError> {
    let dir = checkpoint.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| UserError(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(".percept.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| UserError(format!("cannot open the lock {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(UserError(format!(
            "another training run is writing into {} (its lock {} is held); wait for it, or give --checkpoint another path",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(UserError(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// `--augment`'s value: a usage error (exit 2) names the known augmentations.
fn parse_augment(s: &str) -> Result<Augment, String> {
    Augment::parse(s)
}

/// Where `--keep-best` saves: `weights.safetensors` → `weights.best.safetensors`.
fn best_weights_path(weights: &Path) -> PathBuf {
    let stem = weights.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    weights.with_file_name(format!("{stem}.best.safetensors"))
}
