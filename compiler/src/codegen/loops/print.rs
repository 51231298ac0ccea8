//! The text of a loop nest (`percept inspect --emit loops`):
//!
//! ```text
//! loops fwd.leaky_relu_0.leaky_relu pass 0
//!   buf b0 = %0 arena@0+48
//!   buf b1 = %1 arena@64+48
//!   items v0 in 0..2 {
//!     v1 = load.f32x4 b0[6*v0]  ; [0, 6]
//!     ...
//!     store.f32x4 b1[6*v0], v6  ; [0, 6]
//!   }
//! ```
//!
//! Each access shows its index as an affine form over values and the range it was proved
//! to lie in; types are Cranelift's names.

use super::{Expr, Idx, LoopNest, Stmt, Val};
use crate::codegen::builder::{ctx, Region};
use std::fmt::{self, Write};

fn idx(i: &Idx) -> String {
    let mut s = String::new();
    for &(v, c) in i.terms() {
        if !s.is_empty() {
            s.push_str(" + ");
        }
        if c == 1 {
            let _ = write!(s, "v{}", v.0);
        } else {
            let _ = write!(s, "{c}*v{}", v.0);
        }
    }
    if s.is_empty() {
        return i.off.to_string();
    }
    match i.off {
        0 => {}
        o if o < 0 => {
            let _ = write!(s, " - {}", -o);
        }
        o => {
            let _ = write!(s, " + {o}");
        }
    }
    s
}

fn range(i: &Idx) -> String {
    format!("[{}, {}]", i.lo, i.hi)
}

pub(crate) fn region_name(r: Region) -> &'static str {
    match r {
        Region::Arena => "arena",
        Region::State => "state",
        Region::Scratch => "scratch",
    }
}

fn v(x: Val) -> String {
    format!("v{}", x.0)
}

impl LoopNest {
    fn expr(&self, e: &Expr, ty: super::Type) -> (String, String) {
        let lower = |d: &dyn fmt::Debug| format!("{d:?}").to_lowercase();
        match e {
            // f32 constants as the f32 they are.
            Expr::Fconst(x) if ty.lane_type() == super::types::F32 => ("fconst".into(), format!("{}", *x as f32)),
            Expr::Fconst(x) => ("fconst".into(), format!("{x}")),
            Expr::Iconst(c) => ("iconst".into(), c.to_string()),
            Expr::Load { buf, at } => ("load".into(), format!("b{}[{}]  ; {}", buf.0, idx(at), range(at))),
            Expr::Ctx { offset } => ("ctx".into(), ctx::name(*offset).to_string()),
            Expr::Index(i) => ("index".into(), format!("{}  ; {}", idx(i), range(i))),
            Expr::Get(var) => ("get".into(), format!("var{}", var.0)),
            Expr::Unary(op, a) => (lower(op), v(*a)),
            Expr::Binary(op, a, b) => (lower(op), format!("{}, {}", v(*a), v(*b))),
            Expr::Imm(op, a, c) => (format!("{}_imm", lower(op)), format!("{}, {c}", v(*a))),
            Expr::Fma(a, b, c) => ("fma".into(), format!("{}, {}, {}", v(*a), v(*b), v(*c))),
            Expr::Fcmp(cc, a, b) => ("fcmp".into(), format!("{cc} {}, {}", v(*a), v(*b))),
            Expr::IcmpImm(cc, a, c) => ("icmp_imm".into(), format!("{cc} {}, {c}", v(*a))),
            Expr::Select(m, a, b) => ("select".into(), format!("{}, {}, {}", v(*m), v(*a), v(*b))),
            Expr::Convert(op, a) => (lower(op), v(*a)),
            Expr::Splat(a) => ("splat".into(), v(*a)),
            Expr::ExtractLane(a, l) => ("extractlane".into(), format!("{}, {l}", v(*a))),
            Expr::InsertLane(a, b, l) => ("insertlane".into(), format!("{}, {}, {l}", v(*a), v(*b))),
            Expr::Shuffle(a, b, lanes) => ("shuffle".into(), format!("{}, {}, {lanes:?}", v(*a), v(*b))),
            Expr::Math(f, a) => (lower(f), v(*a)),
        }
    }

    fn block(&self, out: &mut String, body: &[Stmt], depth: usize, tables: &[std::sync::Arc<[i32]>]) {
        let pad = "  ".repeat(depth);
        for s in body {
            match s {
                Stmt::Let(x, e) => {
                    let (op, args) = self.expr(e, self.ty(*x));
                    let _ = writeln!(out, "{pad}{} = {op}.{} {args}", v(*x), self.ty(*x));
                }
                Stmt::Store { buf, at, value } => {
                    let _ = writeln!(
                        out,
                        "{pad}store.{} b{}[{}], {}  ; {}",
                        self.ty(*value),
                        buf.0,
                        idx(at),
                        v(*value),
                        range(at)
                    );
                }
                Stmt::Set(var, x) => {
                    let _ = writeln!(out, "{pad}var{} = {}", var.0, v(*x));
                }
                Stmt::For { var, lo, hi, step, body } => {
                    let step = if *step == 1 { String::new() } else { format!(" step {step}") };
                    let _ = writeln!(out, "{pad}for {} in {lo}..{hi}{step} {{", v(*var));
                    self.block(out, body, depth + 1, tables);
                    let _ = writeln!(out, "{pad}}}");
                }
                Stmt::Items { var, extent, body } => {
                    let _ = writeln!(out, "{pad}items {} in 0..{extent} {{", v(*var));
                    self.block(out, body, depth + 1, tables);
                    let _ = writeln!(out, "{pad}}}");
                }
                Stmt::IfBelow { value, limit, then, otherwise } => {
                    let _ = writeln!(out, "{pad}if {} < {limit} {{", v(*value));
                    self.block(out, then, depth + 1, tables);
                    let _ = writeln!(out, "{pad}}} else {{");
                    self.block(out, otherwise, depth + 1, tables);
                    let _ = writeln!(out, "{pad}}}");
                }
                Stmt::CallMicro(call) => {
                    let p = |p: &super::Ptr| format!("b{}[{}]+{}  ; {}", p.buf.0, idx(&p.at), p.len, range(&p.at));
                    let which = if call.narrow { "narrow micro" } else { "micro" };
                    let _ = writeln!(out, "{pad}call {which} kc={}", call.kc);
                    let (ar, ak) = call.a_strides;
                    match &call.a_rows {
                        Some(rows) => {
                            let t = tables.iter().position(|t| t == rows).expect("every table is listed");
                            let _ = writeln!(out, "{pad}  a = {}  rows t{t}, stride {ak}", p(&call.a));
                        }
                        None => {
                            let _ = writeln!(out, "{pad}  a = {}  strides {ar}, {ak}", p(&call.a));
                        }
                    }
                    match &call.b_steps {
                        Some(steps) => {
                            let t = tables.iter().position(|t| t == steps).expect("every table is listed");
                            let _ = writeln!(out, "{pad}  b = {}  steps t{t}", p(&call.b));
                        }
                        None => {
                            let _ = writeln!(out, "{pad}  b = {}  stride {}", p(&call.b), call.b_stride);
                        }
                    }
                    let op = if call.accumulate { "+=" } else { "=" };
                    let _ = writeln!(out, "{pad}  tile {op} {}  stride {}", p(&call.tile), call.tile_stride);
                }
            }
        }
    }
}

impl fmt::Display for LoopNest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "loops {} pass {}", self.name, self.pass)?;
        for (i, b) in self.bufs.iter().enumerate() {
            writeln!(f, "  buf b{i} = {} {}@{}+{}", b.name, region_name(b.region), b.offset * 4, b.len * 4)?;
        }
        if let Some((start, per)) = self.scratch {
            writeln!(f, "  scratch arena@{}+{} per thread", start * 4, per * 4)?;
        }
        if let (Some((name, mr, nr)), true) = (&self.micro, self.calls_tile(false)) {
            writeln!(f, "  micro {name} ({mr}x{nr})")?;
        }
        if let (Some((name, mr, nr)), true) = (&self.narrow, self.calls_tile(true)) {
            writeln!(f, "  narrow micro {name} ({mr}x{nr})")?;
        }
        for (i, ty) in self.vars.iter().enumerate() {
            writeln!(f, "  var{i}: {ty}")?;
        }
        // A direct convolution's B offsets, one per step (up to thousands), and a direct
        // weight gradient's A rows: listed once.
        let tables = self.step_tables();
        for (i, t) in tables.iter().enumerate() {
            let list: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            writeln!(f, "  steps t{i} = [{}]", list.join(" "))?;
        }
        let mut out = String::new();
        self.block(&mut out, &self.body, 1, &tables);
        f.write_str(&out)
    }
}
