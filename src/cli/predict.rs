use super::{CliResult, UserError};
use crate::cli::common::BackendArg;
use percept_compiler::layers::Loss;
use percept_runtime::data::preprocess::mnist_like;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The trained weights (safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// Images (PNG or JPEG). For 28×28 gray models a photo of a digit is made to look like
    /// MNIST: gray, inverted when the background is light, cropped to its ink, scaled into
    /// 20×20 and centred by mass in 28×28.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    #[arg(long, value_enum, default_value = "jit")]
    backend: BackendArg,
    /// Worker threads [default: the number of cores, divided among the processes of this machine under mpirun].
    #[arg(long)]
    threads: Option<usize>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// Probabilities (or values) per output, as DESIGN.md's loss table says `predict` shows.
fn scores(loss: Option<Loss>, out: &[f32]) -> Vec<f32> {
    match loss {
        Some(Loss::SoftmaxCrossEntropy) => {
            let m = out.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = out.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        }
        _ => out.to_vec(),
    }
}

pub fn run(a: Args) -> CliResult {
    let mut model = super::common::trained_model(&a.model, &a.weights, a.backend, a.threads)?;
    let shape = model.spec.input.shape.clone();
    let mnist = shape == [1, 28, 28] || shape == [784];
    let mut results = Vec::new();
    for path in &a.images {
        if !path.is_file() {
            return Err(UserError(format!("no such image: {}", path.display())));
        }
        let img = image::open(path).map_err(|e| UserError(format!("cannot read the image {}: {e}", path.display())))?;
        let mut x = if mnist {
            mnist_like(&img)
        } else {
            percept_runtime::data::image_to_tensor(&img, &shape)
                .map_err(|e| UserError(format!("{}: {e}", path.display())))?
        };
        let len = x.len();
        model.data_meta.norm.apply(&mut x, len);
        let out = model.forward(&x, None, &[])?.prediction;
        let loss = model.spec.loss.map(|l| l.loss);
        let s = scores(loss, &out);
        let mut ranked: Vec<(usize, f32)> = s.iter().copied().enumerate().collect();
        if !(loss == Some(Loss::BinaryCrossEntropy) && s.len() == 1) {
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        let name = |c: usize| {
            model.data_meta.classes.as_ref().and_then(|n| n.get(c).cloned()).unwrap_or_else(|| c.to_string())
        };
        let top: Vec<(String, f32)> = ranked.iter().take(a.top.max(1)).map(|&(c, p)| (name(c), p)).collect();
        results.push((path.display().to_string(), top));
    }
    if a.json {
        let v: Vec<serde_json::Value> = results
            .iter()
            .map(|(f, top)| {
                serde_json::json!({
                    "file": f,
                    "top": top.iter().map(|(c, p)| serde_json::json!({"class": c, "probability": p})).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
    } else {
        for (f, top) in &results {
            let parts: Vec<String> = top.iter().map(|(c, p)| format!("{c} ({:.1}%)", p * 100.0)).collect();
            outln!("{f}: {}", parts.join(", "));
        }
    }
    Ok(())
}
