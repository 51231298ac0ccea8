//! A model at run time: its checked spec, its state (parameters, running statistics,
//! gradients, optimizer state) and the programs compiled for it, cached by (program,
//! batch size). Weights load and save as PyTorch-compatible safetensors.

use crate::bail;
use crate::data::Norm;
use crate::error::{Error, Result};
use crate::tensorfile::{Data, NamedTensor, TensorFile};
use percept_compiler::codegen::{self, CodegenOptions};
use percept_compiler::exec::{
    self, Collectives, Executable, Feed, Fetch, InterpExecutable, Optimizer, SingleProcess, SlotKind, StateLayout,
    StateStore,
};
use percept_compiler::ops::StepCtx;
use percept_compiler::spec::{ModelSpec, ParamRole};
use percept_compiler::SourceFile;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Which back end runs the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// The reference interpreter: plain loops, the oracle.
    Interp,
    /// Shape-specialized machine code from Cranelift.
    #[default]
    Jit,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Interp => "interp",
            Backend::Jit => "jit",
        }
    }
}

/// One kernel's share of a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: String,
    pub flops: u64,
    /// Bytes it reads and writes (its values, once each).
    pub bytes: u64,
    pub time: Duration,
    pub gemm: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ProgramKey {
    /// With `global`, the program of a shard of `batch` samples of a global batch split
    /// across processes (data-parallel training: batch norm meets the other processes).
    Grad {
        batch: usize,
        global: Option<usize>,
    },
    Update,
    Eval {
        batch: usize,
        loss: bool,
        expose: Vec<usize>,
    },
}

/// What the user told us about the data when the weights were trained.
#[derive(Clone, Debug, PartialEq)]
pub struct DataMeta {
    pub norm: Norm,
    pub classes: Option<Vec<String>>,
    /// Trained to reproduce its (normalized) input (`--target input`): evaluation reports
    /// the reconstruction error and PSNR.
    pub target_input: bool,
}

impl Default for DataMeta {
    fn default() -> DataMeta {
        DataMeta { norm: Norm::identity(), classes: None, target_input: false }
    }
}

pub struct Model {
    pub spec: ModelSpec,
    pub store: StateStore,
    /// `num_batches_tracked` of each batch-norm statement (PyTorch's counter).
    pub batches_tracked: HashMap<String, i64>,
    pub data_meta: DataMeta,
    backend: Backend,
    optimizer: Option<Optimizer>,
    frozen: Vec<String>,
    /// Whether the state has the slots data-parallel training exchanges.
    data_parallel: bool,
    cache: HashMap<ProgramKey, Box<dyn Executable>>,
    /// Total time spent compiling programs.
    pub compile_time: Duration,
    /// Debug switches of the JIT back end.
    pub codegen: CodegenOptions,
}

impl Model {
    /// Parse and check model text. The error is the rendered diagnostic.
    pub fn from_source(name: &str, text: &str) -> Result<Model> {
        let src = SourceFile::new(name, text);
        let spec = percept_compiler::parse_and_check(&src).map_err(|d| Error(d.render(&src)))?;
        Ok(Model::new(spec))
    }

    /// Read, parse and check a `.nn` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
        Model::from_source(&path.display().to_string(), &text)
    }

    /// A model with zero parameters (see [`crate::init`]) and unit running variances.
    pub fn new(spec: ModelSpec) -> Model {
        let store = StateStore::new(StateLayout::new(&spec, &[]));
        let batches_tracked =
            spec.params().filter(|p| p.role == ParamRole::BatchesTracked).map(|p| (p.name.clone(), 0)).collect();
        Model {
            spec,
            store,
            batches_tracked,
            data_meta: DataMeta::default(),
            backend: Backend::default(),
            optimizer: None,
            frozen: vec![],
            data_parallel: false,
            cache: HashMap::new(),
            compile_time: Duration::ZERO,
            codegen: CodegenOptions { threads: Model::default_threads(), ..CodegenOptions::default() },
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Split the JIT kernels' work over `threads` threads (results are the same bits for
    /// any count). Programs compiled before are recompiled.
    pub fn set_threads(&mut self, threads: usize) {
        let threads = threads.max(1);
        if threads != self.codegen.threads {
            self.codegen.threads = threads;
            self.cache.clear();
        }
    }

    /// The default thread count: the cores, shared among the processes of this machine
    /// when several run under `mpirun` (OpenMPI's and MPICH's local process counts), so
    /// their kernels' worker threads do not oversubscribe the cores.
    pub fn default_threads() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let local = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
            .iter()
            .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
            .unwrap_or(1);
        (cores / local.max(1)).max(1)
    }

    pub fn set_backend(&mut self, backend: Backend) -> Result<()> {
        if backend != self.backend {
            self.cache.clear();
            self.backend = backend;
        }
        Ok(())
    }

    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.optimizer.as_ref()
    }

    /// Choose the optimizer (and the parameters it must leave alone). Its state starts at
    /// zero; parameters and statistics are kept.
    pub fn set_optimizer(&mut self, opt: Optimizer, frozen: &[String]) -> Result<()> {
        for f in frozen {
            let known = self.spec.params().any(|p| p.role.trainable() && p.name.starts_with(&format!("{f}.")));
            if !known {
                let names: Vec<&str> =
                    self.spec.layers.iter().filter(|l| !l.params.is_empty()).map(|l| l.prefix.as_str()).collect();
                bail!(
                    "--freeze {f}: no statement with parameters is named `{f}`; the statements with parameters are {}",
                    names.join(", ")
                );
            }
        }
        let frozen_params: Vec<String> = self
            .spec
            .params()
            .filter(|p| p.role.trainable() && frozen.iter().any(|f| p.name.starts_with(&format!("{f}."))))
            .map(|p| p.name.clone())
            .collect();
        let mut store = StateStore::new(self.layout_for(Some(&opt)));
        for slot in self.store.layout().slots.iter().filter(|s| matches!(s.kind, SlotKind::Param | SlotKind::Running)) {
            store.get_mut(slot.kind, &slot.name).unwrap().copy_from_slice(&self.store.data()[slot.range()]);
        }
        self.store = store;
        self.optimizer = Some(opt);
        self.frozen = frozen_params;
        self.cache.clear();
        Ok(())
    }

    fn ensure(&mut self, key: &ProgramKey) -> Result<()> {
        if self.cache.contains_key(key) {
            return Ok(());
        }
        let start = Instant::now();
        let graph = match key {
            ProgramKey::Grad { batch, global: None } => exec::grad_program(&self.spec, *batch, &self.frozen),
            ProgramKey::Grad { batch, global: Some(global) } => {
                exec::grad_program_sharded(&self.spec, *batch, *global, &self.frozen)
            }
            ProgramKey::Update => {
                let opt = self.optimizer.ok_or_else(|| Error::new("no optimizer was chosen before training"))?;
                Ok(exec::update_program(&self.spec, &opt, &self.frozen))
            }
            ProgramKey::Eval { batch, loss, expose } => exec::eval_program(&self.spec, *batch, *loss, expose),
        }
        .map_err(|d| Error(d.summary()))?;
        let program: Box<dyn Executable> = match self.backend {
            Backend::Interp => Box::new(InterpExecutable::new(graph)),
            Backend::Jit => {
                let budget = crate::memory::available();
                let options = CodegenOptions { memory_budget: budget, ..self.codegen };
                match codegen::compile(&graph, self.store.layout(), options) {
                    Ok(exe) => Box::new(exe),
                    Err(percept_compiler::Error::Memory(_)) => return Err(self.too_large(key, budget.unwrap_or(0))),
                    Err(e) => return Err(Error(format!("JIT compilation failed: {e}"))),
                }
            }
        };
        self.compile_time += start.elapsed();
        self.cache.insert(key.clone(), program);
        Ok(())
    }

    /// The memory a program needs at a batch size: its arena with every thread's scratch.
    fn arena_bytes(&self, key: &ProgramKey, batch: usize) -> Option<u64> {
        let graph = match key {
            ProgramKey::Grad { global: None, .. } => exec::grad_program(&self.spec, batch, &self.frozen).ok()?,
            ProgramKey::Grad { global: Some(global), .. } => {
                exec::grad_program_sharded(&self.spec, batch, *global, &self.frozen).ok()?
            }
            ProgramKey::Eval { loss, expose, .. } => exec::eval_program(&self.spec, batch, *loss, expose).ok()?,
            ProgramKey::Update => return None,
        };
        let features = codegen::host_features().ok()?;
        let tile = codegen::micro::tile_for(self.codegen.micro, features);
        let lowered = codegen::lower_program(&graph, self.store.layout(), self.codegen, &tile).ok()?;
        Some(lowered.plan.peak_bytes() as u64)
    }

    /// The one-line refusal of a program too large for this process: how much it needs,
    /// how much there is, and the largest batch that fits (arenas grow linearly with it).
    fn too_large(&self, key: &ProgramKey, budget: u64) -> Error {
        use crate::memory::gb;
        let batch = match key {
            ProgramKey::Grad { batch, .. } | ProgramKey::Eval { batch, .. } => *batch,
            ProgramKey::Update => 1,
        };
        let state = self.store.data().len() as u64 * 4;
        let need = self.arena_bytes(key, batch).unwrap_or(0);
        let fits = match (self.arena_bytes(key, 1), self.arena_bytes(key, 2)) {
            (Some(one), Some(two)) if two > one => {
                let per = two - one;
                let fixed = one.saturating_sub(per);
                Some(budget.saturating_sub(fixed) / per).filter(|&b| b >= 1)
            }
            _ => None,
        };
        let hint = match fits {
            Some(b) => format!("; the largest batch that fits is about {b} (--batch)"),
            None => "; not even a batch of 1 fits".to_string(),
        };
        Error(format!(
            "the model `{}` at batch {batch} needs about {} of memory ({} of activations and scratch, {} of state), \
             but this process may use {}{hint}",
            self.spec.name,
            gb(need + state),
            gb(need),
            gb(state),
            gb(budget)
        ))
    }

    fn run(&mut self, key: ProgramKey, feed: &Feed, cx: &StepCtx) -> Result<Fetch> {
        self.run_with(key, feed, cx, &mut SingleProcess)
    }

    fn run_with(&mut self, key: ProgramKey, feed: &Feed, cx: &StepCtx, coll: &mut dyn Collectives) -> Result<Fetch> {
        self.ensure(&key)?;
        let program = self.cache.get_mut(&key).expect("compiled above");
        Ok(program.run_with(&mut self.store, feed, cx, coll)?)
    }

    /// The graph a program was compiled from (compiling it if needed), for inspection.
    pub fn grad_graph(&mut self, batch: usize) -> Result<&percept_compiler::ir::Graph> {
        let key = ProgramKey::Grad { batch, global: None };
        self.ensure(&key)?;
        Ok(self.cache[&key].graph())
    }

    /// The compiled JIT programs of a training step at `batch` (grad, then update), or of
    /// the evaluation forward pass, compiling them if needed: their kernels with names,
    /// ops, CLIF text and disassembly. Needs the JIT back end.
    pub fn jit_programs(&mut self, batch: usize, training: bool) -> Result<Vec<&codegen::JitExecutable>> {
        let keys = if training {
            vec![ProgramKey::Grad { batch, global: None }, ProgramKey::Update]
        } else {
            vec![ProgramKey::Eval { batch, loss: self.spec.loss.is_some(), expose: vec![] }]
        };
        self.jit_programs_of(keys)
    }

    /// The compiled JIT program of the forward pass alone at `batch` (what
    /// [`Model::forward`] runs without a target, and [`Model::inference_profile`] times).
    pub fn inference_program(&mut self, batch: usize) -> Result<Vec<&codegen::JitExecutable>> {
        self.jit_programs_of(vec![ProgramKey::Eval { batch, loss: false, expose: vec![] }])
    }

    fn jit_programs_of(&mut self, keys: Vec<ProgramKey>) -> Result<Vec<&codegen::JitExecutable>> {
        if self.backend != Backend::Jit {
            bail!("kernels exist only on the JIT back end");
        }
        for k in &keys {
            self.ensure(k)?;
        }
        Ok(keys.iter().filter_map(|k| self.cache[k].as_any().downcast_ref::<codegen::JitExecutable>()).collect())
    }

    /// Turn per-kernel timing on or off in every compiled JIT program (and clear it).
    pub fn set_profiling(&mut self, on: bool) {
        for exe in self.cache.values_mut() {
            if let Some(j) = exe.as_any_mut().downcast_mut::<codegen::JitExecutable>() {
                j.set_profiling(on);
            }
        }
    }

    /// Per kernel of the training step at `batch` (grad, then update programs): its
    /// name, FLOPs, total time measured since profiling was turned on, and whether it is
    /// GEMM-shaped.
    pub fn kernel_profile(&self, batch: usize) -> Vec<KernelTime> {
        self.profile_of(&[ProgramKey::Grad { batch, global: None }, ProgramKey::Update])
    }

    /// Per kernel of the evaluation forward pass at `batch` (what [`Model::forward`] runs
    /// without a target or exposed values), as [`Model::kernel_profile`] gives them.
    pub fn inference_profile(&self, batch: usize) -> Vec<KernelTime> {
        self.profile_of(&[ProgramKey::Eval { batch, loss: false, expose: vec![] }])
    }

    fn profile_of(&self, keys: &[ProgramKey]) -> Vec<KernelTime> {
        let mut out = vec![];
        for key in keys {
            let Some(exe) = self.cache.get(key) else { continue };
            let Some(j) = exe.as_any().downcast_ref::<codegen::JitExecutable>() else { continue };
            for (i, k) in j.program().kernels.iter().enumerate() {
                let time = j.profile().and_then(|p| p.get(i).copied()).unwrap_or_default();
                out.push(KernelTime {
                    name: k.name().to_string(),
                    flops: k.flops,
                    bytes: k.bytes_read + k.bytes_written,
                    time,
                    gemm: k.micro.is_some(),
                });
            }
        }
        out
    }

    /// Compile the training programs for a batch size now, so their errors (such as a
    /// batch-norm batch of 1) surface before training starts.
    pub fn prepare_training(&mut self, batch: usize) -> Result<()> {
        self.ensure(&ProgramKey::Grad { batch, global: None })?;
        self.ensure(&ProgramKey::Update)
    }

    fn batch_of(&self, data: &[f32]) -> Result<usize> {
        let per: usize = self.spec.input.shape.iter().product();
        if data.is_empty() || !data.len().is_multiple_of(per) {
            bail!(
                "an input of {} values is not a whole number of samples of shape {:?}",
                data.len(),
                self.spec.input.shape
            );
        }
        Ok(data.len() / per)
    }

    /// Forward, loss and backward on one batch: gradients land in the store, running
    /// statistics are updated. Returns the loss and the predictions.
    pub fn grad_step(&mut self, data: &[f32], target: &[f32], cx: &StepCtx) -> Result<Fetch> {
        let batch = self.batch_of(data)?;
        let fetch = self.run(ProgramKey::Grad { batch, global: None }, &Feed { data, target: Some(target) }, cx)?;
        for n in self.batches_tracked.values_mut() {
            *n += 1;
        }
        Ok(fetch)
    }

    /// [`Model::grad_step`] on this process's shard (`data`, `target`) of a global batch of
    /// `global` samples split across processes: `collectives` merges batch norm's
    /// statistics and gradient sums with the other processes' and sums the gradients. Needs
    /// [`Model::set_data_parallel`].
    pub fn grad_step_shard(
        &mut self,
        data: &[f32],
        target: &[f32],
        cx: &StepCtx,
        global: usize,
        collectives: &mut dyn Collectives,
    ) -> Result<Fetch> {
        if !self.data_parallel {
            bail!("a shard's training step needs the model's state for data parallelism (Model::set_data_parallel)");
        }
        let batch = self.batch_of(data)?;
        let key = ProgramKey::Grad { batch, global: Some(global) };
        let fetch = self.run_with(key, &Feed { data, target: Some(target) }, cx, collectives)?;
        for n in self.batches_tracked.values_mut() {
            *n += 1;
        }
        Ok(fetch)
    }

    /// Compile a shard's training programs (see [`Model::prepare_training`]).
    pub fn prepare_shard(&mut self, batch: usize, global: usize) -> Result<()> {
        self.ensure(&ProgramKey::Grad { batch, global: Some(global) })?;
        self.ensure(&ProgramKey::Update)
    }

    /// Give the state the slots data-parallel training exchanges (or take them away),
    /// keeping every value; compiled programs are dropped.
    pub fn set_data_parallel(&mut self, on: bool) {
        if on == self.data_parallel {
            return;
        }
        self.data_parallel = on;
        let mut store = StateStore::new(self.layout_for(self.optimizer.as_ref()));
        for slot in self.store.layout().slots.iter().filter(|s| s.kind != SlotKind::Exchange) {
            if let Some(to) = store.get_mut(slot.kind, &slot.name) {
                to.copy_from_slice(&self.store.data()[slot.range()]);
            }
        }
        self.store = store;
        self.cache.clear();
    }

    fn layout_for(&self, opt: Option<&Optimizer>) -> StateLayout {
        let layout = StateLayout::new(&self.spec, opt.map_or(&[][..], |o| o.state_suffixes()));
        if self.data_parallel {
            layout.with_exchange(&self.spec)
        } else {
            layout
        }
    }

    /// The optimizer's update of every (unfrozen) parameter from the stored gradients.
    pub fn update_step(&mut self, cx: &StepCtx) -> Result<()> {
        self.run(ProgramKey::Update, &Feed::EMPTY, cx).map(|_| ())
    }

    /// The forward pass in evaluation mode; with `target`, also the loss. `expose` lists
    /// layer indices whose outputs are returned as activations.
    pub fn forward(&mut self, data: &[f32], target: Option<&[f32]>, expose: &[usize]) -> Result<Fetch> {
        let batch = self.batch_of(data)?;
        let key =
            ProgramKey::Eval { batch, loss: target.is_some() && self.spec.loss.is_some(), expose: expose.to_vec() };
        self.run(key, &Feed { data, target }, &StepCtx::default())
    }

    /// The weights as a safetensors file: PyTorch names and layouts, `num_batches_tracked`
    /// as I64 scalars, and metadata (model name and text hash, normalization, classes).
    pub fn weights(&self) -> TensorFile {
        let mut tensors = Vec::new();
        for p in self.spec.params() {
            let t = match p.role {
                ParamRole::BatchesTracked => NamedTensor {
                    name: p.name.clone(),
                    shape: vec![],
                    data: Data::I64(vec![self.batches_tracked.get(&p.name).copied().unwrap_or(0)]),
                },
                r => {
                    let kind = if r.running() { SlotKind::Running } else { SlotKind::Param };
                    NamedTensor::f32(&p.name, &p.shape, self.store.get(kind, &p.name).expect("slot").to_vec())
                }
            };
            tensors.push(t);
        }
        let mut metadata = HashMap::new();
        metadata.insert("format".into(), "percept-weights".into());
        metadata.insert("model".into(), self.spec.name.clone());
        metadata.insert("model_hash".into(), self.spec.text_hash());
        metadata.insert("input_shape".into(), format!("{:?}", self.spec.input.shape));
        // One number, or one per channel separated by commas.
        metadata.insert("normalize_mean".into(), Norm::list_text(&self.data_meta.norm.mean));
        metadata.insert("normalize_std".into(), Norm::list_text(&self.data_meta.norm.std));
        if let Some(c) = &self.data_meta.classes {
            metadata.insert("classes".into(), serde_json::to_string(c).expect("strings serialize"));
        }
        if self.data_meta.target_input {
            metadata.insert("target".into(), "input".into());
        }
        TensorFile { tensors, metadata }
    }

    pub fn save_weights(&self, path: &Path) -> Result<()> {
        self.weights().write(path)
    }

    /// Load weights (from Percept or PyTorch). Every parameter and running statistic must
    /// be present with its exact shape, and nothing else; `num_batches_tracked` is read
    /// when present. A mismatch is refused with the list of differences.
    pub fn load_weights(&mut self, file: &TensorFile, what: &str) -> Result<()> {
        let mut problems = Vec::new();
        let expected: HashMap<&str, _> = self.spec.params().map(|p| (p.name.as_str(), p)).collect();
        for p in self.spec.params() {
            match file.get(&p.name) {
                None if p.role == ParamRole::BatchesTracked => {}
                None => problems.push(format!("missing `{}` {:?}", p.name, p.shape)),
                Some(t) if t.shape != p.shape => {
                    problems.push(format!("`{}` has shape {:?}, the model needs {:?}", p.name, t.shape, p.shape))
                }
                Some(t) if p.role == ParamRole::BatchesTracked && t.as_f32().is_some() => {
                    problems.push(format!("`{}` must be an integer tensor", p.name))
                }
                Some(t) if p.role != ParamRole::BatchesTracked && t.as_f32().is_none() => {
                    problems.push(format!("`{}` must be a float tensor", p.name))
                }
                Some(_) => {}
            }
        }
        for t in &file.tensors {
            if !expected.contains_key(t.name.as_str()) {
                problems.push(format!("unexpected `{}` {:?}", t.name, t.shape));
            }
        }
        if !problems.is_empty() {
            bail!("{what} does not fit the model `{}`:\n  {}", self.spec.name, problems.join("\n  "));
        }
        for t in &file.tensors {
            let p = expected[t.name.as_str()];
            match (&t.data, p.role) {
                (Data::I64(v), ParamRole::BatchesTracked) => {
                    self.batches_tracked.insert(t.name.clone(), v[0]);
                }
                (Data::F32(v), r) => {
                    let kind = if r.running() { SlotKind::Running } else { SlotKind::Param };
                    self.store.get_mut(kind, &t.name).expect("slot").copy_from_slice(v);
                }
                _ => unreachable!("checked above"),
            }
        }
        // Metadata is optional (PyTorch's files have none), but what is there must be right.
        let meta = &file.metadata;
        let nums = |k: &str| -> Result<Option<Vec<f32>>> {
            let Some(v) = meta.get(k) else { return Ok(None) };
            let list: Option<Vec<f32>> =
                v.split(',').map(|x| x.trim().parse::<f32>().ok().filter(|x| x.is_finite())).collect();
            match list {
                Some(list) => Ok(Some(list)),
                None => bail!("{what}: the metadata `{k}` is `{v}`, not a finite number (or a list of them)"),
            }
        };
        match (nums("normalize_mean")?, nums("normalize_std")?) {
            (Some(mean), Some(std)) => {
                let norm = Norm { mean, std };
                if !norm.valid() {
                    bail!(
                        "{what}: the metadata's normalization (mean {:?}, std {:?}) needs as many means as \
                         deviations, each deviation positive",
                        norm.mean,
                        norm.std
                    );
                }
                if !norm.fits(&self.spec.input.shape) {
                    bail!(
                        "{what}: the metadata normalizes {} channels, but the model's input is {:?}",
                        norm.mean.len(),
                        self.spec.input.shape
                    );
                }
                self.data_meta.norm = norm;
            }
            (None, None) => {}
            _ => bail!("{what}: the metadata has one of `normalize_mean` and `normalize_std` but not the other"),
        }
        match meta.get("target").map(String::as_str) {
            None | Some("labels") => {}
            Some("input") => self.data_meta.target_input = true,
            Some(t) => bail!("{what}: the metadata `target` is `{t}`; it is `input` or absent"),
        }
        if let Some(c) = meta.get("classes") {
            let classes: Vec<String> = serde_json::from_str(c)
                .map_err(|e| Error(format!("{what}: the metadata `classes` is not a list of names: {e}")))?;
            self.data_meta.classes = Some(classes);
        }
        Ok(())
    }

    pub fn load_weights_file(&mut self, path: &Path) -> Result<()> {
        let file = TensorFile::read(path)?;
        self.load_weights(&file, &path.display().to_string())
    }
}
