use super::{load_model, CliResult, UserError};
use percept_compiler::autodiff::{differentiate, GradOptions};
use percept_compiler::build::{forward_graph, BuildOptions};
use percept_runtime::train::TrainConfig;
use percept_runtime::{Backend, Model};
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The parsed model, with positions.
    Ast,
    /// The training graph: forward, loss and backward (or forward only without a loss).
    Graph,
    /// The forward graph only, in evaluation mode.
    Forward,
    /// The kernel plan: kernels, ops, shapes, FLOPs, bytes, buffers, arena size.
    Plan,
    /// The loop nests of the kernels: loops, affine indices with their proved ranges,
    /// loads and stores on named buffers (what is turned into Cranelift IR).
    Loops,
    /// The Cranelift IR of the kernels.
    Clif,
    /// The machine code of the kernels, decoded from the bytes that run: offsets, block
    /// labels, relocations, the constant pool (`--encodings` adds each instruction's bytes).
    Asm,
    /// The kernel explorer: one self-contained HTML page with the graph and its fusion
    /// kernels, the kernel table, each kernel's loops, CLIF and assembly, the memory plan.
    Html,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The training step: the grad program, then the optimizer's update program.
    Train,
    /// The evaluation forward pass.
    Eval,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// Which stage to print.
    #[arg(long, value_enum, default_value = "graph")]
    emit: Emit,
    /// The batch size the programs are specialized to.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Which program (plan, loops, clif, asm).
    #[arg(long, value_enum, default_value = "train")]
    mode: Mode,
    /// Only this kernel (its name, or part of it; `micro` for the GEMM micro-kernel).
    #[arg(long)]
    kernel: Option<String>,
    /// The plan as JSON (with --emit plan).
    #[arg(long)]
    json: bool,
    /// The micro-kernel of the JIT's matrix products.
    #[arg(long, value_enum, default_value = "native")]
    microkernel: super::common::MicroArg,
    /// Compile one kernel per op (no fusion).
    #[arg(long)]
    unfused: bool,
    /// Threads to compile for.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// With --emit asm: each instruction's bytes too.
    #[arg(long)]
    encodings: bool,
    /// Write the output to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let (src, spec, ast) = load_model(&a.model)?;
    if a.batch == 0 {
        return Err(UserError("--batch must be at least 1".into()));
    }
    if let Some(out) = &a.out {
        // Everything below prints; capture it and write the file at the end.
        let _capture = super::capture_stdout();
        let result = emit(&a, &src, spec, &ast);
        let text = super::take_captured();
        result?;
        return super::write_file(out, text.as_bytes());
    }
    emit(&a, &src, spec, &ast)
}

fn emit(
    a: &Args,
    src: &percept_compiler::SourceFile,
    spec: percept_compiler::ModelSpec,
    ast: &percept_compiler::ast::Model,
) -> CliResult {
    let render = |d: percept_compiler::Diagnostic| UserError(d.render(src));
    match a.emit {
        Emit::Ast => {
            let pos = |s: percept_compiler::Span| {
                let (l, c) = src.line_col(s.start);
                format!("{l}:{c}")
            };
            out!("{}", ast.dump(&pos));
        }
        Emit::Forward => out!("{}", forward_graph(&spec, a.batch, &BuildOptions::inference()).map_err(render)?),
        Emit::Graph => {
            if spec.loss.is_none() {
                eprintln!("note: the model has no loss; printing the forward graph");
                out!("{}", forward_graph(&spec, a.batch, &BuildOptions::inference()).map_err(render)?);
            } else {
                let fwd = forward_graph(&spec, a.batch, &BuildOptions::train()).map_err(render)?;
                let g = differentiate(&fwd, &GradOptions::default())
                    .map_err(|e| UserError(format!("internal error in autodiff: {e}")))?;
                out!("{g}");
            }
        }
        Emit::Html => {
            let training = a.mode == Mode::Train;
            if training && spec.loss.is_none() {
                return Err(UserError("the model has no loss, so it has no training step; use --mode eval".into()));
            }
            let o = crate::explorer::PageOptions {
                batch: a.batch,
                training,
                fused: !a.unfused,
                micro: a.microkernel.into(),
                threads: a.threads.max(1),
            };
            let page = crate::explorer::page_for(&spec, src, &o)?;
            out!("{}", crate::explorer::render(&page));
        }
        Emit::Plan | Emit::Loops | Emit::Clif | Emit::Asm => {
            let training = a.mode == Mode::Train;
            if training && spec.loss.is_none() {
                return Err(UserError("the model has no loss, so it has no training step; use --mode eval".into()));
            }
            let mut model = Model::new(spec);
            model.set_backend(Backend::Jit)?;
            model.codegen.micro = a.microkernel.into();
            model.codegen.fuse = !a.unfused;
            model.set_threads(a.threads);
            if training {
                let cfg = TrainConfig::default();
                model.set_optimizer(cfg.optimizer(), &[])?;
            }
            let programs = model.jit_programs(a.batch, training)?;
            if a.emit == Emit::Plan {
                if a.json {
                    let v: Vec<serde_json::Value> = programs.iter().map(|p| plan_json(p.program())).collect();
                    let arena: usize = programs.iter().map(|p| p.program().plan.peak_bytes()).max().unwrap_or(0);
                    let kernels: Vec<serde_json::Value> =
                        v.iter().flat_map(|p| p["kernels"].as_array().cloned().unwrap_or_default()).collect();
                    let out = serde_json::json!({"kernels": kernels, "arena_bytes": arena, "programs": v});
                    outln!("{}", serde_json::to_string_pretty(&out).expect("serializes"));
                } else {
                    for p in &programs {
                        out!("{}", p.program().plan_text(true));
                    }
                }
                return Ok(());
            }
            let mut shown = 0;
            for p in &programs {
                let prog = p.program();
                if a.kernel.as_deref() == Some("micro") {
                    let t = &prog.micro_text;
                    outln!("; micro-kernel {}", prog.micro_name);
                    match a.emit {
                        Emit::Loops => {
                            outln!("; it has no loop nest (it is written as CLIF or native code): see --emit clif")
                        }
                        Emit::Clif => outln!("{}", t.clif),
                        _ => outln!("{}", t.asm(a.encodings)),
                    }
                    shown += 1;
                    break;
                }
                let ks = match &a.kernel {
                    Some(name) => prog.find_kernels(name),
                    None => prog.kernels.iter().collect(),
                };
                for k in ks {
                    outln!("; kernel {} ({})", k.name(), k.ops.join(" + "));
                    if a.emit == Emit::Loops {
                        for nest in &k.loops {
                            outln!("{nest}");
                        }
                        shown += 1;
                        continue;
                    }
                    let text = |t: &percept_compiler::codegen::jit::FunctionText| match a.emit {
                        Emit::Clif => t.clif.clone(),
                        _ => t.asm(a.encodings),
                    };
                    outln!("{}", text(&k.text));
                    if a.kernel.is_some() && k.micro.is_some() {
                        outln!("; the micro-kernel it calls: {}", prog.micro_name);
                        outln!("{}", text(&prog.micro_text));
                    }
                    shown += 1;
                }
            }
            if shown == 0 {
                let names: Vec<String> =
                    programs.iter().flat_map(|p| p.program().kernels.iter().map(|k| k.name().to_string())).collect();
                return Err(UserError(format!(
                    "no kernel matches `{}`; the kernels are: micro, {}",
                    a.kernel.clone().unwrap_or_default(),
                    names.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn plan_json(p: &percept_compiler::codegen::JitProgram) -> serde_json::Value {
    let kernels: Vec<serde_json::Value> = p
        .kernels
        .iter()
        .map(|k| {
            let buf = |b: &percept_compiler::codegen::builder::Buf| {
                serde_json::json!({
                    "value": b.name,
                    "region": match b.region { percept_compiler::codegen::builder::Region::Arena => "arena", _ => "state" },
                    "offset_bytes": b.offset * 4,
                    "bytes": b.len * 4,
                })
            };
            serde_json::json!({
                "name": k.name(),
                "rule": k.kernel.rule,
                "ops": k.ops,
                "flops": k.flops,
                "bytes": k.bytes_read + k.bytes_written,
                "bytes_read": k.bytes_read,
                "bytes_written": k.bytes_written,
                "input_shapes": k.input_shapes,
                "output_shapes": k.output_shapes,
                "inputs": k.inputs.iter().map(buf).collect::<Vec<_>>(),
                "outputs": k.outputs.iter().map(buf).collect::<Vec<_>>(),
                "items": k.extent(),
                "passes": k.passes(),
                "microkernel": k.micro,
                "code_bytes": k.text.code_bytes,
            })
        })
        .collect();
    serde_json::json!({
        "graph": p.graph.name,
        "mode": p.graph.mode.to_string(),
        "batch": p.graph.batch,
        "kernels": kernels,
        "arena_bytes": p.plan.peak_bytes(),
        "compile_ms": p.compile_time.as_secs_f64() * 1e3,
    })
}
