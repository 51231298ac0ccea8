use super::common::{load_data, pct};
use super::{CliResult, UserError};
use crate::cli::common::BackendArg;
use percept_runtime::eval::evaluate;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The trained weights (safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// The data (its test set, or its training set when it has none).
    #[arg(long, default_value = "data/mnist")]
    data: String,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    #[arg(long, value_enum, default_value = "jit")]
    backend: BackendArg,
    /// Worker threads [default: the number of cores, divided among the processes of this machine under mpirun].
    #[arg(long)]
    threads: Option<usize>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CliResult {
    let mut model = super::common::trained_model(&a.model, &a.weights, a.backend, a.threads)?;
    let splits = load_data(&a.data, &model)?;
    let mut ds = match splits.test {
        Some(t) => t,
        None => {
            eprintln!("note: {} has no test set; evaluating its training set", a.data);
            splits.train
        }
    };
    ds.apply_norm(&model.data_meta.norm);
    // Weights trained with `--target input` are scored against the inputs.
    if model.data_meta.target_input {
        ds.inputs_as_targets();
    }
    ds.check_fits(&model.spec.input.shape, model.spec.output_shape(), model.spec.loss.map(|l| l.loss))?;
    if a.batch == 0 {
        return Err(UserError("--batch must be at least 1".into()));
    }
    let r = evaluate(&mut model, &ds, a.batch)?;
    if let Some(psnr) = r.psnr {
        if a.json {
            let v = serde_json::json!({"data": ds.name, "samples": r.samples, "mse": r.loss, "psnr_db": psnr});
            outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        } else {
            outln!("{}: {} samples, reconstructed", ds.name, r.samples);
            outln!("mse       {:.6}  (normalized values)", r.loss.unwrap_or(f64::NAN));
            outln!("psnr      {psnr:.2} dB  (pixels in [0, 1])");
        }
        return Ok(());
    }
    if a.json {
        let v = serde_json::json!({
            "data": ds.name,
            "samples": r.samples,
            "loss": r.loss,
            "accuracy": r.accuracy,
            "classes": r.classes,
            "per_class_accuracy": r.per_class,
            "confusion": r.confusion,
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return Ok(());
    }
    outln!("{}: {} samples", ds.name, r.samples);
    if let Some(l) = r.loss {
        outln!("loss      {l:.4}");
    }
    outln!("accuracy  {}", pct(r.accuracy));
    if !r.classes.is_empty() {
        outln!("\nper class:");
        for (c, acc) in r.classes.iter().zip(&r.per_class) {
            outln!("  {c:>8}  {:.2}%", acc * 100.0);
        }
        let w = r
            .confusion
            .iter()
            .flatten()
            .max()
            .map_or(1, |m| m.to_string().len())
            .max(r.classes.iter().map(|c| c.len()).max().unwrap_or(1));
        outln!("\nconfusion matrix (rows: true class, columns: predicted):");
        out!("  {:>w$} ", "");
        for c in &r.classes {
            out!(" {c:>w$}");
        }
        outln!();
        for (c, row) in r.classes.iter().zip(&r.confusion) {
            out!("  {c:>w$} ");
            for v in row {
                out!(" {v:>w$}");
            }
            outln!();
        }
    }
    Ok(())
}
