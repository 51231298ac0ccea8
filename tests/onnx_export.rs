//! `percept export`: ONNX models that `percept import` reads back to the same model and
//! outputs (onnx.checker and onnxruntime check the files in .ci/run, with
//! tests/onnx/check_export.py), and the `--format torch` module's text.

use percept_runtime::tensorfile::TensorFile;
use std::path::{Path, PathBuf};

mod cli;
use cli::{ok, percept, repo};

fn tmpdir(name: &str) -> PathBuf {
    cli::tmpdir("export", name)
}

/// Trained for one step, so no weight is at its initial value.
fn trained(dir: &Path, name: &str) -> String {
    let (w, model, mnist) = (format!("{name}.w.safetensors"), repo(&format!("examples/{name}.nn")), repo("data/mnist"));
    let mut args = vec!["train", &model, "--steps", "1", "--data", &mnist, "--save", &w];
    args.extend(["--checkpoint", "ck.safetensors", "--metrics", "m.jsonl"]);
    if name == "autoencoder" {
        args.extend(["--target", "input"]);
    }
    ok(dir, &args);
    w
}

fn outputs(dir: &Path, model: &str, weights: &str, input: &str) -> Vec<f32> {
    ok(dir, &["run", model, "--weights", weights, "--input", input, "--output", "y.safetensors"]);
    TensorFile::read(&dir.join("y.safetensors")).unwrap().tensors[0].as_f32().unwrap().to_vec()
}

/// Export, import back, run both on the same batch: the same model text (but for the
/// labels and comments the importer adds) and the same outputs.
#[test]
fn exported_models_import_back_to_the_same_outputs() {
    let dir = tmpdir("round");
    // Dense and convolutional layers, batch norm and add, groups, concat and padded
    // pooling, transposed convolutions.
    for name in ["lenet5", "residual", "mobilenet_tiny", "inception_tiny", "autoencoder"] {
        let w = trained(&dir, name);
        let model = repo(&format!("examples/{name}.nn"));
        let onnx = format!("{name}.onnx");
        ok(&dir, &["export", &model, "--weights", &w, "--out", &onnx]);
        ok(&dir, &["import", &onnx, "--out", &format!("{name}_back.nn")]);
        // A batch of 3 inputs, the first training images' size.
        let input = TensorFile {
            tensors: vec![percept_runtime::tensorfile::NamedTensor::f32(
                "input",
                &[3, 1, 28, 28],
                (0..3 * 784).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect(),
            )],
            metadata: Default::default(),
        };
        input.write(&dir.join("x.safetensors")).unwrap();
        let a = outputs(&dir, &model, &w, "x.safetensors");
        let b = outputs(&dir, &format!("{name}_back.nn"), &format!("{name}_back.safetensors"), "x.safetensors");
        assert_eq!(a.len(), b.len(), "{name}");
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() <= 1e-6 + 1e-5 * q.abs(), "{name}: output [{i}] {p} vs re-imported {q}");
        }
    }
}

#[test]
fn the_torch_module_names_its_parts_after_the_statements() {
    let dir = tmpdir("torch");
    ok(&dir, &["export", &repo("examples/residual.nn"), "--format", "torch", "--out", "residual.py"]);
    let py = std::fs::read_to_string(dir.join("residual.py")).unwrap();
    for line in [
        "class Residual(nn.Module):",
        "        self.add_module(\"stem\", nn.Conv2d(1, 16, (3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1, bias=True))",
        "        self.add_module(\"3\", nn.BatchNorm2d(16, eps=1e-5, momentum=0.1))",
        "        v7 = v6 + v0  # add(stem)",
        "        v10 = v9.mean((2, 3))  # global_avgpool",
        "        return v11",
    ] {
        assert!(py.contains(line), "no `{line}` in:\n{py}");
    }
    let o = percept(&dir, &["export", &repo("examples/residual.nn")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--format onnx needs --weights"));
    let o = percept(&dir, &["export", &repo("examples/lenet5.nn"), "--weights", "none.safetensors", "--opset", "9"]);
    assert_eq!(o.status.code(), Some(1));
}
