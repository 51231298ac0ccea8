use super::{load_model, CliResult};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> CliResult {
    let (_, spec, _) = load_model(&a.model)?;
    if a.json {
        let layers: Vec<serde_json::Value> = spec
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.prefix,
                    "layer": l.text,
                    "output_shape": l.out_shape,
                    "params": l.params.iter().filter(|p| p.role.trainable()).map(|p| p.numel()).sum::<usize>(),
                })
            })
            .collect();
        let out = serde_json::json!({
            "model": spec.name,
            "input_name": spec.input.name,
            "input_shape": spec.input.shape,
            "output_shape": spec.output_shape(),
            "layers": layers,
            "trainable_parameters": spec.trainable_count(),
            "running_statistics": spec.running_count(),
            "loss": spec.loss.map(|l| l.loss.name()),
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap());
    } else {
        out!("{}", spec.summary());
    }
    Ok(())
}
