//! GEMM: C (+)= op(A)·op(B) for any strides, as a loop nest that calls a micro-kernel on
//! each MR×NR tile.
//!
//! The micro-kernel has a narrow interface — `tile (+)= A · B` for one MR×NR tile over
//! `kc` steps, A's MR values of a step at any two strides, B's NR values of a step
//! contiguous at one stride, the tile's rows at one stride — so the pure Cranelift one and
//! the native ones (`micro`) are interchangeable. A whole tile of a GEMM without an
//! epilogue is C itself; the rest goes through a tile buffer that the loop nest adds,
//! transforms and stores. Operands are read in place where they can be: A by every full row
//! tile, B by every full panel when its rows are contiguous. Only what cannot be is
//! packed, zero-padded so the micro-kernel never reads past a buffer: a partial last row
//! tile of A, a partial last panel of B, and B whose rows are strided (packed whole, a
//! transposing copy). Copies dominated small convolutions: their im2col matrix was copied
//! a second time into panels. The loop nest keeps everything shape-specific: blocking (KC
//! over k, NC over n), packing with constant strides, edge tiles, and the epilogue that
//! adds, transforms and stores each tile while it is hot.

use super::epilogue::At;
use crate::codegen::builder::{Buf, Kb};
use crate::codegen::jit::CgResult;
use crate::codegen::loops::{types, Idx, Val};
pub use crate::codegen::micro::MicroTile;
use std::sync::Arc;

/// Largest depth of a packed panel: a 6×384 A panel (9 KB) and a 384×8 B panel (12 KB)
/// stay in L1 together. K is cut into equal blocks no deeper than this (784 → 2 × 392),
/// so no thin last block costs an extra pass over C.
pub const KC: usize = 384;

/// The depth of each full K block.
fn kc_for(k: usize) -> usize {
    let blocks = k.div_ceil(KC);
    k.div_ceil(blocks)
}
/// Width of a packed B block: at most KC×512 floats (384×512, 768 KB), which stays in
/// this machine's 1 MB L2 per core.
const NC: usize = 512;

/// A matrix view: element (r, c) is `buf[base + r·rs + c·cs]`.
#[derive(Clone, Debug)]
pub struct Mat {
    pub buf: Buf,
    pub base: Idx,
    pub rs: i64,
    pub cs: i64,
}

impl Mat {
    fn at(&self, kb: &mut Kb, r: Idx, c: Idx) -> Idx {
        let t = kb.affine(0, &[(r, self.rs), (c, self.cs)]);
        kb.add(self.base, t)
    }
}

pub struct GemmScratch {
    pub pack_a: Buf,
    pub pack_b: Buf,
    pub tile: Buf,
}

/// Per tile element: the final value (after summation) and where it is: its index in C's
/// buffer, its row and column in C.
pub type Epilogue<'a> = &'a mut dyn FnMut(&mut Kb, Val, At) -> CgResult<Val>;

/// How a tile reaches C.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    /// C = epilogue(tile)
    Set,
    /// C = C + tile
    Add,
    /// C = epilogue(C + tile)
    AddFinal,
}

fn blocks(total: usize, size: usize) -> (usize, usize) {
    (total / size, total % size)
}

/// Scratch floats: packed A (one row tile), packed B, the tile.
pub fn scratch((_, k, n): (usize, usize, usize), micro: &MicroTile) -> Vec<usize> {
    let kc = kc_for(k);
    let nc = n.min(NC).div_ceil(micro.nr) * micro.nr;
    vec![micro.mr * kc, kc * nc, micro.mr * micro.nr]
}

pub struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Mat,
    pub b: Mat,
    pub c: Mat,
    /// B's row p starts at `b.base + b_rows[p]` instead of `b.base + p·b.rs`: a direct
    /// convolution's taps in a zero-bordered image (then `b.cs` is 1 and N a whole number
    /// of panels, so B is always read in place).
    pub b_rows: Option<Arc<[i32]>>,
    /// A's row i starts at `a.base + a_rows[i]` instead of `a.base + i·a.rs`: a direct
    /// weight gradient's taps in a zero-bordered image (then `a.cs` is the step; A is
    /// read in place, its row tiles unrolled so each call gets its MR offsets as
    /// constants, a partial last tile padded with offset 0 and its extra rows dropped).
    pub a_rows: Option<Arc<[i32]>>,
    /// B's rows (contiguous) hold zeros up to a whole panel past column `n`, so its partial
    /// last panel is read in place too.
    pub b_padded: bool,
    /// C += op(A)·op(B) instead of C = ….
    pub accumulate: bool,
    pub scratch: &'a GemmScratch,
    pub micro: &'a MicroTile,
}

pub fn emit_gemm(kb: &mut Kb, g: &Gemm, mut epilogue: Option<Epilogue>) -> CgResult<()> {
    let nr = g.micro.nr;
    let kc_max = kc_for(g.k);
    let (k_full, k_rem) = blocks(g.k, kc_max);
    let k_blocks = k_full + (k_rem > 0) as usize;
    let last_kc = if k_rem > 0 { k_rem } else { kc_max };
    if k_blocks > 1 && !g.accumulate {
        zero(kb, &g.c, g.m, g.n)?;
    }
    let single = k_blocks == 1;
    let final_store = match (single, g.accumulate) {
        (true, false) => Store::Set,
        (true, true) if epilogue.is_none() => Store::Add,
        _ => Store::AddFinal,
    };
    let nc_max = g.n.min(NC).div_ceil(nr) * nr;
    let (n_full, n_rem) = blocks(g.n, nc_max);
    let mut per_jc = |kb: &mut Kb, jc: Idx, nc: usize| -> CgResult<()> {
        // All k blocks but the last accumulate into C (zeroed above); the last one
        // finishes the sum and runs the epilogue. Blocks of a B with row offsets are
        // unrolled: each call gets its block's offsets as constants.
        if g.b_rows.is_some() {
            for blk in 0..k_blocks - 1 {
                let pc = Idx::constant((blk * kc_max) as i64);
                block(kb, g, jc, nc, pc, kc_max, Store::Add, &mut None)?;
            }
        } else {
            kb.for_range(0, (k_blocks - 1) as i64 * kc_max as i64, kc_max as i64, |kb, pc| {
                block(kb, g, jc, nc, pc, kc_max, Store::Add, &mut None)
            })?;
        }
        let pc = Idx::constant(((k_blocks - 1) * kc_max) as i64);
        block(kb, g, jc, nc, pc, last_kc, final_store, &mut epilogue)
    };
    kb.for_range(0, (n_full * nc_max) as i64, nc_max as i64, |kb, jc| per_jc(kb, jc, nc_max))?;
    if n_rem > 0 {
        per_jc(kb, Idx::constant((n_full * nc_max) as i64), n_rem)?;
    }
    Ok(())
}

fn zero(kb: &mut Kb, c: &Mat, m: usize, n: usize) -> CgResult<()> {
    kb.for_range(0, m as i64, 1, |kb, i| {
        let zero4 = kb.f(types::F32X4, 0.0);
        let zero1 = kb.f(types::F32, 0.0);
        let vec_end = if c.cs == 1 { n / 4 * 4 } else { 0 };
        kb.for_range(0, vec_end as i64, 4, |kb, j| {
            let at = c.at(kb, i, j);
            kb.store(zero4, &c.buf, at)
        })?;
        kb.for_range(vec_end as i64, n as i64, 1, |kb, j| {
            let at = c.at(kb, i, j);
            kb.store(zero1, &c.buf, at)
        })
    })
}

#[allow(clippy::too_many_arguments)]
fn block(
    kb: &mut Kb,
    g: &Gemm,
    jc: Idx,
    nc: usize,
    pc: Idx,
    kc: usize,
    store: Store,
    epi: &mut Option<Epilogue>,
) -> CgResult<()> {
    let (mr, nr) = (g.micro.mr, g.micro.nr);
    let s = g.scratch;
    let (q_full, q_rem) = blocks(nc, nr);
    // B with contiguous rows is read in place, panel by panel (its full panels need no
    // copy: the micro-kernel steps down B's rows); only a partial last panel is packed,
    // zero-padded, at the start of the packing buffer.
    let in_place = g.b.cs == 1 && (g.b.rs > 0 || g.b_rows.is_some());
    // A B with row offsets has its rows' block as constants (see `emit_gemm`).
    let steps = match &g.b_rows {
        Some(rows) if g.b.cs == 1 && q_rem == 0 && pc.is_constant() => {
            let first = pc.off as usize;
            Some(Arc::<[i32]>::from(&rows[first..first + kc]))
        }
        Some(_) => {
            return Err(crate::Error::Codegen(
                "a GEMM whose B has row offsets needs contiguous columns, whole panels and constant K blocks".into(),
            ))
        }
        None => None,
    };
    if in_place {
        if q_rem > 0 && !g.b_padded {
            let last = kb.add(jc, Idx::constant((q_full * nr) as i64));
            pack_b(kb, &g.b, pc, kc, last, q_rem, nr, &s.pack_b)?;
        }
    } else {
        pack_b(kb, &g.b, pc, kc, jc, nc, nr, &s.pack_b)?;
    }
    // A is read in place by full row tiles (the micro-kernel takes its strides); only a
    // partial last tile is packed, zero-padded.
    let (r_full, r_rem) = blocks(g.m, mr);
    let (ars, acs) = (g.a.rs as usize, g.a.cs as usize);
    if r_rem > 0 && g.a_rows.is_none() {
        pack_a(kb, &g.a, g.m, pc, kc, mr, &s.pack_a, r_full)?;
    }
    // A row tile's offsets, when A's rows are a table: MR of them, padded with 0.
    let row_table = |r: usize| -> Option<Arc<[i32]>> {
        let rows = g.a_rows.as_ref()?;
        Some((0..mr).map(|i| rows.get(r * mr + i).copied().unwrap_or(0)).collect())
    };
    let mut tiles = |kb: &mut Kb, q: Idx, cols: usize| -> CgResult<()> {
        let mut tile = |kb: &mut Kb, r: Idx, rows: usize| -> CgResult<()> {
            let a_rows = row_table(r.off as usize);
            let a = if let Some(table) = &a_rows {
                let at = g.a.at(kb, Idx::constant(0), pc);
                let last = table.iter().map(|&o| o.max(0) as usize).max().unwrap_or(0);
                (&g.a.buf, at, last + (kc - 1) * acs + 1, (0, acs))
            } else if rows == mr {
                let row0 = kb.mul(r, mr as i64);
                let at = g.a.at(kb, row0, pc);
                (&g.a.buf, at, (mr - 1) * ars + (kc - 1) * acs + 1, (ars, acs))
            } else {
                (&s.pack_a, Idx::constant(0), kc * mr, (1, mr))
            };
            let b = if let Some(steps) = &steps {
                let col0 = kb.affine(0, &[(q, nr as i64)]);
                let col0 = kb.add(col0, jc);
                let at = kb.add(g.b.base, col0);
                let last = steps.iter().map(|&s| s.max(0) as usize).max().unwrap_or(0);
                (&g.b.buf, at, last + nr, 0)
            } else if in_place && (cols == nr || g.b_padded) {
                let col0 = kb.affine(0, &[(q, nr as i64)]);
                let col0 = kb.add(col0, jc);
                let at = g.b.at(kb, pc, col0);
                (&g.b.buf, at, (kc - 1) * g.b.rs as usize + nr, g.b.rs as usize)
            } else if in_place {
                (&s.pack_b, Idx::constant(0), kc * nr, nr)
            } else {
                let b_off = kb.mul(q, (kc * nr) as i64);
                (&s.pack_b, b_off, kc * nr, nr)
            };
            // A whole tile of a GEMM with no epilogue is computed into C itself (added to
            // it where C accumulates): no tile buffer and no copy, which for a short K
            // (a small convolution's 9–25 taps) cost as much as the product.
            let adds = store == Store::Add || (store == Store::AddFinal && epi.is_none());
            let whole = rows == mr && cols == nr && g.c.cs == 1 && g.c.rs >= nr as i64;
            if whole && (adds || (store == Store::Set && epi.is_none())) {
                let row0 = kb.mul(r, mr as i64);
                let col0 = kb.affine(0, &[(q, nr as i64)]);
                let col0 = kb.add(col0, jc);
                let at = g.c.at(kb, row0, col0);
                let rs = g.c.rs as usize;
                let c = (&g.c.buf, at, (mr - 1) * rs + nr, rs, adds);
                return kb.call_micro(g.micro, kc, a, a_rows, b, steps.clone(), c);
            }
            kb.call_micro(g.micro, kc, a, a_rows, b, steps.clone(), (&s.tile, Idx::constant(0), mr * nr, nr, false))?;
            store_tile(kb, g, r, rows, jc, q, cols, store, epi)
        };
        if g.a_rows.is_some() {
            for r in 0..r_full {
                tile(kb, Idx::constant(r as i64), mr)?;
            }
        } else {
            kb.for_range(0, r_full as i64, 1, |kb, r| tile(kb, r, mr))?;
        }
        if r_rem > 0 {
            tile(kb, Idx::constant(r_full as i64), r_rem)?;
        }
        Ok(())
    };
    kb.for_range(0, q_full as i64, 1, |kb, q| tiles(kb, q, nr))?;
    if q_rem > 0 {
        tiles(kb, Idx::constant(q_full as i64), q_rem)?;
    }
    Ok(())
}

/// A strided view of the matrix a panel is packed from: element (p, j) — step p along
/// K, position j across the panel — is at `at0 + p·ks + j·js`.
struct PanelSrc<'a> {
    buf: &'a Buf,
    at0: Idx,
    ks: i64,
    js: i64,
}

/// One packed panel: dst[base + p·w + j] = src(p, j) for p < kc and j < valid, and (with
/// `zeros`; else they are left as they are) zero for valid ≤ j < w. Contiguous along the
/// panel: vector copies. Contiguous along K (a dense layer's weights [out, in], a
/// row-major A): four steps of four positions at a time are loaded as vectors and
/// transposed in registers. Otherwise scalar.
#[allow(clippy::too_many_arguments)]
fn pack_panel(
    kb: &mut Kb,
    src: &PanelSrc,
    kc: usize,
    (w, valid, zeros): (usize, usize, bool),
    dst: &Buf,
    base: Idx,
) -> CgResult<()> {
    let fill = if zeros { w } else { valid };
    let by_4x4 = src.ks == 1 && src.js != 1;
    let k_vec = if by_4x4 { kc / 4 * 4 } else { 0 };
    let element = |kb: &mut Kb, at: Idx, j: usize| -> CgResult<Val> {
        if j < valid {
            let a = kb.add(at, Idx::constant(j as i64 * src.js));
            kb.load(types::F32, src.buf, a)
        } else {
            Ok(kb.f(types::F32, 0.0))
        }
    };
    kb.for_range(0, k_vec as i64, 4, |kb, p| {
        let at = kb.affine(0, &[(p, src.ks)]);
        let at = kb.add(src.at0, at);
        let d = kb.affine(0, &[(p, w as i64)]);
        let d = kb.add(base, d);
        let mut j = 0;
        while j + 4 <= valid {
            let mut rows = [None; 4];
            for (c, row) in rows.iter_mut().enumerate() {
                let a = kb.add(at, Idx::constant((j + c) as i64 * src.js));
                *row = Some(kb.load(types::F32X4, src.buf, a)?);
            }
            let t = kb.transpose4(rows.map(|v| v.expect("loaded")));
            for (step, v) in t.into_iter().enumerate() {
                kb.store(v, dst, d.plus((step * w + j) as i64))?;
            }
            j += 4;
        }
        for step in 0..4 {
            for jj in j..fill {
                let v = element(kb, at.plus(step as i64), jj)?;
                kb.store(v, dst, d.plus((step * w + jj) as i64))?;
            }
        }
        Ok(())
    })?;
    kb.for_range(k_vec as i64, kc as i64, 1, |kb, p| {
        let at = kb.affine(0, &[(p, src.ks)]);
        let at = kb.add(src.at0, at);
        let d = kb.affine(0, &[(p, w as i64)]);
        let d = kb.add(base, d);
        let mut j = 0;
        while j < fill {
            if src.js == 1 && j + 4 <= valid {
                let v = kb.load(types::F32X4, src.buf, at.plus(j as i64))?;
                kb.store(v, dst, d.plus(j as i64))?;
                j += 4;
            } else {
                let v = element(kb, at, j)?;
                kb.store(v, dst, d.plus(j as i64))?;
                j += 1;
            }
        }
        Ok(())
    })
}

/// dst[base + p·w + j] = src[at0 + p·ks + j·js] for p < kc and j < valid (the columns
/// from valid to w left as they are): one panel's packing, for a lowering that lays out
/// an operand itself.
pub fn pack(
    kb: &mut Kb,
    (buf, at0, ks, js): (&Buf, Idx, i64, i64),
    kc: usize,
    (w, valid): (usize, usize),
    (dst, base): (&Buf, Idx),
) -> CgResult<()> {
    pack_panel(kb, &PanelSrc { buf, at0, ks, js }, kc, (w, valid, false), dst, base)
}

/// packed_b[q][p][j] = B(pc + p, jc + q·NR + j), zero past the valid columns.
#[allow(clippy::too_many_arguments)]
fn pack_b(kb: &mut Kb, b: &Mat, pc: Idx, kc: usize, jc: Idx, nc: usize, nr: usize, dst: &Buf) -> CgResult<()> {
    let (q_full, q_rem) = blocks(nc, nr);
    let panel = |kb: &mut Kb, q: Idx, cols: usize| -> CgResult<()> {
        let col0 = kb.affine(0, &[(q, nr as i64)]);
        let col0 = kb.add(col0, jc);
        let at0 = b.at(kb, pc, col0);
        let base = kb.mul(q, (kc * nr) as i64);
        pack_panel(kb, &PanelSrc { buf: &b.buf, at0, ks: b.rs, js: b.cs }, kc, (nr, cols, true), dst, base)
    };
    kb.for_range(0, q_full as i64, 1, |kb, q| panel(kb, q, nr))?;
    if q_rem > 0 {
        panel(kb, Idx::constant(q_full as i64), q_rem)?;
    }
    Ok(())
}

/// packed_a[p][i] = A(r·MR + i, pc + p) for the partial last row tile r, zero past the
/// valid rows.
#[allow(clippy::too_many_arguments)]
fn pack_a(kb: &mut Kb, a: &Mat, m: usize, pc: Idx, kc: usize, mr: usize, dst: &Buf, r: usize) -> CgResult<()> {
    let row0 = Idx::constant((r * mr) as i64);
    let at0 = a.at(kb, row0, pc);
    let src = PanelSrc { buf: &a.buf, at0, ks: a.cs, js: a.rs };
    pack_panel(kb, &src, kc, (mr, m - r * mr, true), dst, Idx::constant(0))
}

#[allow(clippy::too_many_arguments)]
fn store_tile(
    kb: &mut Kb,
    g: &Gemm,
    r: Idx,
    rows: usize,
    jc: Idx,
    q: Idx,
    cols: usize,
    store: Store,
    epi: &mut Option<Epilogue>,
) -> CgResult<()> {
    let (mr, nr) = (g.micro.mr, g.micro.nr);
    let row0 = kb.mul(r, mr as i64);
    let col0 = kb.affine(0, &[(q, nr as i64)]);
    let col0 = kb.add(col0, jc);
    // Rows in a loop (not unrolled: wide native tiles would multiply the code), the
    // columns of a row unrolled in vectors.
    kb.for_range(0, rows as i64, 1, |kb, i| {
        let row = kb.add(row0, i);
        let c_at = g.c.at(kb, row, col0);
        let t_row = kb.mul(i, nr as i64);
        let mut j = 0;
        while j < cols {
            let (ty, w) = if g.c.cs == 1 && j + 4 <= cols { (types::F32X4, 4) } else { (types::F32, 1) };
            let mut v = kb.load(ty, &g.scratch.tile, t_row.plus(j as i64))?;
            let at = kb.add(c_at, Idx::constant(j as i64 * g.c.cs));
            if store != Store::Set {
                let old = kb.load(ty, &g.c.buf, at)?;
                v = kb.fadd(old, v);
            }
            if store != Store::Add {
                if let Some(e) = epi.as_mut() {
                    v = e(kb, v, At { at, row, col: col0.plus(j as i64) })?;
                }
            }
            kb.store(v, &g.c.buf, at)?;
            j += w;
        }
        Ok(())
    })
}
