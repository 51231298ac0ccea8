//! The one module that talks to Cranelift's code generator, module, JIT and object crates
//! (pinned to 0.135.8): host ISA detection, compilation of one function at a chosen
//! optimization level with its CLIF text and disassembly, the allowlist of symbols
//! generated code may call, and the two places code goes: loaded in this process (JIT)
//! or written into a relocatable object file (ahead of time, `percept build`).

use super::asm::{self, MachineCode};
use crate::Error;
use cranelift_codegen::ir::{types, AbiParam, Function, Signature, UserFuncName};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module, ModuleReloc, ModuleRelocTarget};
use cranelift_object::{ObjectBuilder, ObjectModule};
use std::collections::HashMap;

pub use cranelift_codegen::ir;
pub use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

pub type CgResult<T> = Result<T, Error>;

pub fn err<T>(msg: impl Into<String>) -> CgResult<T> {
    Err(Error::Codegen(msg.into()))
}

/// Cranelift's optimization level for one function. Measured: `None` runs the
/// register-blocked GEMM tile fastest (`Speed`'s e-graph hoists loads and spills
/// accumulators); `Speed` is better for the scalar index arithmetic of other kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptLevel {
    None,
    Speed,
}

/// What the host CPU offers the code generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFeatures {
    /// FMA is emitted only with both AVX and FMA; otherwise fmul + fadd (never libcalls).
    pub fma: bool,
    pub avx: bool,
    pub avx2: bool,
    pub avx512f: bool,
}

fn make_isa(opt: OptLevel, verify: bool) -> CgResult<OwnedTargetIsa> {
    make_isa_for(opt, verify, false)
}

/// The host's ISA; `pic` for code that goes into an object file (position-independent, so
/// it links into the PIE executables Debian's gcc makes). Nothing else differs, so the
/// same CLIF computes the same bits either way.
fn make_isa_for(opt: OptLevel, verify: bool, pic: bool) -> CgResult<OwnedTargetIsa> {
    let mut flags = settings::builder();
    let set =
        |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| Error::Codegen(format!("{k}={v}: {e}")));
    set(&mut flags, "opt_level", if opt == OptLevel::None { "none" } else { "speed" })?;
    set(&mut flags, "is_pic", if pic { "true" } else { "false" })?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "enable_verifier", if verify { "true" } else { "false" })?;
    // Block start offsets, to label the disassembly.
    set(&mut flags, "machine_code_cfg_info", "true")?;
    let isa = cranelift_native::builder().map_err(|e| Error::Codegen(format!("unsupported host: {e}")))?;
    isa.finish(settings::Flags::new(flags)).map_err(|e| Error::Codegen(format!("cannot configure the ISA: {e}")))
}

pub fn host_features() -> CgResult<HostFeatures> {
    let isa = make_isa(OptLevel::Speed, false)?;
    let flag = |name: &str| isa.isa_flags().iter().any(|v| v.name == name && v.as_bool() == Some(true));
    let avx = flag("has_avx");
    Ok(HostFeatures { fma: avx && flag("has_fma"), avx, avx2: flag("has_avx2"), avx512f: flag("has_avx512f") })
}

/// A compiled function (or a kernel's passes), for inspection.
#[derive(Clone, Debug, Default)]
pub struct FunctionText {
    pub clif: String,
    /// The machine code of each function: one, or one per pass of a kernel; none for code
    /// Percept did not compile (a native micro-kernel), which `note` then describes.
    pub code: Vec<MachineCode>,
    pub note: String,
    pub code_bytes: usize,
}

impl FunctionText {
    /// A kernel's passes as one text, each headed `; pass N`.
    pub fn passes(texts: Vec<FunctionText>) -> FunctionText {
        FunctionText {
            clif: texts.iter().enumerate().map(|(i, t)| format!("; pass {i}\n{}", t.clif)).collect(),
            code_bytes: texts.iter().map(|t| t.code_bytes).sum(),
            note: String::new(),
            code: texts.into_iter().flat_map(|t| t.code).collect(),
        }
    }

    /// The machine code as assembly (see [`asm::listing`]), each pass headed `; pass N`
    /// when there are several; `encodings` adds each instruction's bytes.
    pub fn asm(&self, encodings: bool) -> String {
        match self.code.as_slice() {
            [] => self.note.clone(),
            [one] => asm::listing(one, encodings),
            passes => {
                passes.iter().enumerate().map(|(i, c)| format!("; pass {i}\n{}", asm::listing(c, encodings))).collect()
            }
        }
    }
}

/// Compiles functions to machine code for a module's target: independent of the module's
/// other functions, so several may compile at once on different threads.
pub struct Compiler {
    isas: HashMap<OptLevel, OwnedTargetIsa>,
}

impl Compiler {
    pub fn compile(&self, id: FuncId, func: Function, opt: OptLevel) -> CgResult<Compiled> {
        let clif = func.display().to_string();
        let mut ctx = Context::for_function(func);
        let isa = &self.isas[&opt];
        ctx.compile(&**isa, &mut Default::default())
            .map_err(|e| Error::Codegen(format!("Cranelift rejected a kernel: {:?}\n{clif}", e.inner)))?;
        let code = ctx.compiled_code().expect("compiled above");
        let relocs: Vec<ModuleReloc> =
            code.buffer.relocs().iter().map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, id)).collect();
        Ok(Compiled {
            id,
            clif,
            bytes: code.code_buffer().to_vec(),
            blocks: code.bb_starts.clone(),
            align: code.buffer.alignment as u64,
            relocs,
        })
    }
}

/// A function compiled to machine code, not yet defined in the module.
pub struct Compiled {
    id: FuncId,
    clif: String,
    bytes: Vec<u8>,
    /// Where its basic blocks start (Cranelift's `machine_code_cfg_info`).
    blocks: Vec<u32>,
    align: u64,
    relocs: Vec<ModuleReloc>,
}

impl Compiled {
    pub fn id(&self) -> FuncId {
        self.id
    }
}

/// A set of functions being built: then loaded in this process ([`JitModule`]) or
/// written into an object file ([`ObjModule`]).
pub struct CodeModule<M: Module> {
    module: M,
    isas: HashMap<OptLevel, OwnedTargetIsa>,
    allowed: Vec<String>,
}

/// Functions compiled into this process.
pub type JitModule = CodeModule<JITModule>;
/// Functions and data written into a relocatable object file.
pub type ObjModule = CodeModule<ObjectModule>;

/// The signature of every kernel: (arena, state, ctx, lo, hi, thread).
pub fn kernel_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..3 {
        sig.params.push(AbiParam::new(types::I64));
    }
    for _ in 0..3 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig
}

impl JitModule {
    /// `symbols`: the Rust functions JIT code may call (the allowlist); nothing else
    /// links, not even libc.
    pub fn new(symbols: &[(&str, *const u8)], verify: bool) -> CgResult<JitModule> {
        let isa = make_isa(OptLevel::Speed, verify)?;
        let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        let table: HashMap<String, usize> = symbols.iter().map(|(n, p)| (n.to_string(), *p as usize)).collect();
        builder.symbol_lookup_fn(Box::new(move |name| table.get(name).map(|&p| p as *const u8)));
        let mut isas = HashMap::new();
        isas.insert(OptLevel::None, make_isa(OptLevel::None, verify)?);
        isas.insert(OptLevel::Speed, make_isa(OptLevel::Speed, verify)?);
        Ok(JitModule {
            module: JITModule::new(builder),
            isas,
            allowed: symbols.iter().map(|(n, _)| n.to_string()).collect(),
        })
    }

    /// Link and make executable. The module owns the code; see `exec::LoadedCode`.
    pub fn finish(mut self) -> CgResult<JITModule> {
        self.module.finalize_definitions().map_err(|e| Error::Codegen(format!("cannot link the kernels: {e}")))?;
        Ok(self.module)
    }
}

impl ObjModule {
    /// An object file named `name` for the host, position-independent; its code may call
    /// `allowed` (undefined symbols the final link provides) besides its own functions.
    pub fn new(name: &str, allowed: &[&str]) -> CgResult<ObjModule> {
        let isa = make_isa_for(OptLevel::Speed, cfg!(debug_assertions), true)?;
        let builder = ObjectBuilder::new(isa, name, cranelift_module::default_libcall_names())
            .map_err(|e| Error::Codegen(format!("cannot start an object file: {e}")))?;
        let mut isas = HashMap::new();
        for opt in [OptLevel::None, OptLevel::Speed] {
            isas.insert(opt, make_isa_for(opt, cfg!(debug_assertions), true)?);
        }
        Ok(ObjModule {
            module: ObjectModule::new(builder),
            isas,
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Declare a data object (read-only unless `writable`).
    pub fn declare_data(&mut self, name: &str, linkage: Linkage, writable: bool) -> CgResult<DataId> {
        self.module
            .declare_data(name, linkage, writable, false)
            .map_err(|e| Error::Codegen(format!("declare {name}: {e}")))
    }

    /// Define a data object with these bytes, aligned to `align`.
    pub fn define_data(&mut self, id: DataId, bytes: Vec<u8>, align: u64) -> CgResult<()> {
        let mut d = DataDescription::new();
        d.define(bytes.into_boxed_slice());
        d.set_align(align);
        self.module.define_data(id, &d).map_err(|e| Error::Codegen(format!("cannot define data: {e}")))
    }

    /// Define a zero-filled data object of `size` bytes (in .bss).
    pub fn define_zeroed(&mut self, id: DataId, size: usize, align: u64) -> CgResult<()> {
        let mut d = DataDescription::new();
        d.define_zeroinit(size);
        d.set_align(align);
        self.module.define_data(id, &d).map_err(|e| Error::Codegen(format!("cannot define data: {e}")))
    }

    /// Make a data object addressable from `func` (`global_value` of the result).
    pub fn import_data(&mut self, id: DataId, func: &mut Function) -> ir::GlobalValue {
        self.module.declare_data_in_func(id, func)
    }

    /// Define a function from machine code written by hand (the CPUID probe).
    pub fn define_bytes(&mut self, id: FuncId, bytes: &[u8]) -> CgResult<()> {
        self.module
            .define_function_bytes(id, 16, bytes, &[])
            .map_err(|e| Error::Codegen(format!("cannot define a function: {e}")))?;
        Ok(())
    }

    /// The finished relocatable object file.
    pub fn finish(self) -> CgResult<Vec<u8>> {
        self.module.finish().emit().map_err(|e| Error::Codegen(format!("cannot write the object file: {e}")))
    }
}

impl<M: Module> CodeModule<M> {
    pub fn call_conv(&self) -> CallConv {
        self.module.isa().default_call_conv()
    }

    pub fn frontend_config(&self) -> cranelift_codegen::isa::TargetFrontendConfig {
        self.module.isa().frontend_config()
    }

    pub fn pointer_type(&self) -> ir::Type {
        self.module.isa().pointer_type()
    }

    pub fn declare(&mut self, name: &str, sig: &Signature, linkage: Linkage) -> CgResult<FuncId> {
        self.module.declare_function(name, linkage, sig).map_err(|e| Error::Codegen(format!("declare {name}: {e}")))
    }

    /// Make an imported function (a micro-kernel, an allowlisted Rust function) callable
    /// from `func`.
    pub fn import(&mut self, id: FuncId, func: &mut Function) -> ir::FuncRef {
        self.module.declare_func_in_func(id, func)
    }

    pub fn new_function(&self, id: FuncId, sig: Signature) -> Function {
        Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig)
    }

    /// Compile `func` at `opt` and define it as `id`, refusing calls to anything outside
    /// the allowlist and this module's own functions.
    pub fn define(&mut self, id: FuncId, func: Function, opt: OptLevel) -> CgResult<FunctionText> {
        let compiled = self.compiler().compile(id, func, opt)?;
        self.define_compiled(compiled)
    }

    /// What compiles functions for this module's target, shareable between threads.
    pub fn compiler(&self) -> Compiler {
        Compiler { isas: self.isas.clone() }
    }

    /// Define a compiled function, refusing calls to anything outside the allowlist and
    /// this module's own functions.
    pub fn define_compiled(&mut self, c: Compiled) -> CgResult<FunctionText> {
        let mut named = vec![];
        for r in &c.relocs {
            if let ModuleRelocTarget::User { .. } = r.name {
                let callee = self.callee_name(&r.name);
                if !self.allowed.contains(&callee) && !self.is_local(&callee) {
                    return err(format!("JIT code may not call `{callee}`: it is not on the allowlist"));
                }
                named.push((r.offset, callee));
            } else {
                return err(format!("JIT code may not call the library function {:?}", r.name));
            }
        }
        self.module
            .define_function_bytes(c.id, c.align, &c.bytes, &c.relocs)
            .map_err(|e| Error::Codegen(format!("cannot define a kernel: {e}")))?;
        let code_bytes = c.bytes.len();
        let code = MachineCode::new(c.bytes, c.blocks, named);
        Ok(FunctionText { clif: c.clif, code: vec![code], note: String::new(), code_bytes })
    }

    fn callee_name(&self, target: &ModuleRelocTarget) -> String {
        let decls = self.module.declarations();
        match target {
            ModuleRelocTarget::User { namespace: 0, index } => {
                let id = FuncId::from_u32(*index);
                decls.get_function_decl(id).linkage_name(id).into_owned()
            }
            ModuleRelocTarget::User { namespace: 1, index } => {
                let id = DataId::from_u32(*index);
                decls.get_data_decl(id).linkage_name(id).into_owned()
            }
            other => format!("{other:?}"),
        }
    }

    fn is_local(&self, name: &str) -> bool {
        let decls = self.module.declarations();
        decls.get_functions().any(|(id, d)| d.linkage_name(id) == name && d.linkage.is_definable())
            || decls.get_data_objects().any(|(id, d)| d.linkage_name(id) == name && d.linkage.is_definable())
    }
}
