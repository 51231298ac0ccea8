//! Running JIT code. This is one of the two modules with `unsafe` (the other is the
//! native micro-kernels): turning code addresses into function pointers, calling them,
//! and freeing the code.
//!
//! Why the calls are sound: every kernel was compiled for exactly this program's graph,
//! memory plan and state layout; its every load, store and call pointer was proved inside
//! its buffer on its loop nest before any code existed (`loops::verify`); the arena is
//! allocated here with the plan's size; the state's layout and length are checked to be
//! the compiled ones before each segment; work-item ranges passed in are within each
//! kernel's extent. Nothing public can change these afterwards: the program, the arena
//! and the state's buffer are private (a store's values are reached as a slice of fixed
//! length), and the step context's layout is asserted at compile time to be the one the
//! kernels read.

use super::jit::CgResult;
use super::plan::Loc;
use super::team::Team;
use super::JitProgram;
use crate::exec::{Collectives, Executable, Feed, Fetch, StateStore};
use crate::ir::{Graph, OutputRole};
use crate::ops::{Op, SourceKind, StepCtx};
use crate::Error;
use cranelift_jit::JITModule;
use cranelift_module::FuncId;
use std::sync::Mutex;

/// The name under which JIT code may call [`bounds_report`].
pub const BOUNDS_REPORT: &str = "percept_bounds_report";

/// The first failed run-time bounds check: (kernel, access, index).
static BOUNDS_FAILURE: Mutex<Option<(i32, i64, i64)>> = Mutex::new(None);

/// Called by kernels compiled with run-time checks when an access is out of bounds:
/// records (kernel, access, index); the kernel then returns and `run` reports it.
pub extern "C" fn bounds_report(kernel: i32, access: i64, index: i64) {
    let mut f = BOUNDS_FAILURE.lock().unwrap_or_else(|e| e.into_inner());
    if f.is_none() {
        *f = Some((kernel, access, index));
    }
}

fn take_bounds_failure() -> Option<(i32, i64, i64)> {
    BOUNDS_FAILURE.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The step context every kernel reads (layout fixed by `builder::ctx`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelCtx {
    pub seed: u64,
    pub step: u64,
    pub lr: f32,
    pub adam_step_size: f32,
    pub adam_inv_sqrt_bc2: f32,
    pub _pad: f32,
}

// The kernels read the context at `builder::ctx`'s offsets: the two views of its layout
// must agree, or the build fails.
const _: () = {
    use super::builder::ctx;
    use std::mem::offset_of;
    assert!(offset_of!(KernelCtx, seed) == ctx::SEED as usize);
    assert!(offset_of!(KernelCtx, step) == ctx::STEP as usize);
    assert!(offset_of!(KernelCtx, lr) == ctx::LR as usize);
    assert!(offset_of!(KernelCtx, adam_step_size) == ctx::ADAM_STEP_SIZE as usize);
    assert!(offset_of!(KernelCtx, adam_inv_sqrt_bc2) == ctx::ADAM_INV_SQRT_BC2 as usize);
};

type KernelFn = unsafe extern "C" fn(*mut f32, *mut f32, *const KernelCtx, i64, i64, i64);

/// The pointers every kernel call takes, shareable with worker threads.
struct Ptrs(*mut f32, *mut f32, *const KernelCtx);

// SAFETY: threads calling kernels through these pointers touch disjoint memory: each
// call gets its own range of independent work items (whose writes never overlap another
// item's) and its own scratch space (indexed by the thread number).
unsafe impl Sync for Ptrs {}

impl Ptrs {
    fn call(&self, f: KernelFn, lo: usize, hi: usize, thread: usize) {
        // SAFETY: `f` is a kernel of this program whose every access `loops::verify`
        // proved inside its buffers for any item range within its extent and any thread
        // below the plan's thread count; the callers pass `lo..hi` within the extent and
        // `thread` below that count; the arena was allocated here with the plan's size,
        // and the state was checked to have the compiled layout and length before this
        // segment (`run_with`), with nothing able to change either (both are private).
        unsafe { f(self.0, self.1, self.2, lo as i64, hi as i64, thread as i64) }
    }
}

/// One pass of a kernel for the team's workers: each runs its own contiguous range of the
/// `extent` items.
#[derive(Clone, Copy)]
struct Job {
    f: KernelFn,
    extent: usize,
    threads: usize,
    ptrs: (*mut f32, *mut f32, *const KernelCtx),
}

// SAFETY: a job is posted only while `run_kernels` holds the arena, the state and the
// context alive and unchanged, and `Team::run` returns only after every worker finished
// it; the workers' item ranges are disjoint (see `Ptrs`).
unsafe impl Send for Job {}

impl Job {
    /// Items of thread `t`: contiguous ranges, thread 0 (the caller) the first.
    fn range(&self, t: usize) -> (usize, usize) {
        let per = self.extent.div_ceil(self.threads);
        ((t * per).min(self.extent), ((t + 1) * per).min(self.extent))
    }

    /// A worker's part of the job.
    fn run(&self, t: usize) {
        let (lo, hi) = self.range(t);
        if lo < hi {
            Ptrs(self.ptrs.0, self.ptrs.1, self.ptrs.2).call(self.f, lo, hi, t);
        }
    }
}

/// The least work (FLOPs plus bytes moved) for which a kernel's items are split over
/// threads; below it, dispatch would cost more than it saves.
const PARALLEL_MIN_WORK: u64 = 1 << 16;

pub struct JitExecutable {
    /// Private, as everything here: the code was proved in bounds for exactly this
    /// program, plan and layout, and nothing may change them after compilation.
    program: JitProgram,
    /// When set, `run` adds each kernel's wall time here (per kernel, in order).
    profile: Option<Vec<std::time::Duration>>,
    /// Allocations to poison right after the kernel that defines them (debugging: a plan
    /// made wrong on purpose).
    early_poison: Vec<usize>,
    module: Option<JITModule>,
    /// Per kernel, its passes' functions.
    fns: Vec<Vec<KernelFn>>,
    /// Workers for kernels with several items (none for one thread).
    team: Option<Team<Job>>,
    arena: Vec<f32>,
    /// Index of the first 64-byte-aligned float of `arena`.
    base: usize,
    adam: Option<crate::ops::AdamUpdate>,
}

// SAFETY: the module's code and data are immutable after finalization, and nothing in
// the executor is shared between threads without `&mut`.
unsafe impl Send for JitExecutable {}

impl Drop for JitExecutable {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the function pointers in `fns` die with `self`; no other copy of
            // them escapes this executor.
            unsafe { m.free_memory() };
        }
    }
}

fn loc_range(l: &Loc, base: usize) -> std::ops::Range<usize> {
    base + l.offset..base + l.offset + l.len
}

impl JitExecutable {
    pub(super) fn new(
        mut program: JitProgram,
        module: JITModule,
        ids: &[Vec<FuncId>],
        started: std::time::Instant,
    ) -> CgResult<JitExecutable> {
        let fns = ids
            .iter()
            .map(|passes| {
                passes
                    .iter()
                    .map(|&id| {
                        let addr = module.get_finalized_function(id);
                        // SAFETY: `addr` is a finalized function of `module` defined with
                        // the kernel signature (arena, state, ctx, lo, hi, thread) → ().
                        unsafe { std::mem::transmute::<*const u8, KernelFn>(addr) }
                    })
                    .collect()
            })
            .collect();
        let threads = program.plan.threads;
        let team = if threads > 1 {
            let team = Team::new(threads - 1, |job: &Job, t| job.run(t))
                .map_err(|e| Error::Codegen(format!("cannot start {threads} threads: {e}")))?;
            Some(team)
        } else {
            None
        };
        // An allocation that fails is an error, not an abort.
        let floats = program.plan.size + 16;
        let mut arena: Vec<f32> = Vec::new();
        arena
            .try_reserve_exact(floats)
            .map_err(|_| Error::Memory(format!("cannot allocate the arena of {:.2} GB", floats as f64 * 4.0 / 1e9)))?;
        arena.resize(floats, 0.0);
        let base = (0..16).find(|i| (arena.as_ptr() as usize + 4 * i).is_multiple_of(64)).unwrap_or(0);
        let adam = program.graph.nodes.iter().find_map(|n| match &n.op {
            Op::AdamUpdate(a) => Some(*a),
            _ => None,
        });
        if program.kernels.len() != ids.len() {
            return Err(Error::Codegen("kernel count mismatch".into()));
        }
        program.compile_time = started.elapsed();
        Ok(JitExecutable {
            program,
            profile: None,
            early_poison: vec![],
            module: Some(module),
            fns,
            team,
            arena,
            base,
            adam,
        })
    }

    /// Debug: run kernel `k` alone over work items `lo..hi`, which may exceed its extent
    /// only when the program was compiled with run-time bounds checks (which then report
    /// the first bad access instead of touching memory outside the buffers).
    pub fn run_kernel_items(&mut self, store: &mut StateStore, k: usize, lo: i64, hi: i64) -> Result<(), Error> {
        let info = self.program.kernels.get(k).ok_or_else(|| Error::Exec(format!("no kernel {k}")))?;
        let within = 0 <= lo && lo <= hi && hi <= info.extent() as i64;
        if !within && !self.program.options.checks {
            return Err(Error::Exec(format!(
                "items {lo}..{hi} exceed the extent {} of `{}`",
                info.extent(),
                info.name()
            )));
        }
        if store.layout() != &self.program.layout || store.data().len() != store.layout().len {
            return Err(Error::Exec("the model state does not have the layout this program was compiled for".into()));
        }
        let ctx = KernelCtx::default();
        let arena = self.arena[self.base..].as_mut_ptr();
        // SAFETY: as in `run`; an item range past the extent is allowed only with the
        // run-time checks, which stop the kernel at its first out-of-bounds access.
        unsafe { (self.fns[k][0])(arena, store.data_mut().as_mut_ptr(), &ctx, lo, hi, 0) };
        match take_bounds_failure() {
            Some((kernel, access, index)) => {
                let kname = self.program.kernels[kernel as usize].name();
                let what =
                    self.program.kernels[kernel as usize].accesses.get(access as usize).cloned().unwrap_or_default();
                Err(Error::Exec(format!("bounds check failed in kernel `{kname}`: {what} at index {index}")))
            }
            None => Ok(()),
        }
    }

    /// The compiled program: kernels, plan, code, for inspection.
    pub fn program(&self) -> &JitProgram {
        &self.program
    }

    /// Time every kernel from now on (`on`), or stop; the times start from zero.
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(Vec::new);
    }

    /// Each kernel's total time since profiling was turned on.
    pub fn profile(&self) -> Option<&[std::time::Duration]> {
        self.profile.as_deref()
    }

    /// Debugging: with poisoning on, fill the allocation whose description contains
    /// `what` with NaN right after the kernel that defines it, as if the plan ended its
    /// life there — so a test can see that poisoning exposes a read after a buffer's life.
    /// It writes only inside the arena.
    pub fn poison_early(&mut self, what: &str) -> Result<(), Error> {
        let i = self.program.plan.allocs.iter().position(|a| a.what.contains(what));
        let i = i.ok_or_else(|| Error::Exec(format!("no allocation is `{what}`")))?;
        self.early_poison.push(i);
        Ok(())
    }

    fn value_loc(&self, v: crate::ir::ValueId) -> Loc {
        self.program.plan.locs[v.0 as usize].expect("program inputs and outputs are stored")
    }

    fn read(&self, v: crate::ir::ValueId) -> Vec<f32> {
        self.arena[loc_range(&self.value_loc(v), self.base)].to_vec()
    }
}

impl Executable for JitExecutable {
    fn graph(&self) -> &Graph {
        &self.program.graph
    }

    fn backend(&self) -> &'static str {
        "jit"
    }

    fn run_with(
        &mut self,
        store: &mut StateStore,
        feed: &Feed,
        cx: &StepCtx,
        collectives: &mut dyn Collectives,
    ) -> Result<Fetch, Error> {
        if store.layout() != &self.program.layout || store.data().len() != store.layout().len {
            return Err(Error::Exec("the model state does not have the layout this program was compiled for".into()));
        }
        let g = &self.program.graph;
        for (kind, v) in g.sources() {
            let data = match kind {
                SourceKind::Data => feed.data,
                SourceKind::Target => match feed.target {
                    Some(t) => t,
                    None => return Err(Error::Exec("this program needs targets".into())),
                },
                _ => continue,
            };
            let r = loc_range(&self.value_loc(v), self.base);
            if data.len() != r.len() {
                return Err(Error::Exec(format!(
                    "fed {} values for {kind:?}, the program was compiled for {}",
                    data.len(),
                    r.len()
                )));
            }
            self.arena[r].copy_from_slice(data);
        }
        let mut ctx = KernelCtx { seed: cx.seed, step: cx.step, lr: cx.lr as f32, ..Default::default() };
        if let Some(a) = &self.adam {
            let (s, i) = a.scalars(cx.lr, cx.step);
            ctx.adam_step_size = s;
            ctx.adam_inv_sqrt_bc2 = i;
        }
        let checks = self.program.options.checks;
        let threads = self.program.plan.threads;
        let mut first = 0;
        for segment in 0..self.program.segments.len() {
            let (end, point) = (self.program.segments[segment].end, self.program.segments[segment].then.clone());
            // The store may have been changed at the last point: its layout is checked again
            // and its pointer taken afresh.
            if store.layout() != &self.program.layout || store.data().len() != store.layout().len {
                return Err(Error::Exec("the model state changed its layout during a run".into()));
            }
            let ptrs = Ptrs(self.arena[self.base..].as_mut_ptr(), store.data_mut().as_mut_ptr(), &ctx);
            self.run_kernels(&ptrs, first..end, checks, threads)?;
            if let Some(p) = point {
                collectives.at(&p, store)?;
            }
            first = end;
        }
        let g = &self.program.graph;
        let mut fetch = Fetch::default();
        for (role, v) in &g.outputs {
            match role {
                OutputRole::Loss => fetch.loss = Some(self.read(*v)[0]),
                OutputRole::Prediction => fetch.prediction = self.read(*v),
                OutputRole::Activation(name) => fetch.activations.push((name.clone(), self.read(*v))),
                OutputRole::InputGrad => fetch.input_grad = Some(self.read(*v)),
                _ => {}
            }
        }
        Ok(fetch)
    }
}

impl JitExecutable {
    /// Kernels `range` in order, each pass split over the pool's threads.
    fn run_kernels(
        &mut self,
        ptrs: &Ptrs,
        range: std::ops::Range<usize>,
        checks: bool,
        threads: usize,
    ) -> Result<(), Error> {
        for k in range {
            let passes = &self.fns[k];
            let info = &self.program.kernels[k];
            let started = self.profile.as_ref().map(|_| std::time::Instant::now());
            // Posting a job still costs a handoff and a wait for the slowest worker: a small
            // kernel runs on this thread alone (same items, so the same bits).
            let worth_splitting = info.flops + info.bytes_read + info.bytes_written >= PARALLEL_MIN_WORK;
            for (&f, &extent) in passes.iter().zip(info.passes()) {
                match &self.team {
                    Some(team) if extent > 1 && worth_splitting => {
                        let job = Job { f, extent, threads, ptrs: (ptrs.0, ptrs.1, ptrs.2) };
                        team.run(job, || job.run(0));
                    }
                    _ => ptrs.call(f, 0, extent, 0),
                }
            }
            if let (Some(t), Some(p)) = (started, self.profile.as_mut()) {
                p.resize(self.program.kernels.len(), std::time::Duration::ZERO);
                p[k] += t.elapsed();
            }
            if checks {
                if let Some((kernel, access, index)) = take_bounds_failure() {
                    let kname = self.program.kernels[kernel as usize].name();
                    let what = self.program.kernels[kernel as usize]
                        .accesses
                        .get(access as usize)
                        .cloned()
                        .unwrap_or_default();
                    return Err(Error::Exec(format!(
                        "bounds check failed in kernel `{kname}`: {what} at index {index}"
                    )));
                }
            }
            if self.program.options.poison {
                let allocs = &self.program.plan.allocs;
                let early = self.early_poison.iter().map(|&i| &allocs[i]).filter(|a| a.from == k);
                for a in allocs.iter().filter(|a| a.to == k).chain(early) {
                    self.arena[self.base + a.offset..self.base + a.offset + a.len].fill(f32::NAN);
                }
            }
        }
        Ok(())
    }
}
