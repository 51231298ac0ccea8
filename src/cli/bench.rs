//! `percept bench`: training-step throughput, fused against unfused, with the compile
//! time and where the time goes, kernel by kernel. Data are random (of the right shapes
//! and valid targets), so only speed is measured.

use super::common::group;
use super::common::BackendArg;
use super::{CliResult, UserError};
use percept_compiler::layers::Loss;
use percept_compiler::ops::StepCtx;
use percept_runtime::machine::Roofline;
use percept_runtime::rng::SplitMix;
use percept_runtime::{Backend, Model, TrainConfig, Trainer};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    pub(super) model: PathBuf,
    /// The batch size of the training step.
    #[arg(long, default_value_t = 64)]
    pub(super) batch: usize,
    /// Seconds to measure each variant for (after a warm-up).
    #[arg(long, default_value_t = 3.0)]
    pub(super) seconds: f64,
    /// Worker threads [default: the number of cores, divided among the processes of this machine under mpirun].
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// The micro-kernel of the JIT's matrix products.
    #[arg(long, value_enum, default_value = "native")]
    pub(super) microkernel: super::common::MicroArg,
    /// Back end (the interpreter has no kernels, so no fused/unfused split).
    #[arg(long, value_enum, default_value = "jit")]
    pub(super) backend: BackendArg,
    /// Measure only the unfused (one kernel per op) variant.
    #[arg(long)]
    pub(super) unfused: bool,
    /// Print `fused` and `unfused` objects (samples_per_s, compile_ms, kernels) as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// Also write the kernel explorer page with these timings (fused and unfused) and a
    /// roofline measured on this machine (of the forward pass with --inference).
    #[arg(long, value_name = "FILE")]
    pub(super) html: Option<PathBuf>,
    /// Measure the evaluation forward pass (inference) at --batch instead of the training
    /// step: samples/s and µs per batch and per sample, fused and unfused, kernel by kernel.
    #[arg(long)]
    pub(super) inference: bool,
    /// Under mpirun: the data-parallel training step (each process its shard of --batch),
    /// with the time at the collective points (allreduce) beside the compute time.
    #[arg(long, conflicts_with_all = ["inference", "html", "unfused"])]
    pub(super) mpi: bool,
}

/// `--inference`: the evaluation program's throughput, one variant, then a shorter
/// profiled run for its kernels (as the training step's).
fn measure_inference(a: &Args, backend: Backend, fuse: bool) -> Result<Measured, UserError> {
    let mut model = bench_model(a, backend, fuse, false)?;
    let (x, _) = batch_data(&model, a.batch);
    let started = Instant::now();
    model.forward(&x, None, &[])?;
    let compile = started.elapsed();
    for _ in 0..3 {
        model.forward(&x, None, &[])?;
    }
    let (mut n, started) = (0u64, Instant::now());
    while started.elapsed().as_secs_f64() < a.seconds || n < 3 {
        model.forward(&x, None, &[])?;
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    model.set_profiling(true);
    let profiled_steps = (n / 4).max(3);
    for _ in 0..profiled_steps {
        model.forward(&x, None, &[])?;
    }
    Ok(Measured {
        samples_per_s: (n as usize * a.batch) as f64 / elapsed,
        compile,
        steps: n,
        kernels: model.inference_profile(a.batch),
        profiled_steps,
        model,
    })
}

fn run_inference(a: &Args, backend: Backend) -> CliResult {
    let variants: Vec<(&str, bool)> = if a.unfused || backend == Backend::Interp {
        vec![("unfused", false)]
    } else {
        vec![("fused", true), ("unfused", false)]
    };
    let mut results = vec![];
    for (name, fuse) in variants {
        results.push((name, measure_inference(a, backend, fuse)?));
    }
    let threads = a.threads.unwrap_or_else(Model::default_threads);
    let roof = if backend == Backend::Interp {
        Roofline { peak_gflops: None, bandwidth_gbs: 0.0, threads }
    } else {
        eprintln!("measuring this machine's roofs (FMA peak, memory bandwidth) on {threads} thread(s)");
        percept_runtime::machine::measure(threads)
    };
    if let Some(path) = &a.html {
        let (fused, unfused) = match results.as_mut_slice() {
            [(_, f), (_, u)] => (Some(f), u),
            [(_, u)] => (None, u),
            _ => unreachable!("one or two variants are measured"),
        };
        write_page(a, path, (fused, unfused), roof, true)?;
    }
    if a.json {
        let mut v = serde_json::json!({
            "model": a.model.display().to_string(),
            "batch": a.batch,
            "inference": true,
            "threads": threads,
            "peak_gflops": roof.peak_gflops.map(|p| p / threads as f64),
            "bandwidth_gbs": roof.bandwidth_gbs,
        });
        for (name, m) in &results {
            let mut o = json(m, a.batch, &roof, "us_per_batch");
            o["us_per_sample"] = serde_json::json!(1e6 / m.samples_per_s);
            o["us_per_batch"] = serde_json::json!(1e6 * a.batch as f64 / m.samples_per_s);
            o["batches"] = serde_json::json!(m.steps);
            if let Some(o) = o.as_object_mut() {
                o.remove("steps");
            }
            v[*name] = o;
        }
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return Ok(());
    }
    for (i, (name, m)) in results.iter().enumerate() {
        let rate = m.samples_per_s;
        outln!(
            "{}{name} inference: {} samples/s, {:.1} µs per batch of {}, {:.2} µs per sample ({} batches), compiled in {:.1} ms",
            if i > 0 { "\n" } else { "" },
            group(rate),
            1e6 * a.batch as f64 / rate,
            a.batch,
            1e6 / rate,
            m.steps,
            m.compile.as_secs_f64() * 1e3
        );
        kernel_table(m, roof.peak_gflops, "batch", "pass");
    }
    if let [(_, f), (_, u)] = results.as_slice() {
        outln!("\nfused / unfused: {:.2}x", f.samples_per_s / u.samples_per_s);
    }
    Ok(())
}

struct Measured {
    samples_per_s: f64,
    compile: Duration,
    steps: u64,
    kernels: Vec<percept_runtime::model::KernelTime>,
    profiled_steps: u64,
    /// The measured model, with its compiled programs (for the explorer page).
    model: Model,
}

pub(super) fn batch_data(model: &Model, batch: usize) -> (Vec<f32>, Vec<f32>) {
    let per: usize = model.spec.input.shape.iter().product();
    let k: usize = model.spec.output_shape().iter().product();
    let mut rng = SplitMix::stream(7, 9, 0);
    let x = (0..batch * per).map(|_| rng.next_f64() as f32).collect();
    let t = match model.spec.loss.map(|l| l.loss) {
        Some(Loss::SoftmaxCrossEntropy) => (0..batch).map(|_| rng.below(k as u64) as f32).collect(),
        _ => (0..batch * k).map(|_| rng.below(2) as f32).collect(),
    };
    (x, t)
}

/// The model every variant measures: back end, threads, fusion and micro-kernel from the
/// command line, weights initialized from the default seed; with `training`, a model
/// without a loss is refused.
pub(super) fn bench_model(a: &Args, backend: Backend, fuse: bool, training: bool) -> Result<Model, UserError> {
    let mut model = Model::from_file(&a.model)?;
    model.set_backend(backend)?;
    model.set_threads(a.threads.unwrap_or_else(Model::default_threads));
    model.codegen.fuse = fuse;
    model.codegen.micro = a.microkernel.into();
    Trainer::new(TrainConfig { batch: a.batch, ..TrainConfig::default() })?.init_model(&mut model)?;
    if training && model.spec.loss.is_none() {
        return Err(UserError(format!(
            "the model `{}` has no loss, so it has no training step to measure",
            model.spec.name
        )));
    }
    Ok(model)
}

fn measure(a: &Args, backend: Backend, fuse: bool) -> Result<Measured, UserError> {
    let mut model = bench_model(a, backend, fuse, true)?;
    let started = Instant::now();
    model.prepare_training(a.batch)?;
    let compile = started.elapsed();
    let (x, t) = batch_data(&model, a.batch);
    let step = |model: &mut Model, i: u64| -> Result<(), UserError> {
        let cx = StepCtx { seed: 1, step: i, lr: 1e-4 };
        model.grad_step(&x, &t, &cx)?;
        model.update_step(&cx)?;
        Ok(())
    };
    for i in 0..3 {
        step(&mut model, i)?;
    }
    let (mut steps, started) = (0u64, Instant::now());
    while started.elapsed().as_secs_f64() < a.seconds || steps < 3 {
        step(&mut model, steps)?;
        steps += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A separate, shorter profiled pass for the per-kernel table.
    model.set_profiling(true);
    let profiled_steps = (steps / 4).max(3);
    for i in 0..profiled_steps {
        step(&mut model, i)?;
    }
    let kernels = model.kernel_profile(a.batch);
    Ok(Measured {
        samples_per_s: (steps as usize * a.batch) as f64 / elapsed,
        compile,
        steps,
        kernels,
        profiled_steps,
        model,
    })
}

/// The explorer page for the measured programs (the training step's, or with `inference`
/// the forward pass's): the fused plan (or the unfused one with `--unfused`) with its
/// kernels' times, the unfused times beside them, and the roofs.
fn write_page(
    a: &Args,
    path: &std::path::Path,
    (fused, unfused): (Option<&mut Measured>, &mut Measured),
    roofline: Roofline,
    inference: bool,
) -> CliResult {
    let (src, spec, _) = super::load_model(&a.model)?;
    let threads = a.threads.unwrap_or_else(Model::default_threads);
    let per_step = |m: &Measured| -> Vec<f64> {
        m.kernels.iter().map(|k| k.time.as_secs_f64() * 1e6 / m.profiled_steps as f64).collect()
    };
    let unfused_us = per_step(unfused);
    let unfused_rate = unfused.samples_per_s;
    let unfused_progs = timed_programs(&mut unfused.model, a.batch, inference)?;
    let page = match fused {
        Some(f) => {
            let timings = crate::explorer::Timings {
                us: per_step(f),
                samples_per_s: f.samples_per_s,
                unfused: Some((unfused_us, unfused_rate)),
                roofline,
            };
            let progs = timed_programs(&mut f.model, a.batch, inference)?;
            crate::explorer::Explorer::collect(&spec, &src, &progs, &unfused_progs, true, threads, Some(timings))
        }
        None => {
            let timings =
                crate::explorer::Timings { us: unfused_us, samples_per_s: unfused_rate, unfused: None, roofline };
            crate::explorer::Explorer::collect(
                &spec,
                &src,
                &unfused_progs,
                &unfused_progs,
                false,
                threads,
                Some(timings),
            )
        }
    };
    super::write_file(path, crate::explorer::render(&page).as_bytes())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The programs a measurement timed, kernel for kernel: the training step's, or the
/// forward pass's.
fn timed_programs(
    model: &mut Model,
    batch: usize,
    inference: bool,
) -> Result<Vec<&percept_compiler::codegen::JitProgram>, UserError> {
    let exes = if inference { model.inference_program(batch)? } else { model.jit_programs(batch, true)? };
    Ok(exes.into_iter().map(|e| e.program()).collect())
}

/// The measured peak of `threads` threads, when there is one (what fractions are of).
fn table(name: &str, m: &Measured, peak: Option<f64>) {
    outln!(
        "{name}: {} samples/s ({} steps), compiled in {:.1} ms",
        group(m.samples_per_s),
        m.steps,
        m.compile.as_secs_f64() * 1e3
    );
    kernel_table(m, peak, "step", "step");
}

/// Where the time of each measured run (a training `step`, an inference `batch`) goes,
/// kernel by kernel, slowest first; `whole` names the run in the GEMM line.
fn kernel_table(m: &Measured, peak: Option<f64>, per_run: &str, whole: &str) {
    if m.kernels.is_empty() {
        return;
    }
    let total: f64 = m.kernels.iter().map(|k| k.time.as_secs_f64()).sum();
    let per = |k: &percept_runtime::model::KernelTime| k.time.as_secs_f64() / m.profiled_steps as f64;
    let mut ks: Vec<_> = m.kernels.iter().collect();
    ks.sort_by_key(|k| std::cmp::Reverse(k.time));
    let w = ks.iter().map(|k| k.name.len()).max().unwrap_or(6).max(6);
    outln!(
        "  {:<w$}  {:>10}  {:>8}  {:>7}  {:>7}  {:>6}",
        "kernel",
        format!("µs/{per_run}"),
        "GFLOP/s",
        "FLOP/B",
        "of peak",
        "share"
    );
    for k in ks {
        let gf = if k.time.is_zero() { 0.0 } else { k.flops as f64 / per(k) / 1e9 };
        let ai = k.flops as f64 / (k.bytes.max(1)) as f64;
        let of_peak = peak.map_or("–".to_string(), |p| format!("{:.1}%", 100.0 * gf / p));
        outln!(
            "  {:<w$}  {:>10.1}  {:>8.1}  {:>7.2}  {:>7}  {:>5.1}%",
            k.name,
            per(k) * 1e6,
            gf,
            ai,
            of_peak,
            100.0 * k.time.as_secs_f64() / total.max(1e-12)
        );
    }
    let gemm: f64 = m.kernels.iter().filter(|k| k.gemm).map(|k| k.time.as_secs_f64()).sum();
    outln!("  GEMM-shaped kernels: {:.1}% of the {whole}", 100.0 * gemm / total.max(1e-12));
}

/// The whole step's rate: the op table's FLOPs of all its kernels over the step's time.
fn step_gflops(m: &Measured, batch: usize) -> f64 {
    let flops: u64 = m.kernels.iter().map(|k| k.flops).sum();
    flops as f64 * m.samples_per_s / batch as f64 / 1e9
}

/// A variant's figures; each kernel's time under `time_key` (`us_per_step` for the
/// training step, `us_per_batch` for a forward pass).
fn json(m: &Measured, batch: usize, roof: &Roofline, time_key: &str) -> serde_json::Value {
    let total: f64 = m.kernels.iter().map(|k| k.time.as_secs_f64()).sum();
    let kernels: Vec<serde_json::Value> = m
        .kernels
        .iter()
        .map(|k| {
            let s = k.time.as_secs_f64() / m.profiled_steps as f64;
            let mut o = serde_json::json!({
                "name": k.name,
                "gflops": if s > 0.0 { k.flops as f64 / s / 1e9 } else { 0.0 },
                "intensity": k.flops as f64 / k.bytes.max(1) as f64,
                "share": k.time.as_secs_f64() / total.max(1e-12),
                "gemm": k.gemm,
            });
            o[time_key] = serde_json::json!(s * 1e6);
            o
        })
        .collect();
    let gemm: f64 = m.kernels.iter().filter(|k| k.gemm).map(|k| k.time.as_secs_f64()).sum();
    let gflops = step_gflops(m, batch);
    serde_json::json!({
        "samples_per_s": m.samples_per_s,
        "gflops": gflops,
        "peak_fraction": roof.peak_gflops.map(|p| gflops / p),
        "compile_ms": m.compile.as_secs_f64() * 1e3,
        "steps": m.steps,
        "gemm_share": gemm / total.max(1e-12),
        "kernels": kernels,
    })
}

/// What is measured, on stderr.
fn announce(a: &Args, what: &str) {
    eprintln!(
        "measuring {what}{} at batch {} on {} thread(s) for {} s per variant",
        a.model.display(),
        a.batch,
        a.threads.unwrap_or_else(Model::default_threads),
        a.seconds
    );
}

pub fn run(a: Args) -> CliResult {
    if a.batch == 0 {
        return Err(UserError("--batch must be at least 1".into()));
    }
    // A missing or malformed model is reported before anything says it is being measured.
    super::load_model(&a.model)?;
    let backend: Backend = a.backend.into();
    if a.html.is_some() && backend == Backend::Interp {
        return Err(UserError("the interpreter has no kernels to show: --html needs --backend jit".into()));
    }
    if a.mpi {
        return super::bench_mpi::run(&a, backend);
    }
    if a.inference {
        announce(&a, "inference of ");
        return run_inference(&a, backend);
    }
    if backend == Backend::Interp {
        let m = measure(&a, backend, false)?;
        if a.json {
            outln!(
                "{}",
                serde_json::json!({"interp": {"samples_per_s": m.samples_per_s, "compile_ms": m.compile.as_secs_f64() * 1e3, "steps": m.steps}})
            );
        } else {
            table("interp", &m, None);
        }
        return Ok(());
    }
    announce(&a, "");
    let mut fused = if a.unfused { None } else { Some(measure(&a, backend, true)?) };
    let mut unfused = measure(&a, backend, false)?;
    let threads = a.threads.unwrap_or_else(Model::default_threads);
    eprintln!("measuring this machine's roofs (FMA peak, memory bandwidth) on {threads} thread(s)");
    let roof = percept_runtime::machine::measure(threads);
    if let Some(path) = &a.html {
        write_page(&a, path, (fused.as_mut(), &mut unfused), roof, false)?;
    }
    if a.json {
        let mut v = serde_json::json!({
            "model": a.model.display().to_string(),
            "batch": a.batch,
            "threads": threads,
            // Per core, as DESIGN.md has it; peak_fraction divides by it times the threads.
            "peak_gflops": roof.peak_gflops.map(|p| p / threads as f64),
            "bandwidth_gbs": roof.bandwidth_gbs,
            "unfused": json(&unfused, a.batch, &roof, "us_per_step"),
        });
        if let Some(f) = &fused {
            v["fused"] = json(f, a.batch, &roof, "us_per_step");
            v["ratio"] = serde_json::json!(f.samples_per_s / unfused.samples_per_s);
        }
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return Ok(());
    }
    if let Some(f) = &fused {
        table("fused", f, roof.peak_gflops);
        outln!();
    }
    table("unfused", &unfused, roof.peak_gflops);
    if let Some(f) = &fused {
        outln!("\nfused / unfused: {:.2}x", f.samples_per_s / unfused.samples_per_s);
    }
    if let Some(peak) = roof.peak_gflops {
        let at = |m: &Measured| step_gflops(m, a.batch);
        outln!(
            "machine: FMA peak {peak:.0} GFLOP/s, memory {:.1} GB/s on {threads} thread(s); the step runs at {}",
            roof.bandwidth_gbs,
            [fused.as_ref().map(|f| ("fused", at(f))), Some(("unfused", at(&unfused)))]
                .into_iter()
                .flatten()
                .map(|(n, g)| format!("{g:.1} GFLOP/s {n} ({:.1}% of peak)", 100.0 * g / peak))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
