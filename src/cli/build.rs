//! `percept build`: a trained model compiled ahead of time into a static library and a C
//! header (`percept_compiler::codegen::aot`, `crate::aot`).

use super::{CliResult, UserError};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The trained weights (safetensors), embedded in the library.
    #[arg(long)]
    weights: PathBuf,
    /// Samples per call of the library's forward function.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Where to write lib<model>.a and <model>.h [default: runs/<model>/build].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The micro-kernel of the matrix products (the native ones come as an object of
    /// their own in the archive).
    #[arg(long, value_enum, default_value = "native")]
    microkernel: super::common::MicroArg,
}

pub fn run(a: Args) -> CliResult {
    if a.batch == 0 {
        return Err(UserError("--batch must be at least 1".into()));
    }
    let model = super::common::trained_model(&a.model, &a.weights, super::common::BackendArg::Jit, Some(1))?;
    let spec = &model.spec;
    let prefix = crate::aot::c_prefix(&spec.name);
    let dir = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&spec.name).join("build"));
    let graph = percept_compiler::exec::eval_program(spec, a.batch, false, &[]).map_err(|d| UserError(d.summary()))?;
    let options = percept_compiler::codegen::CodegenOptions { micro: a.microkernel.into(), ..Default::default() };
    let lib = percept_compiler::codegen::aot::build(&graph, model.store.layout(), model.store.data(), &prefix, options)
        .map_err(|e| UserError(format!("cannot compile {}: {e}", a.model.display())))?;
    let per: usize = spec.input.shape.iter().product();
    let out_size: usize = spec.output_shape().iter().product();
    if lib.input_len != per * a.batch || lib.output_len != out_size * a.batch {
        return Err(UserError(format!(
            "internal error: the library's input/output sizes do not match `{}`",
            spec.name
        )));
    }
    let source = a.model.display().to_string();
    let info = crate::aot::HeaderInfo {
        model: &spec.name,
        source: &source,
        batch: a.batch,
        input_shape: &spec.input.shape,
        output_size: out_size,
        mean: &model.data_meta.norm.mean,
        std: &model.data_meta.norm.std,
        classes: model.data_meta.classes.as_deref(),
    };
    let header = crate::aot::header(&lib, &info);
    let archive = crate::aot::archive(&lib.objects);
    let (a_path, h_path) = (dir.join(format!("lib{prefix}.a")), dir.join(format!("{prefix}.h")));
    // Both files or neither: each is written atomically, the header last, and a failure
    // removes the archive again.
    super::write_file(&a_path, &archive)?;
    if let Err(e) = super::write_file(&h_path, header.as_bytes()) {
        let _ = std::fs::remove_file(&a_path);
        return Err(e);
    }
    outln!(
        "wrote {} ({} kernels, micro-kernel {}, {} bytes of workspace) and {}",
        a_path.display(),
        lib.kernels,
        lib.micro,
        lib.workspace_bytes,
        h_path.display()
    );
    Ok(())
}
