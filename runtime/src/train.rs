//! Mini-batch training, as the course teaches it: each epoch shuffles the whole training
//! set (a seeded permutation per epoch), cuts it into mini-batches, runs one training step
//! per mini-batch (grad program, then the optimizer's update program), and repeats for
//! all mini-batches; the last partial batch is trained too (its own compiled
//! specialization) unless `drop_last`. After every epoch the validation and test sets are
//! evaluated; a resumable checkpoint is written atomically then, every
//! `checkpoint_every` steps, and on an interrupt — so a run killed at any moment resumes
//! from its last checkpoint and ends with the same weights as an uninterrupted one.

use crate::bail;
use crate::data::augment::Augment;
use crate::data::{Dataset, Splits, Targets};
use crate::error::{Error, Result};
use crate::eval::{count_correct, evaluate_shared, EvalReport};
use crate::init::InitScheme;
use crate::model::Model;
use crate::parallel::{check_same, fingerprint, shard, DataParallel, Group, Solo};
use crate::rng::epoch_order;
use crate::schedule::Schedule;
use crate::tensorfile::{NamedTensor, TensorFile};
use percept_compiler::exec::{Optimizer, SlotKind};
use percept_compiler::ops::StepCtx;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

/// Everything that decides a training run's numbers. Recorded in the metrics file and
/// in checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: u64,
    /// Stop after this many mini-batches in all (then evaluate). The learning-rate
    /// schedule is still planned over `epochs`.
    pub steps: Option<u64>,
    pub batch: usize,
    pub eval_batch: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    pub schedule: String,
    pub seed: u64,
    pub shuffle: bool,
    pub drop_last: bool,
    pub init: String,
    pub freeze: Vec<String>,
    /// Training-image augmentation, canonical (`shift:2,flip`; empty: none). Checkpoints
    /// written before it existed read as none.
    #[serde(default)]
    pub augment: String,
    /// Stop when the validation loss has not improved for this many epochs.
    #[serde(default)]
    pub early_stop: Option<u64>,
    /// Also save the weights of the epoch with the lowest validation loss.
    #[serde(default)]
    pub keep_best: bool,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 3,
            steps: None,
            batch: 64,
            eval_batch: 500,
            lr: 0.05,
            optimizer: OptimizerKind::Sgd,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            schedule: "onecycle".into(),
            seed: 1,
            shuffle: true,
            drop_last: false,
            init: "pytorch".into(),
            freeze: vec![],
            augment: String::new(),
            early_stop: None,
            keep_best: false,
        }
    }
}

impl TrainConfig {
    pub fn optimizer(&self) -> Optimizer {
        match self.optimizer {
            OptimizerKind::Sgd => {
                Optimizer::Sgd { momentum: self.momentum, nesterov: self.nesterov, weight_decay: self.weight_decay }
            }
            OptimizerKind::Adam => Optimizer::Adam {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.adam_eps,
                weight_decay: self.weight_decay,
            },
        }
    }

    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::parse(&self.schedule)
    }

    pub fn augmentation(&self) -> Result<Augment> {
        Augment::parse(&self.augment).map_err(|e| Error(format!("--augment: {e}")))
    }

    pub fn init_scheme(&self) -> Result<InitScheme> {
        InitScheme::parse(&self.init)
            .ok_or_else(|| Error(format!("unknown initialization `{}`; use he, glorot or pytorch", self.init)))
    }

    fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.eval_batch == 0 {
            bail!("the batch size must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("the learning rate must be a positive number, found {}", self.lr);
        }
        if self.optimizer == OptimizerKind::Adam && self.nesterov {
            bail!("--nesterov is an SGD option");
        }
        if self.nesterov && self.momentum == 0.0 {
            bail!("Nesterov momentum needs a momentum (--momentum)");
        }
        self.schedule()?;
        self.init_scheme()?;
        self.augmentation()?;
        if self.early_stop == Some(0) {
            bail!("--early-stop needs a patience of at least 1 epoch");
        }
        Ok(())
    }

    /// Whether something watches the validation loss: early stopping, the best weights or
    /// the plateau schedule.
    fn monitors(&self) -> bool {
        self.early_stop.is_some() || self.keep_best || matches!(self.schedule(), Ok(Schedule::Plateau { .. }))
    }
}

/// The mini-batches of an epoch from sample `start` of its order: consecutive chunks of
/// `batch` indices, the last one smaller unless `drop_last` drops it. Together they hold
/// every sample of the order exactly once (all but the partial batch with `drop_last`).
pub fn mini_batches(order: &[u32], start: usize, batch: usize, drop_last: bool) -> impl Iterator<Item = &[u32]> {
    order[start.min(order.len())..].chunks(batch).filter(move |c| !drop_last || c.len() == batch)
}

/// A fingerprint of a data set's samples and targets (bit patterns), to compare copies.
fn dataset_fingerprint(d: &Dataset) -> u64 {
    let x = d.x.iter().map(|v| u64::from(v.to_bits()));
    let shape = d.sample_shape.iter().map(|&s| s as u64);
    match &d.targets {
        Targets::Classes { labels, .. } => fingerprint(shape.chain(x).chain(labels.iter().map(|&l| u64::from(l)))),
        Targets::Values { values, .. } => {
            fingerprint(shape.chain(x).chain(values.iter().map(|v| u64::from(v.to_bits()))))
        }
    }
}

/// Where training is: the epoch, how many samples of its permutation are done, and the
/// global step count. With the seed this is the whole random state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub sample: usize,
    pub step: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: u64,
    pub steps: u64,
    pub samples: usize,
    pub train_loss: f64,
    pub train_accuracy: Option<f64>,
    pub seconds: f64,
    pub samples_per_s: f64,
    pub lr: f64,
    pub val: Option<EvalReport>,
    pub test: Option<EvalReport>,
    /// False when the epoch was cut short by `steps` or an interrupt.
    pub complete: bool,
    /// The epoch with the lowest validation loss so far, when something watches it.
    pub best_epoch: Option<u64>,
}

/// Progress within an epoch, for bars and logs.
#[derive(Clone, Copy, Debug)]
pub struct StepProgress {
    pub epoch: u64,
    pub batch: usize,
    pub batches: usize,
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub samples_per_s: f64,
}

pub trait Observer {
    fn step(&mut self, _p: &StepProgress) {}
    /// Called after the epoch's evaluation and checkpoint.
    fn epoch(&mut self, _model: &Model, _r: &EpochReport) -> Result<()> {
        Ok(())
    }
}

impl Observer for () {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    StepLimit,
    Interrupted,
    /// `early_stop` epochs passed without a better validation loss.
    EarlyStopped,
}

/// What the validation monitor has seen (early stopping, the best weights, the plateau
/// schedule all read it). It is kept in checkpoints, so a resumed run continues it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Monitor {
    /// The lowest validation loss so far and its epoch (1-based).
    pub best: Option<(f64, u64)>,
    /// Epochs since the best.
    pub stale: u64,
    /// Epochs since the best or the plateau schedule's last reduction.
    pub plateau_wait: u64,
    /// What the plateau schedule has multiplied the learning rate by so far.
    pub lr_scale: f64,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor { best: None, stale: 0, plateau_wait: 0, lr_scale: 1.0 }
    }
}

impl Monitor {
    /// Take in an epoch's validation loss; true if it is the best so far (strictly lower;
    /// NaN never is). A plateau of `patience` epochs multiplies the rate by `factor` and
    /// starts the count again (Keras's ReduceLROnPlateau).
    pub fn observe(&mut self, loss: f64, epoch: u64, plateau: Option<(u64, f64)>) -> bool {
        if loss.is_finite() && self.best.is_none_or(|(b, _)| loss < b) {
            self.best = Some((loss, epoch));
            self.stale = 0;
            self.plateau_wait = 0;
            return true;
        }
        self.stale += 1;
        self.plateau_wait += 1;
        if let Some((_, factor)) = plateau.filter(|&(patience, _)| self.plateau_wait >= patience) {
            self.lr_scale *= factor;
            self.plateau_wait = 0;
        }
        false
    }
}

pub struct Trainer {
    pub config: TrainConfig,
    pub position: Position,
    /// Where the resumable checkpoint goes (after each epoch, every `checkpoint_every`
    /// steps, at the step limit, and on interrupt).
    pub checkpoint: Option<PathBuf>,
    /// Where `keep_best` saves the best epoch's weights.
    pub best_weights: Option<PathBuf>,
    pub monitor: Monitor,
    /// Also checkpoint after every this many steps (0: at epoch ends only).
    pub checkpoint_every: u64,
    pub interrupt: Option<Arc<AtomicBool>>,
    /// The processes training together ([`crate::parallel`]): each mini-batch is split
    /// into one contiguous shard per process. [`Solo`] trains alone.
    pub group: Rc<dyn Group>,
}

/// The default of `checkpoint_every`: about every 20 s of LeNet-5 training on this machine;
/// a checkpoint of it takes a few milliseconds.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 500;

const CHECKPOINT_FORMAT: &str = "percept-checkpoint";

impl Trainer {
    pub fn new(config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        Ok(Trainer {
            config,
            position: Position::default(),
            checkpoint: None,
            best_weights: None,
            monitor: Monitor::default(),
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            interrupt: None,
            group: Rc::new(Solo),
        })
    }

    /// Set up a fresh model for training: initialize its weights from the seed and choose
    /// the optimizer.
    pub fn init_model(&self, model: &mut Model) -> Result<()> {
        crate::init::initialize(&model.spec, &mut model.store, self.config.init_scheme()?, self.config.seed);
        self.attach(model)
    }

    /// Choose the optimizer (keeping the weights, e.g. loaded with `--init`).
    pub fn attach(&self, model: &mut Model) -> Result<()> {
        model.set_optimizer(self.config.optimizer(), &self.config.freeze)
    }

    fn steps_per_epoch(&self, n: usize) -> u64 {
        let b = self.config.batch;
        if self.config.drop_last {
            (n / b) as u64
        } else {
            n.div_ceil(b) as u64
        }
    }

    /// Train on `data.train`, evaluating `data.val` and `data.test` after each epoch.
    pub fn fit(&mut self, model: &mut Model, data: &Splits, obs: &mut dyn Observer) -> Result<Outcome> {
        let cfg = self.config.clone();
        let train = &data.train;
        let loss = model
            .spec
            .loss
            .ok_or_else(|| Error(format!("the model `{}` has no loss, so it cannot train", model.spec.name)))?
            .loss;
        train.check_fits(&model.spec.input.shape, model.spec.output_shape(), Some(loss))?;
        for d in [&data.val, &data.test].into_iter().flatten() {
            d.check_fits(&model.spec.input.shape, model.spec.output_shape(), Some(loss))?;
        }
        let n = train.len();
        if n == 0 {
            bail!("{} is empty", train.name);
        }
        let augment = cfg.augmentation()?;
        augment.check_fits(&train.sample_shape).map_err(Error)?;
        // A blank pixel of each channel as the model sees it: 0 before normalization.
        let fill = model.data_meta.norm.zero(train.sample_shape[0]);
        if cfg.drop_last && n < cfg.batch {
            bail!("with --drop-last, {} samples make no batch of {}", n, cfg.batch);
        }
        let group = self.group.clone();
        let (rank, size) = (group.rank(), group.size());
        if size > 1 {
            // Before anything is trained: every process must hold the same model, settings
            // and data, or their shards would not add up to one model's step.
            check_same(&*group, fingerprint(model.spec.canonical.bytes().map(u64::from)), "the model")?;
            let settings = serde_json::to_string(&(&cfg, &self.position)).expect("serializes");
            check_same(&*group, fingerprint(settings.bytes().map(u64::from)), "the training settings")?;
            check_same(&*group, dataset_fingerprint(train), "the training data")?;
            model.set_data_parallel(true);
        }
        // Compile the specializations up front, so e.g. a batch-norm batch of 1 is an
        // error before the first step rather than at the end of the epoch.
        let prepare = |model: &mut Model, b: usize| match shard(b, rank, size) {
            Some(r) => model.prepare_shard(r.len(), b),
            None => model.prepare_training(b),
        };
        prepare(model, cfg.batch.min(n))?;
        let partial = n % cfg.batch;
        if partial != 0 && !cfg.drop_last && n > cfg.batch {
            prepare(model, partial).map_err(|e| {
                Error(format!(
                    "the last mini-batch of each epoch has {partial} sample(s): {e} (or use --drop-last, or another --batch)"
                ))
            })?;
        }
        let schedule = cfg.schedule()?;
        if cfg.monitors() && data.val.is_none() && data.test.is_none() {
            bail!(
                "--early-stop, --keep-best and the plateau schedule watch the validation loss, and there is none: \
                 hold out a validation set with --val N (or give the data a test split)"
            );
        }
        let plateau = match schedule {
            Schedule::Plateau { patience, factor } => Some((patience, factor)),
            _ => None,
        };
        let per_epoch = self.steps_per_epoch(n);
        // The schedule is planned over the epochs; `steps` only stops early, so a run
        // stopped by it (or interrupted) and resumed follows the same schedule.
        let total_steps = per_epoch * cfg.epochs;
        let k: usize = model.spec.output_shape().iter().product();
        let is_classes = matches!(train.targets, Targets::Classes { .. });
        let (mut x, mut t) = (Vec::new(), Vec::new());

        while self.position.epoch < cfg.epochs {
            let epoch = self.position.epoch;
            let order = epoch_order(n, cfg.seed, epoch, cfg.shuffle);
            let start = Instant::now();
            let (mut loss_sum, mut seen, mut correct, mut counted, mut steps) = (0.0f64, 0usize, 0usize, 0usize, 0u64);
            let mut lr = cfg.lr;
            let batches = order.len().div_ceil(cfg.batch);
            let mut outcome = None;
            for idx in mini_batches(&order, self.position.sample, cfg.batch, cfg.drop_last) {
                if cfg.steps.is_some_and(|s| self.position.step >= s) {
                    outcome = Some(Outcome::StepLimit);
                    break;
                }
                lr = schedule.lr(cfg.lr, epoch, self.position.step, total_steps) * self.monitor.lr_scale;
                let cx = StepCtx { seed: cfg.seed, step: self.position.step, lr };
                // This process's shard of the batch (all of it when the batch is not split).
                let part = shard(idx.len(), rank, size);
                let mine = part.clone().map_or(idx, |r| &idx[r]);
                train.gather_x(mine, &mut x);
                if !augment.is_empty() {
                    let len = train.sample_len();
                    let shape = [train.sample_shape[0], train.sample_shape[1], train.sample_shape[2]];
                    for (sample, &i) in x.chunks_mut(len).zip(mine) {
                        augment.apply(sample, shape, &fill, (cfg.seed, epoch, i));
                    }
                }
                train.gather_targets(mine, loss, k, &mut t);
                let fetch = match part {
                    Some(_) => model.grad_step_shard(&x, &t, &cx, idx.len(), &mut DataParallel { group: &*group })?,
                    None => model.grad_step(&x, &t, &cx)?,
                };
                let (c, m) = count_correct(Some(loss), &fetch.prediction, &t, k, is_classes);
                let stop = self.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
                // The batch's loss and counts, and whether any process was interrupted: the
                // decision to stop is taken together, at a step boundary.
                let mut step_totals =
                    [fetch.loss.unwrap_or(f32::NAN) as f64, c as f64, m as f64, f64::from(u8::from(stop))];
                if size > 1 {
                    // A shard's loss is its part of the batch's mean; a batch every process
                    // computed whole is counted once.
                    if part.is_none() && rank != 0 {
                        step_totals[..3].fill(0.0);
                    }
                    group.allreduce_sum(&mut step_totals)?;
                }
                let l = step_totals[0] as f32;
                let (c, m) = (step_totals[1] as usize, step_totals[2] as usize);
                if !l.is_finite() {
                    bail!(
                        "the loss became {l} at epoch {}, step {} of the epoch (global step {}); training stopped. \
                         Try a lower learning rate (--lr, now {lr})",
                        epoch + 1,
                        self.position.sample / cfg.batch + 1,
                        self.position.step + 1
                    );
                }
                model.update_step(&cx)?;
                self.position.sample += idx.len();
                self.position.step += 1;
                steps += 1;
                loss_sum += l as f64 * idx.len() as f64;
                seen += idx.len();
                correct += c;
                counted += m;
                obs.step(&StepProgress {
                    epoch: epoch + 1,
                    batch: self.position.sample.div_ceil(cfg.batch),
                    batches,
                    loss: loss_sum / seen as f64,
                    accuracy: (counted > 0).then(|| correct as f64 / counted as f64),
                    samples_per_s: seen as f64 / start.elapsed().as_secs_f64().max(1e-9),
                });
                if step_totals[3] > 0.0 {
                    outcome = Some(Outcome::Interrupted);
                    break;
                }
                if self.checkpoint_every > 0 && self.position.step.is_multiple_of(self.checkpoint_every) {
                    self.save_checkpoint(model)?;
                }
            }
            if outcome.is_none() {
                // Every mini-batch ran (a dropped partial batch counts as done).
                self.position.sample = n;
            }
            let seconds = start.elapsed().as_secs_f64();
            let complete = self.position.sample >= n;
            if complete {
                self.position = Position { epoch: epoch + 1, sample: 0, step: self.position.step };
            }
            if outcome == Some(Outcome::Interrupted) {
                self.save_checkpoint(model)?;
                return Ok(Outcome::Interrupted);
            }
            let eval = |m: &mut Model, d: &Option<Dataset>| {
                d.as_ref().map(|d| evaluate_shared(m, d, cfg.eval_batch, &*group)).transpose()
            };
            let (val, test) = (eval(model, &data.val)?, eval(model, &data.test)?);
            // The validation set is watched, or the test split when there is none.
            let watched = val.as_ref().or(test.as_ref()).and_then(|e| e.loss);
            if let (true, true, Some(loss)) = (cfg.monitors(), complete, watched) {
                if self.monitor.observe(loss, epoch + 1, plateau) && cfg.keep_best {
                    if let Some(path) = &self.best_weights {
                        model.save_weights(path)?;
                    }
                }
            }
            let report = EpochReport {
                epoch: epoch + 1,
                steps,
                samples: seen,
                train_loss: if seen > 0 { loss_sum / seen as f64 } else { f64::NAN },
                train_accuracy: (counted > 0).then(|| correct as f64 / counted as f64),
                seconds,
                samples_per_s: seen as f64 / seconds.max(1e-9),
                lr,
                val,
                test,
                complete,
                best_epoch: self.monitor.best.map(|(_, e)| e),
            };
            self.save_checkpoint(model)?;
            obs.epoch(model, &report)?;
            if let Some(o) = outcome {
                return Ok(o);
            }
            if cfg.steps.is_some_and(|s| self.position.step >= s) && self.position.epoch < cfg.epochs {
                return Ok(Outcome::StepLimit);
            }
            if cfg.early_stop.is_some_and(|p| self.monitor.stale >= p) && self.position.epoch < cfg.epochs {
                return Ok(Outcome::EarlyStopped);
            }
        }
        Ok(Outcome::Finished)
    }

    /// A resumable checkpoint: the weights, the optimizer state, the configuration and
    /// the position (the random state follows from seed and position).
    pub fn checkpoint_file(&self, model: &Model) -> TensorFile {
        let mut file = model.weights();
        for slot in model.store.layout().of_kind(SlotKind::OptState) {
            file.tensors.push(NamedTensor::f32(
                format!("optimizer.{}", slot.name),
                &slot.shape,
                model.store.data()[slot.range()].to_vec(),
            ));
        }
        file.metadata.insert("format".into(), CHECKPOINT_FORMAT.into());
        file.metadata.insert("config".into(), serde_json::to_string(&self.config).expect("serializes"));
        file.metadata.insert("position".into(), serde_json::to_string(&self.position).expect("serializes"));
        file.metadata.insert("monitor".into(), serde_json::to_string(&self.monitor).expect("serializes"));
        file
    }

    pub fn save_checkpoint(&self, model: &Model) -> Result<()> {
        match &self.checkpoint {
            Some(p) => self.checkpoint_file(model).write(p),
            None => Ok(()),
        }
    }

    /// Restore a run from a checkpoint: weights, optimizer state, configuration and
    /// position. `epochs` and `steps` may be changed to extend the run.
    pub fn resume(model: &mut Model, file: &TensorFile, what: &str) -> Result<Trainer> {
        if file.metadata.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            bail!("{what} is not a Percept checkpoint (a weights file goes to --init)");
        }
        if file.metadata.get("model_hash") != Some(&model.spec.text_hash()) {
            bail!("{what} was written for a different model text than `{}`", model.spec.name);
        }
        let config = file
            .metadata
            .get("config")
            .ok_or_else(|| Error(format!("{what}: the checkpoint has no training configuration (`config`)")))?;
        let config: TrainConfig = serde_json::from_str(config)
            .map_err(|e| Error(format!("{what}: bad training configuration in the checkpoint: {e}")))?;
        config.validate().map_err(|e| Error(format!("{what}: the checkpoint's configuration: {e}")))?;
        let position: Position = file
            .metadata
            .get("position")
            .and_then(|p| serde_json::from_str(p).ok())
            .ok_or_else(|| Error(format!("{what}: the checkpoint has no position")))?;
        // Checkpoints from before the monitor existed have none: a fresh one.
        let monitor = match file.metadata.get("monitor") {
            Some(m) => serde_json::from_str(m)
                .map_err(|e| Error(format!("{what}: bad validation monitor in the checkpoint: {e}")))?,
            None => Monitor::default(),
        };
        let trainer = Trainer { position, monitor, ..Trainer::new(config)? };
        trainer.attach(model)?;
        let weights = TensorFile {
            tensors: file.tensors.iter().filter(|t| !t.name.starts_with("optimizer.")).cloned().collect(),
            metadata: file.metadata.clone(),
        };
        model.load_weights(&weights, what)?;
        for t in file.tensors.iter().filter(|t| t.name.starts_with("optimizer.")) {
            let name = &t.name["optimizer.".len()..];
            let slot = model
                .store
                .get_mut(SlotKind::OptState, name)
                .ok_or_else(|| Error(format!("{what}: unexpected optimizer state `{name}`")))?;
            let v = t.as_f32().filter(|v| v.len() == slot.len());
            slot.copy_from_slice(
                v.ok_or_else(|| Error(format!("{what}: optimizer state `{name}` has the wrong size")))?,
            );
        }
        Ok(trainer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitor_reads_back_from_a_checkpoint_to_the_bit() {
        // serde_json's default parser reads this value back one ulp high.
        for best in [1.2479414145151775, 0.1 + 0.2, f64::MIN_POSITIVE, 1e300] {
            let m = Monitor { best: Some((best, 8)), stale: 1, plateau_wait: 1, lr_scale: 0.1 * 0.1 };
            let back: Monitor = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            assert_eq!(back.best.unwrap().0.to_bits(), best.to_bits());
            assert_eq!(back, m);
        }
    }

    #[test]
    fn every_sample_is_seen_exactly_once_per_epoch() {
        for (n, b) in [(10, 3), (9, 3), (1, 4), (60_000, 64), (7, 7)] {
            let order = epoch_order(n, 5, 2, true);
            let mut seen: Vec<u32> = mini_batches(&order, 0, b, false).flatten().copied().collect();
            assert_eq!(mini_batches(&order, 0, b, false).count(), n.div_ceil(b));
            assert!(mini_batches(&order, 0, b, false).all(|c| c.len() == b || c.len() == n % b));
            seen.sort_unstable();
            assert_eq!(seen, (0..n as u32).collect::<Vec<_>>(), "n {n} batch {b}");
            // Resuming after k batches continues with exactly the rest.
            let k = (n / b) / 2;
            let rest: Vec<u32> = mini_batches(&order, k * b, b, false).flatten().copied().collect();
            assert_eq!(rest, order[k * b..]);
            // drop_last skips only the partial batch.
            let dropped: usize = mini_batches(&order, 0, b, true).map(|c| c.len()).sum();
            assert_eq!(dropped, n - n % b);
        }
        // Without shuffling, mini-batch k holds samples k·B to k·B+B−1.
        let order = epoch_order(10, 5, 0, false);
        let batches: Vec<&[u32]> = mini_batches(&order, 0, 4, false).collect();
        assert_eq!(batches, [&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
    }
}
