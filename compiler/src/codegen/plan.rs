//! The memory plan: where every value of a program lives.
//!
//! Parameters, gradients, running statistics and optimizer state live in the model's
//! state store at their slots (a gradient is written straight into its slot; a new
//! parameter or statistic is written in place by the elementwise op that reads the old
//! one). Everything else lives in one arena per compiled program: the batch and targets
//! first, then each temporary placed first-fit by its lifetime (from the node that
//! defines it to its last use), so activations and gradients reuse each other's space.
//! Reshapes alias their input. `verify` re-checks the result independently.

use super::builder::{Buf, Region};
use super::fuse::Kernel;
use super::jit::{err, CgResult};
use crate::exec::{SlotKind, StateLayout};
use crate::ir::{Graph, OutputRole, ValueId};
use crate::ops::{Op, SourceKind};

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub region: Region,
    pub offset: usize,
    pub len: usize,
}

/// One arena allocation and the kernel indices during which it is live (inclusive).
#[derive(Clone, Debug, PartialEq)]
pub struct Alloc {
    pub what: String,
    pub offset: usize,
    pub len: usize,
    pub from: usize,
    pub to: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ArenaPlan {
    /// Start of the per-thread scratch region (floats) and its size per thread.
    pub scratch_start: usize,
    pub scratch_per_thread: usize,
    pub threads: usize,
    /// Where each value lives; `None` for values that exist only inside a fused kernel.
    pub locs: Vec<Option<Loc>>,
    /// Per-thread scratch buffers per kernel (offsets within a thread's scratch space).
    pub scratch: Vec<Vec<Loc>>,
    /// Buffers each kernel shares between its threads.
    pub shared: Vec<Vec<Loc>>,
    pub allocs: Vec<Alloc>,
    /// Floats in the arena.
    pub size: usize,
}

/// Arena offsets are multiples of 16 floats (64 bytes, a cache line).
const ALIGN: usize = 16;

impl ArenaPlan {
    pub fn buf(&self, v: ValueId, name: String) -> Buf {
        let l = self.locs[v.0 as usize].expect("a stored value");
        Buf { region: l.region, offset: l.offset, len: l.len, name }
    }

    pub fn peak_bytes(&self) -> usize {
        self.size * 4
    }

    /// The plan as text (the `plan` file tests): every arena allocation with its bytes and
    /// the kernels it is live across, then each kernel's scratch and shared buffers.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "arena {} bytes: {} planned, then {} of scratch per thread for {} thread(s)",
            self.size * 4,
            self.scratch_start * 4,
            self.scratch_per_thread * 4,
            self.threads
        );
        for a in &self.allocs {
            let _ = writeln!(out, "  @{}+{} kernels {}..={}  {}", a.offset * 4, a.len * 4, a.from, a.to, a.what);
        }
        for (k, (scratch, shared)) in self.scratch.iter().zip(&self.shared).enumerate() {
            if scratch.is_empty() && shared.is_empty() {
                continue;
            }
            let fmt =
                |ls: &[Loc]| ls.iter().map(|l| format!("{}+{}", l.offset * 4, l.len * 4)).collect::<Vec<_>>().join(" ");
            let _ = writeln!(out, "  kernel {k}: scratch [{}] shared [{}]", fmt(scratch), fmt(shared));
        }
        out
    }
}

fn state_slot(layout: &StateLayout, kind: SlotKind, name: &str) -> CgResult<Loc> {
    match layout.find(kind, name) {
        Some(s) => Ok(Loc { region: Region::State, offset: s.offset, len: s.len() }),
        None => err(format!("the state has no {kind:?} slot `{name}`")),
    }
}

fn state_kind(layout: &StateLayout, name: &str) -> SlotKind {
    if layout.find(SlotKind::Running, name).is_some() {
        SlotKind::Running
    } else {
        SlotKind::OptState
    }
}

/// First-fit over the allocations live at one time.
fn first_fit(live: &[(usize, usize)], len: usize) -> usize {
    let mut spans: Vec<(usize, usize)> = live.to_vec();
    spans.sort_unstable();
    let mut at = 0;
    for (off, l) in spans {
        if at + len <= off {
            break;
        }
        at = at.max((off + l).div_ceil(ALIGN) * ALIGN);
    }
    at
}

/// Each kernel's `work` gives its per-thread scratch buffers and the buffers it shares
/// between its threads (partial sums of a reduction), live during that kernel only.
pub fn plan_memory(g: &Graph, kernels: &[Kernel], layout: &StateLayout, threads: usize) -> CgResult<ArenaPlan> {
    let nv = g.values.len();
    let end = kernels.len();
    let mut locs: Vec<Option<Loc>> = vec![None; nv];
    let mut alias_of: Vec<Option<ValueId>> = vec![None; nv];
    // Values written straight into the state.
    for (role, v) in &g.outputs {
        let loc = match role {
            OutputRole::Grad(p) => state_slot(layout, SlotKind::Grad, p)?,
            OutputRole::Param(p) => state_slot(layout, SlotKind::Param, p)?,
            OutputRole::State(n) => state_slot(layout, state_kind(layout, n), n)?,
            OutputRole::Exchange(n) => state_slot(layout, SlotKind::Exchange, n)?,
            _ => continue,
        };
        let producer = g.producer(*v);
        if matches!(producer.op, Op::Source(_) | Op::Reshape(_)) {
            return err(format!("output {role} is not computed by a kernel"));
        }
        locs[v.0 as usize] = Some(loc);
    }
    // Sources in the state; reshapes alias.
    for n in &g.nodes {
        match &n.op {
            Op::Source(s) => {
                let loc = match &s.kind {
                    SourceKind::Param(p) => Some(state_slot(layout, SlotKind::Param, p)?),
                    SourceKind::Grad(p) => Some(state_slot(layout, SlotKind::Grad, p)?),
                    SourceKind::State(name) => Some(state_slot(layout, state_kind(layout, name), name)?),
                    SourceKind::Data | SourceKind::Target => None,
                };
                locs[n.outputs[0].0 as usize] = loc;
            }
            Op::Reshape(_) => alias_of[n.outputs[0].0 as usize] = Some(n.inputs[0]),
            _ => {}
        }
    }
    let root = |mut v: ValueId| {
        while let Some(a) = alias_of[v.0 as usize] {
            v = a;
        }
        v
    };
    // The kernel computing each node (sources and reshapes: none).
    let mut kernel_of = vec![None; g.nodes.len()];
    for (k, kernel) in kernels.iter().enumerate() {
        for n in kernel.nodes() {
            kernel_of[n] = Some(k);
        }
    }
    // Last reading kernel of each root value; outputs live to the end. A value read only
    // by the kernel that makes it never leaves that kernel.
    let mut last = vec![None::<usize>; nv];
    let mut read_outside = vec![false; nv];
    for (i, n) in g.nodes.iter().enumerate() {
        let k = match kernel_of[i] {
            Some(k) => k,
            // A reshape reads nothing itself; its readers count for its root.
            None => continue,
        };
        for &v in &n.inputs {
            let r = root(v).0 as usize;
            last[r] = Some(last[r].map_or(k, |l| l.max(k)));
            let producer_kernel = kernel_of[g.value(root(v)).node.0 as usize];
            if producer_kernel != Some(k) {
                read_outside[r] = true;
            }
        }
    }
    for (_, v) in &g.outputs {
        let r = root(*v).0 as usize;
        last[r] = Some(end);
        read_outside[r] = true;
    }
    let mut allocs: Vec<Alloc> = vec![];
    let assign = |allocs: &mut Vec<Alloc>, what: String, len: usize, from: usize, to: usize| -> usize {
        let live: Vec<(usize, usize)> =
            allocs.iter().filter(|a| a.from <= to && from <= a.to).map(|a| (a.offset, a.len)).collect();
        let offset = first_fit(&live, len.max(1));
        allocs.push(Alloc { what, offset, len, from, to });
        offset
    };
    // The batch and targets are live for the whole program.
    for n in &g.nodes {
        if let Op::Source(s) = &n.op {
            if matches!(s.kind, SourceKind::Data | SourceKind::Target) {
                let v = n.outputs[0];
                let len = g.value(v).numel();
                let offset = assign(&mut allocs, format!("{v} ({})", n.op.name()), len, 0, end);
                locs[v.0 as usize] = Some(Loc { region: Region::Arena, offset, len });
            }
        }
    }
    let mut scratch_locs = vec![vec![]; kernels.len()];
    let mut shared_locs = vec![vec![]; kernels.len()];
    for (k, kernel) in kernels.iter().enumerate() {
        let nodes = kernel.nodes();
        for &i in &nodes {
            let n = &g.nodes[i];
            for &v in &n.outputs {
                let vi = v.0 as usize;
                if locs[vi].is_some() || alias_of[vi].is_some() || !read_outside[vi] && nodes.len() > 1 {
                    continue;
                }
                let len = g.value(v).numel();
                let to = last[vi].unwrap_or(k).max(k);
                let what = format!("{v} ({} {})", n.op.name(), n.origin.tag);
                let offset = assign(&mut allocs, what, len, k, to);
                locs[vi] = Some(Loc { region: Region::Arena, offset, len });
            }
        }
        let mut at = 0;
        for &len in &kernel.work.scratch {
            scratch_locs[k].push(Loc { region: Region::Scratch, offset: at, len });
            at = (at + len).div_ceil(ALIGN) * ALIGN;
        }
        for (s, &len) in kernel.work.shared.iter().enumerate() {
            let offset = assign(&mut allocs, format!("shared {s} of kernel {k}"), len, k, k);
            shared_locs[k].push(Loc { region: Region::Arena, offset, len });
        }
    }
    let resolved: Vec<Option<Loc>> = (0..nv).map(|v| locs[root(ValueId(v as u32)).0 as usize]).collect();
    for (v, l) in resolved.iter().enumerate() {
        if l.is_none() && read_outside[root(ValueId(v as u32)).0 as usize] {
            return err(format!("value %{v} is read outside its kernel but was not placed"));
        }
    }
    let main = allocs.iter().map(|a| a.offset + a.len).max().unwrap_or(0).div_ceil(ALIGN) * ALIGN;
    let per_thread = kernels
        .iter()
        .map(|k| k.work.scratch.iter().map(|l| l.div_ceil(ALIGN) * ALIGN).sum::<usize>())
        .max()
        .unwrap_or(0);
    let plan = ArenaPlan {
        scratch_start: main,
        scratch_per_thread: per_thread,
        threads,
        locs: resolved,
        scratch: scratch_locs,
        shared: shared_locs,
        allocs,
        size: main + per_thread * threads,
    };
    verify(g, &plan)?;
    Ok(plan)
}

/// Check a plan independently of how it was made: live allocations never overlap, every
/// value fits its buffer, and every in-place state update is elementwise on its own slot.
pub fn verify(g: &Graph, plan: &ArenaPlan) -> CgResult<()> {
    for (i, a) in plan.allocs.iter().enumerate() {
        if a.offset % ALIGN != 0 || a.offset + a.len > plan.scratch_start {
            return err(format!("allocation {} at {}+{} is misaligned or outside the arena", a.what, a.offset, a.len));
        }
        for b in &plan.allocs[i + 1..] {
            let live_together = a.from <= b.to && b.from <= a.to;
            let overlap = a.offset < b.offset + b.len && b.offset < a.offset + a.len;
            if live_together && overlap && a.len > 0 && b.len > 0 {
                return err(format!("{} and {} are live together and overlap", a.what, b.what));
            }
        }
    }
    for (v, info) in g.values.iter().enumerate() {
        if let Some(l) = plan.locs[v] {
            if l.len != info.numel() {
                return err(format!("%{v} has {} elements but its buffer has {}", info.numel(), l.len));
            }
        }
    }
    for (role, v) in &g.outputs {
        if !matches!(role, OutputRole::Param(_) | OutputRole::State(_)) {
            continue;
        }
        let node = g.producer(*v);
        let in_place = matches!(node.op, Op::RunningUpdate(_) | Op::SgdUpdate(_) | Op::AdamUpdate(_));
        let reads_own = node.inputs.iter().any(|&i| plan.locs[i.0 as usize] == plan.locs[v.0 as usize]);
        if !in_place || !reads_own {
            return err(format!(
                "output {role} is updated in place by `{}`, which is not an elementwise update of it",
                node.op.name()
            ));
        }
    }
    Ok(())
}
