//! Colour images end to end, on data the tests make: a folder of RGB pictures (of several
//! sizes, with a greyscale and an RGBA one among them) and CIFAR-10 binary files train,
//! evaluate, predict and show features with a [3, H, W] input; the normalization is per
//! channel and recorded in the weights; bad folders and files are one-line errors that
//! name the file.

use std::path::{Path, PathBuf};

mod cli;
use cli::{fails, ok, percept};

fn tmpdir(name: &str) -> PathBuf {
    cli::tmpdir("colour", name)
}

/// A w×h picture of class `class` (0 red, 1 green, 2 blue): that channel bright, the
/// others dark, with a little per-pixel texture from `seed`.
fn picture(class: usize, w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let t = ((x * 7 + y * 13 + seed * 31) % 40) as u8;
        let mut p = [20 + t, 20 + t, 20 + t];
        p[class] = 200 + t / 2;
        image::Rgb(p)
    })
}

/// DIR/train/<class>/*.png and DIR/test/<class>/*.png: 12 and 4 pictures per class, most
/// 16×16, some larger (resized), one greyscale and one RGBA (converted).
fn colour_folder(root: &Path) {
    for (split, count) in [("train", 12), ("test", 4)] {
        for (class, name) in ["red", "green", "blue"].iter().enumerate() {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..count {
                let (w, h) = if i % 4 == 3 { (24, 20) } else { (16, 16) };
                let img = picture(class, w, h, i);
                let path = dir.join(format!("{i:02}.png"));
                match i {
                    5 => image::DynamicImage::ImageRgb8(img).to_rgba8().save(&path).unwrap(),
                    _ => img.save(&path).unwrap(),
                }
            }
        }
    }
    // A greyscale picture in the red class of the training set (it becomes grey RGB).
    image::GrayImage::from_fn(16, 16, |x, _| image::Luma([(x * 10) as u8]))
        .save(root.join("train/red/gray.png"))
        .unwrap();
}

const MODEL: &str = "model colours {
    input [3, 16, 16]
    conv2d(8, kernel: 3, padding: 1)
    relu
    maxpool(2)
    conv2d(8, kernel: 3, padding: 1, groups: 2)
    relu
    global_avgpool
    dense(3)
    loss softmax_cross_entropy
}";

#[test]
fn an_rgb_image_folder_trains_evaluates_predicts_and_shows_features() {
    let dir = tmpdir("folder");
    colour_folder(&dir.join("pictures"));
    std::fs::write(dir.join("colours.nn"), MODEL).unwrap();
    let out = ok(
        &dir,
        &[
            "train",
            "colours.nn",
            "--data",
            "pictures",
            "--epochs",
            "30",
            "--batch",
            "8",
            "--lr",
            "0.05",
            "--save",
            "w.safetensors",
        ],
    );
    assert!(out.contains("on 37 samples"), "{out}");
    // Per-channel normalization, recorded in the weights: three means and deviations.
    let w = percept_runtime::tensorfile::TensorFile::read(&dir.join("w.safetensors")).unwrap();
    let means: Vec<f32> = w.metadata["normalize_mean"].split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(means.len(), 3, "{:?}", w.metadata);
    assert!(w.metadata["normalize_std"].split(',').count() == 3);
    assert_eq!(w.metadata["classes"], r#"["blue","green","red"]"#);

    let eval = percept(&dir, &["eval", "colours.nn", "--weights", "w.safetensors", "--data", "pictures", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!((v["accuracy"].as_f64(), v["samples"].as_u64()), (Some(1.0), Some(12)), "{v}");

    // A new green picture of another size is predicted green.
    picture(1, 30, 22, 99).save(dir.join("new.png")).unwrap();
    let pred = ok(&dir, &["predict", "colours.nn", "--weights", "w.safetensors", "new.png"]);
    assert!(pred.lines().next().unwrap().contains("green"), "{pred}");

    let feat =
        ok(&dir, &["features", "colours.nn", "--weights", "w.safetensors", "--image", "new.png", "--out", "maps"]);
    assert!(dir.join("maps").read_dir().unwrap().count() > 0, "{feat}");
}

#[test]
fn bad_image_folders_are_errors_that_name_the_file() {
    let dir = tmpdir("bad");
    std::fs::write(dir.join("colours.nn"), MODEL).unwrap();
    let empty = dir.join("empty/red");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not a picture").unwrap();
    fails(&dir, &["train", "colours.nn", "--data", "empty"], "has no images");

    colour_folder(&dir.join("broken"));
    std::fs::write(dir.join("broken/train/blue/zz.png"), b"\x89PNG truncated").unwrap();
    fails(&dir, &["train", "colours.nn", "--data", "broken"], "cannot read the image broken/train/blue/zz.png");

    colour_folder(&dir.join("mixed"));
    std::fs::rename(dir.join("mixed/test/blue"), dir.join("mixed/test/purple")).unwrap();
    fails(&dir, &["train", "colours.nn", "--data", "mixed"], "but the training set has [\"blue\", \"green\", \"red\"]");

    colour_folder(&dir.join("good"));
    fails(
        &dir,
        &["train", "colours.nn", "--data", "good", "--normalize", "0.5,0.5,0.5/0.2,0.2"],
        "--normalize takes auto, none, MEAN,STD or per channel",
    );
}

/// CIFAR-10 records: a label byte, then the red, green and blue 32×32 planes; class c's
/// images are bright in channel c % 3.
fn cifar_batch(n: usize, offset: usize) -> Vec<u8> {
    let mut v = vec![];
    for i in 0..n {
        let label = (i + offset) % 3;
        v.push(label as u8);
        for ch in 0..3 {
            v.extend((0..1024).map(|p| if ch == label { 180 + (p % 50) as u8 } else { 30 + (p % 20) as u8 }));
        }
    }
    v
}

#[test]
fn cifar_binary_files_train_a_colour_model_with_no_conversion() {
    let dir = tmpdir("cifar");
    let data = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("data_batch_1.bin"), cifar_batch(40, 0)).unwrap();
    std::fs::write(data.join("data_batch_2.bin"), cifar_batch(20, 1)).unwrap();
    std::fs::write(data.join("test_batch.bin"), cifar_batch(30, 2)).unwrap();
    std::fs::write(
        dir.join("cifar.nn"),
        "model cifar { input [3, 32, 32] conv2d(4, kernel: 5, stride: 2) relu global_avgpool dense(10) loss softmax_cross_entropy }",
    )
    .unwrap();
    let out = ok(
        &dir,
        &["train", "cifar.nn", "--data", ".", "--epochs", "15", "--batch", "10", "--save", "w.safetensors", "--json"],
    );
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(summary["test_accuracy"], 1.0, "{out}");
    let w = percept_runtime::tensorfile::TensorFile::read(&dir.join("w.safetensors")).unwrap();
    assert!(w.metadata["classes"].contains("airplane") && w.metadata["classes"].contains("truck"));

    // A model of another input size is told what the data holds; a truncated file is an error.
    std::fs::write(dir.join("small.nn"), MODEL).unwrap();
    fails(&dir, &["train", "small.nn", "--data", "."], "has samples of shape [3, 32, 32]");
    let mut cut = cifar_batch(2, 0);
    cut.truncate(5000);
    std::fs::write(data.join("data_batch_2.bin"), cut).unwrap();
    fails(
        &dir,
        &["train", "cifar.nn", "--data", "."],
        "data_batch_2.bin: 5000 bytes is not a whole number of CIFAR-10 records",
    );
}
