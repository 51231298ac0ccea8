//! The kernel explorer's page (`percept inspect --emit html`, `percept bench --html`):
//! valid HTML5 for every example, self-contained, one `data-kernel` name per kernel of
//! `--emit plan --json`, a pinned structure; and (ignored here, run by `.ci/run`, which
//! installs Chromium) the page's own self-test in a real headless browser.

use html5ever::tendril::TendrilSink;
use html5ever::{parse_document, ParseOpts};
use markup5ever_rcdom::{Handle, NodeData, RcDom};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn percept(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percept")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn ok(o: Output, what: &str) -> String {
    assert_eq!(o.status.code(), Some(0), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    files
}

fn has_loss(file: &Path) -> bool {
    std::fs::read_to_string(file).unwrap().lines().any(|l| l.trim_start().starts_with("loss"))
}

/// The kernel names `--emit plan --json` prints for these options, in order.
fn plan_names(file: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["inspect", file, "--emit", "plan", "--json"];
    args.extend(extra);
    let v: serde_json::Value = serde_json::from_str(&ok(percept(&args), file)).unwrap();
    v["kernels"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_string()).collect()
}

fn parse(html: &str) -> RcDom {
    let opts = ParseOpts {
        tokenizer: html5ever::tokenizer::TokenizerOpts { exact_errors: true, ..Default::default() },
        tree_builder: html5ever::tree_builder::TreeBuilderOpts { exact_errors: true, ..Default::default() },
    };
    parse_document(RcDom::default(), opts).from_utf8().read_from(&mut html.as_bytes()).unwrap()
}

fn attr(h: &Handle, name: &str) -> Option<String> {
    match &h.data {
        NodeData::Element { attrs, .. } => {
            attrs.borrow().iter().find(|a| &*a.name.local == name).map(|a| a.value.to_string())
        }
        _ => None,
    }
}

/// Every element, depth first (template contents included).
fn walk(h: &Handle, f: &mut dyn FnMut(&Handle)) {
    f(h);
    if let NodeData::Element { template_contents, .. } = &h.data {
        if let Some(t) = template_contents.borrow().as_ref() {
            walk(t, f);
        }
    }
    for c in h.children.borrow().iter() {
        walk(c, f);
    }
}

fn values_of(dom: &RcDom, name: &str) -> Vec<String> {
    let mut out = vec![];
    walk(&dom.document, &mut |h| out.extend(attr(h, name)));
    out
}

/// The page for every example (its training step, or its evaluation program when it has no
/// loss, fused and unfused): an HTML5 parser reports no error, no `src`/`href` leaves the
/// file, it is at most 5 MB, and its `data-kernel` names are exactly the plan's kernels.
#[test]
fn every_example_page_is_valid_self_contained_html_naming_every_kernel() {
    let dir = std::env::temp_dir().join(format!("percept-explorer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in examples() {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let model = file.to_str().unwrap();
        let mode: &[&str] = if has_loss(&file) { &[] } else { &["--mode", "eval"] };
        for unfused in [false, true] {
            let mut extra: Vec<&str> = mode.to_vec();
            if unfused {
                extra.push("--unfused");
            }
            let out = dir.join(format!("{name}{}.html", if unfused { "-unfused" } else { "" }));
            let mut args = vec!["inspect", model, "--emit", "html", "--out", out.to_str().unwrap()];
            args.extend(&extra);
            ok(percept(&args), model);
            let html = std::fs::read_to_string(&out).unwrap();
            assert!(html.len() <= 5 << 20, "{name}: {} bytes", html.len());
            let dom = parse(&html);
            assert_eq!(dom.errors.borrow().len(), 0, "{name}: {:?}", dom.errors.borrow());
            assert_eq!(dom.quirks_mode.get(), html5ever::tree_builder::QuirksMode::NoQuirks, "{name}");
            for link in values_of(&dom, "src").into_iter().chain(values_of(&dom, "href")) {
                let l = link.to_ascii_lowercase();
                assert!(!(l.starts_with("http:") || l.starts_with("https:") || l.starts_with("//")), "{name}: {link}");
            }
            let plan = plan_names(model, &extra);
            let kernels: BTreeSet<String> = values_of(&dom, "data-kernel").into_iter().collect();
            assert_eq!(kernels, plan.iter().cloned().collect::<BTreeSet<_>>(), "{name} unfused={unfused}");
            let rows: Vec<String> = {
                let mut rows = vec![];
                walk(&dom.document, &mut |h| {
                    if let NodeData::Element { name: n, .. } = &h.data {
                        if &*n.local == "tr" {
                            rows.extend(attr(h, "data-kernel"));
                        }
                    }
                });
                rows
            };
            assert_eq!(rows, plan, "{name}: one table row per kernel, in plan order");
            let code: Vec<String> = values_of(&dom, "data-code");
            assert_eq!(code, plan, "{name}: each kernel's code");
            assert!(!values_of(&dom, "data-unfused-kernel").is_empty(), "{name}: the unfused grouping");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The page's structure, not its bytes: elements with their ids and classes (and which
/// kernel or column they stand for), runs of identical siblings counted; text and
/// coordinates left out. Inside an SVG only tags and classes count (a node's kernel is
/// already in the table).
fn outline(h: &Handle, depth: usize, in_svg: bool) -> String {
    let mut out = String::new();
    let children: Vec<Handle> =
        h.children.borrow().iter().filter(|c| matches!(c.data, NodeData::Element { .. })).cloned().collect();
    let line = |c: &Handle| {
        let NodeData::Element { name, .. } = &c.data else { unreachable!() };
        let tag = name.local.to_string();
        let svg = in_svg || tag == "svg";
        let mut s = tag.clone();
        if let Some(id) = attr(c, "id") {
            s += &format!("#{id}");
        }
        if let Some(cl) = attr(c, "class") {
            s += &format!(".{}", cl.replace(' ', "."));
        }
        if !svg {
            for a in ["data-kernel", "data-code", "data-key"] {
                if let Some(v) = attr(c, a) {
                    s += &format!("[{a}={v}]");
                }
            }
        }
        let inner = if matches!(tag.as_str(), "pre" | "style" | "script" | "td") {
            String::new()
        } else {
            outline(c, depth + 1, svg)
        };
        (s, inner)
    };
    let lines: Vec<(String, String)> = children.iter().map(line).collect();
    let mut i = 0;
    while i < lines.len() {
        let mut n = 1;
        while i + n < lines.len() && lines[i + n] == lines[i] {
            n += 1;
        }
        let count = if n > 1 { format!(" ×{n}") } else { String::new() };
        out += &format!("{}{}{count}\n{}", "  ".repeat(depth), lines[i].0, lines[i].1);
        i += n;
    }
    out
}

#[test]
fn page_structure_of_the_xor_model() {
    let html = ok(percept(&["inspect", "examples/xor.nn", "--emit", "html", "--batch", "4"]), "xor");
    let dom = parse(&html);
    let text = outline(&dom.document, 0, false);
    expect_test::expect_file!["snapshots/explorer_xor_structure.txt"].assert_eq(&text);
}

/// The page's self-test in headless Chromium (`#selftest`: it records script errors,
/// clicks the last table row and an op in the graph, sorts by time, toggles the unfused
/// grouping, and writes a JSON report into the page), for lenet5 and cnn_bn with
/// timings from `percept bench` and for cnn_bn as `inspect` writes it.
#[test]
#[ignore = "needs Chromium; .ci/run installs it and runs this test"]
fn the_page_works_in_a_real_browser() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("no Chromium on PATH");
    let dir = std::env::temp_dir().join(format!("percept-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut pages = vec![];
    for model in ["lenet5", "cnn_bn"] {
        let out = dir.join(format!("{model}-bench.html"));
        let file = format!("examples/{model}.nn");
        ok(percept(&["bench", &file, "--batch", "16", "--seconds", "0.2", "--html", out.to_str().unwrap()]), model);
        pages.push((model, out, true, plan_names(&file, &["--batch", "16"])));
    }
    let out = dir.join("cnn_bn.html");
    ok(percept(&["inspect", "examples/cnn_bn.nn", "--emit", "html", "--out", out.to_str().unwrap()]), "cnn_bn");
    pages.push(("cnn_bn", out, false, plan_names("examples/cnn_bn.nn", &[])));

    for (model, page, timed, plan) in pages {
        let url = format!("file://{}#selftest", page.display());
        let o = Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", &url])
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&o.stdout);
        // The script unhides the report when it has written it.
        let tag = "<pre id=\"selftest-result\">";
        let start = dom.find(tag).unwrap_or_else(|| panic!("{model}: the self-test did not run:\n{dom}"));
        let json = &dom[start + tag.len()..];
        let json = &json[..json.find("</pre>").unwrap()];
        let json = json.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
        let r: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{model}: {e}: {json}"));
        let strings = |k: &str| -> Vec<String> {
            r[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        assert_eq!(strings("errors"), Vec::<String>::new(), "{model}: the browser logged errors");
        let kernels: BTreeSet<String> = strings("kernels").into_iter().collect();
        assert_eq!(kernels, plan.iter().cloned().collect::<BTreeSet<_>>(), "{model}: data-kernel names");
        assert_eq!(strings("rows"), plan, "{model}: table rows");
        assert_eq!(r["shown"], r["clicked"], "{model}: the clicked kernel is shown");
        assert_eq!(r["clif_shown"], true, "{model}: {r}");
        assert_eq!(r["asm_shown"], true, "{model}: {r}");
        assert_eq!(r["graph_click"], true, "{model}: {r}");
        assert_eq!(r["sorted_by"], if timed { "us" } else { "flops" }, "{model}");
        assert_eq!(r["sorted"], true, "{model}: {r}");
        let values: Vec<f64> = r["sorted_values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(values.first() > values.last(), "{model}: nothing to sort: {values:?}");
        assert_eq!(r["toggle"], true, "{model}: {r}");
        assert!(r["unfused"].as_u64().unwrap() > 0, "{model}: {r}");
        eprintln!(
            "{model} (timed: {timed}): self-test passed, {:.0} ms after navigation start",
            r["load_ms"].as_f64().unwrap()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a user can get wrong is one line and exit 1; `--out` works for every stage.
#[test]
fn explorer_errors_are_one_line_and_out_writes_any_stage() {
    let one_line = |o: Output, what: &str| {
        assert_eq!(o.status.code(), Some(1), "{what}");
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(e.trim_end().lines().count(), 1, "{what}: {e}");
        e
    };
    let dir = std::env::temp_dir().join(format!("percept-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lossless = dir.join("features.nn");
    std::fs::write(&lossless, "model features { input [1, 8, 8] conv2d(4, kernel: 3) relu flatten dense(5) }").unwrap();
    let e = one_line(percept(&["inspect", lossless.to_str().unwrap(), "--emit", "html"]), "no loss");
    assert!(e.contains("--mode eval"), "{e}");
    // Its evaluation program is a valid page naming its kernels.
    let html = ok(percept(&["inspect", lossless.to_str().unwrap(), "--emit", "html", "--mode", "eval"]), "eval");
    let dom = parse(&html);
    assert_eq!(dom.errors.borrow().len(), 0, "{:?}", dom.errors.borrow());
    let kernels: BTreeSet<String> = values_of(&dom, "data-kernel").into_iter().collect();
    let plan = plan_names(lossless.to_str().unwrap(), &["--mode", "eval"]);
    assert_eq!(kernels, plan.into_iter().collect::<BTreeSet<_>>());
    let e =
        one_line(percept(&["bench", "examples/xor.nn", "--backend", "interp", "--html", "/tmp/never.html"]), "interp");
    assert!(e.contains("--backend jit"), "{e}");
    let e =
        one_line(percept(&["inspect", "examples/xor.nn", "--emit", "html", "--out", "Cargo.toml/x.html"]), "bad out");
    assert!(e.contains("Cargo.toml"), "{e}");
    let loops = dir.join("loops.txt");
    ok(percept(&["inspect", "examples/xor.nn", "--emit", "loops", "--out", loops.to_str().unwrap()]), "loops");
    let stdout = ok(percept(&["inspect", "examples/xor.nn", "--emit", "loops"]), "loops");
    assert!(stdout.contains("loops fwd.dense_0+tanh_1 pass 0"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&loops).unwrap(), stdout);
    let _ = std::fs::remove_dir_all(&dir);
}
