//! The kernel explorer: one self-contained HTML page showing a compiled program — its
//! graph with the fusion kernels drawn around their ops, the kernel table, each kernel's
//! loop nest, CLIF and assembly, the memory plan, and with `percept bench` the measured
//! time per kernel and a roofline.
//!
//! Two stages, one value between them: [`Explorer::collect`] reads the compiled programs
//! (the same `JitProgram`s `--emit plan`, `loops`, `clif` and `asm` print) and the bench's
//! timings into an [`Explorer`]; [`render`] turns it into the page (`page.rs` for the HTML,
//! `charts.rs` for the SVG, `layout.rs` for the graph's layered layout, `explorer.js` and
//! `explorer.css` embedded at build time). Nothing on the page comes from anywhere else.

mod charts;
mod layout;
mod page;

use percept_compiler::codegen::{builder::Region, CompiledKernel, JitProgram};
use percept_compiler::ir::{Graph, Phase};
use percept_compiler::ops::Op;
use percept_compiler::{ModelSpec, SourceFile};

pub use page::render;

/// Everything the page shows.
#[derive(Clone, Debug)]
pub struct Explorer {
    pub model: String,
    pub file: String,
    pub batch: usize,
    pub threads: usize,
    pub micro: String,
    /// Whether the page's plan is the fused one (`--unfused` makes it the unfused one).
    pub fused: bool,
    /// The page's programs (the training step's grad and update, or the evaluation).
    pub programs: Vec<Program>,
    /// The unfused grouping of the same graphs: for each program, the unfused kernel
    /// computing each node, the unfused kernels' names, and its arena size.
    pub unfused: Vec<Grouping>,
    pub statements: Vec<Statement>,
    pub timings: Option<Timings>,
}

/// A statement of the `.nn` file, for a node's or kernel's "where from".
#[derive(Clone, Debug)]
pub struct Statement {
    /// The tag the graph's nodes carry (`conv2d_0`, `stem`, `loss`).
    pub tag: String,
    pub line: usize,
    pub text: String,
}

/// One compiled program.
#[derive(Clone, Debug)]
pub struct Program {
    /// `grad`, `update` or `eval`.
    pub role: &'static str,
    pub nodes: Vec<Node>,
    /// Value edges between nodes (producer, consumer).
    pub edges: Vec<(usize, usize)>,
    pub kernels: Vec<Kernel>,
    pub arena_bytes: usize,
    /// Arena allocations: (what, offset bytes, bytes, first kernel, last kernel).
    pub allocs: Vec<(String, usize, usize, usize, usize)>,
    /// Where the per-thread scratch starts (bytes), its size per thread and the threads.
    pub scratch: (usize, usize, usize),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: String,
    /// What it is drawn as: the op, or a source's kind and name (`param "0.weight"`).
    pub label: String,
    /// Its outputs' shapes.
    pub shape: String,
    pub phase: Phase,
    /// A graph source (data, target, parameter, state): drawn small, in no kernel.
    pub source: bool,
    /// Its line of the graph IR text.
    pub text: String,
    pub tag: String,
    pub kernel: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    pub rule: &'static str,
    pub ops: Vec<String>,
    pub nodes: Vec<usize>,
    pub phase: Phase,
    pub flops: u64,
    pub bytes: u64,
    /// The arena bytes it touches: (lowest offset, highest end), if any.
    pub arena: Option<(usize, usize)>,
    /// Work items of each pass (threads split the items of a pass).
    pub passes: Vec<usize>,
    pub micro: Option<String>,
    pub shapes: String,
    pub loops: String,
    pub clif: String,
    pub asm: String,
    /// Tags of the statements its nodes come from, in order.
    pub tags: Vec<String>,
}

/// The unfused grouping of one program's graph.
#[derive(Clone, Debug)]
pub struct Grouping {
    pub kernel_of: Vec<Option<usize>>,
    pub names: Vec<String>,
    pub arena_bytes: usize,
}

/// What `percept bench` measured: µs per step of each kernel of the page's programs (in
/// order, every program's kernels one after the other) and the step's throughput; the
/// same for the unfused programs when the page's plan is the fused one; the machine's roofs.
#[derive(Clone, Debug)]
pub struct Timings {
    pub us: Vec<f64>,
    pub samples_per_s: f64,
    pub unfused: Option<(Vec<f64>, f64)>,
    pub roofline: percept_runtime::machine::Roofline,
}

fn phase_of(k: &CompiledKernel, g: &Graph) -> Phase {
    g.nodes[k.kernel.main].origin.phase
}

impl Explorer {
    /// The page's data from compiled programs: `programs` (the page's plan) and
    /// `unfused` (the same graphs compiled one kernel per node).
    #[allow(clippy::too_many_arguments)]
    pub fn collect(
        spec: &ModelSpec,
        src: &SourceFile,
        programs: &[&JitProgram],
        unfused: &[&JitProgram],
        fused: bool,
        threads: usize,
        timings: Option<Timings>,
    ) -> Explorer {
        let mut statements = vec![];
        let line = |span: percept_compiler::Span| src.line_col(span.start).0;
        statements.push(Statement {
            tag: String::new(),
            line: line(spec.input.span),
            text: src_line(src, spec.input.span),
        });
        for l in &spec.layers {
            statements.push(Statement { tag: l.tag(), line: line(l.span), text: src_line(src, l.span) });
            // Update nodes carry the parameter's name as their tag.
            for p in &l.params {
                statements.push(Statement { tag: p.name.clone(), line: line(l.span), text: src_line(src, l.span) });
            }
        }
        if let Some(loss) = &spec.loss {
            statements.push(Statement { tag: "loss".into(), line: line(loss.span), text: src_line(src, loss.span) });
        }
        let batch = programs.iter().map(|p| p.graph.batch).max().unwrap_or(0);
        let micro = programs.first().map(|p| p.micro_name.clone()).unwrap_or_default();
        let programs: Vec<Program> = programs.iter().map(|p| program(p)).collect();
        let unfused = unfused
            .iter()
            .map(|p| {
                let mut kernel_of = vec![None; p.graph.nodes.len()];
                for (i, k) in p.kernels.iter().enumerate() {
                    for n in k.kernel.nodes() {
                        kernel_of[n] = Some(i);
                    }
                }
                Grouping {
                    kernel_of,
                    names: p.kernels.iter().map(|k| k.name().to_string()).collect(),
                    arena_bytes: p.plan.peak_bytes(),
                }
            })
            .collect();
        Explorer {
            model: spec.name.clone(),
            file: src.name.clone(),
            batch,
            threads,
            micro,
            fused,
            programs,
            unfused,
            statements,
            timings,
        }
    }

    /// The statement a node or kernel tag comes from.
    pub fn statement(&self, tag: &str) -> Option<&Statement> {
        self.statements.iter().find(|s| s.tag == tag)
    }

    /// Every kernel of the page's programs, in order.
    pub fn kernels(&self) -> impl Iterator<Item = &Kernel> {
        self.programs.iter().flat_map(|p| &p.kernels)
    }
}

/// A statement's text as written, on one line.
fn src_line(src: &SourceFile, span: percept_compiler::Span) -> String {
    let text = src.text.get(span.range()).unwrap_or("");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn program(p: &JitProgram) -> Program {
    let g = &p.graph;
    let mut kernel_of = vec![None; g.nodes.len()];
    for (i, k) in p.kernels.iter().enumerate() {
        for n in k.kernel.nodes() {
            kernel_of[n] = Some(i);
        }
    }
    let nodes = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            op: n.op.name().to_string(),
            label: match &n.op {
                Op::Source(_) => format!("{} {}", n.op.name(), n.op.attrs()).trim().to_string(),
                _ => n.op.name().to_string(),
            },
            shape: n
                .outputs
                .iter()
                .map(|&v| percept_compiler::text::fmt_shape(g.shape(v)))
                .collect::<Vec<_>>()
                .join(", "),
            phase: n.origin.phase,
            source: matches!(n.op, Op::Source(_)),
            text: g.node_text(n),
            tag: n.origin.tag.clone(),
            kernel: kernel_of[i],
        })
        .collect();
    let mut edges = vec![];
    for (i, n) in g.nodes.iter().enumerate() {
        for v in &n.inputs {
            let from = g.values[v.0 as usize].node.0 as usize;
            if !edges.contains(&(from, i)) {
                edges.push((from, i));
            }
        }
    }
    let kernels = p
        .kernels
        .iter()
        .map(|k| {
            let arena: Vec<(usize, usize)> = k
                .inputs
                .iter()
                .chain(&k.outputs)
                .filter(|b| b.region == Region::Arena)
                .map(|b| (b.offset * 4, (b.offset + b.len) * 4))
                .collect();
            let mut tags: Vec<String> = vec![];
            for n in k.kernel.nodes() {
                let t = &g.nodes[n].origin.tag;
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            let shapes = |s: &[Vec<usize>]| {
                s.iter().map(|v| percept_compiler::text::fmt_shape(v)).collect::<Vec<_>>().join(", ")
            };
            Kernel {
                name: k.name().to_string(),
                rule: k.kernel.rule,
                ops: k.ops.clone(),
                nodes: k.kernel.nodes(),
                phase: phase_of(k, g),
                flops: k.flops,
                bytes: k.bytes_read + k.bytes_written,
                arena: (!arena.is_empty()).then(|| {
                    (arena.iter().map(|a| a.0).min().unwrap_or(0), arena.iter().map(|a| a.1).max().unwrap_or(0))
                }),
                passes: k.passes().to_vec(),
                micro: k.micro.clone(),
                shapes: format!("{} -> {}", shapes(&k.input_shapes), shapes(&k.output_shapes)),
                loops: k.loops.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("\n"),
                clif: k.text.clif.clone(),
                asm: k.text.asm(false),
                tags,
            }
        })
        .collect();
    let plan = &p.plan;
    Program {
        role: role_of(p),
        nodes,
        edges,
        kernels,
        arena_bytes: plan.peak_bytes(),
        allocs: plan.allocs.iter().map(|a| (a.what.clone(), a.offset * 4, a.len * 4, a.from, a.to)).collect(),
        scratch: (plan.scratch_start * 4, plan.scratch_per_thread * 4, plan.threads),
    }
}

/// Which program of a step this is, from its nodes' phases.
fn role_of(p: &JitProgram) -> &'static str {
    let phases: Vec<Phase> = p.graph.nodes.iter().map(|n| n.origin.phase).collect();
    if phases.contains(&Phase::Update) {
        "update"
    } else if phases.contains(&Phase::Backward) {
        "grad"
    } else {
        "eval"
    }
}

/// What `percept inspect --emit html` compiles a page for.
#[derive(Clone, Copy, Debug)]
pub struct PageOptions {
    pub batch: usize,
    /// The training step (grad and update programs) rather than the evaluation program.
    pub training: bool,
    pub fused: bool,
    pub micro: percept_compiler::codegen::MicroChoice,
    pub threads: usize,
}

/// A model compiled on the JIT back end as `inspect` and `bench` compile it.
pub fn compiled_model(
    spec: &ModelSpec,
    o: &PageOptions,
    fused: bool,
) -> Result<percept_runtime::Model, percept_runtime::Error> {
    let mut model = percept_runtime::Model::new(spec.clone());
    model.set_backend(percept_runtime::Backend::Jit)?;
    model.codegen.micro = o.micro;
    model.codegen.fuse = fused;
    model.set_threads(o.threads);
    if o.training {
        let cfg = percept_runtime::TrainConfig::default();
        model.set_optimizer(cfg.optimizer(), &[])?;
    }
    model.jit_programs(o.batch, o.training)?;
    Ok(model)
}

/// The page (without timings) for `spec`: its programs compiled as `o` says, and the
/// same graphs unfused.
pub fn page_for(spec: &ModelSpec, src: &SourceFile, o: &PageOptions) -> Result<Explorer, percept_runtime::Error> {
    let mut page = compiled_model(spec, o, o.fused)?;
    let mut unfused = if o.fused { Some(compiled_model(spec, o, false)?) } else { None };
    let progs: Vec<&JitProgram> = page.jit_programs(o.batch, o.training)?.into_iter().map(|e| e.program()).collect();
    let unfused_progs: Vec<&JitProgram> = match unfused.as_mut() {
        Some(m) => m.jit_programs(o.batch, o.training)?.into_iter().map(|e| e.program()).collect(),
        None => progs.clone(),
    };
    Ok(Explorer::collect(spec, src, &progs, &unfused_progs, o.fused, o.threads, None))
}
