use super::{CliResult, UserError};
use crate::cli::common::BackendArg;
use percept_runtime::npy;
use percept_runtime::tensorfile::{NamedTensor, TensorFile};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The weights (safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// The input tensor [N, ...input shape]: a .safetensors file with one tensor (or one
    /// named `input`), or a .npy file. Values are used as given (no normalization).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the output (.safetensors, tensor `output` or the layer's name; or .npy).
    #[arg(long)]
    output: PathBuf,
    /// Write this statement's output instead of the model's (its name or index).
    #[arg(long)]
    layer: Option<String>,
    /// Batch size of the forward passes.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, value_enum, default_value = "jit")]
    backend: BackendArg,
    /// Worker threads [default: the number of cores, divided among the processes of this machine under mpirun].
    #[arg(long)]
    threads: Option<usize>,
}

fn is_npy(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "npy")
}

pub fn run(a: Args) -> CliResult {
    let mut model = super::common::trained_model(&a.model, &a.weights, a.backend, a.threads)?;
    let (shape, data) = if is_npy(&a.input) {
        npy::read_npy(&a.input)?
    } else {
        let f = TensorFile::read(&a.input)?;
        let t = match (f.get("input"), f.tensors.len()) {
            (Some(t), _) => t,
            (None, 1) => &f.tensors[0],
            _ => {
                return Err(UserError(format!(
                    "{} holds {} tensors; name the input tensor `input`",
                    a.input.display(),
                    f.tensors.len()
                )))
            }
        };
        let v =
            t.as_f32().ok_or_else(|| UserError(format!("{}: the input must be a float tensor", a.input.display())))?;
        (t.shape.clone(), v.to_vec())
    };
    let input = &model.spec.input.shape;
    let per: usize = input.iter().product();
    if shape.len() < 2 || shape[1..].iter().product::<usize>() != per || (shape[1..] != input[..] && shape.len() != 2) {
        return Err(UserError(format!(
            "{}: the input has shape {shape:?}, the model takes [N, {}]",
            a.input.display(),
            input.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    let (expose, name, out_shape) = match &a.layer {
        None => (vec![], "output".to_string(), model.spec.output_shape().to_vec()),
        Some(l) => {
            let spec = model.spec.find_layer(l).ok_or_else(|| {
                UserError(format!("no statement is named `{l}`; the statements are: {}", model.spec.layer_names()))
            })?;
            (vec![spec.index], spec.prefix.clone(), spec.out_shape.clone())
        }
    };
    let n = shape[0];
    let mut out = Vec::new();
    for start in (0..n).step_by(a.batch.max(1)) {
        let end = (start + a.batch.max(1)).min(n);
        let fetch = model.forward(&data[start * per..end * per], None, &expose)?;
        match expose.is_empty() {
            true => out.extend(fetch.prediction),
            false => out.extend(fetch.activations.into_iter().next().expect("exposed").1),
        }
    }
    let full_shape: Vec<usize> = std::iter::once(n).chain(out_shape).collect();
    if is_npy(&a.output) {
        npy::write_npy(&a.output, &full_shape, &out)?;
    } else {
        TensorFile { tensors: vec![NamedTensor::f32(&name, &full_shape, out)], metadata: Default::default() }
            .write(&a.output)?;
    }
    outln!("wrote `{name}` {full_shape:?} to {}", a.output.display());
    Ok(())
}
