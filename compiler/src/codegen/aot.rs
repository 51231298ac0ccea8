//! Ahead of time: a forward program's kernels in a relocatable object file, with the
//! model's state as read-only data and C entry points, for `percept build`.
//!
//! The JIT and AOT paths share everything up to the Cranelift module: fusion, the memory
//! plan, the loop nests and their bounds proof, the CLIF (`emit`). They part in where the
//! functions are defined ([`ObjModule`] instead of the JIT module, position-independent)
//! and in what calls the kernels: here a generated C-ABI entry function does what the
//! JIT executor does in Rust — check the CPU, copy the input into the arena, call each
//! kernel's passes over all their items on one thread, copy the prediction out. Kernels
//! address everything from the pointers they are passed (arena, state, context), so they
//! are the same code: the state pointer is the address of the embedded weights, the arena
//! the caller's workspace.
//!
//! The entry points, for a model prefix `m`:
//! - `int32_t m_forward_ws(const float *input, float *output, void *workspace)`: 0 on
//!   success, 2 if this CPU lacks a feature the code uses; reentrant (all mutable memory
//!   is the workspace).
//! - `size_t m_workspace_bytes(void)`.
//! - `int32_t m_forward(const float *input, float *output)`: with a static workspace in
//!   the library (one caller at a time).

use super::jit::{err, CgResult, HostFeatures, ObjModule, OptLevel};
use super::{define_kernels, lower_program, micro, CodegenOptions, MicroChoice};
use crate::exec::StateLayout;
use crate::ir::Graph;
use crate::ops::SourceKind;
use cranelift_codegen::ir::{condcodes::IntCC, types, AbiParam, InstBuilder, MemFlagsData, Signature};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::Linkage;

/// The object files of a library and what its header must say.
#[derive(Clone, Debug)]
pub struct Library {
    /// (member name, bytes, the global symbols it defines): the kernels' object, and the
    /// native micro-kernels' when the GEMMs call one.
    pub objects: Vec<(String, Vec<u8>, Vec<String>)>,
    pub workspace_bytes: usize,
    /// Floats of input and output for the whole batch.
    pub input_len: usize,
    pub output_len: usize,
    /// The CPU features the code needs (checked by the entry points).
    pub features: Vec<&'static str>,
    pub kernels: usize,
    pub micro: String,
}

/// A CPU feature: its name and where CPUID reports it, as (word of the probe's output,
/// bit mask): word 0 is leaf 1's ECX, 1 leaf 7's EBX, 2 XCR0 (the OS saves the
/// registers), 3 leaf 0x8000_0001's ECX.
struct Feature {
    name: &'static str,
    word: usize,
    mask: u32,
}

/// The features this host's code may use (Cranelift's ISA flags) that the entry checks.
fn required(f: HostFeatures, avx512: bool) -> Vec<Feature> {
    let mut v = vec![
        Feature { name: "sse3", word: 0, mask: 1 },
        Feature { name: "ssse3", word: 0, mask: 1 << 9 },
        Feature { name: "sse4.1", word: 0, mask: 1 << 19 },
        Feature { name: "sse4.2", word: 0, mask: 1 << 20 },
        Feature { name: "popcnt", word: 0, mask: 1 << 23 },
    ];
    if f.avx {
        v.push(Feature { name: "avx", word: 0, mask: 1 << 28 });
        v.push(Feature { name: "osxsave", word: 0, mask: 1 << 27 });
        v.push(Feature { name: "xmm+ymm state (XCR0)", word: 2, mask: 0b110 });
    }
    if f.fma {
        v.push(Feature { name: "fma", word: 0, mask: 1 << 12 });
    }
    if f.avx2 {
        v.push(Feature { name: "avx2", word: 1, mask: 1 << 5 });
        v.push(Feature { name: "bmi1", word: 1, mask: 1 << 3 });
        v.push(Feature { name: "bmi2", word: 1, mask: 1 << 8 });
        v.push(Feature { name: "lzcnt", word: 3, mask: 1 << 5 });
    }
    if avx512 {
        v.push(Feature { name: "avx512f", word: 1, mask: 1 << 16 });
        v.push(Feature { name: "zmm state (XCR0)", word: 2, mask: 0b1110_0000 });
    }
    v
}

/// The CPUID probe, hand-assembled (Cranelift has no CPUID instruction):
/// `void probe(uint32_t out[4])` stores leaf 1's ECX, leaf 7's EBX, XCR0 (0 without
/// OSXSAVE, where XGETBV would fault) and leaf 0x8000_0001's ECX. Its disassembly is
/// pinned by a test.
const PROBE: &[u8] = &[
    0x53, // push rbx
    0x49, 0x89, 0xf8, // mov r8, rdi
    0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x31, 0xc9, // xor ecx, ecx
    0x0f, 0xa2, // cpuid
    0x41, 0x89, 0x08, // mov [r8], ecx
    0xb8, 0x07, 0x00, 0x00, 0x00, // mov eax, 7
    0x31, 0xc9, // xor ecx, ecx
    0x0f, 0xa2, // cpuid
    0x41, 0x89, 0x58, 0x04, // mov [r8+4], ebx
    0xb8, 0x01, 0x00, 0x00, 0x80, // mov eax, 0x80000001
    0x31, 0xc9, // xor ecx, ecx
    0x0f, 0xa2, // cpuid
    0x41, 0x89, 0x48, 0x0c, // mov [r8+12], ecx
    0x41, 0xc7, 0x40, 0x08, 0x00, 0x00, 0x00, 0x00, // mov dword [r8+8], 0
    0x41, 0x8b, 0x08, // mov ecx, [r8]
    0xf7, 0xc1, 0x00, 0x00, 0x00, 0x08, // test ecx, 0x08000000 (OSXSAVE)
    0x74, 0x09, // jz done
    0x31, 0xc9, // xor ecx, ecx
    0x0f, 0x01, 0xd0, // xgetbv
    0x41, 0x89, 0x40, 0x08, // mov [r8+8], eax
    0x5b, // done: pop rbx
    0xc3, // ret
];

/// Compile `graph` (an evaluation program) with `state` (laid out as `layout`) into an
/// object file whose entry points are prefixed `prefix`.
pub fn build(
    graph: &Graph,
    layout: &StateLayout,
    state: &[f32],
    prefix: &str,
    options: CodegenOptions,
) -> CgResult<Library> {
    if state.len() != layout.len {
        return err(format!("the state has {} floats, its layout {}", state.len(), layout.len));
    }
    let features = super::host_features()?;
    // The native tiles come as their own object (build.rs); without it, Cranelift's.
    let native = match (options.micro, micro::native::TILES_OBJECT) {
        (MicroChoice::Cranelift, _) => None,
        (MicroChoice::Auto, Some(_)) => micro::native::best_native(features),
        (MicroChoice::Auto, None) => None,
        (MicroChoice::Avx2, Some(_)) => match micro::native::avx2_native(features) {
            Some(n) => Some(n),
            None => return err("this CPU has no AVX2 and FMA, so it cannot build for the avx2 micro-kernel"),
        },
        (MicroChoice::Avx2, None) => {
            return err("the native micro-kernels' object was not built with percept; use --microkernel cranelift")
        }
    };
    let options = CodegenOptions { threads: 1, checks: false, poison: false, ..options };
    let allowed: Vec<&str> = native.iter().map(|n| n.symbol).collect();
    let mut obj = ObjModule::new(prefix, &allowed)?;
    // One tile: the archive carries the program's native tile only, so its convolutions
    // choose no narrow one (the JIT's do; not done for libraries).
    let (micro, _) = micro::declare(&mut obj, native.as_ref(), None, features)?;
    let avx512 = native.is_some_and(|n| n.symbol.contains("avx512"));
    let lowered = lower_program(graph, layout, options, &micro.tile)?;
    let plan = &lowered.plan;
    for k in &lowered.kernels {
        for v in k.stored(graph) {
            if plan.locs[v.0 as usize].is_some_and(|l| l.region == super::builder::Region::State) {
                return err(format!("kernel `{}` writes the state: a library's weights are read-only", k.name));
            }
        }
    }
    let code = define_kernels(&mut obj, &lowered.kernels, &lowered.nests, &micro, features, options)?;

    let arena_bytes = plan.peak_bytes().next_multiple_of(64);
    const CTX_BYTES: usize = 64;
    let workspace_bytes = arena_bytes + CTX_BYTES + 64;
    let loc_of = |kind: &str| -> CgResult<(usize, usize)> {
        let v = match kind {
            "data" => graph.sources().find(|(k, _)| matches!(k, SourceKind::Data)).map(|(_, v)| v),
            _ => graph.outputs.iter().find(|(r, _)| *r == crate::ir::OutputRole::Prediction).map(|(_, v)| *v),
        };
        let Some(v) = v else { return err(format!("the program has no {kind}")) };
        match plan.locs[v.0 as usize] {
            Some(l) if l.region == super::builder::Region::Arena => Ok((l.offset * 4, l.len)),
            _ => err(format!("the program's {kind} is not in the arena")),
        }
    };
    let (input_at, input_len) = loc_of("data")?;
    let (output_at, output_len) = loc_of("prediction")?;

    let state_id = obj.declare_data(&format!("{prefix}_state"), Linkage::Local, false)?;
    let mut bytes: Vec<u8> = state.iter().flat_map(|x| x.to_le_bytes()).collect();
    if bytes.is_empty() {
        bytes.resize(4, 0);
    }
    obj.define_data(state_id, bytes, 64)?;
    let static_ws = obj.declare_data(&format!("{prefix}_static_workspace"), Linkage::Local, true)?;
    obj.define_zeroed(static_ws, workspace_bytes, 64)?;

    let mut probe_sig = Signature::new(obj.call_conv());
    probe_sig.params.push(AbiParam::new(types::I64));
    let probe = obj.declare(&format!("{prefix}_cpu_probe"), &probe_sig, Linkage::Local)?;
    obj.define_bytes(probe, PROBE)?;

    // m_forward_ws(input, output, workspace) -> i32
    let ws_name = format!("{prefix}_forward_ws");
    let forward_ws = define_c_function(
        &mut obj,
        &ws_name,
        3,
        Some(types::I32),
        |obj, func| {
            let kernels: Vec<Vec<_>> =
                code.iter().map(|c| c.ids.iter().map(|&id| obj.import(id, func)).collect()).collect();
            (kernels, obj.import(probe, func), obj.import_data(state_id, func))
        },
        |fb, p, (kernel_refs, probe_ref, state_gv)| {
            let (input, output, workspace) = (p[0], p[1], p[2]);
            let flags = MemFlagsData::new().with_notrap();
            // The CPU check, before any instruction the probe did not vouch for.
            let slot = fb.create_sized_stack_slot(cranelift_codegen::ir::StackSlotData::new(
                cranelift_codegen::ir::StackSlotKind::ExplicitSlot,
                16,
                4,
            ));
            let out = fb.ins().stack_addr(types::I64, slot, 0);
            fb.ins().call(probe_ref, &[out]);
            let lacks = fb.create_block();
            let mut ok = fb.ins().iconst(types::I8, 1);
            for f in required(features, avx512) {
                let word = fb.ins().load(types::I32, flags, out, (4 * f.word) as i32);
                let bits = fb.ins().band_imm_u(word, f.mask as i64);
                let has = fb.ins().icmp_imm_u(IntCC::Equal, bits, f.mask as i64);
                ok = fb.ins().band(ok, has);
            }
            let run = fb.create_block();
            fb.ins().brif(ok, run, &[], lacks, &[]);
            fb.switch_to_block(lacks);
            fb.seal_block(lacks);
            let two = fb.ins().iconst(types::I32, 2);
            fb.ins().return_(&[two]);

            fb.switch_to_block(run);
            fb.seal_block(run);
            let arena = fb.ins().iadd_imm_s(workspace, 63);
            let arena = fb.ins().band_imm_s(arena, -64);
            let ctx = fb.ins().iadd_imm_s(arena, arena_bytes as i64);
            let zero = fb.ins().iconst(types::I64, 0);
            for off in (0..CTX_BYTES).step_by(8) {
                fb.ins().store(flags, zero, ctx, off as i32);
            }
            let dst = fb.ins().iadd_imm_s(arena, input_at as i64);
            copy_floats(fb, input, dst, input_len);
            let state = fb.ins().symbol_value(types::I64, state_gv);
            for (k, refs) in kernel_refs.iter().enumerate() {
                for (pass, r) in refs.iter().enumerate() {
                    let items = fb.ins().iconst(types::I64, lowered.kernels[k].work.passes[pass] as i64);
                    fb.ins().call(*r, &[arena, state, ctx, zero, items, zero]);
                }
            }
            let src = fb.ins().iadd_imm_s(arena, output_at as i64);
            copy_floats(fb, src, output, output_len);
            let ok = fb.ins().iconst(types::I32, 0);
            fb.ins().return_(&[ok]);
        },
    )?;

    // m_forward(input, output) -> i32, on the static workspace.
    let fwd_name = format!("{prefix}_forward");
    define_c_function(
        &mut obj,
        &fwd_name,
        2,
        Some(types::I32),
        |obj, func| (obj.import(forward_ws, func), obj.import_data(static_ws, func)),
        |fb, p, (ws_ref, ws_gv)| {
            let ws = fb.ins().symbol_value(types::I64, ws_gv);
            let call = fb.ins().call(ws_ref, &[p[0], p[1], ws]);
            let r = fb.inst_results(call)[0];
            fb.ins().return_(&[r]);
        },
    )?;

    // m_workspace_bytes() -> size_t
    let size_name = format!("{prefix}_workspace_bytes");
    define_c_function(
        &mut obj,
        &size_name,
        0,
        Some(types::I64),
        |_, _| (),
        |fb, _, ()| {
            let n = fb.ins().iconst(types::I64, workspace_bytes as i64);
            fb.ins().return_(&[n]);
        },
    )?;

    let mut objects = vec![(format!("{}.o", short(prefix)), obj.finish()?, vec![fwd_name, ws_name, size_name])];
    if let (Some(n), Some(bytes)) = (native, micro::native::TILES_OBJECT) {
        objects.push(("micro.o".to_string(), bytes.to_vec(), vec![n.symbol.to_string()]));
    }
    Ok(Library {
        objects,
        workspace_bytes,
        input_len,
        output_len,
        features: required(features, avx512).iter().map(|f| f.name).collect(),
        kernels: lowered.kernels.len(),
        micro: micro.tile.name,
    })
}

/// Define an exported C function of `params` pointer-sized arguments: `imports` makes
/// what it calls or addresses reachable from it, `body` writes it from its entry block
/// (sealed and finalized here).
fn define_c_function<T>(
    obj: &mut ObjModule,
    name: &str,
    params: usize,
    ret: Option<types::Type>,
    imports: impl FnOnce(&mut ObjModule, &mut cranelift_codegen::ir::Function) -> T,
    body: impl FnOnce(&mut FunctionBuilder, &[cranelift_codegen::ir::Value], T),
) -> CgResult<cranelift_module::FuncId> {
    let mut sig = Signature::new(obj.call_conv());
    sig.params.extend((0..params).map(|_| AbiParam::new(types::I64)));
    sig.returns.extend(ret.map(AbiParam::new));
    let id = obj.declare(name, &sig, Linkage::Export)?;
    let mut func = obj.new_function(id, sig);
    let imported = imports(obj, &mut func);
    let mut fctx = FunctionBuilderContext::new();
    let mut fb = FunctionBuilder::new(&mut func, &mut fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let p = fb.block_params(entry).to_vec();
    body(&mut fb, &p, imported);
    fb.seal_all_blocks();
    fb.finalize(obj.frontend_config());
    obj.define(id, func, OptLevel::Speed)?;
    Ok(id)
}

/// An archive member's name: at most 13 characters before `.o`.
fn short(prefix: &str) -> &str {
    if prefix.len() <= 13 {
        prefix
    } else {
        "model"
    }
}

/// `n` floats from `src` to `dst`, four at a time then one at a time (exact copies: no
/// arithmetic).
fn copy_floats(
    fb: &mut FunctionBuilder,
    src: cranelift_codegen::ir::Value,
    dst: cranelift_codegen::ir::Value,
    n: usize,
) {
    let flags = MemFlagsData::new().with_notrap();
    let vec_bytes = (n / 4 * 16) as i64;
    let copy = |fb: &mut FunctionBuilder, ty, step: i64, from: i64, to: i64| {
        if from >= to {
            return;
        }
        let head = fb.create_block();
        let body = fb.create_block();
        let done = fb.create_block();
        fb.append_block_param(head, types::I64);
        let start = fb.ins().iconst(types::I64, from);
        fb.ins().jump(head, &[start.into()]);
        fb.switch_to_block(head);
        let i = fb.block_params(head)[0];
        let more = fb.ins().icmp_imm_s(IntCC::SignedLessThan, i, to);
        fb.ins().brif(more, body, &[], done, &[]);
        fb.switch_to_block(body);
        let s = fb.ins().iadd(src, i);
        let d = fb.ins().iadd(dst, i);
        let x = fb.ins().load(ty, flags, s, 0);
        fb.ins().store(flags, x, d, 0);
        let next = fb.ins().iadd_imm_s(i, step);
        fb.ins().jump(head, &[next.into()]);
        fb.switch_to_block(done);
    };
    copy(fb, types::F32X4, 16, 0, vec_bytes);
    copy(fb, types::F32, 4, vec_bytes, (n * 4) as i64);
}

#[cfg(test)]
mod tests {
    /// The hand-assembled CPUID probe decodes to what its comments say.
    #[test]
    fn the_cpuid_probe_is_what_it_says() {
        let code = super::super::asm::MachineCode::new(super::PROBE.to_vec(), vec![], vec![]);
        expect_test::expect![[r#"
            block0:
              0000  push rbx
              0001  mov r8, rdi
              0004  mov eax, 1
              0009  xor ecx, ecx
              000b  cpuid
              000d  mov [r8], ecx
              0010  mov eax, 7
              0015  xor ecx, ecx
              0017  cpuid
              0019  mov [r8+4], ebx
              001d  mov eax, 0x80000001
              0022  xor ecx, ecx
              0024  cpuid
              0026  mov [r8+0xc], ecx
              002a  mov dword ptr [r8+8], 0
              0032  mov ecx, [r8]
              0035  test ecx, 0x8000000
              003b  je 0x46
              003d  xor ecx, ecx
              003f  xgetbv
              0042  mov [r8+8], eax
              0046  pop rbx
              0047  ret
        "#]]
        .assert_eq(&super::super::asm::listing(&code, false));
    }
}
