//! The page's HTML (maud): a header with the model and totals, the graph, the kernel
//! table, the detail panel a click fills (loop nest, CLIF, assembly side by side), the
//! memory plan and, with timings, the time bars and the roofline. Each kernel's code sits
//! in a `<template>` (inert until shown, so a large model's page stays light to open).

use super::charts::{self, group, phase_class};
use super::{Explorer, Kernel};
use maud::{html, PreEscaped, DOCTYPE};

const CSS: &str = include_str!("explorer.css");
const JS: &str = include_str!("explorer.js");

/// Errors are recorded from the first moment (the self-test reports them).
const ERROR_TRAP: &str =
    "window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message||e))});";

/// The page, as one self-contained HTML document.
pub fn render(ex: &Explorer) -> String {
    let kernels: Vec<&Kernel> = ex.kernels().collect();
    let arena: usize = ex.programs.iter().map(|p| p.arena_bytes).max().unwrap_or(0);
    let unfused_arena: usize = ex.unfused.iter().map(|u| u.arena_bytes).max().unwrap_or(0);
    let unfused_kernels: usize = ex.unfused.iter().map(|u| u.names.len()).sum();
    let timed = ex.timings.as_ref();
    let peak = timed.and_then(|t| t.roofline.peak_gflops);
    let total_us: f64 = timed.map_or(0.0, |t| t.us.iter().sum());
    let plan = if ex.fused { "fused" } else { "unfused" };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Percept explorer: " (ex.model) }
                script { (PreEscaped(ERROR_TRAP)) }
                style { (PreEscaped(CSS)) }
            }
            body data-model=(ex.model) data-plan=(plan) data-timed=(if timed.is_some() { "true" } else { "false" }) {
                header {
                    h1 { "Percept explorer: " code { (ex.model) } }
                    p class="facts" {
                        code { (ex.file) } " · batch " (ex.batch) " · " (ex.threads) " thread(s) · micro-kernel "
                        code { (ex.micro) } " · " (kernels.len()) " " (plan) " kernels (" (unfused_kernels) " unfused) · arena "
                        (group(arena)) " bytes (unfused " (group(unfused_arena)) ")"
                        @if let Some(t) = timed {
                            " · " (group(t.samples_per_s as usize)) " samples/s"
                            @if let Some((_, u)) = &t.unfused {
                                " (unfused " (group(*u as usize)) ", " (format!("{:.2}", t.samples_per_s / u)) "×)"
                            }
                        }
                    }
                    nav {
                        a href="#graph" { "graph" } a href="#kernels" { "kernels" } a href="#memory" { "memory" }
                        @if timed.is_some() { a href="#time" { "time" } }
                        label class="toggle" {
                            input type="checkbox" id="show-unfused";
                            " show the unfused grouping"
                        }
                    }
                }
                main {
                    section id="graph" {
                        h2 { "The " (if ex.programs.len() > 1 { "training step" } else { "program" }) " as a graph" }
                        p class="hint" {
                            "Ops in depth order; each box is one " (plan) " kernel. Colours: "
                            span class="sw fwd" { "forward" } " " span class="sw loss" { "loss" } " "
                            span class="sw bwd" { "backward" } " " span class="sw upd" { "update" } " "
                            span class="sw src" { "inputs and state" }
                            ". Hover an op for its IR line and statement; click it for its kernel's code."
                        }
                        @for (pi, p) in ex.programs.iter().enumerate() {
                            h3 { "The " (p.role) " program: " (p.kernels.len()) " kernels" }
                            div class="scroll" { (charts::graph(ex, pi)) }
                        }
                    }
                    section id="kernels" {
                        h2 { "Kernels" }
                        p class="hint" { "Click a column to sort, a row to see its loop nest, CLIF and assembly." }
                        div class="scroll" {
                            table id="kernel-table" {
                                thead { tr {
                                    th data-key="index" data-type="num" { "#" }
                                    th data-key="name" data-type="text" { "kernel" }
                                    th data-key="ops" data-type="text" { "ops" }
                                    th data-key="flops" data-type="num" { "FLOPs" }
                                    th data-key="bytes" data-type="num" { "bytes" }
                                    th data-key="intensity" data-type="num" { "FLOP/B" }
                                    th data-key="arena" data-type="num" { "arena range" }
                                    th data-key="items" data-type="num" { "work items" }
                                    @if timed.is_some() {
                                        th data-key="us" data-type="num" { "µs" }
                                        th data-key="gflops" data-type="num" { "GFLOP/s" }
                                        th data-key="peak" data-type="num" { "of peak" }
                                        th data-key="share" data-type="num" { "share" }
                                    }
                                } }
                                tbody {
                                    @for (i, k) in kernels.iter().enumerate() {
                                        @let us = timed.and_then(|t| t.us.get(i).copied()).unwrap_or(0.0);
                                        @let gf = if us > 0.0 { k.flops as f64 / us / 1e3 } else { 0.0 };
                                        tr class=(phase_class(k.phase)) data-kernel=(k.name) {
                                            td data-v=(i) { (i) }
                                            td data-v=(k.name) { code { (k.name) } br; span class="rule" { (k.rule) } }
                                            td data-v=(k.ops.join(" + ")) { (k.ops.join(" + ")) }
                                            td data-v=(k.flops) { (group(k.flops as usize)) }
                                            td data-v=(k.bytes) { (group(k.bytes as usize)) }
                                            td data-v=(intensity(k)) { (format!("{:.2}", intensity(k))) }
                                            td data-v=(k.arena.map_or(-1.0, |a| a.0 as f64)) {
                                                @if let Some((a, b)) = k.arena { (group(a)) "–" (group(b)) } @else { "state only" }
                                            }
                                            td data-v=(k.passes.first().copied().unwrap_or(0)) {
                                                (k.passes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" then "))
                                                @if let Some(m) = &k.micro { br; span class="rule" { "gemm " (m) } }
                                            }
                                            @if timed.is_some() {
                                                td data-v=(us) { (format!("{us:.1}")) }
                                                td data-v=(gf) { (format!("{gf:.1}")) }
                                                @let frac = peak.map_or(0.0, |p| gf / p);
                                                td data-v=(frac) { @if peak.is_some() { (format!("{:.1}%", 100.0 * frac)) } @else { "–" } }
                                                @let share = us / total_us.max(1e-12);
                                                td data-v=(share) { (format!("{:.1}%", 100.0 * share)) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    section id="detail" hidden {
                        h2 { "Kernel " code id="detail-name" {} }
                        p id="detail-meta" {}
                        div class="cols" {
                            div { h3 { "Loop nest" } pre class="loops" {} }
                            div { h3 { "CLIF" } pre class="clif" {} }
                            div { h3 { "Assembly" } pre class="asm" {} }
                        }
                    }
                    section id="memory" {
                        h2 { "Memory plan" }
                        p class="hint" {
                            "The arena of each program: kernel index across, offset down; each buffer is a rectangle over the kernels it is live for, so reuse shows as rectangles sharing rows. "
                            "The " (plan) " plan needs " (group(arena)) " bytes; the unfused plan " (group(unfused_arena)) "."
                        }
                        @for p in &ex.programs {
                            h3 { "The " (p.role) " program: " (group(p.arena_bytes)) " bytes" }
                            @if p.allocs.is_empty() && p.scratch.1 == 0 {
                                p { "No arena: every value this program touches lives in the state (parameters, gradients, optimizer state)." }
                            } @else {
                                div class="scroll" { (charts::memory(p)) }
                            }
                        }
                    }
                    @if let Some(t) = timed {
                        section id="time" {
                            h2 { "Where the time goes" }
                            p class="hint" {
                                "Measured by " code { "percept bench" } ", µs per training step. The roofs were measured on this machine: FMAs on every thread at once, and reading 256 MiB."
                            }
                            h3 { "Per kernel, " (plan) @if t.unfused.is_some() { " against unfused" } }
                            div class="scroll" { (charts::time_bars(ex, t)) }
                            h3 { "Roofline" }
                            div class="scroll" { (charts::roofline(ex, t)) }
                        }
                    }
                    @for k in &kernels {
                        template data-code=(k.name) {
                            div class="meta" {
                                (k.ops.join(" + ")) " · rule " code { (k.rule) } " · " (k.shapes)
                                @for tag in &k.tags {
                                    @if let Some(s) = ex.statement(tag) {
                                        br; (ex.file) ":" (s.line) ": " code { (s.text) }
                                    }
                                }
                            }
                            pre class="loops" { (k.loops) }
                            pre class="clif" { (k.clif) }
                            pre class="asm" { (k.asm) }
                        }
                    }
                    pre id="selftest-result" hidden {}
                }
                div id="tip" hidden {}
                script { (PreEscaped(JS)) }
            }
        }
    };
    page.into_string()
}

fn intensity(k: &Kernel) -> f64 {
    if k.bytes == 0 {
        0.0
    } else {
        k.flops as f64 / k.bytes as f64
    }
}
