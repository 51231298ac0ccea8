//! The page's inline SVG: the program graph, the arena chart, time bars and the roofline.
//! Every element of a kernel carries `data-kernel` (its name in `--emit plan --json`);
//! the unfused grouping's boxes carry `data-unfused-kernel`.

use super::layout;
use super::{Explorer, Program, Timings};
use maud::{html, Markup};
use percept_compiler::ir::Phase;

/// The CSS class of a phase (colours in explorer.css).
pub fn phase_class(p: Phase) -> &'static str {
    match p {
        Phase::Forward => "fwd",
        Phase::Loss => "loss",
        Phase::Backward => "bwd",
        Phase::Update => "upd",
    }
}

fn f(x: f64) -> String {
    format!("{x:.1}")
}

/// The graph of program `pi`: the page's kernels as boxes around their ops, value edges,
/// and (hidden until the toggle) one box per unfused kernel.
pub fn graph(ex: &Explorer, pi: usize) -> Markup {
    let p = &ex.programs[pi];
    let unfused = ex.unfused.get(pi);
    let mut units: Vec<Vec<usize>> = p.kernels.iter().map(|k| k.nodes.clone()).collect();
    let mut source = vec![false; units.len()];
    let mut unit_kernel: Vec<Option<usize>> = (0..units.len()).map(Some).collect();
    for (i, n) in p.nodes.iter().enumerate() {
        if n.kernel.is_none() {
            units.push(vec![i]);
            source.push(n.source);
            unit_kernel.push(None);
        }
    }
    let placed = layout::layered(p.nodes.len(), &units, &p.edges, &source);
    let tip = |i: usize| {
        let n = &p.nodes[i];
        let mut t = vec![n.text.clone()];
        t.push(format!("phase: {}", phase_class(n.phase)));
        if let Some(k) = n.kernel {
            t.push(format!("kernel: {}", p.kernels[k].name));
        }
        if let Some(u) = unfused.and_then(|u| u.kernel_of.get(i).copied().flatten()) {
            t.push(format!("unfused kernel: {}", unfused.unwrap().names[u]));
        }
        if let Some(s) = ex.statement(&n.tag) {
            t.push(format!("{}:{}: {}", ex.file, s.line, s.text));
        }
        t.join("\n")
    };
    let edge = |a: usize, b: usize| {
        let (ra, rb) = (placed.nodes[a], placed.nodes[b]);
        let (x1, y1, x2, y2) = (ra.center_x(), ra.bottom(), rb.center_x(), rb.y);
        let dy = ((y2 - y1) / 2.0).max(12.0);
        format!("M{} {} C{} {} {} {} {} {}", f(x1), f(y1), f(x1), f(y1 + dy), f(x2), f(y2 - dy), f(x2), f(y2))
    };
    html! {
        svg class="graph" width=(f(placed.width)) height=(f(placed.height))
            viewBox=(format!("0 0 {} {}", f(placed.width), f(placed.height))) role="img"
            aria-label=(format!("the {} program's graph", p.role)) {
            g class="edges" {
                @for &(a, b) in &p.edges {
                    path class=(if p.nodes[a].source { "edge from-source" } else { "edge" }) d=(edge(a, b)) {}
                }
            }
            g class="kboxes" {
                @for (u, r) in placed.units.iter().enumerate() {
                    @if let Some(k) = unit_kernel[u] {
                        g class=(format!("kbox {}", phase_class(p.kernels[k].phase))) data-kernel=(p.kernels[k].name) {
                            rect x=(f(r.x)) y=(f(r.y)) width=(f(r.w)) height=(f(r.h)) rx="6" {}
                            text class="klabel" x=(f(r.x + r.w - 4.0)) y=(f(r.y + 9.0)) { "k" (k) }
                        }
                    }
                }
            }
            @if let Some(u) = unfused {
                g class="uboxes" {
                    @for (i, r) in placed.nodes.iter().enumerate() {
                        @if let Some(k) = u.kernel_of.get(i).copied().flatten() {
                            rect class="ubox" data-unfused-kernel=(u.names[k]) x=(f(r.x - 3.0)) y=(f(r.y - 3.0))
                                width=(f(r.w + 6.0)) height=(f(r.h + 6.0)) rx="5" {}
                        }
                    }
                }
            }
            g class="nodes" {
                @for (i, n) in p.nodes.iter().enumerate() {
                    @let r = placed.nodes[i];
                    @let cls = if n.source { "node src".to_string() } else { format!("node {}", phase_class(n.phase)) };
                    @let uk = unfused.and_then(|u| u.kernel_of.get(i).copied().flatten()).map(|k| unfused.unwrap().names[k].clone());
                    g class=(cls) data-node=(i) data-kernel=[n.kernel.map(|k| p.kernels[k].name.clone())]
                        data-unfused-kernel=[uk] data-tip=(tip(i)) {
                        rect x=(f(r.x)) y=(f(r.y)) width=(f(r.w)) height=(f(r.h)) rx="4" {}
                        @if n.source {
                            text x=(f(r.x + 6.0)) y=(f(r.y + 14.0)) { (short(&n.label, 24)) }
                        } @else {
                            text class="op" x=(f(r.x + 6.0)) y=(f(r.y + 13.0)) { (short(&n.op, 22)) }
                            text class="shape" x=(f(r.x + 6.0)) y=(f(r.y + 25.0)) { (short(&n.shape, 26)) }
                        }
                    }
                }
            }
        }
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Program `p`'s arena: kernel index across, offset down, each allocation a rectangle over
/// the kernels it is live for, and the threads' scratch as a band at the end.
pub fn memory(p: &Program) -> Markup {
    let kernels = p.kernels.len().max(1) as f64;
    let arena = p.arena_bytes.max(1) as f64;
    let (left, top, w, h) = (70.0, 10.0, 820.0, 300.0);
    let x = |k: f64| left + w * k / kernels;
    let y = |b: f64| top + h * b / arena;
    let (scratch_at, per_thread, threads) = p.scratch;
    let ticks = 5;
    html! {
        svg class="memory" width=(f(left + w + 20.0)) height=(f(top + h + 40.0))
            viewBox=(format!("0 0 {} {}", f(left + w + 20.0), f(top + h + 40.0))) role="img"
            aria-label=(format!("the {} program's arena", p.role)) {
            rect class="frame" x=(f(left)) y=(f(top)) width=(f(w)) height=(f(h)) {}
            @for (what, off, len, from, to) in &p.allocs {
                @let phase = p.kernels.get(*from).map_or("src", |k| phase_class(k.phase));
                rect class=(format!("alloc {phase}")) data-alloc-kernel=[p.kernels.get(*from).map(|k| k.name.clone())]
                    x=(f(x(*from as f64))) y=(f(y(*off as f64)))
                    width=(f((x((*to as f64 + 1.0).min(kernels)) - x(*from as f64)).max(1.0)))
                    height=(f((y((*off + *len) as f64) - y(*off as f64)).max(1.0))) {
                    title { (what) " · bytes " (group(*off)) "–" (group(off + len)) " · kernels " (from) "..=" (to) }
                }
            }
            @if per_thread > 0 {
                rect class="scratch" x=(f(left)) y=(f(y(scratch_at as f64))) width=(f(w))
                    height=(f((y(arena) - y(scratch_at as f64)).max(1.0))) {
                    title { "per-thread scratch: " (group(per_thread)) " bytes × " (threads) " thread(s), from " (group(scratch_at)) }
                }
            }
            @for t in 0..=ticks {
                @let b = arena * t as f64 / ticks as f64;
                text class="tick" x=(f(left - 6.0)) y=(f(y(b) + 4.0)) text-anchor="end" { (kib(b)) }
            }
            @for t in 0..=ticks {
                @let k = (kernels * t as f64 / ticks as f64).round();
                text class="tick" x=(f(x(k))) y=(f(top + h + 16.0)) text-anchor="middle" { (k) }
            }
            text class="axis" x=(f(left + w / 2.0)) y=(f(top + h + 34.0)) text-anchor="middle" { "kernel index" }
            text class="axis" x="12" y=(f(top + h / 2.0)) transform=(format!("rotate(-90 12 {})", f(top + h / 2.0)))
                text-anchor="middle" { "arena offset" }
        }
    }
}

pub fn group(n: usize) -> String {
    percept_compiler::text::group_digits(n)
}

fn kib(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// Per kernel of the page's plan, its measured time beside the time of the unfused
/// kernels computing the same nodes.
pub fn time_bars(ex: &Explorer, t: &Timings) -> Markup {
    let rows: Vec<(String, &'static str, f64, Option<f64>)> = {
        let mut rows = vec![];
        let mut at = 0;
        let mut unfused_at = 0;
        for (pi, p) in ex.programs.iter().enumerate() {
            let mut other = vec![0.0; p.kernels.len()];
            if let (Some((us, _)), Some(u)) = (&t.unfused, ex.unfused.get(pi)) {
                for uk in 0..u.names.len() {
                    let time = us.get(unfused_at + uk).copied().unwrap_or(0.0);
                    // The page's kernel computing this unfused kernel's node(s).
                    let node = u.kernel_of.iter().position(|k| *k == Some(uk));
                    if let Some(k) = node.and_then(|n| p.nodes[n].kernel) {
                        other[k] += time;
                    }
                }
                unfused_at += u.names.len();
            }
            for (k, kernel) in p.kernels.iter().enumerate() {
                let us = t.us.get(at + k).copied().unwrap_or(0.0);
                rows.push((kernel.name.clone(), phase_class(kernel.phase), us, t.unfused.as_ref().map(|_| other[k])));
            }
            at += p.kernels.len();
        }
        rows
    };
    let max = rows.iter().map(|r| r.2.max(r.3.unwrap_or(0.0))).fold(1e-9, f64::max);
    let (label_w, bar_w, row_h) = (300.0, 520.0, 18.0);
    let height = row_h * rows.len() as f64 + 30.0;
    html! {
        svg class="bars" width=(f(label_w + bar_w + 110.0)) height=(f(height))
            viewBox=(format!("0 0 {} {}", f(label_w + bar_w + 110.0), f(height))) role="img" aria-label="time per kernel" {
            @for (i, (name, phase, us, other)) in rows.iter().enumerate() {
                @let y = 20.0 + i as f64 * row_h;
                g class=(format!("bar {phase}")) data-kernel=(name) {
                    text class="tick" x=(f(label_w - 6.0)) y=(f(y + 11.0)) text-anchor="end" { (short(name, 44)) }
                    rect class="fused" x=(f(label_w)) y=(f(y + 1.0)) width=(f(bar_w * us / max)) height="7" {
                        title { (name) ": " (format!("{us:.1}")) " µs" }
                    }
                    @if let Some(o) = other {
                        rect class="unfused" x=(f(label_w)) y=(f(y + 8.0)) width=(f(bar_w * o / max)) height="7" {
                            title { "the unfused kernels of the same ops: " (format!("{o:.1}")) " µs" }
                        }
                    }
                    text class="tick" x=(f(label_w + bar_w * us.max(other.unwrap_or(0.0)) / max + 6.0)) y=(f(y + 11.0)) {
                        (format!("{us:.1}")) @if let Some(o) = other { " / " (format!("{o:.1}")) } " µs"
                    }
                }
            }
            text class="legend fused-l" x=(f(label_w)) y="12" { "■ " (if ex.fused { "fused" } else { "unfused" }) }
            @if t.unfused.is_some() {
                text class="legend unfused-l" x=(f(label_w + 80.0)) y="12" { "■ unfused (the same ops)" }
            }
        }
    }
}

/// GFLOP/s against arithmetic intensity (FLOPs per byte moved), log-log, under the
/// measured roofs: the FMA peak and the memory bandwidth's slope.
pub fn roofline(ex: &Explorer, t: &Timings) -> Markup {
    let mut points = vec![];
    let mut at = 0;
    for p in &ex.programs {
        for (k, kernel) in p.kernels.iter().enumerate() {
            let us = t.us.get(at + k).copied().unwrap_or(0.0);
            if us > 0.0 && kernel.flops > 0 && kernel.bytes > 0 {
                let ai = kernel.flops as f64 / kernel.bytes as f64;
                let gf = kernel.flops as f64 / us / 1e3;
                points.push((kernel, ai, gf));
            }
        }
        at += p.kernels.len();
    }
    let roof = t.roofline;
    let peak = roof.peak_gflops.unwrap_or_else(|| points.iter().map(|p| p.2).fold(1.0, f64::max));
    let (x0, x1) = (1.0 / 64.0, 256.0f64);
    let (y0, y1) = (peak / 1e4, peak * 2.0);
    let (left, top, w, h) = (70.0, 14.0, 640.0, 360.0);
    let lx = |v: f64| left + w * (v.clamp(x0, x1).log10() - x0.log10()) / (x1.log10() - x0.log10());
    let ly = |v: f64| top + h - h * (v.clamp(y0, y1).log10() - y0.log10()) / (y1.log10() - y0.log10());
    let ridge = peak / roof.bandwidth_gbs;
    let roof_path = format!(
        "M{} {} L{} {} L{} {}",
        f(lx(x0)),
        f(ly(roof.bandwidth_gbs * x0)),
        f(lx(ridge)),
        f(ly(peak)),
        f(lx(x1)),
        f(ly(peak))
    );
    let decades_x: Vec<f64> = (-2..=2).map(|e| 10f64.powi(e)).collect();
    let decades_y: Vec<f64> = (-4..=3).map(|e| 10f64.powi(e)).filter(|&v| v >= y0 && v <= y1).collect();
    html! {
        svg class="roofline" width=(f(left + w + 30.0)) height=(f(top + h + 44.0))
            viewBox=(format!("0 0 {} {}", f(left + w + 30.0), f(top + h + 44.0))) role="img" aria-label="roofline" {
            rect class="frame" x=(f(left)) y=(f(top)) width=(f(w)) height=(f(h)) {}
            @for v in &decades_x {
                line class="grid" x1=(f(lx(*v))) x2=(f(lx(*v))) y1=(f(top)) y2=(f(top + h)) {}
                text class="tick" x=(f(lx(*v))) y=(f(top + h + 16.0)) text-anchor="middle" { (v) }
            }
            @for v in &decades_y {
                line class="grid" x1=(f(left)) x2=(f(left + w)) y1=(f(ly(*v))) y2=(f(ly(*v))) {}
                text class="tick" x=(f(left - 6.0)) y=(f(ly(*v) + 4.0)) text-anchor="end" { (v) }
            }
            path class="roof" d=(roof_path) {}
            text class="rooflabel" x=(f(lx(x1) - 4.0)) y=(f(ly(peak) - 6.0)) text-anchor="end" {
                @if let Some(p) = roof.peak_gflops { "peak " (format!("{p:.0}")) " GFLOP/s (FMA, " (roof.threads) " thread(s))" }
                @else { "no FMA peak measured" }
            }
            text class="rooflabel" x=(f(lx(x0) + 6.0)) y=(f(ly(roof.bandwidth_gbs * x0) - 6.0)) {
                "memory " (format!("{:.1}", roof.bandwidth_gbs)) " GB/s"
            }
            @for (k, ai, gf) in &points {
                circle class=(format!("pt {}", phase_class(k.phase))) data-kernel=(k.name) cx=(f(lx(*ai))) cy=(f(ly(*gf))) r="4.5" {
                    title { (k.name) ": " (format!("{gf:.1}")) " GFLOP/s at " (format!("{ai:.2}")) " FLOP/byte" }
                }
            }
            text class="axis" x=(f(left + w / 2.0)) y=(f(top + h + 36.0)) text-anchor="middle" {
                "arithmetic intensity (FLOPs per byte read or written)"
            }
            text class="axis" x="14" y=(f(top + h / 2.0)) transform=(format!("rotate(-90 14 {})", f(top + h / 2.0)))
                text-anchor="middle" { "GFLOP/s" }
        }
    }
}
