use super::{load_model, CliResult, UserError};
use percept_compiler::autodiff::{differentiate, GradOptions};
use percept_compiler::build::{forward_graph, BuildOptions};
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The parsed model, with positions.
    Ast,
    /// The training graph: forward, loss and backward (or forward only without a loss).
    Graph,
    /// The forward graph only, in evaluation mode.
    Forward,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// Which stage to print.
    #[arg(long, value_enum, default_value = "graph")]
    emit: Emit,
    /// The batch size the graph is specialized to.
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

pub fn run(a: Args) -> CliResult {
    let (src, spec, ast) = load_model(&a.model)?;
    if a.batch == 0 {
        return Err(UserError("--batch must be at least 1".into()));
    }
    let render = |d: percept_compiler::Diagnostic| UserError(d.render(&src));
    match a.emit {
        Emit::Ast => {
            let pos = |s: percept_compiler::Span| {
                let (l, c) = src.line_col(s.start);
                format!("{l}:{c}")
            };
            print!("{}", ast.dump(&pos));
        }
        Emit::Forward => print!("{}", forward_graph(&spec, a.batch, &BuildOptions::inference()).map_err(render)?),
        Emit::Graph => {
            if spec.loss.is_none() {
                eprintln!("note: the model has no loss; printing the forward graph");
                print!("{}", forward_graph(&spec, a.batch, &BuildOptions::inference()).map_err(render)?);
            } else {
                let fwd = forward_graph(&spec, a.batch, &BuildOptions::train()).map_err(render)?;
                let g = differentiate(&fwd, &GradOptions::default())
                    .map_err(|e| UserError(format!("internal error in autodiff: {e}")))?;
                print!("{g}");
            }
        }
    }
    Ok(())
}
