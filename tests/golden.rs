//! Golden values from PyTorch (tests/golden/make_golden.py, run once by hand with torch;
//! the torch version is in each file's metadata): from the same initial weights and the
//! same two mini-batches, two steps of SGD with momentum and weight decay must give
//! PyTorch's losses and weights — parameters, running statistics and
//! num_batches_tracked. Tolerance: |percept − torch| ≤ 1e-5 + 1e-4·|torch| per element
//! (f32 sums in another order; measured: at most 1.2e-7 interpreted, 8.3e-7 on the JIT).

use percept_compiler::exec::Optimizer;
use percept_compiler::ops::StepCtx;
use percept_runtime::tensorfile::{Data, TensorFile};
use percept_runtime::{Backend, Model};

fn root(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn with_prefix(file: &TensorFile, prefix: &str) -> TensorFile {
    TensorFile {
        tensors: file
            .tensors
            .iter()
            .filter_map(|t| {
                t.name
                    .strip_prefix(prefix)
                    .map(|n| percept_runtime::tensorfile::NamedTensor { name: n.to_string(), ..t.clone() })
            })
            .collect(),
        metadata: Default::default(),
    }
}

fn check_golden(model_file: &str, golden: &str, backend: Backend) {
    check_golden_with(model_file, golden, None, backend, (1e-5, 1e-4))
}

/// `golden` holds the initial weights and the batches; `steps`, if given, a longer run
/// from them with another optimizer (its last batch and the weights after).
/// `(abs, rel)`: each weight within abs + rel·|torch|.
fn check_golden_with(model_file: &str, golden: &str, steps: Option<&str>, backend: Backend, tolerance: (f32, f32)) {
    let mut model = Model::from_file(root(model_file)).unwrap();
    model.set_backend(backend).unwrap();
    check_golden_model(model, model_file, golden, steps, &|name| name.to_string(), tolerance)
}

/// `check_golden_with` for a model already built, whose parameter for the golden file's
/// `name` is `rename(name)`.
fn check_golden_model(
    mut model: Model,
    model_file: &str,
    golden: &str,
    steps: Option<&str>,
    rename: &dyn Fn(&str) -> String,
    (abs, rel): (f32, f32),
) {
    let backend = model.backend();
    let base = TensorFile::read(std::path::Path::new(&root(golden))).unwrap();
    let file = match steps {
        Some(s) => {
            let mut f = TensorFile::read(std::path::Path::new(&root(s))).unwrap();
            f.tensors.extend(base.tensors.iter().filter(|t| !t.name.starts_with("after.")).cloned());
            f
        }
        None => base,
    };
    let meta = &file.metadata;
    assert!(meta["torch"].starts_with("2."), "recorded torch version: {}", meta["torch"]);
    let mut init = with_prefix(&file, "init.");
    init.tensors.iter_mut().for_each(|t| t.name = rename(&t.name));
    model.load_weights(&init, "init").unwrap();
    let lr: f64 = meta["lr"].parse().unwrap();
    let num = |k: &str| meta[k].parse::<f64>().unwrap();
    let optimizer = match meta.get("optimizer").map(String::as_str) {
        Some("adam") => Optimizer::Adam {
            beta1: num("beta1"),
            beta2: num("beta2"),
            eps: num("eps"),
            weight_decay: num("weight_decay"),
        },
        _ => Optimizer::Sgd {
            momentum: num("momentum"),
            nesterov: meta.get("nesterov").is_some_and(|n| n == "true"),
            weight_decay: num("weight_decay"),
        },
    };
    model.set_optimizer(optimizer, &[]).unwrap();
    // The initial model's outputs, where recorded (evaluation mode, the first batch).
    if let Some(want) = file.get("outputs.batch0") {
        let x = file.get("batch0.x").unwrap().as_f32().unwrap();
        let got = model.forward(x, None, &[]).unwrap().prediction;
        let want = want.as_f32().unwrap();
        assert_eq!(got.len(), want.len(), "{model_file}: output size");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{model_file}: output [{i}] = {a}, torch {b}");
        }
    }
    let losses: Vec<f64> = serde_json::from_str(&meta["losses"]).unwrap();
    for (step, want_loss) in losses.iter().enumerate() {
        let x = file.get(&format!("batch{step}.x")).unwrap().as_f32().unwrap();
        let y = file.get(&format!("batch{step}.y")).unwrap().as_f32().unwrap();
        let cx = StepCtx { seed: 0, step: step as u64, lr };
        let fetch = model.grad_step(x, y, &cx).unwrap();
        let loss = fetch.loss.unwrap() as f64;
        assert!((loss - want_loss).abs() < 1e-5, "{model_file} step {step}: loss {loss} vs torch {want_loss}");
        model.update_step(&cx).unwrap();
    }
    let after = with_prefix(&file, "after.");
    let ours = model.weights();
    assert_eq!(ours.tensors.len(), after.tensors.len(), "same tensor names");
    let mut worst = (0.0f32, String::new());
    for want in &after.tensors {
        let got = ours.get(&rename(&want.name)).unwrap_or_else(|| panic!("{} missing", want.name));
        assert_eq!(got.shape, want.shape, "{}", want.name);
        match (&got.data, &want.data) {
            (Data::F32(g), Data::F32(w)) => {
                for (i, (a, b)) in g.iter().zip(w).enumerate() {
                    let err = (a - b).abs();
                    assert!(err <= abs + rel * b.abs(), "{model_file}: {}[{i}] = {a}, torch {b}", want.name);
                    if err > worst.0 {
                        worst = (err, want.name.clone());
                    }
                }
            }
            (Data::I64(g), Data::I64(w)) => assert_eq!(g, w, "{}", want.name),
            _ => panic!("{}: dtypes differ", want.name),
        }
    }
    eprintln!("{model_file} ({}): largest difference {:e} in {}", backend.name(), worst.0, worst.1);
}

#[test]
fn lenet5_two_sgd_steps_match_pytorch() {
    check_golden("examples/lenet5.nn", "tests/golden/lenet5.safetensors", Backend::Interp);
}

#[test]
fn cnn_bn_two_sgd_steps_match_pytorch() {
    check_golden("examples/cnn_bn.nn", "tests/golden/cnn_bn.safetensors", Backend::Interp);
}

#[test]
fn lenet5_two_sgd_steps_match_pytorch_on_the_jit() {
    check_golden("examples/lenet5.nn", "tests/golden/lenet5.safetensors", Backend::Jit);
}

#[test]
fn cnn_bn_two_sgd_steps_match_pytorch_on_the_jit() {
    check_golden("examples/cnn_bn.nn", "tests/golden/cnn_bn.safetensors", Backend::Jit);
}

/// `global_maxpool` against PyTorch's `AdaptiveMaxPool2d(1)` (then flatten): the forward
/// maxima and the gradient routed to each channel's first maximum.
#[test]
fn global_maxpool_two_sgd_steps_match_pytorch() {
    for backend in [Backend::Interp, Backend::Jit] {
        check_golden("tests/golden/global_maxpool.nn", "tests/golden/global_maxpool.safetensors", backend);
    }
}

/// Import then train = PyTorch: LeNet-5 and the residual block of the golden files,
/// exported from the same PyTorch modules with the same seed by the TorchScript-based
/// exporter (tests/onnx/make_fixtures.py), imported with `--loss`: the imported weights are
/// PyTorch's initial ones exactly, and two (LeNet-5) or three (the residual block) SGD
/// steps give PyTorch's losses and weights.
#[test]
fn imported_onnx_models_train_like_pytorch() {
    use percept::onnx::import::import;
    for (onnx, twin, golden) in [
        ("tests/onnx/lenet5.onnx", "examples/lenet5.nn", "tests/golden/lenet5.safetensors"),
        ("tests/onnx/resblock.onnx", "tests/golden/resblock.nn", "tests/golden/resblock.safetensors"),
    ] {
        let bytes = std::fs::read(root(onnx)).unwrap();
        let imported = import(&bytes, onnx, "imported", std::path::Path::new(&root("tests/onnx")), true).unwrap();
        let mut model = Model::from_source(onnx, &imported.text()).unwrap();
        model.load_weights(&imported.weights, "imported").unwrap();
        // The imported statements are the golden model's, in the same order, named by the
        // importer: the golden names map to the imported ones by position.
        let names = |m: &Model| m.spec.params().map(|p| p.name.clone()).collect::<Vec<_>>();
        let (ours, theirs) = (names(&model), names(&Model::from_file(root(twin)).unwrap()));
        assert_eq!(ours.len(), theirs.len());
        let base = TensorFile::read(std::path::Path::new(&root(golden))).unwrap();
        for (o, t) in ours.iter().zip(&theirs) {
            let (got, want) = (imported.weights.get(o).unwrap(), base.get(&format!("init.{t}")).unwrap());
            assert_eq!(got.as_f32(), want.as_f32(), "{onnx}: {o} is PyTorch's initial {t}");
        }
        let rename = move |name: &str| ours[theirs.iter().position(|t| t == name).unwrap()].clone();
        check_golden_model(model, onnx, golden, None, &rename, (1e-5, 1e-4));
    }
}

/// Branches against PyTorch: a downsampling block whose shortcut reads the stem with
/// `from:` and is added to the main path (`tests/golden/resblock.nn`); the parameter
/// names of labelled and unlabelled statements are PyTorch's state_dict keys.
#[test]
fn a_branching_block_outputs_and_three_sgd_steps_match_pytorch() {
    for backend in [Backend::Interp, Backend::Jit] {
        check_golden("tests/golden/resblock.nn", "tests/golden/resblock.safetensors", backend);
    }
}

/// Concatenation against PyTorch: an Inception-style block, `concat(b1, s)` after a
/// 3×3 branch as `torch.cat([b3, b1, s], dim=1)` (`tests/golden/inception.nn`).
#[test]
fn a_concatenating_block_outputs_and_three_sgd_steps_match_pytorch() {
    for backend in [Backend::Interp, Backend::Jit] {
        check_golden("tests/golden/inception.nn", "tests/golden/inception.safetensors", backend);
    }
}

/// Upsampling against PyTorch: an encoder–decoder step, `upsample(2)` as
/// `nn.Upsample(scale_factor=2, mode="nearest")`, then `concat` with the skip
/// (`tests/golden/unet.nn`).
#[test]
fn an_upsampling_block_outputs_and_three_sgd_steps_match_pytorch() {
    for backend in [Backend::Interp, Backend::Jit] {
        check_golden("tests/golden/unet.nn", "tests/golden/unet.safetensors", backend);
    }
}

/// Grouped (depthwise among them), dilated and transposed convolutions against PyTorch:
/// `groups`, `dilation` with `padding: same`, and `conv_transpose2d` with
/// `output_padding` as `nn.Conv2d` and `nn.ConvTranspose2d` (`tests/golden/mobile.nn`).
#[test]
fn grouped_dilated_and_transposed_convolutions_outputs_and_three_sgd_steps_match_pytorch() {
    for backend in [Backend::Interp, Backend::Jit] {
        check_golden("tests/golden/mobile.nn", "tests/golden/mobile.safetensors", backend);
    }
}

/// Padded pooling against PyTorch: `maxpool(3, stride: 2, padding: 1)` as a ResNet stem's
/// `nn.MaxPool2d`, `avgpool` with `count_include_pad` false and true as `nn.AvgPool2d`
/// (`tests/golden/padded_pool.nn`).
#[test]
fn padded_pooling_outputs_and_three_sgd_steps_match_pytorch() {
    for backend in [Backend::Interp, Backend::Jit] {
        check_golden("tests/golden/padded_pool.nn", "tests/golden/padded_pool.safetensors", backend);
    }
}

/// Bilinear upsampling against PyTorch: `upsample(f, mode: bilinear)` as
/// `nn.Upsample(scale_factor=f, mode="bilinear", align_corners=False)`, square and
/// rectangular factors (`tests/golden/bilinear.nn`).
#[test]
fn bilinear_upsampling_outputs_and_three_sgd_steps_match_pytorch() {
    for backend in [Backend::Interp, Backend::Jit] {
        check_golden("tests/golden/bilinear.nn", "tests/golden/bilinear.safetensors", backend);
    }
}

/// Adam (with weight decay) and SGD with Nesterov momentum and weight decay, three steps,
/// against torch.optim (within 2e-4 of each weight).
#[test]
fn adam_and_nesterov_three_steps_match_pytorch() {
    for (model, base) in [("lenet5", "lenet5"), ("cnn_bn", "cnn_bn")] {
        for opt in ["adam", "nesterov"] {
            for backend in [Backend::Interp, Backend::Jit] {
                check_golden_with(
                    &format!("examples/{model}.nn"),
                    &format!("tests/golden/{base}.safetensors"),
                    Some(&format!("tests/golden/{model}_{opt}.safetensors")),
                    backend,
                    (2e-4, 0.0),
                );
            }
        }
    }
}
