//! Ranges of integer values: what an index's terms are known to lie in.
//!
//! One function, [`of_expr`], says how each expression's range follows from its operands'
//! (constants, loop indices, sums, products by constants, shifts, clamps with `smax` and
//! `smin`, selects of known values, widenings); the builder uses it as it builds, the
//! verifier again on its own. A value whose range cannot be derived has none, and an index
//! over it is refused: no range is ever written by hand.

use super::{Binary, Convert, Expr, Idx, ImmOp, Type, Val};

/// An inclusive range of integers.
pub type Range = (i64, i64);

fn hull(a: Range, b: Range) -> Range {
    (a.0.min(b.0), a.1.max(b.1))
}

/// c·[lo, hi] for any sign of c, or `None` on overflow.
fn times(r: Range, c: i64) -> Option<Range> {
    let (a, b) = (r.0.checked_mul(c)?, r.1.checked_mul(c)?);
    Some((a.min(b), a.max(b)))
}

fn plus(a: Range, b: Range) -> Option<Range> {
    Some((a.0.checked_add(b.0)?, a.1.checked_add(b.1)?))
}

/// The range of Σ cᵢ·vᵢ + off, given each term's range.
pub fn of_index(idx: &Idx, range: &dyn Fn(Val) -> Option<Range>) -> Option<Range> {
    let mut r = (idx.off, idx.off);
    for &(v, c) in idx.terms() {
        r = plus(r, times(range(v)?, c)?)?;
    }
    Some(r)
}

/// Every value of `ty`'s lanes (a value of unknown range lies somewhere in it).
fn full(ty: Type) -> Range {
    let bits = ty.lane_type().bits();
    if bits >= 64 {
        (i64::MIN, i64::MAX)
    } else {
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    }
}

/// Whether every value of `r` is representable in integers of `ty`'s lane width.
fn fits(r: Range, ty: Type) -> bool {
    let bits = ty.lane_type().bits();
    bits >= 64 || (r.0 >= -(1i64 << (bits - 1)) && r.1 < (1i64 << (bits - 1)))
}

/// The range of an integer expression's value (for vectors, of every lane), if it can be
/// derived from its operands' ranges; `ty` is the expression's type.
pub fn of_expr(e: &Expr, ty: Type, range: &dyn Fn(Val) -> Option<Range>) -> Option<Range> {
    if !ty.lane_type().is_int() {
        return None;
    }
    match *e {
        Expr::Iconst(c) => Some((c, c)),
        Expr::Index(ref idx) => of_index(idx, range),
        // A clamp bounds its result even when the clamped value's range is unknown.
        Expr::Binary(Binary::Smax, a, b) => {
            let (ra, rb) = (range(a).unwrap_or(full(ty)), range(b).unwrap_or(full(ty)));
            Some((ra.0.max(rb.0), ra.1.max(rb.1))).filter(|&r| r != full(ty))
        }
        Expr::Binary(Binary::Smin, a, b) => {
            let (ra, rb) = (range(a).unwrap_or(full(ty)), range(b).unwrap_or(full(ty)));
            Some((ra.0.min(rb.0), ra.1.min(rb.1))).filter(|&r| r != full(ty))
        }
        Expr::Binary(op, a, b) => {
            let (ra, rb) = (range(a)?, range(b)?);
            match op {
                Binary::Iadd => plus(ra, rb),
                Binary::Isub => Some((ra.0.checked_sub(rb.1)?, ra.1.checked_sub(rb.0)?)),
                _ => None,
            }
        }
        Expr::Imm(op, a, c) => {
            let ra = range(a)?;
            match op {
                ImmOp::Iadd => plus(ra, (c, c)),
                ImmOp::Imul => times(ra, c),
                ImmOp::Ishl if (0..32).contains(&c) => times(ra, 1 << c),
                ImmOp::Ushr | ImmOp::Sshr if ra.0 >= 0 && (0..64).contains(&c) => Some((ra.0 >> c, ra.1 >> c)),
                ImmOp::Band if c >= 0 => Some((0, c)),
                _ => None,
            }
        }
        // Selecting between two known values (the mask plays no part).
        Expr::Select(_, a, b) => Some(hull(range(a)?, range(b)?)),
        Expr::Splat(a) | Expr::ExtractLane(a, _) => range(a),
        Expr::InsertLane(a, b, _) => Some(hull(range(a)?, range(b)?)),
        Expr::Convert(Convert::Uextend, a) => range(a).filter(|r| r.0 >= 0),
        Expr::Convert(Convert::Ireduce, a) => range(a).filter(|&r| fits(r, ty)),
        _ => None,
    }
}

/// The range of a loop index: `lo`, then every `step` up to the last below `hi`.
pub fn of_loop(lo: i64, hi: i64, step: i64) -> Range {
    (lo, lo + (hi - lo - 1) / step * step)
}

/// The ranges of `value` in the two branches of `if value < limit`.
pub fn refine_below(r: Range, limit: i64) -> (Range, Range) {
    ((r.0, r.1.min(limit - 1)), (r.0.max(limit), r.1))
}
