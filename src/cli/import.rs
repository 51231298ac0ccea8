//! `percept import MODEL.onnx`: an ONNX model as a `.nn` file and its weights.

use super::{CliResult, UserError};
use crate::onnx::import::import;
use percept_runtime::tensorfile::write_atomic;
use percept_runtime::Model;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ONNX model (.onnx).
    model: PathBuf,
    /// Where to write the model [default: MODEL with the extension .nn].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the weights [default: beside --out, with its stem and .safetensors].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// End the model in `loss softmax_cross_entropy` (dropping a final softmax or
    /// log-softmax: the loss takes logits), so the imported classifier can be trained or
    /// fine-tuned.
    #[arg(long)]
    loss: bool,
}

pub fn run(a: Args) -> CliResult {
    let bytes = std::fs::read(&a.model).map_err(|e| UserError(format!("cannot read {}: {e}", a.model.display())))?;
    let out = a.out.clone().unwrap_or_else(|| a.model.with_extension("nn"));
    let weights = a.weights.clone().unwrap_or_else(|| out.with_extension("safetensors"));
    let name = model_name(&out);
    let dir = a.model.parent().unwrap_or(Path::new("."));
    let imported = import(&bytes, &a.model.display().to_string(), &name, dir, a.loss).map_err(|e| UserError(e.0))?;
    let text = imported.text();
    // What is written must check and take its weights (the checker knows what the importer
    // does not track, such as a kernel larger than its input).
    let mut model = Model::from_source(&out.display().to_string(), &text)
        .map_err(|e| UserError(format!("{}: the imported model does not check: {}", a.model.display(), e.0)))?;
    model
        .load_weights(&imported.weights, "the imported weights")
        .map_err(|e| UserError(format!("internal error: {}", e.0)))?;
    let file = model.weights();
    let bytes = file.to_bytes()?;
    write_atomic(&out, text.as_bytes())?;
    write_atomic(&weights, &bytes)?;
    eprintln!(
        "imported {} ({} parameters): {} and {}",
        a.model.display(),
        super::common::group(model.spec.trainable_count() as f64),
        out.display(),
        weights.display()
    );
    Ok(())
}

/// The file stem as a model name (other characters become `_`).
fn model_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, 'm');
    }
    name
}
