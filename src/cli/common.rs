//! Helpers shared by subcommands: loading data with the model's normalization, and
//! progress output that suits where stderr goes.

use super::UserError;
use percept_runtime::data::{self, Norm, Splits};
use percept_runtime::{Backend, Model};
use std::io::IsTerminal;

impl From<percept_runtime::Error> for UserError {
    fn from(e: percept_runtime::Error) -> UserError {
        UserError(e.0)
    }
}

/// The model in `path` on `backend` with `threads` (default: every core) and the trained
/// `weights`: what eval, predict, run, features and extract start from.
pub fn trained_model(
    path: &std::path::Path,
    weights: &std::path::Path,
    backend: BackendArg,
    threads: Option<usize>,
) -> Result<Model, UserError> {
    let mut model = Model::from_file(path)?;
    model.set_backend(backend.into())?;
    if let Some(t) = threads {
        model.set_threads(t);
    }
    model.load_weights_file(weights)?;
    Ok(model)
}

/// Load the data at `source` for `model`, announcing what was used on stderr.
pub fn load_data(source: &str, model: &Model) -> Result<Splits, UserError> {
    let splits = data::load(source, &model.spec.input.shape)?;
    if !super::processes::is_first() {
        // Another process of a data-parallel run: process 0 tells.
    } else if source == "xor" {
        eprintln!("data: {} (no directory named `xor` exists)", splits.source);
    } else {
        eprintln!("data: {}", splits.source);
    }
    Ok(splits)
}

/// `auto` (the training set's mean and std), `none`, or `MEAN,STD`.
pub fn parse_norm(s: &str, splits: &Splits) -> Result<Norm, UserError> {
    match s {
        "auto" => Ok(Norm::of(&splits.train)),
        "none" => Ok(Norm::identity()),
        other => match Norm::parse(other) {
            Some(norm) if norm.fits(&splits.train.sample_shape) => Ok(norm),
            Some(norm) => Err(UserError(format!(
                "--normalize gives {} channels, but the samples have shape {:?}",
                norm.mean.len(),
                splits.train.sample_shape
            ))),
            None => Err(UserError(format!(
                "--normalize takes auto, none, MEAN,STD or per channel M1,M2,M3/S1,S2,S3 (each std > 0), found `{other}`"
            ))),
        },
    }
}

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

pub fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |a| format!("{:.2}%", a * 100.0))
}

pub fn group(n: f64) -> String {
    percept_compiler::text::group_digits(n.round() as usize)
}

/// `--microkernel`: which micro-kernel the JIT's GEMMs call.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MicroArg {
    /// The best native one for this CPU (AVX-512, else AVX2+FMA), else the Cranelift one.
    #[default]
    Native,
    /// The pure-Cranelift 6×8 f32x4 micro-kernel (portable).
    Cranelift,
    /// The native AVX2+FMA 6×16 one (when the CPU has it).
    Avx2,
}

impl From<MicroArg> for percept_compiler::codegen::MicroChoice {
    fn from(m: MicroArg) -> Self {
        match m {
            MicroArg::Native => percept_compiler::codegen::MicroChoice::Auto,
            MicroArg::Cranelift => percept_compiler::codegen::MicroChoice::Cranelift,
            MicroArg::Avx2 => percept_compiler::codegen::MicroChoice::Avx2,
        }
    }
}

/// `--backend`: which back end runs the compiled programs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendArg {
    Jit,
    Interp,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Jit => Backend::Jit,
            BackendArg::Interp => Backend::Interp,
        }
    }
}
