//! Which buffers a loop nest only reads: what lets `emit` mark their loads `readonly` and
//! `can_move`, so that Cranelift treats them as pure values — merges repeated loads and
//! hoists them, with what is computed from them, out of the loops they do not depend on.
//! An epilogue's per-channel parameters (a bias, batch norm's scale: a square root and a
//! division) are then computed once per channel, not once per four floats stored.
//!
//! Why it is sound: a `readonly` load's memory must not change while the function runs.
//! Only the nest's own stores and micro-kernel tiles write memory while it runs (every
//! thread runs this same function; other kernels run before or after, and the collective
//! points between segments), so a buffer is read-only if none of those writes may overlap
//! it. `can_move` lets a load run where its operands are defined rather than where it is
//! written; every index is proved in bounds from its terms' ranges (`verify`), which hold
//! wherever those terms are defined — except inside an `if_below` branch, whose refined
//! range holds only there, so `emit` does not mark the loads inside one.

use super::{LoopNest, Stmt};
use crate::codegen::builder::{Buf, Region};

impl LoopNest {
    /// For each buffer (by `BufId`), whether nothing the nest writes may overlap it. A
    /// thread's scratch is never read-only (the nest writes what it reads there).
    pub fn read_only(&self) -> Vec<bool> {
        let mut written = vec![];
        walk(&self.body, &mut |s| match s {
            Stmt::Store { buf, .. } => written.push(*buf),
            Stmt::CallMicro(call) => written.push(call.tile.buf),
            _ => {}
        });
        let scratch_start = self.scratch.map(|(start, _)| start);
        self.bufs
            .iter()
            .map(|b| {
                b.region != Region::Scratch && written.iter().all(|&w| !may_overlap(b, self.buf(w), scratch_start))
            })
            .collect()
    }
}

fn walk<'a>(body: &'a [Stmt], f: &mut impl FnMut(&'a Stmt)) {
    for s in body {
        f(s);
        match s {
            Stmt::For { body, .. } | Stmt::Items { body, .. } => walk(body, f),
            Stmt::IfBelow { then, otherwise, .. } => {
                walk(then, f);
                walk(otherwise, f);
            }
            Stmt::Let(..) | Stmt::Store { .. } | Stmt::Set(..) | Stmt::CallMicro(_) => {}
        }
    }
}

/// Whether `a` and `b` may share memory. The state is its own allocation; a thread's
/// scratch lies in the arena from `scratch_start` on (one slice per thread), so it may
/// overlap an arena buffer that reaches past that point.
fn may_overlap(a: &Buf, b: &Buf, scratch_start: Option<usize>) -> bool {
    let reaches_scratch = |x: &Buf| scratch_start.is_none_or(|s| x.offset + x.len > s);
    match (a.region, b.region) {
        (x, y) if x == y => a.offset < b.offset + b.len && b.offset < a.offset + a.len,
        (Region::Arena, Region::Scratch) => reaches_scratch(a),
        (Region::Scratch, Region::Arena) => reaches_scratch(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(region: Region, offset: usize, len: usize) -> Buf {
        Buf { region, offset, len, name: String::new() }
    }

    #[test]
    fn buffers_overlap_only_within_one_memory() {
        let (arena, state, scratch) = (Region::Arena, Region::State, Region::Scratch);
        assert!(may_overlap(&buf(arena, 0, 8), &buf(arena, 7, 2), Some(100)));
        assert!(!may_overlap(&buf(arena, 0, 8), &buf(arena, 8, 2), Some(100)));
        assert!(!may_overlap(&buf(state, 0, 8), &buf(arena, 0, 8), Some(100)));
        // Scratch starts at float 100 of the arena: an arena buffer below it is apart.
        assert!(!may_overlap(&buf(arena, 0, 100), &buf(scratch, 0, 8), Some(100)));
        assert!(may_overlap(&buf(arena, 0, 101), &buf(scratch, 0, 8), Some(100)));
        assert!(may_overlap(&buf(scratch, 0, 8), &buf(arena, 96, 8), Some(100)));
        assert!(may_overlap(&buf(arena, 0, 1), &buf(scratch, 0, 8), None));
    }
}
