//! `percept import` on ONNX files PyTorch exported (tests/onnx/make_fixtures.py made them,
//! with onnxruntime's outputs): every fixture imports, checks and `percept run` gives
//! onnxruntime's outputs; the exporters' patterns become Percept's layers whatever the
//! exporter and its constant folding; imported models train and export again; unsupported
//! ops, truncated or foreign files and missing external data are one-line errors with
//! exit 1 that write nothing. (Importing then training three steps = PyTorch's three steps:
//! tests/golden.rs.)

mod cli;

use cli::{fails, ok, repo, tmpdir};
use percept_runtime::tensorfile::TensorFile;
use std::path::Path;

fn dir(name: &str) -> std::path::PathBuf {
    tmpdir("onnx-import", name)
}

/// Import `name`, check it, run it on the fixture's input: onnxruntime's outputs. The text.
fn imports_and_runs_like_onnxruntime(name: &str) -> String {
    // Tests run in parallel and several import the same fixture.
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = dir(&format!("{name}-{}", RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let onnx = repo(&format!("tests/onnx/{name}.onnx"));
    ok(&dir, &["import", &onnx, "--out", "m.nn"]);
    let text = std::fs::read_to_string(dir.join("m.nn")).unwrap();
    assert!(text.starts_with(&format!("# Imported by `percept import` from {onnx}")), "{text}");
    ok(&dir, &["check", "m.nn"]);
    let io = repo(&format!("tests/onnx/{name}.io.safetensors"));
    ok(&dir, &["run", "m.nn", "--weights", "m.safetensors", "--input", &io, "--output", "out.safetensors"]);
    let got = TensorFile::read(&dir.join("out.safetensors")).unwrap();
    let want = TensorFile::read(Path::new(&io)).unwrap();
    let (got, want) = (got.get("output").unwrap(), want.get("output").unwrap());
    assert_eq!(got.as_f32().unwrap().len(), want.as_f32().unwrap().len(), "{name}: {:?} {:?}", got.shape, want.shape);
    for (i, (a, b)) in got.as_f32().unwrap().iter().zip(want.as_f32().unwrap()).enumerate() {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}: output [{i}] = {a}, onnxruntime {b}\n{text}");
    }
    text
}

/// The statements after the input (without the comment, the model name and the input).
fn body(text: &str) -> Vec<&str> {
    text.lines().skip(3).collect()
}

#[test]
fn every_fixture_runs_like_onnxruntime() {
    let mut names: Vec<String> = std::fs::read_dir(repo("tests/onnx"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".io.safetensors").map(String::from))
        .collect();
    names.sort();
    // Every example of examples/ (as its PyTorch twin), the patterns, the golden modules.
    for example in std::fs::read_dir(repo("examples")).unwrap() {
        let file = example.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = file.strip_suffix(".nn") {
            assert!(names.contains(&format!("ex_{stem}")), "no fixture of examples/{file}");
        }
    }
    assert!(names.len() >= 20, "{names:?}");
    for name in &names {
        imports_and_runs_like_onnxruntime(name);
    }
}

#[test]
fn lenet5_from_both_exporters() {
    let text = imports_and_runs_like_onnxruntime("lenet5");
    assert!(text.contains("    conv2d(6, kernel: 5, padding: 2)\n") && text.contains("    dense(10)\n"), "{text}");
    // The dynamo exporter at opset 18: a fixed batch, the weights in an external file.
    let dynamo = imports_and_runs_like_onnxruntime("lenet5_dynamo");
    assert_eq!(body(&text), body(&dynamo));
    // The twin of examples/lenet5.nn comes back as the example (without its loss).
    let example = std::fs::read_to_string(repo("examples/lenet5.nn")).unwrap();
    let example: Vec<&str> = example.lines().filter(|l| !l.starts_with('#') && !l.contains("loss")).skip(2).collect();
    assert!(dynamo.contains("    input x: [1, 28, 28]\n"), "{dynamo}");
    assert_eq!(body(&imports_and_runs_like_onnxruntime("ex_lenet5")), example);
}

#[test]
fn branches_become_from_add_and_concat() {
    let text = imports_and_runs_like_onnxruntime("branches");
    for line in [
        "    t1: leaky_relu(slope: 0.01)\n",
        // Labelled after PyTorch's modules (`short.weight`), so the weights keep their names.
        "    short: conv2d(8, kernel: 1, stride: 2, from: t1)\n",
        "    add(main)\n",
        "    side: conv2d(4, kernel: 3, padding: 2, dilation: 2, groups: 4, from: t5)\n",
        "    t8: avgpool(3, stride: 1, padding: 1, count_include_pad: false)\n",
        "    concat(t8, from: t6)\n",
        "    up: conv_transpose2d(6, kernel: 2, stride: 2)\n",
        "    softmax\n",
    ] {
        assert!(text.contains(line), "no `{}` in:\n{text}", line.trim());
    }
    // --loss: the final softmax becomes the loss, so the model trains.
    let dir = dir("loss");
    ok(&dir, &["import", &repo("tests/onnx/branches.onnx"), "--out", "b.nn", "--loss"]);
    let with_loss = std::fs::read_to_string(dir.join("b.nn")).unwrap();
    assert!(with_loss.ends_with("    head: dense(5)\n    loss softmax_cross_entropy\n}\n"), "{with_loss}");
    let names: Vec<String> =
        TensorFile::read(&dir.join("b.safetensors")).unwrap().tensors.into_iter().map(|t| t.name).collect();
    for name in ["main.weight", "short.weight", "short.bias", "side.weight", "up.bias", "head.weight", "head.bias"] {
        assert!(names.contains(&name.to_string()), "no {name} in {names:?}");
    }
    assert!(ok(&dir, &["check", "b.nn"]).contains("loss: softmax_cross_entropy"));
    // Class scores take the loss as they are; an image or an activation does not.
    ok(&dir, &["import", &repo("tests/onnx/lenet5.onnx"), "--out", "l.nn", "--loss"]);
    let lenet = std::fs::read_to_string(dir.join("l.nn")).unwrap();
    assert!(lenet.ends_with("    dense(10)\n    loss softmax_cross_entropy\n}\n"), "{lenet}");
    fails(&dir, &["import", &repo("tests/onnx/ex_xor.onnx"), "--loss"], "ends in `sigmoid`, not in class scores");
    fails(&dir, &["import", &repo("tests/onnx/ex_autoencoder.onnx"), "--loss"], "ends in `conv_transpose2d`");
}

#[test]
fn exporter_patterns_become_percept_layers() {
    let text = imports_and_runs_like_onnxruntime("patterns");
    let want = [
        // F.pad(x, (1, 1, 1, 1)) then a convolution: its padding.
        "    c1: conv2d(4, kernel: 3, padding: 1)",
        "    c2: conv2d(4, kernel: 3, padding: 1, bias: false)",
        "    add(c1)",
        // Batch norm the exporter could not fold; PyTorch's momentum 0.1 (0.9 in ONNX).
        "    bn: batchnorm(eps: 1e-5, momentum: 0.1)",
        "    relu",
        // Resize, nearest (asymmetric, floor).
        "    upsample(2)",
        // A zero Pad before an average: counted in the divisor.
        "    avgpool(3, stride: 2, padding: 1)",
        // Resize, linear with half-pixel coordinates.
        "    t7: upsample(2, mode: bilinear)",
        // ReduceMean and ReduceMax over axes 2, 3 (keepdims 0).
        "    t8: global_avgpool",
        "    t9: global_maxpool(from: t7)",
        "    concat(t9, from: t8)",
        // x @ w.t() + b: MatMul + Add.
        "    dense(6)",
        // torch.maximum of two linears; Linear + .view(N, 3, 2) + amax(2).
        "    maxout(5, pieces: 2)",
        "    mo: maxout(3, pieces: 2)",
        "    bn1: batchnorm(eps: 1e-5, momentum: 0.1)",
        "    head: dense(4)",
        "    softmax",
        "}",
    ];
    assert_eq!(body(&text), want, "{text}");
    // Without constant folding the weight transposes, casts and pads arithmetic are in the
    // graph; the dynamo exporter writes opset 18's axes and pads as inputs: the same model.
    assert_eq!(body(&imports_and_runs_like_onnxruntime("patterns_nofold")), want);
    assert_eq!(body(&imports_and_runs_like_onnxruntime("patterns_dynamo")), want);
    // And at the ends of the supported opsets: 11 (axes as attributes, Pad-11, Resize-11)
    // and 21.
    assert_eq!(body(&imports_and_runs_like_onnxruntime("patterns_opset11")), want);
    assert_eq!(body(&imports_and_runs_like_onnxruntime("patterns_opset21")), want);
    // A final log_softmax is only imported as the loss.
    let dir = dir("log");
    let log = repo("tests/onnx/patterns_log.onnx");
    fails(&dir, &["import", &log], "a LogSoftmax is imported only at the output with --loss");
    ok(&dir, &["import", &log, "--out", "p.nn", "--loss"]);
    let text = std::fs::read_to_string(dir.join("p.nn")).unwrap();
    assert!(text.ends_with("    head: dense(4)\n    loss softmax_cross_entropy\n}\n"), "{text}");
}

/// LeNet-5 and a residual network from PyTorch: import, check, run (above), train from the
/// imported weights, export again, and the export imports back to the trained model.
#[test]
fn imported_models_train_and_export_again() {
    for name in ["lenet5", "ex_resnet8"] {
        let dir = dir(&format!("train-{name}"));
        ok(&dir, &["import", &repo(&format!("tests/onnx/{name}.onnx")), "--out", "m.nn", "--loss"]);
        let mnist = repo("data/mnist");
        let weights = "trained.safetensors";
        let args = ["--init", "m.safetensors", "--data", &mnist, "--steps", "3", "--batch", "16", "--save", weights];
        ok(&dir, &[&["train", "m.nn"][..], &args].concat());
        ok(&dir, &["export", "m.nn", "--weights", weights, "--out", "again.onnx"]);
        ok(&dir, &["import", "again.onnx", "--out", "again.nn", "--loss"]);
        let (first, again) = (
            std::fs::read_to_string(dir.join("m.nn")).unwrap(),
            std::fs::read_to_string(dir.join("again.nn")).unwrap(),
        );
        assert_eq!(first.lines().count(), again.lines().count(), "{first}\n{again}");
        let (w1, w2) =
            (TensorFile::read(&dir.join(weights)).unwrap(), TensorFile::read(&dir.join("again.safetensors")).unwrap());
        let trainable = |f: &TensorFile| -> Vec<Vec<f32>> {
            f.tensors.iter().filter_map(|t| t.as_f32().map(<[f32]>::to_vec)).collect()
        };
        assert_eq!(trainable(&w1), trainable(&w2), "{name}: the exported weights are the trained ones");
        assert_ne!(
            trainable(&w1),
            trainable(&TensorFile::read(&dir.join("m.safetensors")).unwrap()),
            "{name}: training changed the weights"
        );
    }
}

#[test]
fn what_cannot_be_imported_is_refused_before_anything_is_written() {
    let dir = dir("refused");
    fails(
        &dir,
        &["import", &repo("tests/onnx/unsupported.onnx"), "--out", "u.nn"],
        "(opset 17) uses ops Percept cannot import: Div (node `/Div`), Erf (node `/Erf`), Mul (node `/Mul`)",
    );
    let onnx = std::fs::read(repo("tests/onnx/lenet5.onnx")).unwrap();
    std::fs::write(dir.join("cut.onnx"), &onnx[..onnx.len() / 3]).unwrap();
    fails(&dir, &["import", "cut.onnx"], "cut.onnx is not an ONNX model (or is truncated)");
    std::fs::write(dir.join("text.onnx"), "model m { input [4] dense(2) }").unwrap();
    fails(&dir, &["import", "text.onnx"], "text.onnx is not an ONNX model");
    fails(&dir, &["import", "missing.onnx"], "cannot read missing.onnx");
    // External data that is not beside the model.
    std::fs::copy(repo("tests/onnx/lenet5_dynamo.onnx"), dir.join("alone.onnx")).unwrap();
    fails(
        &dir,
        &["import", "alone.onnx"],
        "the initializer `0.weight` is in lenet5_dynamo.onnx.data, which cannot be read",
    );
    // Initializers of the wrong shape: a count that does not fit the dimensions, and a
    // transposed weight that no longer fits its bias.
    {
        use percept::onnx::proto::ModelProto;
        use prost::Message;
        let original = ModelProto::decode(&std::fs::read(repo("tests/onnx/branches.onnx")).unwrap()[..]).unwrap();
        for (dims, file, message) in [
            (vec![5, 7], "count.onnx", "the tensor `head.weight` holds 30 values for dimensions [5, 7]"),
            (vec![6, 5], "transposed.onnx", "the bias has shape [5]; only a per-output bias [6] is a dense layer's"),
        ] {
            let mut model = original.clone();
            let graph = model.graph.as_mut().unwrap();
            graph.initializer.iter_mut().find(|t| t.name() == "head.weight").unwrap().dims = dims;
            std::fs::write(dir.join(file), model.encode_to_vec()).unwrap();
            fails(&dir, &["import", file], message);
        }
    }
    let written: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".nn") || n.ends_with(".safetensors"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

/// Models near real ones — attributes, initializer shapes, inputs and nodes changed at
/// random in the exporters' files — are imported or refused, never a panic (the byte-level
/// fuzz target is `fuzz/fuzz_targets/onnx.rs`).
#[test]
fn mutated_models_are_imported_or_refused_without_a_panic() {
    use percept::onnx::proto::ModelProto;
    use proptest::prelude::*;
    use prost::Message;
    let models: Vec<ModelProto> = ["branches", "patterns_nofold", "ex_residual", "ex_activations"]
        .iter()
        .map(|m| ModelProto::decode(&std::fs::read(repo(&format!("tests/onnx/{m}.onnx"))).unwrap()[..]).unwrap())
        .collect();
    let mutation = (0..models.len(), 0..6u8, any::<u16>(), any::<u16>(), prop::collection::vec(-3i64..9, 0..6));
    let config = ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |((m, kind, a, b, ints) in mutation)| {
        let mut model = models[m].clone();
        let graph = model.graph.as_mut().unwrap();
        let node = a as usize % graph.node.len();
        match kind {
            // An attribute's integers, or its single integer.
            0 | 1 => {
                let attrs = &mut graph.node[node].attribute;
                if !attrs.is_empty() {
                    let which = b as usize % attrs.len();
                    let at = &mut attrs[which];
                    if kind == 0 { at.ints = ints } else { at.i = ints.first().copied() }
                }
            }
            // An initializer's dimensions (its data unchanged).
            2 => {
                let n = graph.initializer.len();
                if n > 0 {
                    graph.initializer[b as usize % n].dims = ints;
                }
            }
            // A node dropped, or two nodes' order swapped.
            3 => {
                graph.node.remove(node);
            }
            4 => {
                let other = b as usize % graph.node.len();
                graph.node.swap(node, other);
            }
            // An input renamed to another value of the graph.
            _ => {
                let names: Vec<String> = graph.node.iter().flat_map(|n| n.output.clone()).collect();
                let inputs = &mut graph.node[node].input;
                if !inputs.is_empty() && !names.is_empty() {
                    let i = b as usize % inputs.len();
                    inputs[i] = names[(a as usize / 7) % names.len()].clone();
                }
            }
        }
        percept::onnx::fuzz(&model.encode_to_vec());
    });
}
