//! The training command line end to end, as a user runs it: train, eval, predict, run,
//! Ctrl-C and resume, and a test per error path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("percept-cli-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn percept(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percept")).args(args).current_dir(dir).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn train_mlp_then_eval_predict_and_run() {
    let dir = tmpdir("e2e");
    let mnist = repo("data/mnist");
    let o = percept(
        &dir,
        &[
            "train",
            &repo("examples/mlp.nn"),
            "--data",
            &mnist,
            "--steps",
            "300",
            "--epochs",
            "1",
            "--json",
            "--plot",
            "curves.png",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines = json_lines(&o);
    let summary = lines.last().unwrap();
    let acc = summary["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.90, "test accuracy after 300 steps: {acc}");
    assert_eq!(summary["steps"], 300);
    assert_eq!(lines[0]["epoch"], 1, "one JSON object per epoch, then the summary");
    let weights = dir.join("runs/mlp/weights.safetensors");
    assert!(weights.is_file() && dir.join("runs/mlp/checkpoint.safetensors").is_file());
    let plot = image::open(dir.join("curves.png")).unwrap();
    assert_eq!((plot.width(), plot.height()), (960, 400), "the loss and accuracy curves");
    // The metrics file records the run's configuration (every default) and each epoch.
    let metrics = std::fs::read_to_string(dir.join("runs/mlp/metrics.jsonl")).unwrap();
    let header: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(header["run"]["config"]["batch"], 64);
    assert_eq!(header["run"]["config"]["lr"], 0.05);
    assert_eq!(metrics.lines().count(), 2);

    let w = weights.to_str().unwrap();
    let o = percept(&dir, &["eval", &repo("examples/mlp.nn"), "--weights", w, "--data", &mnist, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let e: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(e["accuracy"].as_f64().unwrap(), acc, "eval agrees with training's test evaluation");
    assert_eq!(e["confusion"].as_array().unwrap().len(), 10);
    assert!(e["loss"].as_f64().unwrap() < 0.5);

    // A digit from the test set as a PNG.
    let png = dir.join("seven.png");
    let test = percept_runtime::data::load(&mnist, &[1, 28, 28]).unwrap().test.unwrap();
    let px: Vec<u8> = test.sample(0).iter().map(|v| (v * 255.0).round() as u8).collect();
    image::GrayImage::from_raw(28, 28, px).unwrap().save(&png).unwrap();
    assert_eq!(test.label(0), Some(7));
    let o = percept(&dir, &["predict", &repo("examples/mlp.nn"), "--weights", w, png.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let p: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(p[0]["top"][0]["class"], "7");
    assert!(p[0]["top"][0]["probability"].as_f64().unwrap() > 0.5);
    assert_eq!(p[0]["top"].as_array().unwrap().len(), 3);

    // `run` on a .npy input, the output of the first layer.
    let x: Vec<f32> = (0..2 * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    std::fs::write(dir.join("x.npy"), percept_runtime::npy::npy_bytes(&[2, 784], &x)).unwrap();
    let o = percept(
        &dir,
        &[
            "run",
            &repo("examples/mlp.nn"),
            "--weights",
            w,
            "--input",
            "x.npy",
            "--output",
            "y.safetensors",
            "--layer",
            "0",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let y = percept_runtime::tensorfile::TensorFile::read(&dir.join("y.safetensors")).unwrap();
    assert_eq!(y.tensors[0].name, "0");
    assert_eq!(y.tensors[0].shape, [2, 256]);
    let o = percept(&dir, &["run", &repo("examples/mlp.nn"), "--weights", w, "--input", "x.npy", "--output", "y.npy"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (shape, _) = percept_runtime::npy::read_npy(&dir.join("y.npy")).unwrap();
    assert_eq!(shape, [2, 10]);
}

fn fails(dir: &Path, args: &[&str], message: &str) {
    let o = percept(dir, args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}:\n{err}");
    assert!(err.contains(message), "{args:?}: expected `{message}` in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn error_paths() {
    let dir = tmpdir("errors");
    let mlp = repo("examples/mlp.nn");
    fails(&dir, &["train", &mlp, "--data", "no/such/dir"], "the data directory `no/such/dir` does not exist");

    // A truncated IDX file.
    let bad = dir.join("bad-mnist");
    std::fs::create_dir_all(&bad).unwrap();
    let mut idx = vec![0u8, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    idx.extend([0u8; 100]);
    std::fs::write(bad.join("train-images-idx3-ubyte"), &idx).unwrap();
    fails(
        &dir,
        &["train", &mlp, "--data", bad.to_str().unwrap()],
        "truncated: dimensions [10, 28, 28] need 7840 bytes of data, found 100",
    );
    // A truncated gzip stream.
    let gz = std::fs::read(repo("data/mnist/train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(bad.join("train-images-idx3-ubyte.gz"), &gz[..5000]).unwrap();
    std::fs::remove_file(bad.join("train-images-idx3-ubyte")).unwrap();
    fails(&dir, &["train", &mlp, "--data", bad.to_str().unwrap()], "the gzip stream is corrupt or truncated");

    // A loss whose targets do not fit the data.
    let bce = dir.join("bce.nn");
    std::fs::write(&bce, "model b { input [784] dense(1) sigmoid loss binary_cross_entropy }").unwrap();
    fails(
        &dir,
        &["train", bce.to_str().unwrap(), "--data", &repo("data/mnist")],
        "10 classes, which do not fit binary_cross_entropy",
    );
    let noloss = dir.join("noloss.nn");
    std::fs::write(&noloss, "model n { input [784] dense(10) }").unwrap();
    fails(&dir, &["train", noloss.to_str().unwrap(), "--data", &repo("data/mnist")], "has no loss, so it cannot train");

    // NaN from a huge learning rate; no checkpoint was written before it.
    fails(&dir, &["train", &mlp, "--data", &repo("data/mnist"), "--lr", "1e12", "--steps", "100"], "the loss became");

    // Bad weights: another model's, a missing file, not a safetensors file.
    let lenet = repo("examples/lenet5.nn");
    let w = dir.join("mlp.safetensors");
    let o =
        percept(&dir, &["train", &mlp, "--data", &repo("data/mnist"), "--steps", "1", "--save", w.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    fails(
        &dir,
        &["eval", &lenet, "--weights", w.to_str().unwrap(), "--data", &repo("data/mnist")],
        "does not fit the model `lenet5`",
    );
    fails(&dir, &["eval", &mlp, "--weights", "missing.safetensors"], "cannot read missing.safetensors");
    std::fs::write(dir.join("junk.safetensors"), b"not really").unwrap();
    fails(&dir, &["eval", &mlp, "--weights", "junk.safetensors"], "is not a valid safetensors file");
    fails(
        &dir,
        &["train", &lenet, "--data", &repo("data/mnist"), "--resume", w.to_str().unwrap()],
        "is not a Percept checkpoint",
    );

    // Images: missing, and not an image.
    fails(&dir, &["predict", &mlp, "--weights", w.to_str().unwrap(), "nothere.png"], "no such image: nothere.png");
    std::fs::write(dir.join("fake.png"), b"text").unwrap();
    fails(&dir, &["predict", &mlp, "--weights", w.to_str().unwrap(), "fake.png"], "cannot read the image fake.png");
    // Bad option values.
    fails(&dir, &["train", &mlp, "--data", &repo("data/mnist"), "--schedule", "linear"], "unknown schedule `linear`");
    fails(
        &dir,
        &["train", &mlp, "--data", &repo("data/mnist"), "--freeze", "stem"],
        "--freeze stem: no statement with parameters is named `stem`",
    );
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_continues() {
    let dir = tmpdir("interrupt");
    let mnist = repo("data/mnist");
    // LeNet-5 takes several seconds an epoch: long enough to interrupt in the middle.
    let mut child = Command::new(env!("CARGO_BIN_EXE_percept"))
        .args(["train", &repo("examples/lenet5.nn"), "--data", &mnist, "--epochs", "1"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started, then let it run some steps.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("training lenet5") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            panic!("training did not start:\n{log}");
        }
        log += &line;
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{log}{rest}");
    assert!(text(&out.stdout).contains("resume with: percept train"), "{}", text(&out.stdout));
    let ck = dir.join("runs/lenet5/checkpoint.safetensors");
    let file = percept_runtime::tensorfile::TensorFile::read(&ck).unwrap();
    let pos: serde_json::Value = serde_json::from_str(&file.metadata["position"]).unwrap();
    let step = pos["step"].as_u64().unwrap();
    assert!(step > 0 && pos["sample"].as_u64().unwrap() == step * 64, "{pos}");
    let steps = (step + 3).to_string();
    let o = percept(
        &dir,
        &[
            "train",
            &repo("examples/lenet5.nn"),
            "--data",
            &mnist,
            "--resume",
            ck.to_str().unwrap(),
            "--steps",
            &steps,
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(&format!("resuming from {} at epoch 1, sample {}", ck.display(), step * 64)));
    assert_eq!(json_lines(&o).last().unwrap()["steps"], step + 3);
}
