//! The training command line end to end, as a user runs it: train, eval, predict, run,
//! Ctrl-C and resume, and a test per error path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod cli;
use cli::{fails, percept, repo, text};

fn tmpdir(name: &str) -> PathBuf {
    cli::tmpdir("cli-train", name)
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

    // A checkpoint whose metadata lacks the configuration (hand-edited, or another tool's).
    let ck = dir.join("noconfig.safetensors");
    let o = percept(
        &dir,
        &["train", &mlp, "--data", &repo("data/mnist"), "--steps", "2", "--checkpoint", ck.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let mut file = percept_runtime::tensorfile::TensorFile::read(&ck).unwrap();
    file.metadata.remove("config");
    file.write(&ck).unwrap();
    fails(
        &dir,
        &["train", &mlp, "--data", &repo("data/mnist"), "--resume", ck.to_str().unwrap()],
        "the checkpoint has no training configuration",
    );
    file.metadata.insert("config".into(), "{\"epochs\": 3}".into());
    file.write(&ck).unwrap();
    fails(
        &dir,
        &["train", &mlp, "--data", &repo("data/mnist"), "--resume", ck.to_str().unwrap()],
        "bad training configuration in the checkpoint",
    );
    // Weights whose metadata is wrong.
    let mut weights = percept_runtime::tensorfile::TensorFile::read(&w).unwrap();
    weights.metadata.insert("normalize_std".into(), "zero".into());
    let badmeta = dir.join("badmeta.safetensors");
    weights.write(&badmeta).unwrap();
    fails(&dir, &["eval", &mlp, "--weights", badmeta.to_str().unwrap()], "the metadata `normalize_std` is `zero`");

    // A model too large for this machine: refused before allocating, with the largest batch.
    let huge = dir.join("huge.nn");
    std::fs::write(&huge, "model huge { input [3, 4096, 4096] conv2d(64, kernel: 3, padding: 1) relu global_avgpool dense(10) loss softmax_cross_entropy }").unwrap();
    fails(&dir, &["bench", huge.to_str().unwrap(), "--batch", "64"], "needs about");
    let o = percept(&dir, &["bench", huge.to_str().unwrap(), "--batch", "64"]);
    let err = text(&o.stderr);
    assert!(err.contains("but this process may use"), "{err}");
    assert!(err.contains("the largest batch that fits") || err.contains("not even a batch of 1 fits"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "one line: {err}");

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

    // Augmentation: a bad list is a usage error naming the known ones; a flat data set
    // cannot be augmented; a resumed run keeps the checkpoint's augmentation.
    let o = percept(&dir, &["train", &mlp, "--augment", "shift:2,blur"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr)
        .contains("unknown augmentation `blur`; the known ones are shift:PIXELS, crop:PAD, flip, rotate:DEGREES"));
    fails(&dir, &["train", &repo("examples/xor.nn"), "--data", "xor", "--augment", "flip"], "--augment changes images");
    let ck = dir.join("augmented.safetensors");
    let metrics = dir.join("augmented.jsonl");
    let o = percept(
        &dir,
        &[
            "train",
            &mlp,
            "--data",
            &repo("data/mnist"),
            "--steps",
            "2",
            "--augment",
            "crop:3,flip",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("augmented with crop:3,flip"));
    let header: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&metrics).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(header["run"]["config"]["augment"], "crop:3,flip");
    fails(
        &dir,
        &["train", &mlp, "--data", &repo("data/mnist"), "--resume", ck.to_str().unwrap(), "--augment", "shift:1"],
        "was trained with --augment `crop:3,flip`; a resumed run keeps it",
    );
}

/// Start `percept train ARGS` in `dir` and wait until it has started training; returns the
/// child and what it printed to stderr so far.
fn start_training(
    dir: &Path,
    args: &[&str],
) -> (std::process::Child, std::io::BufReader<std::process::ChildStderr>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_percept"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("training ") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            panic!("training did not start:\n{log}");
        }
        log += &line;
    }
    (child, stderr, log)
}

/// Ctrl-C, SIGTERM (what kill, Slurm, Kubernetes and mpirun send) and SIGHUP all finish the
/// step, write the checkpoint and exit with 128 + the signal; resuming continues. While a
/// run holds its run directory, a second run there is refused.
#[test]
fn signals_save_a_checkpoint_and_resume_continues() {
    let mnist = repo("data/mnist");
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let dir = tmpdir(&format!("interrupt-{signal}"));
        // LeNet-5 takes several seconds an epoch: long enough to interrupt in the middle.
        let (child, mut stderr, log) =
            start_training(&dir, &["train", &repo("examples/lenet5.nn"), "--data", &mnist, "--epochs", "1"]);
        if signal == "TERM" {
            let o = percept(&dir, &["train", &repo("examples/lenet5.nn"), "--data", &mnist, "--steps", "1"]);
            assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
            assert!(
                text(&o.stderr).contains("another training run is writing into runs/lenet5"),
                "{}",
                text(&o.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {log}{rest}");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("resume with: percept train"), "{stdout}");
        let ck = dir.join("runs/lenet5/checkpoint.safetensors");
        let file = percept_runtime::tensorfile::TensorFile::read(&ck).unwrap();
        let pos: serde_json::Value = serde_json::from_str(&file.metadata["position"]).unwrap();
        let step = pos["step"].as_u64().unwrap();
        assert!(step > 0 && pos["sample"].as_u64().unwrap() == step * 64, "{pos}");
        if signal != "INT" {
            continue;
        }
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
        // The resumed run continued the metrics file: both runs' headers are in it.
        let metrics = std::fs::read_to_string(dir.join("runs/lenet5/metrics.jsonl")).unwrap();
        let headers: Vec<serde_json::Value> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("run").is_some())
            .collect();
        assert_eq!(headers.len(), 2, "{metrics}");
        assert!(headers[0]["run"]["resumed_at"].is_null() && headers[1]["run"]["resumed_at"]["step"] == step);
    }
}

/// A run killed with `kill -9` resumes from its last periodic checkpoint and ends with the
/// weights of a run that was never interrupted, bit for bit.
#[test]
fn kill_9_resumes_from_the_last_checkpoint_with_identical_weights() {
    let mnist = repo("data/mnist");
    let lenet = repo("examples/lenet5.nn");
    let args = |dir: &Path| -> Vec<String> {
        ["train", &lenet, "--data", &mnist, "--steps", "150", "--checkpoint-every", "20", "--threads", "1", "--save"]
            .iter()
            .map(|s| s.to_string())
            .chain([dir.join("w.safetensors").display().to_string()])
            .collect()
    };
    let reference = tmpdir("kill9-reference");
    let a = args(&reference);
    let o = percept(&reference, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    let dir = tmpdir("kill9");
    let a = args(&dir);
    let (mut child, _stderr, _) = start_training(&dir, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let ck = dir.join("runs/lenet5/checkpoint.safetensors");
    // Kill it once a periodic checkpoint past step 20 is on disk, mid-run.
    let started = std::time::Instant::now();
    loop {
        let step = percept_runtime::tensorfile::TensorFile::read(&ck)
            .ok()
            .and_then(|f| serde_json::from_str::<serde_json::Value>(&f.metadata["position"]).ok())
            .and_then(|p| p["step"].as_u64());
        if step.is_some_and(|s| s >= 40) {
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "no periodic checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let resumed = {
        let mut a = args(&dir);
        a.extend(["--resume".to_string(), ck.display().to_string()]);
        percept(&dir, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert!(text(&resumed.stderr).contains("resuming from"), "{}", text(&resumed.stderr));
    let read = |d: &Path| percept_runtime::tensorfile::TensorFile::read(&d.join("w.safetensors")).unwrap().tensors;
    assert_eq!(read(&dir), read(&reference), "the resumed run's weights differ from the uninterrupted run's");
}

#[test]
#[cfg(not(feature = "mpi"))]
fn under_mpirun_without_the_mpi_feature_train_says_so() {
    // What OpenMPI's launcher sets for each process it starts.
    let dir = tmpdir("no-mpi");
    let o = Command::new(env!("CARGO_BIN_EXE_percept"))
        .args(["train", &repo("examples/mlp.nn"), "--data", &repo("data/mnist"), "--steps", "1"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "0")
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("this percept was built without MPI support"), "{err}");
    assert!(err.contains("--features mpi"), "{err}");
    assert!(!dir.join("runs").exists(), "nothing was written");
}

/// `--early-stop` and `--keep-best` from the command line: the held-out XOR point's loss
/// stops improving at once, the run stops `PATIENCE` epochs later, and the best epoch's
/// weights are saved beside the last ones.
#[test]
fn early_stop_and_keep_best() {
    let dir = tmpdir("early");
    let o = percept(
        &dir,
        &[
            "train",
            &repo("examples/xor.nn"),
            "--data",
            "xor",
            "--val",
            "1",
            "--epochs",
            "200",
            "--lr",
            "0.1",
            "--early-stop",
            "3",
            "--keep-best",
            "--save",
            "w.safetensors",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr)
        .contains("stopped early after epoch 4: the validation loss has not improved for 3 epoch(s) (best: epoch 1)"));
    let lines = json_lines(&o);
    let summary = lines.last().unwrap();
    assert_eq!(summary["outcome"], "early_stopped");
    assert_eq!(summary["best_epoch"], 1);
    assert_eq!(lines[0]["best_epoch"], 1);
    assert!(dir.join("w.best.safetensors").exists() && dir.join("w.safetensors").exists());
    // Without any validation or test data there is nothing to watch.
    fails(
        &dir,
        &["train", &repo("examples/mlp.nn"), "--data", &repo("data/mnist"), "--keep-best", "--early-stop", "0"],
        "--early-stop needs a patience of at least 1 epoch",
    );
    fails(
        &dir,
        &["train", &repo("examples/mlp.nn"), "--data", &repo("data/mnist"), "--schedule", "plateau:0:0.5"],
        "plateau:PATIENCE:FACTOR needs a positive epoch count",
    );
}

/// A reconstruction: `--target input` trains the autoencoder to reproduce its input
/// (recorded in the weights), and `eval` reports the error and the PSNR, which is the
/// error in pixel units: 10·log10(1 / (mse·std²)) under a single normalization.
#[test]
fn an_autoencoder_trains_on_its_input_and_eval_reports_psnr() {
    let dir = tmpdir("autoencoder");
    let ae = repo("examples/autoencoder.nn");
    let mnist = repo("data/mnist");
    let o = percept(
        &dir,
        &["train", &ae, "--data", &mnist, "--target", "input", "--steps", "40", "--save", "w.safetensors", "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let summary = json_lines(&o).pop().unwrap();
    assert!(summary["test_psnr_db"].as_f64().unwrap() > 10.0, "{summary}");
    let w = percept_runtime::tensorfile::TensorFile::read(&dir.join("w.safetensors")).unwrap();
    assert_eq!(w.metadata["target"], "input");
    let std: f64 = w.metadata["normalize_std"].parse().unwrap();

    let o = percept(&dir, &["eval", &ae, "--weights", "w.safetensors", "--data", &mnist, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (mse, psnr) = (v["mse"].as_f64().unwrap(), v["psnr_db"].as_f64().unwrap());
    assert_eq!(v["samples"], 10000);
    assert!((psnr - 10.0 * (1.0 / (mse * std * std)).log10()).abs() < 1e-3, "{v}");
    assert!((psnr - summary["test_psnr_db"].as_f64().unwrap()).abs() < 1e-6, "the same as training's last evaluation");

    fails(
        &dir,
        &["train", &repo("examples/lenet5.nn"), "--data", &mnist, "--target", "input"],
        "--target input needs `loss mse`",
    );
}
