//! `percept export MODEL.nn`: the model as ONNX (with its weights) or as a PyTorch module.

use super::{CliResult, UserError};
use crate::onnx::export::{export, Batch};
use percept_runtime::tensorfile::write_atomic;
use percept_runtime::Model;
use prost::Message;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// An ONNX model: the evaluation-mode forward graph, the weights as initializers.
    Onnx,
    /// A PyTorch module (Python source) whose state_dict keys are Percept's names.
    Torch,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The trained weights (safetensors); needed for ONNX.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Where to write [default: MODEL with the extension .onnx, or .py for torch].
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// A fixed batch size for the ONNX input and output [default: a symbolic `N`].
    #[arg(long, conflicts_with = "dynamic_batch")]
    batch: Option<usize>,
    /// A symbolic batch size `N` (the default).
    #[arg(long)]
    dynamic_batch: bool,
    /// The ONNX opset (13 to 21).
    #[arg(long, default_value_t = 17)]
    opset: i64,
}

pub fn run(a: Args) -> CliResult {
    let mut model = Model::from_file(&a.model)?;
    let source = a.model.display().to_string();
    if a.format == Format::Torch {
        let out = a.out.clone().unwrap_or_else(|| a.model.with_extension("py"));
        write_atomic(&out, crate::torch::module(&model.spec, &source).as_bytes())?;
        eprintln!("wrote the PyTorch module of {} to {}", model.spec.name, out.display());
        return Ok(());
    }
    let weights = a.weights.as_ref().ok_or_else(|| UserError("--format onnx needs --weights".into()))?;
    model.load_weights_file(weights)?;
    let batch = match a.batch {
        Some(0) => return Err(UserError("--batch must be at least 1".into())),
        Some(n) => Batch::Fixed(n),
        None => Batch::Dynamic,
    };
    let proto = export(&model.spec, &model.weights(), batch, a.opset).map_err(UserError)?;
    let out = a.out.clone().unwrap_or_else(|| a.model.with_extension("onnx"));
    write_atomic(&out, &proto.encode_to_vec())?;
    eprintln!("wrote {} as ONNX (opset {}) to {}", model.spec.name, a.opset, out.display());
    Ok(())
}
