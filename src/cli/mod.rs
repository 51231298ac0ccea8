//! Subcommands of the `percept` binary, one module each.

/// `println!` for results on stdout: a reader that went away (`percept … | head`) ends the
/// program quietly instead of a panic.
macro_rules! outln {
    () => { $crate::cli::write_stdout(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` for results on stdout (see `outln!`).
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_stdout(format_args!($($t)*)) };
}

mod bench;
mod bench_mpi;
mod build;
mod check;
mod common;
mod eval;
mod export;
mod extract;
mod features;
mod import;
mod inspect;
mod predict;
mod processes;
mod run;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "percept", version, about = "Percept: a declarative deep-learning model compiler for computer vision")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a model: print its summary (shapes and parameter counts) or a pointed error.
    Check(check::Args),
    /// Print a stage of the compiler: the AST or the training graph.
    Inspect(inspect::Args),
    /// Train a model with mini-batches; evaluates after every epoch and saves the weights.
    Train(Box<train::Args>),
    /// Evaluate trained weights: loss, accuracy, per-class accuracy, confusion matrix.
    Eval(eval::Args),
    /// Classify images with trained weights: the top classes and their probabilities.
    Predict(predict::Args),
    /// Run the forward pass on an input tensor and write the output (or a layer's).
    Run(run::Args),
    /// Measure training-step throughput, fused against unfused, kernel by kernel.
    Bench(bench::Args),
    /// Draw what each layer sees for one image: feature maps, filters, an overview.
    Features(features::Args),
    /// Write a layer's activations for a data set or images (features for other models).
    Extract(extract::Args),
    /// Compile trained weights ahead of time into a static library and a C header.
    Build(build::Args),
    /// Import an ONNX model: a .nn file and its weights.
    Import(import::Args),
    /// Export a model as ONNX (evaluation mode, with its weights) or as a PyTorch module.
    Export(export::Args),
}

/// A failure the user can fix: the message says what and where. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

pub type CliResult = Result<(), UserError>;

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Run(a) => run::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Features(a) => features::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Build(a) => build::run(a),
        Command::Import(a) => import::run(a),
        Command::Export(a) => export::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = e.0.trim_end();
            // Rendered diagnostics carry their own `file:line:col: error:` title.
            let first = msg.lines().next().unwrap_or("");
            if first.starts_with("error") || first.contains(": error: ") {
                eprintln!("{msg}");
            } else {
                eprintln!("error: {msg}");
            }
            1
        }
    }
}

thread_local! {
    /// Where `out!` writes while a command's output goes to a file (`--out`).
    static CAPTURED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Until the guard is dropped, `out!`/`outln!` on this thread collect into a string
/// ([`take_captured`]) instead of writing to stdout.
pub fn capture_stdout() -> impl Drop {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            CAPTURED.with(|c| c.borrow_mut().take());
        }
    }
    CAPTURED.with(|c| *c.borrow_mut() = Some(String::new()));
    Guard
}

/// What was collected since [`capture_stdout`].
pub fn take_captured() -> String {
    CAPTURED.with(|c| c.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default())
}

/// Write a result file atomically (a temporary file renamed over it).
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> CliResult {
    percept_runtime::tensorfile::write_atomic(path, bytes).map_err(|e| UserError(e.to_string()))
}

/// Write to stdout; a closed pipe ends the program with success (what was asked for was
/// taken), any other failure with exit 1.
pub fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    let captured = CAPTURED.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(s) => {
                let _ = std::fmt::Write::write_fmt(s, args);
                true
            }
            None => false,
        }
    });
    if captured {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// Read and check a `.nn` file; a failure is the rendered diagnostic.
pub fn load_model(
    path: &std::path::Path,
) -> Result<(percept_compiler::SourceFile, percept_compiler::ModelSpec, percept_compiler::ast::Model), UserError> {
    let text = std::fs::read_to_string(path).map_err(|e| UserError(format!("cannot read {}: {e}", path.display())))?;
    let src = percept_compiler::SourceFile::new(path.display().to_string(), text);
    let ast = percept_compiler::parse(&src).map_err(|d| UserError(d.render(&src)))?;
    let spec = percept_compiler::check(&ast).map_err(|d| UserError(d.render(&src)))?;
    Ok((src, spec, ast))
}
