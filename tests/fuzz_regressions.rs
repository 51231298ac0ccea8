//! Replays, through the fuzz targets' functions (`percept_runtime::fuzzing`, and
//! `percept::onnx::fuzz` for the ONNX importer), the fuzzer's
//! seeds (`fuzz/seeds/TARGET/`) and every input that once made a reader panic
//! (`tests/fuzz_regressions/TARGET/`, named after what it broke). Each must be refused or
//! read without a panic; see docs/RELIABILITY.md.

use percept_runtime::fuzzing;
use std::path::Path;

/// A fuzz target: reads one input, panicking only on a bug.
type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("model_text", fuzzing::model_text),
    ("graph_text", fuzzing::graph_text),
    ("idx", fuzzing::idx),
    ("npy", fuzzing::npy),
    ("weights", fuzzing::weights),
    ("image", fuzzing::image),
    ("onnx", percept::onnx::fuzz),
];

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn seeds_and_past_crashes_replay_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, run) in TARGETS {
        let seeds = inputs(&root.join("fuzz/seeds").join(target));
        assert!(!seeds.is_empty(), "fuzz/seeds/{target}/ has no seeds");
        for file in seeds.iter().chain(&inputs(&root.join("tests/fuzz_regressions").join(target))) {
            let bytes = std::fs::read(file).unwrap();
            if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                panic!("{target}: {} panics", file.display());
            }
        }
    }
}
