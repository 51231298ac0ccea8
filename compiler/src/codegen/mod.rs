//! The Cranelift back end: a graph and a state layout → a [`JitProgram`] of
//! shape-specialized kernels over one arena.
//!
//! Stages: kernel list (one kernel per node; fusion comes later) → memory plan
//! ([`plan`]) → lowering of each kernel with the loop-nest builder ([`builder`],
//! [`lower`]) → Cranelift IR → machine code ([`jit`]) → an executor ([`exec`]).

pub mod builder;
pub mod emit;
pub mod exec;
pub mod fuse;
pub mod jit;
pub mod loops;
pub mod lower;
pub mod math;
pub mod micro;
pub mod plan;

use crate::exec::StateLayout;
use crate::ir::{Graph, Phase};
use crate::ops::Op;
use builder::{Buf, Kb};
use jit::{kernel_signature, CgResult, FunctionText, JitModule, OptLevel};
use lower::LowerCtx;
use plan::ArenaPlan;
use std::time::{Duration, Instant};

pub use exec::JitExecutable;
pub use jit::{host_features, CodegenError, HostFeatures};

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
        CodegenOptions { fuse: true, micro: MicroChoice::Auto, threads: 1, checks: false, poison: false }
    }
}

/// One compiled kernel, for inspection.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// `fwd.conv2d_0.conv2d`: phase, statement, op.
    pub name: String,
    /// Graph node indices it computes.
    pub nodes: Vec<usize>,
    pub ops: Vec<String>,
    pub input_shapes: Vec<Vec<usize>>,
    pub output_shapes: Vec<Vec<usize>>,
    pub flops: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// (region, offset in floats, length) of each input and output.
    pub inputs: Vec<Buf>,
    pub outputs: Vec<Buf>,
    /// Independent work items of its first phase (threads split these).
    pub extent: usize,
    /// Work items of each phase; phases run one after the other.
    pub phases: Vec<usize>,
    /// The micro-kernel its GEMMs call, if any.
    pub micro: Option<String>,
    pub text: FunctionText,
    /// The loop nest of each phase.
    pub loops: Vec<loops::LoopNest>,
    /// What each run-time-checked access is (with `checks`).
    pub accesses: Vec<String>,
}

/// A compiled program: kernels, memory plan, code.
pub struct JitProgram {
    pub graph: Graph,
    pub layout: StateLayout,
    pub kernels: Vec<KernelInfo>,
    pub plan: ArenaPlan,
    pub micro_text: FunctionText,
    pub micro_name: String,
    pub compile_time: Duration,
    pub options: CodegenOptions,
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Forward => "fwd",
        Phase::Loss => "loss",
        Phase::Backward => "bwd",
        Phase::Update => "upd",
    }
}

/// `fwd.dense_7+relu_8`: the phase, then the statements of the group's nodes.
fn kernel_name(nodes: &[&crate::ir::Node]) -> String {
    let mut tags: Vec<&str> = vec![];
    for n in nodes {
        if tags.last() != Some(&n.origin.tag.as_str()) {
            tags.push(&n.origin.tag);
        }
    }
    let base = format!("{}.{}", phase_name(nodes[0].origin.phase), tags.join("+"));
    if nodes.len() == 1 {
        format!("{base}.{}", nodes[0].op.name())
    } else {
        base
    }
}

fn is_gemm(op: &Op) -> bool {
    matches!(op, Op::MatMul(_) | Op::Conv2d(_) | Op::Conv2dGradInput(_) | Op::Conv2dGradWeight(_))
}

/// Compile `graph` for a state laid out as `layout`.
pub fn compile(graph: &Graph, layout: &StateLayout, options: CodegenOptions) -> CgResult<JitExecutable> {
    let start = Instant::now();
    let features = host_features()?;
    let report = exec::bounds_report as extern "C" fn(i32, i64, i64);
    let native = micro::native_for(options.micro, features);
    let mut symbols = vec![(exec::BOUNDS_REPORT, report as *const u8)];
    if let Some(n) = &native {
        symbols.push((n.symbol, n.address));
    }
    let mut jit = JitModule::new(&symbols, cfg!(debug_assertions))?;
    let (micro, micro_text) = micro::declare(&mut jit, native.as_ref(), features)?;
    let groups = fuse::group(graph, options.fuse);
    let threads = options.threads.max(1);
    let shapes: Vec<lower::KernelShape> =
        groups.iter().map(|grp| lower::kernel_shape(graph, &graph.nodes[grp.nodes[0]], &micro, threads)).collect();
    let scratch: Vec<Vec<usize>> = shapes.iter().map(|s| s.scratch.clone()).collect();
    let shared: Vec<Vec<usize>> = shapes.iter().map(|s| s.shared.clone()).collect();
    let plan = plan::plan_memory(graph, &groups, layout, &scratch, &shared, threads)?;
    let report_id = if options.checks {
        let mut sig = cranelift_codegen::ir::Signature::new(jit.call_conv());
        use cranelift_codegen::ir::{types, AbiParam};
        sig.params.extend([AbiParam::new(types::I32), AbiParam::new(types::I64), AbiParam::new(types::I64)]);
        Some(jit.declare(exec::BOUNDS_REPORT, &sig, cranelift_module::Linkage::Import)?)
    } else {
        None
    };
    let mut kernels = Vec::new();
    let mut ids: Vec<Vec<cranelift_module::FuncId>> = Vec::new();
    let mut names = std::collections::HashMap::<String, usize>::new();
    for (k, grp) in groups.iter().enumerate() {
        let nodes: Vec<&crate::ir::Node> = grp.nodes.iter().map(|&i| &graph.nodes[i]).collect();
        let first = nodes[0];
        let mut name = kernel_name(&nodes);
        let count = names.entry(name.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            name = format!("{name}#{count}");
        }
        // The group's external values: what it reads from outside, what it leaves for others.
        let produced: Vec<crate::ir::ValueId> = nodes.iter().flat_map(|n| n.outputs.iter().copied()).collect();
        let mut ext_inputs = vec![];
        for n in &nodes {
            for &v in &n.inputs {
                if !produced.contains(&v) && !ext_inputs.contains(&v) {
                    ext_inputs.push(v);
                }
            }
        }
        let ext_outputs: Vec<crate::ir::ValueId> =
            produced.iter().copied().filter(|v| plan.locs[v.0 as usize].is_some()).collect();
        let buf = |v: crate::ir::ValueId| plan.locs[v.0 as usize].map(|_| plan.buf(v, format!("{v}")));
        let scratch_bufs: Vec<Buf> = plan.scratch[k]
            .iter()
            .enumerate()
            .map(|(s, l)| Buf { region: l.region, offset: l.offset, len: l.len, name: format!("scratch{s}") })
            .collect();
        let shared_bufs: Vec<Buf> = plan.shared[k]
            .iter()
            .enumerate()
            .map(|(s, l)| Buf { region: l.region, offset: l.offset, len: l.len, name: format!("shared{s}") })
            .collect();
        let scratch_region = (!scratch_bufs.is_empty()).then_some((plan.scratch_start, plan.scratch_per_thread));
        let mut phase_ids = vec![];
        let mut texts: Vec<FunctionText> = vec![];
        let mut accesses = vec![];
        let mut nests = vec![];
        for phase in 0..shapes[k].phases.len() {
            let micro_info = Some((micro.name.clone(), micro.mr, micro.nr));
            let mut kb = Kb::new(&name, phase, scratch_region, micro_info);
            let cx = LowerCtx { graph, node: first, micro: &micro, threads, phase };
            match grp.kind {
                fuse::GroupKind::Epilogue => {
                    let chain: Vec<&crate::ir::Node> = nodes[1..].to_vec();
                    let (epi, bufs) =
                        lower::group_bufs(first, &chain, &buf, scratch_bufs.clone(), shared_bufs.clone())?;
                    lower::lower_node(&mut kb, &cx, &bufs, &epi)?;
                }
                fuse::GroupKind::LossWithGrad => {
                    let stored = |v| buf(v).ok_or_else(|| CodegenError(format!("{v} is not stored")));
                    let bufs = lower::NodeBufs {
                        inputs: first.inputs.iter().map(|&v| stored(v)).collect::<CgResult<_>>()?,
                        outputs: vec![stored(first.outputs[0])?, stored(nodes[1].outputs[0])?],
                        scratch: vec![],
                        shared: vec![],
                    };
                    lower::lower_loss_with_grad(&mut kb, &cx, &bufs)?;
                }
            }
            let nest = kb.finish();
            loops::verify::verify(&nest)?;
            let sig = kernel_signature(jit.call_conv());
            let sym = format!("k{k}p{phase}_{}", name.replace(['.', '#', '+'], "_"));
            let id = jit.declare(&sym, &sig, cranelift_module::Linkage::Local)?;
            let mut func = jit.new_function(id, sig);
            let micro_call = nest.calls_micro().then(|| jit.import(micro.id, &mut func));
            let checks = report_id.map(|r| (jit.import(r, &mut func), k as u32));
            let ecx = emit::EmitCx { fma: features.fma, micro: micro_call, checks, access_base: accesses.len() };
            accesses.extend(emit::emit(&nest, &mut func, jit.frontend_config(), ecx)?);
            texts.push(jit.define(id, func, OptLevel::Speed)?);
            phase_ids.push(id);
            nests.push(nest);
        }
        let text = if texts.len() == 1 {
            texts.remove(0)
        } else {
            FunctionText {
                clif: texts.iter().enumerate().map(|(i, t)| format!("; phase {i}\n{}", t.clif)).collect(),
                disasm: texts.iter().enumerate().map(|(i, t)| format!("; phase {i}\n{}", t.disasm)).collect(),
                code_bytes: texts.iter().map(|t| t.code_bytes).sum(),
            }
        };
        let shapes_of = |vs: &[crate::ir::ValueId]| vs.iter().map(|&v| graph.shape(v).to_vec()).collect::<Vec<_>>();
        let numel = |s: &Vec<usize>| s.iter().product::<usize>() as u64;
        let flops = nodes
            .iter()
            .map(|n| {
                let i: Vec<&[usize]> = n.inputs.iter().map(|&v| graph.shape(v)).collect();
                let o: Vec<&[usize]> = n.outputs.iter().map(|&v| graph.shape(v)).collect();
                n.op.flops(&i, &o)
            })
            .sum();
        let ins = shapes_of(&ext_inputs);
        let outs = shapes_of(&ext_outputs);
        kernels.push(KernelInfo {
            name,
            nodes: grp.nodes.clone(),
            ops: nodes.iter().map(|n| n.op.name().to_string()).collect(),
            flops,
            bytes_read: ins.iter().map(numel).sum::<u64>() * 4,
            bytes_written: outs.iter().map(numel).sum::<u64>() * 4,
            input_shapes: ins,
            output_shapes: outs,
            inputs: ext_inputs.iter().map(|&v| buf(v).expect("stored")).collect(),
            outputs: ext_outputs.iter().map(|&v| buf(v).expect("stored")).collect(),
            extent: shapes[k].phases[0],
            phases: shapes[k].phases.clone(),
            micro: is_gemm(&first.op).then(|| micro.name.clone()),
            text,
            loops: nests,
            accesses,
        });
        ids.push(phase_ids);
    }
    let module = jit.finish()?;
    let program = JitProgram {
        graph: graph.clone(),
        layout: layout.clone(),
        kernels,
        plan,
        micro_text,
        micro_name: micro.name.clone(),
        compile_time: Duration::ZERO,
        options,
    };
    let mut exe = JitExecutable::new(program, module, &ids)?;
    exe.program.compile_time = start.elapsed();
    Ok(exe)
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
            crate::check::group_digits(self.plan.peak_bytes()),
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
            let _ = writeln!(out, "kernel {i} {} (items {}{gemm})", k.name, k.extent);
            let _ = writeln!(out, "  ops      {}", k.ops.join(" + "));
            let shapes = |s: &[Vec<usize>]| s.iter().map(|v| crate::check::fmt_shape(v)).collect::<Vec<_>>().join(", ");
            let _ = writeln!(out, "  shapes   {} -> {}", shapes(&k.input_shapes), shapes(&k.output_shapes));
            let _ = writeln!(out, "  in       {}", k.inputs.iter().map(loc).collect::<Vec<_>>().join(", "));
            let _ = writeln!(out, "  out      {}", k.outputs.iter().map(loc).collect::<Vec<_>>().join(", "));
            let _ = write!(
                out,
                "  cost     {} flops, {} bytes read, {} bytes written",
                crate::check::group_digits(k.flops as usize),
                crate::check::group_digits(k.bytes_read as usize),
                crate::check::group_digits(k.bytes_written as usize),
            );
            if detail {
                let _ = write!(out, ", {} bytes of code", crate::check::group_digits(k.text.code_bytes));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "arena peak: {} bytes", crate::check::group_digits(self.plan.peak_bytes()));
        out
    }

    /// Kernels whose name is `name`, or contains it; `micro` selects the micro-kernel.
    pub fn find_kernels(&self, name: &str) -> Vec<&KernelInfo> {
        let exact: Vec<&KernelInfo> = self.kernels.iter().filter(|k| k.name == name).collect();
        if !exact.is_empty() {
            return exact;
        }
        self.kernels.iter().filter(|k| k.name.contains(name)).collect()
    }
}
