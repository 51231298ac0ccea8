//! Data-parallel training under `mpirun`, as a user runs it: `mpirun -np K percept train`
//! against one process. Needs the `mpi` feature and OpenMPI (`.ci/run` installs it and runs
//! `cargo test --features mpi --test mpi`); processes talk over shared memory.
#![cfg(feature = "mpi")]

use percept_runtime::tensorfile::TensorFile;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("percept-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `percept ARGS` in `dir`, under `mpirun -np k` when k > 0 (each `:`-separated part of
/// `args` is one application of an MPMD launch when `parts` is given).
fn launch(dir: &Path, k: usize, args: &[&str]) -> Output {
    let exe = env!("CARGO_BIN_EXE_percept");
    let mut cmd = if k == 0 {
        Command::new(exe)
    } else {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "-np", &k.to_string(), exe]);
        c
    };
    cmd.args(args).current_dir(dir).output().unwrap()
}

/// The common arguments of a short, deterministic run writing into `out`.
fn run_args<'a>(model: &'a str, steps: &'a str, out: &'a str) -> Vec<String> {
    [
        "train",
        model,
        "--data",
        &repo("data/mnist"),
        "--steps",
        steps,
        "--batch",
        "30",
        "--schedule",
        "constant",
        "--threads",
        "1",
        "--json",
        "--save",
        &format!("{out}/weights.safetensors"),
        "--checkpoint",
        &format!("{out}/checkpoint.safetensors"),
        "--metrics",
        &format!("{out}/metrics.jsonl"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn train(dir: &Path, k: usize, model: &str, steps: u64, out: &str, extra: &[&str]) -> serde_json::Value {
    let model = repo(&format!("examples/{model}.nn"));
    let steps = steps.to_string();
    let mut args = run_args(&model, &steps, out);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = launch(dir, k, &args);
    assert_eq!(o.status.code(), Some(0), "{k} processes: {}", text(&o.stderr));
    // Process 0 alone prints the summary.
    let out = text(&o.stdout);
    let summary: Vec<&str> = out.lines().filter(|l| l.contains("\"outcome\"")).collect();
    assert_eq!(summary.len(), 1, "one summary line, from process 0:\n{out}");
    serde_json::from_str(summary[0]).unwrap()
}

fn weights(path: &Path) -> Vec<f32> {
    let f = TensorFile::read(path).unwrap();
    f.tensors.iter().filter_map(|t| t.as_f32().map(<[f32]>::to_vec)).flatten().collect()
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64));
    a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs())) / scale
}

#[test]
fn mpirun_trains_the_single_process_model() {
    let dir = tmpdir("train");
    let d = dir.to_str().unwrap();
    // cnn_bn's runs agree to rounding until two nearly equal values of a max-pooling
    // window trade places, at a step that depends on every rounding of the trajectory:
    // on this data, with three processes, between steps 10 and 15 (1.5e-6 after 10,
    // 8.6e-5 after 15; docs/ARCHITECTURE.md, "What depends on K").
    for (model, steps, ks, tolerance) in [("lenet5", 20, &[2, 3][..], 1e-5), ("cnn_bn", 10, &[2, 3], 1e-5)] {
        let one = train(&dir, 0, model, steps, &format!("{d}/{model}-1"), &[]);
        let w1 = weights(&dir.join(format!("{model}-1/weights.safetensors")));
        for &k in ks {
            let out = format!("{d}/{model}-{k}");
            let run = train(&dir, k, model, steps, &out, &[]);
            let wk = weights(&dir.join(format!("{model}-{k}/weights.safetensors")));
            let dist = distance(&w1, &wk);
            eprintln!("{model}: {k} processes after {steps} steps: {dist:.1e} from one");
            assert!(dist <= tolerance && dist > 0.0, "{model}, {k} processes, {steps} steps: {dist:e}");
            // Evaluation is split across the processes; its counts are the same exactly.
            assert_eq!(run["test_accuracy"], one["test_accuracy"], "{model} with {k}");
        }
    }
}

#[test]
fn two_runs_with_two_processes_are_bit_identical_and_resume_with_any_count() {
    let dir = tmpdir("resume");
    let d = dir.to_str().unwrap();
    train(&dir, 2, "cnn_bn", 6, &format!("{d}/a"), &[]);
    train(&dir, 2, "cnn_bn", 6, &format!("{d}/b"), &[]);
    let a = weights(&dir.join("a/weights.safetensors"));
    assert_eq!(a, weights(&dir.join("b/weights.safetensors")));
    // 3 steps with 2 processes, then 3 more with 1 and with 3: the 6-step run of 2, to rounding.
    train(&dir, 2, "cnn_bn", 3, &format!("{d}/half"), &[]);
    let ckpt = format!("{d}/half/checkpoint.safetensors");
    for k in [0, 3] {
        let out = format!("{d}/resumed-{k}");
        train(&dir, k, "cnn_bn", 6, &out, &["--resume", &ckpt]);
        let dist = distance(&a, &weights(&dir.join(format!("resumed-{k}/weights.safetensors"))));
        assert!(dist <= 1e-6, "resumed with {k}: {dist:e}");
    }
}

#[test]
fn a_process_with_other_data_or_settings_stops_all_with_a_message() {
    let dir = tmpdir("mismatch");
    // A copy of MNIST whose training labels are all 0.
    let other = dir.join("other-mnist");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::os::unix::fs::symlink(repo(&format!("data/mnist/{f}")), other.join(f)).unwrap();
    }
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend(60_000u32.to_be_bytes());
    labels.extend(vec![0u8; 60_000]);
    std::fs::write(other.join("train-labels-idx1-ubyte"), labels).unwrap();
    let exe = env!("CARGO_BIN_EXE_percept");
    let mlp = repo("examples/mlp.nn");
    let mnist = repo("data/mnist");
    let common = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader"];
    for (second, what) in [
        (vec!["--data", other.to_str().unwrap()], "the training data"),
        (vec!["--data", &mnist, "--seed", "2"], "the training settings"),
    ] {
        let mut c = Command::new("mpirun");
        c.args(common).args(["-np", "1", exe, "train", &mlp, "--steps", "2", "--data", &mnist]);
        c.args([":", "-np", "1", exe, "train", &mlp, "--steps", "2"]).args(&second);
        let o = c.current_dir(&dir).output().unwrap();
        let err = text(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{err}");
        assert!(
            err.contains(&format!("process 1 of 2 has a different copy of {what} than process 0")),
            "{what}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.join("runs/mlp/weights.safetensors").exists(), "nothing was trained");
    }
}

/// A long `mpirun -np 2` training run in `dir`, once its first checkpoint is on disk:
/// the launcher and its two processes.
fn long_run(dir: &Path) -> (std::process::Child, Vec<String>) {
    let d = dir.to_str().unwrap();
    let model = repo("examples/lenet5.nn");
    let mut args = run_args(&model, "100000", d);
    args.extend(["--checkpoint-every", "10", "--epochs", "5"].map(String::from));
    let exe = env!("CARGO_BIN_EXE_percept");
    let child = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "-np", "2", exe])
        .args(&args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !dir.join("checkpoint.safetensors").exists() {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint was written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kids = Command::new("pgrep").args(["-P", &child.id().to_string()]).output().unwrap();
    let kids: Vec<String> = text(&kids.stdout).split_whitespace().map(String::from).collect();
    assert_eq!(kids.len(), 2, "mpirun's processes: {kids:?}");
    (child, kids)
}

/// The checkpoint's step, after checking it resumes with one process for two more steps.
fn resumes(dir: &Path) -> u64 {
    let ckpt = dir.join("checkpoint.safetensors");
    let file = TensorFile::read(&ckpt).unwrap();
    let position: serde_json::Value = serde_json::from_str(&file.metadata["position"]).unwrap();
    let step = position["step"].as_u64().unwrap();
    let out = format!("{}/resumed", dir.display());
    let resumed = train(dir, 0, "lenet5", step + 2, &out, &["--resume", ckpt.to_str().unwrap()]);
    assert_eq!(resumed["steps"], step + 2);
    step
}

#[test]
fn a_signal_to_one_process_stops_all_at_a_step_boundary_with_a_checkpoint() {
    let dir = tmpdir("signal");
    let (child, kids) = long_run(&dir);
    // SIGTERM to the second of mpirun's processes alone.
    assert!(Command::new("kill").args(["-TERM", &kids[1]]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("\"outcome\":\"interrupted\""), "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(resumes(&dir) >= 10);
}

#[test]
fn when_one_process_dies_mpirun_stops_the_other_and_the_checkpoint_is_intact() {
    let dir = tmpdir("kill9");
    let (child, kids) = long_run(&dir);
    assert!(Command::new("kill").args(["-KILL", &kids[1]]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(resumes(&dir) >= 10);
}
