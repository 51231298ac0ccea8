//! `percept import` on ONNX files PyTorch exported (tests/onnx/make_fixtures.py made them,
//! with onnxruntime's outputs): the imported model checks and `percept run` gives
//! onnxruntime's outputs; unsupported ops, truncated or foreign files and missing external
//! data are one-line errors with exit 1 that write nothing.

use percept_runtime::tensorfile::TensorFile;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("percept-onnx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn percept(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percept")).current_dir(dir).args(args).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = percept(dir, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{args:?}:\n{err}");
    String::from_utf8_lossy(&o.stdout).into_owned() + &err
}

fn fails(dir: &Path, args: &[&str], message: &str) {
    let o = percept(dir, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{args:?}:\n{err}");
    assert!(err.contains(message), "{args:?}: expected `{message}` in:\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Import `name`, check it, run it on the fixture's input: onnxruntime's outputs.
fn imports_and_runs_like_onnxruntime(name: &str) -> String {
    let dir = tmpdir(name);
    let onnx = repo(&format!("tests/onnx/{name}.onnx"));
    ok(&dir, &["import", onnx.to_str().unwrap(), "--out", "m.nn"]);
    let text = std::fs::read_to_string(dir.join("m.nn")).unwrap();
    assert!(text.starts_with(&format!("# Imported by `percept import` from {}", onnx.display())), "{text}");
    ok(&dir, &["check", "m.nn"]);
    let io = repo(&format!("tests/onnx/{name}.io.safetensors"));
    ok(
        &dir,
        &["run", "m.nn", "--weights", "m.safetensors", "--input", io.to_str().unwrap(), "--output", "out.safetensors"],
    );
    let got = TensorFile::read(&dir.join("out.safetensors")).unwrap();
    let want = TensorFile::read(&io).unwrap();
    let (got, want) = (got.get("output").unwrap(), want.get("output").unwrap());
    assert_eq!(got.shape, want.shape);
    for (i, (a, b)) in got.as_f32().unwrap().iter().zip(want.as_f32().unwrap()).enumerate() {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}: output [{i}] = {a}, onnxruntime {b}");
    }
    text
}

#[test]
fn lenet5_from_both_exporters() {
    let text = imports_and_runs_like_onnxruntime("lenet5");
    assert!(text.contains("    conv2d(6, kernel: 5, padding: 2)\n") && text.contains("    dense(10)\n"), "{text}");
    // The dynamo exporter at opset 18: a fixed batch, the weights in an external file.
    let dynamo = imports_and_runs_like_onnxruntime("lenet5_dynamo");
    assert_eq!(text.lines().skip(2).collect::<Vec<_>>(), dynamo.lines().skip(2).collect::<Vec<_>>());
}

#[test]
fn branches_become_from_add_and_concat() {
    let text = imports_and_runs_like_onnxruntime("branches");
    for line in [
        "    t1: leaky_relu(slope: 0.01)\n",
        "    conv2d(8, kernel: 1, stride: 2, from: t1)\n",
        "    add(t2)\n",
        "    conv2d(4, kernel: 3, padding: 2, dilation: 2, groups: 4, from: t5)\n",
        "    t8: avgpool(3, stride: 1, padding: 1, count_include_pad: false)\n",
        "    concat(t8, from: t6)\n",
        "    conv_transpose2d(6, kernel: 2, stride: 2)\n",
        "    softmax\n",
    ] {
        assert!(text.contains(line), "no `{}` in:\n{text}", line.trim());
    }
    // --loss: the final softmax becomes the loss, so the model trains.
    let dir = tmpdir("loss");
    ok(&dir, &["import", repo("tests/onnx/branches.onnx").to_str().unwrap(), "--out", "b.nn", "--loss"]);
    let with_loss = std::fs::read_to_string(dir.join("b.nn")).unwrap();
    assert!(with_loss.ends_with("    dense(5)\n    loss softmax_cross_entropy\n}\n"), "{with_loss}");
    assert!(ok(&dir, &["check", "b.nn"]).contains("loss: softmax_cross_entropy"));
    fails(&dir, &["import", repo("tests/onnx/lenet5.onnx").to_str().unwrap(), "--loss"], "does not end in a softmax");
}

#[test]
fn what_cannot_be_imported_is_refused_before_anything_is_written() {
    let dir = tmpdir("refused");
    fails(
        &dir,
        &["import", repo("tests/onnx/unsupported.onnx").to_str().unwrap(), "--out", "u.nn"],
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
    let written: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".nn") || n.ends_with(".safetensors"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}
