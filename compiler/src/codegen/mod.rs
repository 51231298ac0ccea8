//! The Cranelift back end: a graph and a state layout → a [`JitProgram`] of
//! shape-specialized kernels over one arena.
//!
//! Stages, each a function with one value in and one out: fusion ([`fuse`]: graph →
//! [`fuse::Kernel`]s) → memory plan ([`plan`]) → lowering ([`lower`], with the builder
//! [`builder`]: each kernel → [`loops::LoopNest`]s, proved in bounds by
//! [`loops::verify`]) → CLIF ([`emit`]) → machine code ([`jit`]) → an executor ([`executable`]).

pub mod aot;
pub mod asm;
pub mod builder;
pub mod emit;
pub mod executable;
pub mod fuse;
pub mod jit;
pub mod loops;
pub mod lower;
pub mod math;
pub mod micro;
pub mod plan;
pub mod team;

use crate::exec::{CollectivePoint, StateLayout};
use crate::ir::Graph;
use crate::Error;
use builder::Buf;
use fuse::Kernel;
use jit::{kernel_signature, CgResult, FunctionText, JitModule, OptLevel};
use micro::{MicroKernel, MicroTile};
use plan::ArenaPlan;
use std::time::{Duration, Instant};

pub use executable::JitExecutable;
pub use jit::{host_features, HostFeatures};

/// Switches for code generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodegenOptions {
    /// Fuse nodes into kernel groups (see [`fuse`]); off: one kernel per node.
    pub fuse: bool,
    /// Which micro-kernel GEMMs call.
    pub micro: MicroChoice,
    /// The threads work is split over (GEMMs split their columns by it; per-thread
    /// scratch is sized by it). Results are the same bits for any value.
    pub threads: usize,
    /// Emit a run-time bounds check before every load and store (debug).
    pub checks: bool,
    /// Fill freed arena regions with NaN after each kernel (debug), so reading a value
    /// after its last planned use shows up.
    pub poison: bool,
    /// Refuse a program whose arena (with every thread's scratch) needs more bytes than
    /// this, before allocating it (`Error::Memory`).
    pub memory_budget: Option<u64>,
}

/// The GEMM micro-kernel: the best native one for the host (AVX-512, else AVX2+FMA, else
/// the Cranelift one), or a specific kind for comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicroChoice {
    Auto,
    Cranelift,
    Avx2,
}

impl Default for CodegenOptions {
    fn default() -> CodegenOptions {
        CodegenOptions {
            fuse: true,
            micro: MicroChoice::Auto,
            threads: 1,
            checks: false,
            poison: false,
            memory_budget: None,
        }
    }
}

/// A kernel as compiled: the fusion's [`Kernel`], its cost and buffers, its loop nests
/// and code.
#[derive(Clone, Debug)]
pub struct CompiledKernel {
    pub kernel: Kernel,
    pub ops: Vec<String>,
    pub input_shapes: Vec<Vec<usize>>,
    pub output_shapes: Vec<Vec<usize>>,
    /// The op table's FLOPs of its nodes (the same whichever way they are fused).
    pub flops: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// (region, offset in floats, length) of each value it reads and stores.
    pub inputs: Vec<Buf>,
    pub outputs: Vec<Buf>,
    /// The micro-kernel its loop nests call, if any.
    pub micro: Option<String>,
    pub text: FunctionText,
    /// The loop nest of each pass.
    pub loops: Vec<loops::LoopNest>,
    /// What each run-time-checked access is (with `checks`).
    pub accesses: Vec<String>,
}

impl CompiledKernel {
    pub fn name(&self) -> &str {
        &self.kernel.name
    }

    /// Work items of each pass; passes run one after the other.
    pub fn passes(&self) -> &[usize] {
        &self.kernel.work.passes
    }

    /// Independent work items of its first pass (threads split these).
    pub fn extent(&self) -> usize {
        self.kernel.work.passes[0]
    }
}

/// A run of kernels, then maybe a point where a collective runs (see
/// [`crate::exec::CollectivePoint`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// One past its last kernel (it starts where the previous segment ends).
    pub end: usize,
    pub then: Option<CollectivePoint>,
}

/// The segments of a program: its kernels cut after each collective point's node. A point
/// must not fall inside a kernel (a fused kernel computing nodes on both sides of it).
fn segments(g: &Graph, kernels: &[Kernel]) -> CgResult<Vec<Segment>> {
    let mut out = vec![];
    for (after, point) in crate::exec::collective_points(g) {
        let end = kernels.iter().rposition(|k| k.nodes().iter().any(|&n| n <= after)).map_or(0, |i| i + 1);
        if kernels[..end].iter().any(|k| k.nodes().iter().any(|&n| n > after)) {
            return Err(Error::Codegen(format!("the collective point `{point}` falls inside a kernel")));
        }
        out.push(Segment { end, then: Some(point) });
    }
    if out.last().is_none_or(|s| s.end < kernels.len()) {
        out.push(Segment { end: kernels.len(), then: None });
    }
    Ok(out)
}

/// A compiled program: kernels, memory plan, code.
pub struct JitProgram {
    pub graph: Graph,
    pub layout: StateLayout,
    pub kernels: Vec<CompiledKernel>,
    /// The kernels cut at the program's collective points.
    pub segments: Vec<Segment>,
    pub plan: ArenaPlan,
    pub micro_text: FunctionText,
    pub micro_name: String,
    pub compile_time: Duration,
    pub options: CodegenOptions,
}

/// A JIT module with the run-time-check reporter and the chosen micro-kernel declared.
fn start_module(options: CodegenOptions, features: HostFeatures) -> CgResult<(JitModule, MicroKernel, FunctionText)> {
    let report = executable::bounds_report as extern "C" fn(i32, i64, i64);
    let native = micro::native_for(options.micro, features);
    let narrow = micro::narrow_for(options.micro, features);
    let mut symbols = vec![(executable::BOUNDS_REPORT, report as *const u8)];
    for n in native.iter().chain(&narrow) {
        symbols.push((n.symbol, n.address));
    }
    let mut jit = JitModule::new(&symbols, cfg!(debug_assertions))?;
    let (micro, text) = micro::declare(&mut jit, native.as_ref(), narrow.as_ref(), features)?;
    Ok((jit, micro, text))
}

/// A kernel's code: one function per pass, its text, and its checked accesses.
struct KernelCode {
    ids: Vec<cranelift_module::FuncId>,
    text: FunctionText,
    accesses: Vec<String>,
}

/// Write each loop nest as CLIF and compile it into `jit`.
fn define_kernels<M: cranelift_module::Module>(
    jit: &mut jit::CodeModule<M>,
    kernels: &[Kernel],
    nests: &[Vec<loops::LoopNest>],
    micro: &MicroKernel,
    features: HostFeatures,
    options: CodegenOptions,
) -> CgResult<Vec<KernelCode>> {
    let report_id = if options.checks {
        let mut sig = cranelift_codegen::ir::Signature::new(jit.call_conv());
        use cranelift_codegen::ir::{types, AbiParam};
        sig.params.extend([AbiParam::new(types::I32), AbiParam::new(types::I64), AbiParam::new(types::I64)]);
        Some(jit.declare(executable::BOUNDS_REPORT, &sig, cranelift_module::Linkage::Import)?)
    } else {
        None
    };
    // Every pass's CLIF first (the module declares and imports), then the machine code of
    // all of them at once on the compiling threads, then each defined in order.
    let mut funcs = vec![];
    let mut accesses: Vec<Vec<String>> = vec![vec![]; kernels.len()];
    for (k, (kernel, passes)) in kernels.iter().zip(nests).enumerate() {
        for nest in passes {
            let sig = kernel_signature(jit.call_conv());
            let sym = format!("k{k}p{}_{}", nest.pass, kernel.name.replace(['.', '#', '+'], "_"));
            let id = jit.declare(&sym, &sig, cranelift_module::Linkage::Local)?;
            let mut func = jit.new_function(id, sig);
            let micro_call = nest.calls_tile(false).then(|| jit.import(micro.id, &mut func));
            let narrow_call = match (nest.calls_tile(true), micro.narrow) {
                (true, Some(id)) => Some(jit.import(id, &mut func)),
                (true, None) => {
                    return Err(Error::Codegen(format!(
                        "kernel `{}` calls a narrow tile the module lacks",
                        kernel.name
                    )))
                }
                (false, _) => None,
            };
            let checks = report_id.map(|r| (jit.import(r, &mut func), k as u32));
            let ecx = emit::EmitCx {
                fma: features.fma,
                micro: micro_call,
                narrow: narrow_call,
                checks,
                access_base: accesses[k].len(),
            };
            accesses[k].extend(emit::emit(nest, &mut func, jit.frontend_config(), ecx)?);
            funcs.push((k, id, func));
        }
    }
    let compiled: Vec<CgResult<(usize, jit::Compiled)>> = {
        use rayon::prelude::*;
        let compiler = jit.compiler();
        funcs.into_par_iter().map(|(k, id, func)| Ok((k, compiler.compile(id, func, OptLevel::Speed)?))).collect()
    };
    let mut per_kernel: Vec<(Vec<cranelift_module::FuncId>, Vec<FunctionText>)> = vec![(vec![], vec![]); kernels.len()];
    for c in compiled {
        let (k, c) = c?;
        per_kernel[k].0.push(c.id());
        per_kernel[k].1.push(jit.define_compiled(c)?);
    }
    let mut out = vec![];
    for ((ids, mut texts), accesses) in per_kernel.into_iter().zip(accesses) {
        let text = if texts.len() == 1 { texts.remove(0) } else { FunctionText::passes(texts) };
        out.push(KernelCode { ids, text, accesses });
    }
    Ok(out)
}

/// A kernel's description for inspection and timing: ops, shapes, cost, buffers.
fn describe(
    g: &Graph,
    plan: &ArenaPlan,
    kernel: Kernel,
    loops: Vec<loops::LoopNest>,
    code: KernelCode,
    micro: &MicroTile,
) -> CgResult<CompiledKernel> {
    let buf = |v: crate::ir::ValueId| match plan.locs[v.0 as usize] {
        Some(_) => Ok(plan.buf(v, format!("{v}"))),
        None => Err(Error::Codegen(format!("{v} is not stored"))),
    };
    let (reads, stored) = (kernel.reads(g), kernel.stored(g));
    let shapes_of = |vs: &[crate::ir::ValueId]| vs.iter().map(|&v| g.shape(v).to_vec()).collect::<Vec<_>>();
    let numel = |s: &Vec<usize>| s.iter().product::<usize>() as u64;
    let nodes = kernel.nodes();
    let flops = nodes
        .iter()
        .map(|&n| {
            let n = &g.nodes[n];
            let i: Vec<&[usize]> = n.inputs.iter().map(|&v| g.shape(v)).collect();
            let o: Vec<&[usize]> = n.outputs.iter().map(|&v| g.shape(v)).collect();
            n.op.flops(&i, &o)
        })
        .sum();
    let (ins, outs) = (shapes_of(&reads), shapes_of(&stored));
    Ok(CompiledKernel {
        ops: nodes.iter().map(|&n| g.nodes[n].op.name().to_string()).collect(),
        flops,
        bytes_read: ins.iter().map(numel).sum::<u64>() * 4,
        bytes_written: outs.iter().map(numel).sum::<u64>() * 4,
        input_shapes: ins,
        output_shapes: outs,
        inputs: reads.iter().map(|&v| buf(v)).collect::<CgResult<_>>()?,
        outputs: stored.iter().map(|&v| buf(v)).collect::<CgResult<_>>()?,
        micro: {
            let used: Vec<&str> = micro
                .choices()
                .into_iter()
                .enumerate()
                .filter(|&(i, _)| loops.iter().any(|n| n.calls_tile(i > 0)))
                .map(|(_, t)| t.name.as_str())
                .collect();
            (!used.is_empty()).then(|| used.join(" + "))
        },
        text: code.text,
        loops,
        accesses: code.accesses,
        kernel,
    })
}

/// A graph fused, planned and lowered: everything a program is before code exists.
pub struct Lowered {
    pub kernels: Vec<Kernel>,
    pub plan: ArenaPlan,
    /// Each kernel's loop nests, one per pass, proved in bounds.
    pub nests: Vec<Vec<loops::LoopNest>>,
}

/// Fusion → memory plan → loop nests, for GEMMs calling a micro-kernel of shape `tile`.
pub fn lower_program(
    graph: &Graph,
    layout: &StateLayout,
    options: CodegenOptions,
    tile: &MicroTile,
) -> CgResult<Lowered> {
    let threads = options.threads.max(1);
    let kernels = fuse::kernels(graph, options.fuse, tile, threads);
    let plan = plan::plan_memory(graph, &kernels, layout, threads)?;
    let nests = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| lower::lower_kernel(graph, k, i, &plan, tile, threads))
        .collect::<CgResult<Vec<_>>>()?;
    Ok(Lowered { kernels, plan, nests })
}

/// Compile `graph` for a state laid out as `layout`: [`lower_program`] → CLIF → machine
/// code → an executor.
pub fn compile(graph: &Graph, layout: &StateLayout, options: CodegenOptions) -> CgResult<JitExecutable> {
    let start = Instant::now();
    let features = host_features()?;
    let (mut jit, micro, micro_text) = start_module(options, features)?;
    let Lowered { kernels, plan, nests } = lower_program(graph, layout, options, &micro.tile)?;
    let needed = plan.peak_bytes() as u64;
    if let Some(budget) = options.memory_budget.filter(|&b| needed > b) {
        return Err(Error::Memory(format!(
            "the program needs {needed} bytes of arena, more than the {budget} bytes this process may use"
        )));
    }
    let segments = segments(graph, &kernels)?;
    let code = define_kernels(&mut jit, &kernels, &nests, &micro, features, options)?;
    let ids: Vec<Vec<cranelift_module::FuncId>> = code.iter().map(|c| c.ids.clone()).collect();
    let compiled = kernels
        .into_iter()
        .zip(nests)
        .zip(code)
        .map(|((k, loops), code)| describe(graph, &plan, k, loops, code, &micro.tile))
        .collect::<CgResult<Vec<_>>>()?;
    let module = jit.finish()?;
    let program = JitProgram {
        graph: graph.clone(),
        layout: layout.clone(),
        kernels: compiled,
        segments,
        plan,
        micro_text,
        micro_name: micro.tile.name.clone(),
        compile_time: Duration::ZERO,
        options,
    };
    JitExecutable::new(program, module, &ids, start)
}

impl JitProgram {
    /// The kernel plan as text: each kernel with its statements, ops, shapes, cost and
    /// buffers, then the arena's peak size. `detail` adds what varies with the host and
    /// the run (code size, compile time); without it the text is stable for snapshots.
    pub fn plan_text(&self, detail: bool) -> String {
        use std::fmt::Write;
        let g = &self.graph;
        let mut out = String::new();
        let _ = write!(
            out,
            "program {} {} batch={}: {} kernels, arena {} bytes, micro-kernel {}",
            g.name,
            g.mode,
            g.batch,
            self.kernels.len(),
            crate::text::group_digits(self.plan.peak_bytes()),
            self.micro_name,
        );
        if detail {
            let _ = write!(out, ", compiled in {:.1} ms", self.compile_time.as_secs_f64() * 1e3);
        }
        out.push('\n');
        let loc = |b: &Buf| {
            let r = match b.region {
                builder::Region::Arena => "arena",
                builder::Region::State => "state",
                builder::Region::Scratch => "scratch",
            };
            format!("{} {r}@{}+{}", b.name, b.offset * 4, b.len * 4)
        };
        for (i, k) in self.kernels.iter().enumerate() {
            let gemm = k.micro.as_ref().map(|m| format!(", gemm: {m}")).unwrap_or_default();
            let _ = writeln!(out, "kernel {i} {} (items {}{gemm})", k.name(), k.extent());
            let _ = writeln!(out, "  ops      {}", k.ops.join(" + "));
            let shapes = |s: &[Vec<usize>]| s.iter().map(|v| crate::text::fmt_shape(v)).collect::<Vec<_>>().join(", ");
            let _ = writeln!(out, "  shapes   {} -> {}", shapes(&k.input_shapes), shapes(&k.output_shapes));
            let _ = writeln!(out, "  in       {}", k.inputs.iter().map(loc).collect::<Vec<_>>().join(", "));
            let _ = writeln!(out, "  out      {}", k.outputs.iter().map(loc).collect::<Vec<_>>().join(", "));
            let _ = write!(
                out,
                "  cost     {} flops, {} bytes read, {} bytes written",
                crate::text::group_digits(k.flops as usize),
                crate::text::group_digits(k.bytes_read as usize),
                crate::text::group_digits(k.bytes_written as usize),
            );
            if detail {
                let _ = write!(out, ", {} bytes of code", crate::text::group_digits(k.text.code_bytes));
            }
            out.push('\n');
        }
        let mut first = 0;
        for s in &self.segments {
            if let Some(p) = &s.then {
                let _ = writeln!(out, "after kernels {first}..{}: collective point `{p}`", s.end);
            }
            first = s.end;
        }
        let _ = writeln!(out, "arena peak: {} bytes", crate::text::group_digits(self.plan.peak_bytes()));
        out
    }

    /// Kernels whose name is `name`, or contains it; `micro` selects the micro-kernel.
    pub fn find_kernels(&self, name: &str) -> Vec<&CompiledKernel> {
        let exact: Vec<&CompiledKernel> = self.kernels.iter().filter(|k| k.name() == name).collect();
        if !exact.is_empty() {
            return exact;
        }
        self.kernels.iter().filter(|k| k.name().contains(name)).collect()
    }
}
