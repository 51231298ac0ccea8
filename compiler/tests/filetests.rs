//! File tests, Cranelift-style: each file in `filetests/` names one pass, holds a graph in
//! the IR's text form, and the pass's expected output after a `----` line.
//!
//! ```text
//! test fusion
//! # what the file pins, as comments
//! graph g train batch=2 {
//!   ...
//! }
//! ----
//! (the expected output)
//! ```
//!
//! Passes: `autodiff` (a forward graph → the training graph), `fusion` (→ kernels, with
//! the rule that made each), `plan` (→ kernels and the memory plan), `loops` (→ every
//! kernel's loop nests). GEMMs use the portable Cranelift tile and one thread, so the
//! outputs do not depend on the host. `PERCEPT_BLESS=1 cargo test -p percept-compiler
//! --test filetests` rewrites the expected outputs.

use percept_compiler::autodiff::{differentiate, GradOptions};
use percept_compiler::codegen::{fuse, lower_program, micro, CodegenOptions, MicroChoice};
use percept_compiler::exec::StateLayout;
use percept_compiler::ir::{parse::parse, Graph};
use std::path::Path;

const SEPARATOR: &str = "----";

fn options(fuse: bool) -> CodegenOptions {
    CodegenOptions { micro: MicroChoice::Cranelift, fuse, ..CodegenOptions::default() }
}

fn run(pass: &str, g: &Graph) -> Result<String, String> {
    let tile = micro::cranelift::tile();
    let layout = StateLayout::from_graph(g);
    let lowered = |fuse: bool| lower_program(g, &layout, options(fuse), &tile).map_err(|e| e.to_string());
    Ok(match pass {
        "autodiff" => differentiate(g, &GradOptions::default()).map_err(|e| e.to_string())?.to_string(),
        "fusion" => fuse::kernels_text(g, &fuse::kernels(g, true, &tile, 1)),
        "fusion-off" => fuse::kernels_text(g, &fuse::kernels(g, false, &tile, 1)),
        "plan" => {
            let l = lowered(true)?;
            fuse::kernels_text(g, &l.kernels) + &l.plan.text()
        }
        "loops" => lowered(true)?.nests.iter().flatten().map(|n| n.to_string()).collect::<Vec<_>>().join("\n"),
        other => return Err(format!("unknown pass `{other}` (autodiff, fusion, fusion-off, plan, loops)")),
    })
}

/// (pass, the text before the separator, the graph text, the expected output).
fn split(text: &str) -> Result<(String, String, String, String), String> {
    let (input, expected) = match text.split_once(&format!("\n{SEPARATOR}\n")) {
        Some((i, e)) => (i, e.to_string()),
        None => (text.trim_end_matches(&format!("\n{SEPARATOR}\n")), String::new()),
    };
    let mut lines = input.lines();
    let first = lines.next().unwrap_or_default();
    let pass = first.strip_prefix("test ").ok_or("the first line must be `test PASS`")?.trim().to_string();
    let graph: Vec<&str> = lines.skip_while(|l| !l.starts_with("graph ")).collect();
    if graph.is_empty() {
        return Err("no `graph` in the file".into());
    }
    Ok((pass, input.to_string(), graph.join("\n") + "\n", expected))
}

#[test]
fn filetests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let bless = std::env::var_os("PERCEPT_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures = vec![];
    let mut passes = std::collections::BTreeMap::<String, usize>::new();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "test")) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let (pass, input, graph, expected) = split(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let g = parse(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual = run(&pass, &g).unwrap_or_else(|e| panic!("{name}: {e}"));
        *passes.entry(pass).or_default() += 1;
        if actual == expected {
            continue;
        }
        if bless {
            std::fs::write(path, format!("{input}\n{SEPARATOR}\n{actual}")).unwrap();
        } else {
            failures.push(format!("{name}: the output differs\n--- expected\n{expected}\n--- actual\n{actual}"));
        }
    }
    assert!(failures.is_empty(), "{}\n(PERCEPT_BLESS=1 to accept)", failures.join("\n"));
    assert!(files.len() >= 12, "{} file tests", files.len());
    for pass in ["autodiff", "fusion", "plan", "loops"] {
        assert!(passes.contains_key(pass), "no file tests the {pass} pass: {passes:?}");
    }
}

/// Every fusion rule is pinned by some file test.
#[test]
fn every_fusion_rule_has_a_file_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let all: String =
        std::fs::read_dir(dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    for rule in fuse::RULES {
        assert!(all.contains(&format!("[{}]", rule.name)), "no file test shows a kernel made by `{}`", rule.name);
    }
}
