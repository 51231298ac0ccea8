//! `percept build`: the static library computes the JIT's outputs bit for bit (the same
//! kernels, Cranelift micro-kernel), links with `cc` into a C program, defines no
//! undefined symbols, and its header compiles with `-Wall -Werror -std=c99`.

use percept_runtime::{Model, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::process::Command;

fn percept(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_percept")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Reads N·INPUT_SIZE floats from argv[1], calls forward per batch, writes the outputs
/// to argv[2]; with argv[3] = "ws", through forward_ws on a malloc'd workspace.
const DRIVER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "MODEL.h"
int main(int argc, char **argv) {
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    int ws = argc > 3 && strcmp(argv[3], "ws") == 0;
    size_t n_in = PREFIX_BATCH * PREFIX_INPUT_SIZE, n_out = PREFIX_BATCH * PREFIX_OUTPUT_SIZE;
    float *x = malloc(n_in * sizeof(float)), *y = malloc(n_out * sizeof(float));
    void *w = malloc(model_workspace_bytes() + 3);
    if (!in || !out || !x || !y || !w) return 3;
    while (fread(x, sizeof(float), n_in, in) == n_in) {
        /* An odd workspace address: the library aligns it itself. */
        int rc = ws ? model_forward_ws(x, y, (char *)w + 3) : model_forward(x, y);
        if (rc != 0) return 10 + rc;
        fwrite(y, sizeof(float), n_out, out);
    }
    fclose(out);
    return 0;
}
"#;

fn floats(path: &Path) -> Vec<u32> {
    std::fs::read(path).unwrap().chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The micro-kernel kinds this host can put in a library: Cranelift's, and the best
/// native one when the host has it (and its object was built).
fn micro_kinds() -> Vec<(&'static str, percept_compiler::codegen::MicroChoice)> {
    use percept_compiler::codegen::{host_features, micro::native, MicroChoice};
    let mut kinds = vec![("cranelift", MicroChoice::Cranelift)];
    if native::best_native(host_features().unwrap()).is_some() && native::TILES_OBJECT.is_some() {
        kinds.push(("native", MicroChoice::Auto));
    }
    kinds
}

#[test]
fn the_library_computes_the_jits_bits_from_c() {
    let dir = std::env::temp_dir().join(format!("percept-aot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = ["perceptron", "xor", "mlp", "lenet5", "cnn_bn", "activations", "residual", "strided"];
    for (name, (micro_name, micro)) in names.iter().flat_map(|n| micro_kinds().into_iter().map(move |m| (*n, m))) {
        let file = root().join(format!("examples/{name}.nn"));
        let mut model = Model::from_file(&file).unwrap();
        model.codegen.micro = micro;
        Trainer::new(TrainConfig::default()).unwrap().init_model(&mut model).unwrap();
        let weights = dir.join(format!("{name}.safetensors"));
        model.save_weights(&weights).unwrap();
        let per: usize = model.spec.input.shape.iter().product();
        for batch in [1usize, 8] {
            let out = dir.join(format!("{name}-{micro_name}-{batch}"));
            let o = percept(&[
                "build",
                file.to_str().unwrap(),
                "--weights",
                weights.to_str().unwrap(),
                "--batch",
                &batch.to_string(),
                "--out",
                out.to_str().unwrap(),
                "--microkernel",
                micro_name,
            ]);
            assert_eq!(o.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&o.stderr));
            let prefix = name.to_string();
            let lib = out.join(format!("lib{prefix}.a"));
            // The header on its own, strictly.
            let check = out.join("check.c");
            std::fs::write(&check, format!("#include \"{prefix}.h\"\nint main(void) {{ return 0; }}\n")).unwrap();
            let cc = Command::new("cc")
                .args(["-Wall", "-Wextra", "-Werror", "-std=c99", "-pedantic", "-c", "-o"])
                .arg(out.join("check.o"))
                .arg(&check)
                .arg("-I")
                .arg(&out)
                .output()
                .unwrap();
            assert!(cc.status.success(), "{name}: {}", String::from_utf8_lossy(&cc.stderr));
            // Nothing undefined: the archive needs no library at all.
            // (Between its members: the kernels call the native micro-kernel's object.)
            if let (Ok(u), Ok(d)) = (
                Command::new("nm").arg("-u").arg(&lib).output(),
                Command::new("nm").args(["--defined-only", "-g"]).arg(&lib).output(),
            ) {
                let (u, d) = (String::from_utf8_lossy(&u.stdout), String::from_utf8_lossy(&d.stdout));
                let defined: Vec<&str> = d.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
                for l in u.lines().filter(|l| !l.trim().is_empty() && !l.ends_with(':')) {
                    let sym = l.split_whitespace().last().unwrap();
                    assert!(defined.contains(&sym), "{name}: `{sym}` is undefined in the archive");
                }
            }
            let up = prefix.to_ascii_uppercase();
            let driver = DRIVER
                .replace("MODEL.h", &format!("{prefix}.h"))
                .replace("PREFIX_", &format!("{up}_"))
                .replace("model_", &format!("{prefix}_"));
            std::fs::write(out.join("driver.c"), driver).unwrap();
            let exe = out.join("driver");
            let cc = Command::new("cc")
                .args(["-O1", "-std=c99", "-o"])
                .arg(&exe)
                .arg(out.join("driver.c"))
                .arg("-I")
                .arg(&out)
                .arg(&lib)
                .output()
                .unwrap();
            assert!(cc.status.success(), "{name}: {}", String::from_utf8_lossy(&cc.stderr));
            // Three batches of random inputs through the JIT and through the library.
            let mut rng = percept_runtime::rng::SplitMix::stream(3, batch as u64, 0);
            let x: Vec<f32> = (0..3 * batch * per).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect();
            let mut jit = vec![];
            for chunk in x.chunks(batch * per) {
                jit.extend(model.forward(chunk, None, &[]).unwrap().prediction);
            }
            let input = out.join("x.bin");
            std::fs::write(&input, x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
            for mode in ["static", "ws"] {
                let y = out.join(format!("y-{mode}.bin"));
                let run = Command::new(&exe).arg(&input).arg(&y).arg(mode).output().unwrap();
                assert_eq!(run.status.code(), Some(0), "{name} batch {batch} {mode}");
                let got = floats(&y);
                let want: Vec<u32> = jit.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got.len(), want.len(), "{name} batch {batch} {mode}");
                assert!(got == want, "{name} {micro_name} batch {batch} {mode}: the outputs differ from the JIT's");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let dir: PathBuf = std::env::temp_dir().join(format!("percept-aot-bad-{}", std::process::id()));
    let out = dir.join("out");
    let o =
        percept(&["build", "examples/lenet5.nn", "--weights", "no/such.safetensors", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim_end().lines().count(), 1);
    assert!(!out.exists());
    // Weights of another model.
    std::fs::create_dir_all(&dir).unwrap();
    let mut xor = Model::from_file(root().join("examples/xor.nn")).unwrap();
    Trainer::new(TrainConfig::default()).unwrap().init_model(&mut xor).unwrap();
    let w = dir.join("xor.safetensors");
    xor.save_weights(&w).unwrap();
    let o = percept(&["build", "examples/lenet5.nn", "--weights", w.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
    let o = percept(&["build", "examples/xor.nn", "--weights", w.to_str().unwrap(), "--batch", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `examples/aot/link_from_rust.rs` links the archive through `extern "C"` with plain
/// `rustc` and computes the JIT's bits.
#[test]
fn a_rust_program_links_the_archive() {
    let dir = std::env::temp_dir().join(format!("percept-aot-rust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut model = Model::from_file(root().join("examples/lenet5.nn")).unwrap();
    // The library's default micro-kernel: the best native one (as the JIT's).
    model.codegen.micro = percept_compiler::codegen::MicroChoice::Auto;
    Trainer::new(TrainConfig::default()).unwrap().init_model(&mut model).unwrap();
    let w = dir.join("w.safetensors");
    model.save_weights(&w).unwrap();
    let o = percept(&["build", "examples/lenet5.nn", "--weights", w.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let exe = dir.join("link_from_rust");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let c = Command::new(rustc)
        .args(["-O", "--edition", "2021"])
        .arg(root().join("examples/aot/link_from_rust.rs"))
        .arg("-L")
        .arg(&dir)
        .args(["-l", "static=lenet5", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let mut rng = percept_runtime::rng::SplitMix::stream(5, 1, 0);
    let x: Vec<f32> = (0..784).map(|_| rng.next_f64() as f32).collect();
    let input = dir.join("x.f32");
    std::fs::write(&input, x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let run = Command::new(&exe).arg(&input).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let got: Vec<String> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .take(10)
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let want: Vec<String> =
        model.forward(&x, None, &[]).unwrap().prediction.iter().map(|v| format!("{:08x}", v.to_bits())).collect();
    assert_eq!(got, want);

    // The C example builds warning-free against the same archive and classifies the
    // bundled MNIST test set (the accuracy equals `percept eval`'s: docs/BENCHMARKS.md).
    let classify = dir.join("classify");
    let c = Command::new("cc")
        .args(["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&classify)
        .arg(root().join("examples/aot/classify_mnist.c"))
        .arg("-I")
        .arg(&dir)
        .arg(dir.join("liblenet5.a"))
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let run = Command::new(&classify).arg(root().join("data/mnist")).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success() && out.contains("of 10000 images"), "{out}{}", String::from_utf8_lossy(&run.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
