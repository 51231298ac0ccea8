//! A small layered (Sugiyama-style) layout for the program graph, drawn top to bottom.
//!
//! The units laid out are the page's kernels (each a box holding its ops stacked in
//! order) and the nodes no kernel computes (graph sources, aliasing reshapes). Steps:
//! 1. layers: the longest path from the top over the units' value edges; graph sources
//!    (data, parameters, state) sit in the layer above their first reader instead of all
//!    at the top, so a parameter read only by the backward pass is drawn next to it;
//! 2. order within a layer: four sweeps of the barycenter heuristic (each unit moves to
//!    the mean position of its neighbours in the layers above, then below);
//! 3. coordinates: each unit centred under the mean of its predecessors, pushed right
//!    just enough not to overlap its left neighbour; sources then centred over their
//!    readers the same way.
//!
//! Good enough for the chains and diamonds of vision networks; a general crossing
//! minimizer would cost more than it gains here.

/// Node and box sizes, in SVG pixels.
pub const NODE_W: f64 = 150.0;
pub const NODE_H: f64 = 30.0;
pub const SOURCE_H: f64 = 20.0;
pub const PAD: f64 = 7.0;
const STACK_GAP: f64 = 5.0;
const COL_GAP: f64 = 26.0;
const ROW_GAP: f64 = 34.0;
const MARGIN: f64 = 12.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn center_x(&self) -> f64 {
        self.x + self.w / 2.0
    }
    pub fn bottom(&self) -> f64 {
        self.y + self.h
    }
}

/// Where everything goes.
#[derive(Clone, Debug)]
pub struct Placed {
    pub nodes: Vec<Rect>,
    pub units: Vec<Rect>,
    pub width: f64,
    pub height: f64,
}

/// Lay out `units` (each a list of node indices, in order; every node in exactly one),
/// with value edges between nodes; `source[u]` marks units that are graph sources.
pub fn layered(n_nodes: usize, units: &[Vec<usize>], edges: &[(usize, usize)], source: &[bool]) -> Placed {
    let nu = units.len();
    let mut unit_of = vec![0; n_nodes];
    for (u, ns) in units.iter().enumerate() {
        for &n in ns {
            unit_of[n] = u;
        }
    }
    let mut preds = vec![vec![]; nu];
    let mut succs = vec![vec![]; nu];
    for &(a, b) in edges {
        let (ua, ub) = (unit_of[a], unit_of[b]);
        if ua != ub && !preds[ub].contains(&ua) {
            preds[ub].push(ua);
            succs[ua].push(ub);
        }
    }

    // 1. Layers: longest paths, in a topological order of the units (Kahn's).
    let mut layer = vec![1usize; nu];
    let mut waiting: Vec<usize> = (0..nu).map(|u| preds[u].len()).collect();
    let mut ready: std::collections::VecDeque<usize> = (0..nu).filter(|&u| waiting[u] == 0).collect();
    while let Some(u) = ready.pop_front() {
        if !source[u] {
            layer[u] = preds[u].iter().filter(|&&p| !source[p]).map(|&p| layer[p] + 1).max().unwrap_or(1);
        }
        for &s in &succs[u] {
            waiting[s] -= 1;
            if waiting[s] == 0 {
                ready.push_back(s);
            }
        }
    }
    for u in 0..nu {
        if source[u] {
            layer[u] = succs[u].iter().map(|&s| layer[s]).min().map_or(0, |l| l - 1);
        }
    }
    let layers = layer.iter().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![vec![]; layers];
    for u in 0..nu {
        rows[layer[u]].push(u);
    }

    // 2. Order within each layer.
    let mut pos = vec![0.0f64; nu];
    let set_pos = |rows: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for row in rows {
            for (i, &u) in row.iter().enumerate() {
                pos[u] = i as f64;
            }
        }
    };
    set_pos(&rows, &mut pos);
    for sweep in 0..8 {
        let down = sweep % 2 == 0;
        for r in 0..layers {
            let r = if down { r } else { layers - 1 - r };
            let key = |u: usize| {
                let ns = if down { &preds[u] } else { &succs[u] };
                if ns.is_empty() {
                    pos[u]
                } else {
                    ns.iter().map(|&n| pos[n]).sum::<f64>() / ns.len() as f64
                }
            };
            let mut keyed: Vec<(f64, usize)> = rows[r].iter().map(|&u| (key(u), u)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows[r] = keyed.into_iter().map(|(_, u)| u).collect();
            for (i, &u) in rows[r].iter().enumerate() {
                pos[u] = i as f64;
            }
        }
    }

    // 3. Coordinates.
    let height_of = |u: usize| {
        if source[u] {
            SOURCE_H * units[u].len() as f64 + STACK_GAP * (units[u].len() as f64 - 1.0)
        } else {
            2.0 * PAD + NODE_H * units[u].len() as f64 + STACK_GAP * (units[u].len() as f64 - 1.0)
        }
    };
    let width_of = |u: usize| if source[u] { NODE_W } else { NODE_W + 2.0 * PAD };
    let mut rect = vec![Rect::default(); nu];
    let mut y = MARGIN;
    for row in &rows {
        let h = row.iter().map(|&u| height_of(u)).fold(0.0, f64::max);
        for &u in row {
            // Sources stand just above their readers; kernels hang from the row's top.
            let top = if source[u] { y + h - height_of(u) } else { y };
            rect[u] = Rect { x: 0.0, y: top, w: width_of(u), h: height_of(u) };
        }
        y += h + if row.is_empty() { 0.0 } else { ROW_GAP };
    }
    let place_row = |row: &[usize], rect: &mut Vec<Rect>, wanted: &dyn Fn(usize, &Vec<Rect>) -> Option<f64>| {
        let mut next = f64::NEG_INFINITY;
        let mut fallback = 0.0;
        for &u in row {
            let centre = wanted(u, rect).unwrap_or(fallback + width_of(u) / 2.0);
            let x = (centre - width_of(u) / 2.0).max(next);
            rect[u].x = x;
            next = x + width_of(u) + COL_GAP;
            fallback = next;
        }
    };
    let mean = |ns: &[usize], rect: &Vec<Rect>| {
        (!ns.is_empty()).then(|| ns.iter().map(|&n| rect[n].center_x()).sum::<f64>() / ns.len() as f64)
    };
    for row in &rows {
        let kernels: Vec<usize> = row.iter().copied().filter(|&u| !source[u]).collect();
        place_row(&kernels, &mut rect, &|u, rect| mean(&preds[u], rect));
    }
    for row in &rows {
        // Each source over its readers, then the row's kernels keep their places and
        // sources are pushed clear of them and of each other.
        let mut all: Vec<usize> = row.clone();
        all.sort_by(|&a, &b| {
            let ka = if source[a] { mean(&succs[a], &rect).unwrap_or(rect[a].x) } else { rect[a].center_x() };
            let kb = if source[b] { mean(&succs[b], &rect).unwrap_or(rect[b].x) } else { rect[b].center_x() };
            ka.total_cmp(&kb)
        });
        if all.iter().any(|&u| source[u]) {
            let fixed: Vec<(usize, f64)> =
                all.iter().filter(|&&u| !source[u]).map(|&u| (u, rect[u].center_x())).collect();
            place_row(&all, &mut rect, &|u, rect| {
                if source[u] {
                    mean(&succs[u], rect)
                } else {
                    fixed.iter().find(|f| f.0 == u).map(|f| f.1)
                }
            });
        }
    }
    let min_x = rect.iter().map(|r| r.x).fold(f64::INFINITY, f64::min);
    let shift = if min_x.is_finite() { MARGIN - min_x } else { 0.0 };
    for r in &mut rect {
        r.x += shift;
    }

    let mut nodes = vec![Rect::default(); n_nodes];
    for (u, ns) in units.iter().enumerate() {
        let r = rect[u];
        let (inset, h) = if source[u] { (0.0, SOURCE_H) } else { (PAD, NODE_H) };
        for (i, &n) in ns.iter().enumerate() {
            nodes[n] = Rect { x: r.x + inset, y: r.y + inset + i as f64 * (h + STACK_GAP), w: NODE_W, h };
        }
    }
    let width = rect.iter().map(|r| r.x + r.w).fold(0.0, f64::max) + MARGIN;
    Placed { nodes, units: rect, width, height: y.max(MARGIN) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: &Rect, b: &Rect) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    /// A diamond under two sources: no two units overlap, every edge goes down, and the
    /// nodes of a unit sit inside its box.
    #[test]
    fn units_do_not_overlap_and_edges_go_down() {
        // sources 0, 1; kernel A = [2, 3]; B = [4]; C = [5]; D = [6] reads A, B, C.
        let units = vec![vec![0], vec![1], vec![2, 3], vec![4], vec![5], vec![6]];
        let source = [true, true, false, false, false, false];
        let edges = [(0, 2), (2, 3), (1, 4), (3, 5), (3, 6), (4, 6), (5, 6), (1, 6)];
        let p = layered(7, &units, &edges, &source);
        for i in 0..units.len() {
            for j in i + 1..units.len() {
                assert!(!overlap(&p.units[i], &p.units[j]), "units {i} and {j} overlap: {:?}", p.units);
            }
        }
        for &(a, b) in &edges {
            assert!(p.nodes[a].bottom() <= p.nodes[b].y + 1e-9, "edge {a}->{b} goes up");
        }
        for (u, ns) in units.iter().enumerate() {
            for &n in ns {
                let (r, b) = (p.nodes[n], p.units[u]);
                assert!(r.x >= b.x && r.y >= b.y && r.x + r.w <= b.x + b.w && r.bottom() <= b.bottom() + 1e-9);
            }
        }
        assert!(p.width > 0.0 && p.height > p.units[5].bottom());
    }
}
