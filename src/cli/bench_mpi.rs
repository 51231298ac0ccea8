//! `percept bench --mpi`: the data-parallel training step under `mpirun` — each process
//! trains its shard of the batch — with the time spent at the collective points (the
//! allreduce of gradients and batch norm's sums, and waiting for the slowest process)
//! beside the compute time.

use super::bench::{batch_data, bench_model, Args};
use super::common::group;
use super::{CliResult, UserError};
use percept_compiler::exec::{CollectivePoint, Collectives, StateStore};
use percept_compiler::ops::StepCtx;
use percept_runtime::parallel::{shard, DataParallel};
use percept_runtime::{Backend, Model};
use std::time::{Duration, Instant};

/// [`DataParallel`], timed: all points, and the gradients' point alone.
struct Timed<'g> {
    inner: DataParallel<'g>,
    spent: Duration,
    gradients: Duration,
}

impl Collectives for Timed<'_> {
    fn at(&mut self, point: &CollectivePoint, store: &mut StateStore) -> Result<(), percept_compiler::Error> {
        let started = Instant::now();
        let r = self.inner.at(point, store);
        self.spent += started.elapsed();
        if matches!(point, CollectivePoint::GradientsReady { .. }) {
            self.gradients += started.elapsed();
        }
        r
    }
}

pub fn run(a: &Args, backend: Backend) -> CliResult {
    let procs = super::processes::process_group()?;
    let (rank, size) = (procs.rank(), procs.size());
    // One process trains the whole batch through the same shard program.
    let Some(mine) = shard(a.batch, rank, size).or_else(|| (size == 1).then_some(0..a.batch)) else {
        return Err(UserError(format!(
            "--batch {} over {size} process(es): a data-parallel step needs at least 2 samples per process",
            a.batch
        )));
    };
    let mut model = bench_model(a, backend, true, true)?;
    model.set_data_parallel(true);
    let (x, t) = batch_data(&model, a.batch);
    let per: usize = model.spec.input.shape.iter().product();
    let k = t.len() / a.batch;
    let (xs, ts) = (&x[mine.start * per..mine.end * per], &t[mine.start * k..mine.end * k]);
    let started = Instant::now();
    model.prepare_shard(mine.len(), a.batch)?;
    let compile = started.elapsed();
    let mut timed = Timed { inner: DataParallel { group: &*procs }, spent: Duration::ZERO, gradients: Duration::ZERO };
    let step = |model: &mut Model, timed: &mut Timed, i: u64| -> CliResult {
        let cx = StepCtx { seed: 1, step: i, lr: 1e-4 };
        model.grad_step_shard(xs, ts, &cx, a.batch, timed)?;
        model.update_step(&cx)?;
        Ok(())
    };
    let warm = Instant::now();
    for i in 0..3 {
        step(&mut model, &mut timed, i)?;
    }
    // Every process runs the same number of steps: process 0's estimate.
    let per_step = warm.elapsed().as_secs_f64() / 3.0;
    let mut steps = [((a.seconds / per_step.max(1e-6)).ceil() as u64).max(3)];
    procs.broadcast(0, &mut steps)?;
    let steps = steps[0];
    procs.barrier()?;
    timed.spent = Duration::ZERO;
    timed.gradients = Duration::ZERO;
    let started = Instant::now();
    for i in 0..steps {
        step(&mut model, &mut timed, 3 + i)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Each process's collective time; process 0 reports the mean and the largest.
    let all = procs.allgather(&[timed.spent.as_secs_f64(), elapsed, timed.gradients.as_secs_f64()])?;
    if rank != 0 {
        return Ok(());
    }
    let coll: Vec<f64> = all.chunks(3).map(|c| c[0] / steps as f64).collect();
    let step_s = all.chunks(3).map(|c| c[1]).fold(0.0, f64::max) / steps as f64;
    let grads = all.chunks(3).map(|c| c[2]).sum::<f64>() / (size as u64 * steps) as f64;
    let mean_coll = coll.iter().sum::<f64>() / size as f64;
    let max_coll = coll.iter().fold(0.0f64, |m, &c| m.max(c));
    let rate = a.batch as f64 / step_s;
    if a.json {
        let v = serde_json::json!({
            "model": a.model.display().to_string(),
            "batch": a.batch,
            "processes": size,
            "threads": model.codegen.threads,
            "samples_per_s": rate,
            "step_ms": step_s * 1e3,
            "collective_ms": mean_coll * 1e3,
            "collective_max_ms": max_coll * 1e3,
            "collective_share": mean_coll / step_s,
            "gradients_ms": grads * 1e3,
            "compile_ms": compile.as_secs_f64() * 1e3,
            "steps": steps,
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
    } else {
        outln!(
            "{}: batch {} over {size} process(es) × {} thread(s): {} samples/s, {:.2} ms per step, of which {:.3} ms at \
             collective points ({:.1}%; the slowest process {:.3} ms; the gradients' allreduce {:.3} ms), {steps} steps",
            model.spec.name,
            a.batch,
            model.codegen.threads,
            group(rate),
            step_s * 1e3,
            mean_coll * 1e3,
            100.0 * mean_coll / step_s,
            max_coll * 1e3,
            grads * 1e3
        );
    }
    Ok(())
}
