//! `percept features` and `percept extract`: what they write is what the network computes
//! (checked against the interpreter), pictures have the expected sizes, bad input is a
//! clear error, extracted features reload with their labels.

use percept_compiler::ops::SourceKind;
use percept_compiler::tensor::Tensor;
use percept_runtime::tensorfile::{Data, TensorFile};
use percept_runtime::{Model, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("percept-features-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn percept(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percept")).args(args).output().unwrap()
}

/// Freshly initialized LeNet-5 weights, with MNIST's normalization in their metadata.
fn weights(dir: &Path) -> PathBuf {
    let mut m = Model::from_file(repo("examples/lenet5.nn")).unwrap();
    Trainer::new(TrainConfig::default()).unwrap().init_model(&mut m).unwrap();
    m.data_meta.norm = percept_runtime::data::Norm::uniform(0.1307, 0.3081);
    let p = dir.join("w.safetensors");
    m.save_weights(&p).unwrap();
    p
}

/// A digit from the MNIST test set as a PNG (label 7).
fn digit(dir: &Path) -> PathBuf {
    let test = percept_runtime::data::load(&repo("data/mnist"), &[1, 28, 28]).unwrap().test.unwrap();
    let px: Vec<u8> = test.sample(0).iter().map(|v| (v * 255.0).round() as u8).collect();
    let p = dir.join("seven.png");
    image::GrayImage::from_raw(28, 28, px).unwrap().save(&p).unwrap();
    p
}

#[test]
fn feature_maps_are_the_interpreters_activations_and_pictures_have_their_sizes() {
    let dir = tmpdir("maps");
    let (w, img, out) = (weights(&dir), digit(&dir), dir.join("out"));
    let o = percept(&[
        "features",
        &repo("examples/lenet5.nn"),
        "--weights",
        w.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    // The values drawn are what the interpreter computes on the same input.
    let raw = TensorFile::read(&out.join("activations.safetensors")).unwrap();
    let names: Vec<&str> = raw.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["1", "4", "input"], "conv2d_0 → relu_1 and conv2d_3 → relu_4");
    let x = raw.get("input").unwrap().as_f32().unwrap().to_vec();
    let mut m = Model::from_file(repo("examples/lenet5.nn")).unwrap();
    m.load_weights_file(&w).unwrap();
    let g = percept_compiler::exec::eval_program(&m.spec, 1, false, &[1, 4]).unwrap();
    let feed = |k: &SourceKind| -> Option<Tensor<f64>> {
        let (shape, data) = match k {
            SourceKind::Data => (vec![1, 1, 28, 28], x.clone()),
            SourceKind::Param(n) => (
                m.spec.params().find(|p| &p.name == n)?.shape.clone(),
                m.store.get(percept_compiler::exec::SlotKind::Param, n)?.to_vec(),
            ),
            _ => return None,
        };
        Some(Tensor::new(shape, data.iter().map(|&v| v as f64).collect()))
    };
    let run = percept_compiler::interp::run(&g, &feed, &Default::default(), false).unwrap();
    for name in ["1", "4"] {
        let want = run.output(&g, &percept_compiler::ir::OutputRole::Activation(name.into())).unwrap();
        let got = raw.get(name).unwrap().as_f32().unwrap();
        let scale = want.data.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (a, b) in got.iter().zip(&want.data) {
            assert!((*a as f64 - b).abs() <= 1e-5 * (1.0 + scale), "statement {name}: {a} vs {b}");
        }
    }
    // Sizes: tiles scaled up by whole pixels, 2-pixel gaps.
    let dims = |f: &str| image::image_dimensions(out.join(f)).unwrap();
    assert_eq!(dims("input.png"), (116, 116), "28 px × 4 + gaps");
    assert_eq!(dims("conv2d_0.png"), (92, 62), "6 maps of 28 px: 3 × 2");
    assert_eq!(dims("conv2d_3.png"), (170, 170), "16 maps of 10 px × 4: 4 × 4");
    assert_eq!(dims("filters.png"), (188, 126), "6 filters of 5 px × 12: 3 × 2");
    assert_eq!(dims("overview.png").1, 272);
}

#[test]
fn bad_images_and_unknown_layers_are_clear_errors() {
    let dir = tmpdir("errors");
    let w = weights(&dir);
    let fake = dir.join("fake.png");
    std::fs::write(&fake, b"not an image").unwrap();
    let lenet = repo("examples/lenet5.nn");
    let ws = w.to_str().unwrap();
    for (args, msg) in [
        (
            vec!["features", &lenet, "--weights", ws, "--image", fake.to_str().unwrap(), "--out", "x"],
            "cannot read the image",
        ),
        (
            vec!["features", &lenet, "--weights", ws, "--image", "no/such.png", "--out", "x"],
            "no such image: no/such.png",
        ),
        (
            vec![
                "features",
                &lenet,
                "--weights",
                ws,
                "--image",
                fake.to_str().unwrap(),
                "--out",
                "x",
                "--layers",
                "conv9",
            ],
            "",
        ),
        (
            vec![
                "extract",
                &lenet,
                "--weights",
                ws,
                "--layer",
                "dense",
                "--data",
                &repo("data/mnist"),
                "--out",
                "x.safetensors",
            ],
            "no statement is named `dense`; the statements are: 0 (conv2d_0), 1 (relu_1)",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_percept")).args(&args).current_dir(&dir).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
    let digit = digit(&dir);
    let o = percept(&[
        "features",
        &lenet,
        "--weights",
        ws,
        "--image",
        digit.to_str().unwrap(),
        "--out",
        dir.join("o").to_str().unwrap(),
        "--layers",
        "conv9",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no statement is named `conv9`; the statements are: 0 (conv2d_0)")
    );
}

#[test]
fn extracted_features_have_their_shape_and_labels_and_reload() {
    let dir = tmpdir("extract");
    let w = weights(&dir);
    let out = dir.join("f.safetensors");
    let o = percept(&[
        "extract",
        &repo("examples/lenet5.nn"),
        "--weights",
        w.to_str().unwrap(),
        "--layer",
        "relu_10",
        "--data",
        &repo("data/mnist"),
        "--limit",
        "300",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let f = TensorFile::read(&out).unwrap();
    assert_eq!(f.get("features").unwrap().shape, [300, 84]);
    let test = percept_runtime::data::load(&repo("data/mnist"), &[1, 28, 28]).unwrap().test.unwrap();
    let want: Vec<i64> = (0..300).map(|i| test.label(i).unwrap() as i64).collect();
    assert_eq!(f.get("labels").unwrap().data, Data::I64(want));
    assert_eq!(f.metadata["layer"], "10");
    // The same features through the library's forward pass, batch by batch.
    let mut m = Model::from_file(repo("examples/lenet5.nn")).unwrap();
    m.load_weights_file(&w).unwrap();
    let mut ds = test.subset(&(0..300).collect::<Vec<u32>>(), "t".into());
    ds.apply_norm(&m.data_meta.norm);
    let direct = m.forward(&ds.x[..784], None, &[10]).unwrap().activations.remove(0).1;
    let got = &f.get("features").unwrap().as_f32().unwrap()[..84];
    assert!(direct.iter().zip(got).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + a.abs())));

    let npy = dir.join("f.npy");
    let o = percept(&[
        "extract",
        &repo("examples/lenet5.nn"),
        "--weights",
        w.to_str().unwrap(),
        "--layer",
        "10",
        "--data",
        &repo("data/mnist"),
        "--limit",
        "10",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(percept_runtime::npy::read_npy(&npy).unwrap().0, [10, 84]);
    assert_eq!(percept_runtime::npy::read_npy(&dir.join("f.labels.npy")).unwrap().0, [10]);
}

/// Without `--data` or images, extract runs the bundled MNIST, as train and eval do; a CSV
/// of image features quotes a file name holding a comma or a quote.
#[test]
fn extract_defaults_to_mnist_and_quotes_csv_labels() {
    let dir = tmpdir("extract-csv");
    let w = weights(&dir);
    let csv = dir.join("f.csv");
    let o = percept(&[
        "extract",
        &repo("examples/lenet5.nn"),
        "--weights",
        w.to_str().unwrap(),
        "--layer",
        "dense_11",
        "--limit",
        "3",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 4, "a header and 3 rows:\n{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("7,"), "the first test digit is a 7:\n{text}");
    let odd = dir.join("a, \"b\".png");
    std::fs::copy(digit(&dir), &odd).unwrap();
    let o = percept(&[
        "extract",
        &repo("examples/lenet5.nn"),
        "--weights",
        w.to_str().unwrap(),
        "--layer",
        "dense_11",
        "--out",
        csv.to_str().unwrap(),
        odd.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let row = std::fs::read_to_string(&csv).unwrap().lines().nth(1).unwrap().to_string();
    let quoted = format!("\"{}\"", odd.display().to_string().replace('"', "\"\""));
    assert!(row.starts_with(&format!("{quoted},")), "{row}");
    assert_eq!(row[quoted.len() + 1..].split(',').count(), 10, "{row}");
}
