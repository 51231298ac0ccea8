//! End-to-end tests of `percept check` and `percept inspect` (the binary, as a user runs it).

use std::process::{Command, Output};

fn percept(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percept")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_prints_the_summary_of_every_example() {
    for (file, trainable, running) in [
        ("examples/lenet5.nn", "61,706", "0"),
        ("examples/mlp.nn", "235,146", "0"),
        ("examples/cnn_bn.nn", "421,834", "192"),
        ("examples/perceptron.nn", "3", "0"),
        ("examples/xor.nn", "33", "0"),
        ("examples/activations.nn", "120,522", "0"),
        ("examples/residual.nn", "5,034", "64"),
        ("examples/strided.nn", "14,730", "0"),
        // The zoo: the counts of their PyTorch twins (bench/pytorch_compare.py's Network
        // built with nn.Conv2d(groups=…) etc.; trainable parameters, BN running statistics).
        ("examples/resnet8.nn", "77,754", "672"),
        ("examples/mobilenet_tiny.nn", "13,898", "704"),
        ("examples/inception_tiny.nn", "26,366", "0"),
        ("examples/vgg_small.nn", "218,490", "0"),
        ("examples/autoencoder.nn", "9,569", "0"),
    ] {
        let o = percept(&["check", file]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains(&format!("trainable parameters: {trainable}\n")), "{file}:\n{out}");
        assert!(out.contains(&format!("running statistics:   {running}\n")), "{file}:\n{out}");
    }
}

#[test]
fn check_json() {
    let o = percept(&["check", "examples/lenet5.nn", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["trainable_parameters"], 61706);
    assert_eq!(v["layers"][0]["output_shape"], serde_json::json!([6, 28, 28]));
    assert_eq!(v["layers"].as_array().unwrap().len(), 12);
}

#[test]
fn a_broken_model_is_a_pointed_error_with_exit_code_1() {
    let dir = std::env::temp_dir().join(format!("percept-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.nn");
    std::fs::write(
        &path,
        "model bad {\n    input [1, 28, 28]\n    conv2d(16, kernel: 5)\n    maxpool(2)\n    dense(10)\n}\n",
    )
    .unwrap();
    let o = percept(&["check", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "{}:5:5: error: dense expects a flat input [features], found [16, 12, 12]",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("5 |     dense(10)\n"), "{err}");
    assert!(err.contains("^^^^^^^^^"), "{err}");
    assert!(err.contains("help: add `flatten` before it"), "{err}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn a_missing_file_is_a_one_line_error() {
    for command in ["check", "bench"] {
        let o = percept(&[command, "no/such/model.nn"]);
        assert_eq!(o.status.code(), Some(1), "{command}");
        // bench says nothing of measuring a model it cannot read.
        assert_eq!(stderr(&o).lines().count(), 1, "{command}: {}", stderr(&o));
        assert!(stderr(&o).contains("cannot read no/such/model.nn"), "{command}");
    }
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(percept(&["check"]).status.code(), Some(2));
    assert_eq!(percept(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(percept(&["inspect", "examples/mlp.nn", "--emit", "nonsense"]).status.code(), Some(2));
}

#[test]
fn inspect_prints_the_ast_and_the_training_graph() {
    let o = percept(&["inspect", "examples/xor.nn", "--emit", "ast"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Layer `dense` @5:5"));

    let o = percept(&["inspect", "examples/lenet5.nn", "--emit", "graph", "--batch", "8"]);
    assert_eq!(o.status.code(), Some(0));
    let g = stdout(&o);
    assert!(g.starts_with("graph lenet5 train batch=8 {"));
    for part in ["// forward", "// loss", "// backward", "conv2d_grad_weight", "output grad \"0.weight\""] {
        assert!(g.contains(part), "missing {part}:\n{g}");
    }
}

#[test]
fn inspect_shows_the_kernel_plan_clif_and_machine_code() {
    let o =
        percept(&["inspect", "examples/lenet5.nn", "--emit", "plan", "--batch", "64", "--microkernel", "cranelift"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(plan.starts_with("program lenet5 train batch=64:"), "{plan}");
    assert!(plan.contains("kernel 0 fwd.conv2d_0+relu_1+maxpool_2 (items 64, gemm: cranelift-6x8)"), "{plan}");
    assert!(plan.contains("  ops      conv2d + bias_add + relu + maxpool\n"), "{plan}");
    assert!(plan.contains("arena peak:"), "{plan}");

    let o = percept(&["inspect", "examples/lenet5.nn", "--emit", "plan", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kernels = v["kernels"].as_array().unwrap();
    assert!(kernels.len() > 20);
    for k in kernels {
        assert!(k["name"].is_string() && k["ops"].is_array() && k["flops"].is_u64() && k["bytes"].is_u64(), "{k}");
    }
    assert!(v["arena_bytes"].as_u64().unwrap() > 1_000_000);
    // The convolution's kernel with its bias, relu and max pooling: the op table's FLOPs of
    // the four (the pooling counts each window's four positions).
    let conv = kernels.iter().find(|k| k["name"] == "fwd.conv2d_0+relu_1+maxpool_2").unwrap();
    assert_eq!(conv["ops"], serde_json::json!(["conv2d", "bias_add", "relu", "maxpool"]));
    assert_eq!(conv["flops"], 2 * 64 * 6 * 28 * 28 * 25 + 3 * 64 * 6 * 28 * 28);

    // The GEMM kernels' CLIF (with the micro-kernel they call) is vector code with FMA.
    let fma = percept_compiler::codegen::host_features().unwrap().fma;
    for kernel in ["fwd.conv2d_0+relu_1+maxpool_2", "fwd.dense_7+relu_8", "bwd.dense_7.matmul"] {
        let o = percept(&[
            "inspect",
            "examples/lenet5.nn",
            "--emit",
            "clif",
            "--kernel",
            kernel,
            "--microkernel",
            "cranelift",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let clif = stdout(&o);
        assert!(clif.contains("f32x4"), "{kernel}: no f32x4");
        assert_eq!(clif.contains(" fma "), fma, "{kernel}: fma {fma}");
        assert!(clif.contains("call fn"), "{kernel} calls its micro-kernel");
    }
    let o =
        percept(&["inspect", "examples/lenet5.nn", "--emit", "asm", "--kernel", "micro", "--microkernel", "cranelift"]);
    let asm = stdout(&o);
    assert!(asm.contains(if fma { "vfmadd" } else { "mulps" }), "{asm}");
    // By default GEMMs call the host's best native micro-kernel, named in the plan.
    let f = percept_compiler::codegen::host_features().unwrap();
    let native = if f.avx512f && f.fma {
        "native-avx512-8x32"
    } else if f.avx2 && f.fma {
        "native-avx2-6x16"
    } else {
        "cranelift-6x8"
    };
    let o = percept(&["inspect", "examples/lenet5.nn", "--emit", "plan"]);
    assert!(stdout(&o).contains(&format!("gemm: {native})")), "{}", stdout(&o));
    let o = percept(&["inspect", "examples/lenet5.nn", "--emit", "clif", "--kernel", "nonsense"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no kernel matches `nonsense`; the kernels are: micro, fwd.conv2d_0+relu_1+maxpool_2"));
}

/// `--emit loops` prints every kernel's loop nest for every example, each headed by the
/// kernel's name exactly as `--emit plan --json` gives it (update kernels included).
#[test]
fn inspect_prints_the_loop_nest_of_every_kernel_of_every_example() {
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("nn") {
            continue;
        }
        let file = path.to_str().unwrap();
        let has_loss = std::fs::read_to_string(&path).unwrap().contains("loss ");
        let mode = if has_loss { "train" } else { "eval" };
        let o = percept(&["inspect", file, "--emit", "plan", "--json", "--batch", "8", "--mode", mode]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let names: Vec<String> =
            v["kernels"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_string()).collect();
        let o = percept(&["inspect", file, "--emit", "loops", "--batch", "8", "--mode", mode]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        let text = stdout(&o);
        let headed: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("loops ")).filter(|l| l.ends_with(" pass 0")).collect();
        let headed: Vec<&str> = headed.iter().map(|l| l.trim_end_matches(" pass 0")).collect();
        assert_eq!(headed, names, "{file}");
        if has_loss {
            assert!(names.iter().any(|n| n.starts_with("upd.")), "{file}: update kernels");
        }
        // Accesses carry their proved ranges.
        assert!(text.contains("load.f32") && text.contains("; ["), "{file}");
    }
    let o = percept(&["inspect", "examples/lenet5.nn", "--emit", "loops", "--kernel", "fwd.conv2d_0+relu_1+maxpool_2"]);
    let text = stdout(&o);
    // The GEMM's call (on an AVX-512 host the narrow tile's: six filters fill its rows).
    let call = |l: &str| l.trim_start().starts_with("call ") && l.ends_with("micro kc=25");
    assert!(text.lines().any(call), "{text}");
    // One image per work item (the items loop follows the bordered image's zeroing).
    assert!(text.lines().any(|l| l.trim_start().starts_with("items v") && l.ends_with(" in 0..64 {")), "{text}");
}

/// A reader that goes away (`percept inspect … | head`) ends the program quietly: no panic,
/// no backtrace, exit 0.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_percept"))
        .args(["inspect", "examples/lenet5.nn", "--emit", "loops"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
}

/// `bench --inference` measures the forward pass, fused and unfused, kernel by kernel.
#[test]
fn bench_inference_reports_both_variants() {
    let o = percept(&["bench", "examples/lenet5.nn", "--inference", "--batch", "4", "--seconds", "0.05", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for variant in ["fused", "unfused"] {
        let rate = v[variant]["samples_per_s"].as_f64().unwrap();
        let per = v[variant]["us_per_sample"].as_f64().unwrap();
        assert!(rate > 0.0 && (per * rate / 1e6 - 1.0).abs() < 1e-9, "{v}");
        assert!(v[variant]["batches"].as_u64().unwrap() >= 3, "{v}");
        // The evaluation program's kernels: the forward pass only, each timed.
        let kernels = v[variant]["kernels"].as_array().unwrap();
        let names: Vec<&str> = kernels.iter().map(|k| k["name"].as_str().unwrap()).collect();
        assert!(names.iter().all(|n| n.starts_with("fwd.")), "{names:?}");
        // Each kernel's time per forward pass (a batch), not per training step.
        assert!(kernels.iter().all(|k| k["us_per_batch"].as_f64().unwrap() > 0.0 && k["us_per_step"].is_null()), "{v}");
        // Convolution, bias, relu and max pooling are one kernel only when fused.
        assert_eq!(names.contains(&"fwd.conv2d_0+relu_1+maxpool_2"), variant == "fused", "{names:?}");
    }
    assert!(v["bandwidth_gbs"].as_f64().unwrap() > 0.0, "{v}");
    let o = percept(&["bench", "examples/lenet5.nn", "--inference", "--batch", "4", "--seconds", "0.05"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("µs/batch") && stdout(&o).contains("fwd.conv2d_3+relu_4+maxpool_5"), "{}", stdout(&o));
    // --html: the explorer page of the forward pass, its kernels the ones timed.
    let page = std::env::temp_dir().join(format!("percept-inference-{}.html", std::process::id()));
    let o = percept(&[
        "bench",
        "examples/lenet5.nn",
        "--inference",
        "--batch",
        "4",
        "--seconds",
        "0.05",
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    std::fs::remove_file(&page).unwrap();
    let kernels: Vec<&str> = html.split("data-kernel=\"").skip(1).filter_map(|s| s.split('"').next()).collect();
    assert!(kernels.contains(&"fwd.conv2d_0+relu_1+maxpool_2"), "{kernels:?}");
    assert!(kernels.iter().all(|k| k.starts_with("fwd.")), "{kernels:?}");
    // The interpreter has no kernels to show: refused before anything is measured.
    let never = std::env::temp_dir().join(format!("percept-never-{}.html", std::process::id()));
    let o =
        percept(&["bench", "examples/xor.nn", "--inference", "--backend", "interp", "--html", never.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--html needs --backend jit"), "{}", stderr(&o));
    assert!(!never.exists());
}

/// `bench --json` carries the step's GFLOP/s, its fraction of the measured FMA peak, and
/// the machine's roofs (DESIGN.md's fields).
#[test]
fn bench_json_reports_the_fraction_of_peak() {
    let o = percept(&["bench", "examples/lenet5.nn", "--batch", "8", "--seconds", "0.05", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["bandwidth_gbs"].as_f64().unwrap() > 0.0, "{v}");
    for variant in ["fused", "unfused"] {
        let g = v[variant]["gflops"].as_f64().unwrap();
        assert!(g > 0.0, "{v}");
        if let Some(per_core) = v["peak_gflops"].as_f64() {
            let f = v[variant]["peak_fraction"].as_f64().unwrap();
            let threads = v["threads"].as_f64().unwrap();
            assert!((f - g / (per_core * threads)).abs() < 1e-9 && f > 0.0 && f < 1.0, "{v}");
        }
    }
}
