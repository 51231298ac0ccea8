//! The bounds proof, on the loop-nest value: every load, store and call pointer lies
//! inside its buffer for every iteration, and every value is used where it is defined.
//!
//! The walk re-derives every integer value's range from its definition (loop bounds,
//! the item extent, branch refinements, [`range::of_expr`]) without trusting the ranges
//! the builder recorded in the indices, then checks each access's index range against its
//! buffer's length. A nest that passes cannot touch memory outside its buffers, whatever
//! item range (within the extent) and thread it is called with; this is what the `unsafe`
//! call in `codegen::executable` relies on.

use super::range::{self, Range};
use super::{width, BufId, Expr, Idx, LoopNest, Stmt, Val};
use crate::codegen::builder::Region;
use crate::codegen::jit::{err, CgResult};

struct Walk<'a> {
    nest: &'a LoopNest,
    ranges: Vec<Option<Range>>,
    defined: Vec<bool>,
}

impl Walk<'_> {
    fn use_val(&self, v: Val) -> CgResult<()> {
        if self.defined.get(v.0 as usize) != Some(&true) {
            return err(format!("kernel `{}`: v{} is used where it is not defined", self.nest.name, v.0));
        }
        Ok(())
    }

    fn range(&self, v: Val) -> Option<Range> {
        self.ranges[v.0 as usize]
    }

    fn access(&self, buf: BufId, at: &Idx, w: usize, what: &str) -> CgResult<()> {
        let b = self.nest.bufs.get(buf.0 as usize);
        let Some(b) = b else { return err(format!("kernel `{}`: no buffer b{}", self.nest.name, buf.0)) };
        for &(v, _) in at.terms() {
            self.use_val(v)?;
        }
        if b.region == Region::Scratch && self.nest.scratch.is_none() {
            return err(format!("kernel `{}` uses {} but has no scratch space", self.nest.name, b.name));
        }
        let Some((lo, hi)) = range::of_index(at, &|v| self.range(v)) else {
            return err(format!(
                "kernel `{}`: {what} of {} at an index without a proved range",
                self.nest.name, b.name
            ));
        };
        // An empty range is a branch that never runs.
        if lo > hi {
            return Ok(());
        }
        if lo < 0 || hi + w as i64 > b.len as i64 {
            return err(format!(
                "kernel `{}`: {what} of {} at [{lo}, {hi}] (width {w}) is outside its {} elements",
                self.nest.name, b.name, b.len
            ));
        }
        // The range printed with the access is the builder's: it must hold what is proved.
        if lo < at.lo || hi > at.hi {
            return err(format!(
                "kernel `{}`: {what} of {} records the range [{}, {}] but [{lo}, {hi}] is proved",
                self.nest.name, b.name, at.lo, at.hi
            ));
        }
        Ok(())
    }

    fn define(&mut self, v: Val, r: Option<Range>) {
        self.defined[v.0 as usize] = true;
        self.ranges[v.0 as usize] = r;
    }

    fn block(&mut self, body: &[Stmt]) -> CgResult<()> {
        let mut scope: Vec<Val> = vec![];
        for s in body {
            match s {
                Stmt::Let(v, e) => {
                    e.operands().into_iter().try_for_each(|v| self.use_val(v))?;
                    if self.defined[v.0 as usize] {
                        return err(format!("kernel `{}`: v{} is defined twice", self.nest.name, v.0));
                    }
                    let ty = self.nest.ty(*v);
                    if let Expr::Load { buf, at } = e {
                        self.access(*buf, at, width(ty), "load")?;
                    }
                    let r = range::of_expr(e, ty, &|x| self.range(x));
                    self.define(*v, r);
                    scope.push(*v);
                }
                Stmt::Store { buf, at, value } => {
                    self.use_val(*value)?;
                    self.access(*buf, at, width(self.nest.ty(*value)), "store")?;
                }
                Stmt::Set(_, v) => self.use_val(*v)?,
                Stmt::For { var, lo, hi, step, body } => {
                    if *step <= 0 || hi <= lo {
                        return err(format!("kernel `{}`: loop {lo}..{hi} step {step}", self.nest.name));
                    }
                    self.define(*var, Some(range::of_loop(*lo, *hi, *step)));
                    self.block(body)?;
                    self.defined[var.0 as usize] = false;
                }
                Stmt::Items { var, extent, body } => {
                    self.define(*var, Some((0, *extent as i64 - 1)));
                    self.block(body)?;
                    self.defined[var.0 as usize] = false;
                }
                Stmt::IfBelow { value, limit, then, otherwise } => {
                    self.use_val(*value)?;
                    let saved = self.range(*value);
                    let (t, o) = match saved {
                        Some(r) => {
                            let (t, o) = range::refine_below(r, *limit);
                            (Some(t), Some(o))
                        }
                        None => (None, None),
                    };
                    self.ranges[value.0 as usize] = t;
                    self.block(then)?;
                    self.ranges[value.0 as usize] = o;
                    self.block(otherwise)?;
                    self.ranges[value.0 as usize] = saved;
                }
                Stmt::CallMicro(call) => {
                    let Some((_, mr, nr)) = self.nest.tile_of(call) else {
                        return err(format!("kernel `{}`: a micro-kernel call without a micro-kernel", self.nest.name));
                    };
                    // What the micro-kernel touches follows from the call itself, not from
                    // the lengths its builder wrote.
                    let needed = call.extents((*mr, *nr));
                    let ptrs = [(&call.a, "packed A"), (&call.b, "packed B"), (&call.tile, "tile")];
                    for ((p, what), need) in ptrs.into_iter().zip(needed) {
                        if p.len < need {
                            return err(format!(
                                "kernel `{}`: the micro-kernel reaches {need} floats from {what}, which is proved for {}",
                                self.nest.name, p.len
                            ));
                        }
                        self.access(p.buf, &p.at, p.len, what)?;
                    }
                    if call.a_rows.as_ref().is_some_and(|r| r.len() != *mr || r.iter().any(|&o| o < 0)) {
                        return err(format!(
                            "kernel `{}`: a micro-kernel call whose row offsets are not {mr} non-negative offsets",
                            self.nest.name
                        ));
                    }
                    if call.b_steps.as_ref().is_some_and(|s| s.len() != call.kc || s.iter().any(|&o| o < 0)) {
                        return err(format!(
                            "kernel `{}`: a micro-kernel call whose step offsets are not {} non-negative offsets",
                            self.nest.name, call.kc
                        ));
                    }
                }
            }
        }
        // Values defined in a block are not visible after it.
        for v in scope {
            self.defined[v.0 as usize] = false;
        }
        Ok(())
    }
}

/// Prove every access of `nest` in bounds (see the module documentation).
pub fn verify(nest: &LoopNest) -> CgResult<()> {
    let n = nest.types.len();
    let mut w = Walk { nest, ranges: vec![None; n], defined: vec![false; n] };
    w.block(&nest.body)
}
