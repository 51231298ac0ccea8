//! ONNX's own backend node tests for every op type the importer supports
//! (tests/onnx/make_node_tests.py converted them; ONNX's Apache-2.0 license is beside
//! them): each is imported, and either matches ONNX's expected output (rtol 1e-4, atol
//! 1e-5) or is refused with a one-line reason. A wrong output, a panic or an import that
//! does not check is a failure; `tests/onnx/node/RESULTS.txt` pins which tests pass and
//! why the others are refused (`UPDATE_EXPECT=1 cargo test --test onnx_node` rewrites it
//! after a deliberate change).

use percept::onnx::import::import;
use percept_runtime::tensorfile::TensorFile;
use percept_runtime::Model;
use std::path::Path;

fn node_tests() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/node")
}

/// The sorted names of the files in `dir` that end in `suffix`, without it.
fn named(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(suffix).map(String::from))
        .collect();
    names.sort();
    names
}

#[test]
fn onnx_backend_node_tests_match_or_are_refused() {
    let dir = node_tests();
    let names = named(&dir, ".onnx");
    assert!(names.len() > 200, "the node tests are missing: {}", names.len());
    let (mut report, mut passed) = (String::new(), 0);
    for name in &names {
        let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
        let imported = match import(&bytes, name, "node_test", &dir, false) {
            Ok(i) => i,
            Err(e) => {
                assert_eq!(e.0.lines().count(), 1, "{name}: {}", e.0);
                let why = e.0.strip_prefix(&format!("{name}: ")).unwrap_or(&e.0);
                report += &format!("{name}: refused: {why}\n");
                continue;
            }
        };
        let text = imported.text();
        let mut model = Model::from_source(name, &text)
            .unwrap_or_else(|e| panic!("{name}: the import does not check:\n{text}\n{}", e.0));
        model.load_weights(&imported.weights, "imported").unwrap();
        let io = TensorFile::read(&dir.join(format!("{name}.io.safetensors")))
            .unwrap_or_else(|e| panic!("{name} imports but has no input data: {e:?}"));
        let x = io.get("input").unwrap().as_f32().unwrap();
        let want = io.get("output").unwrap().as_f32().unwrap();
        let got = model.forward(x, None, &[]).unwrap_or_else(|e| panic!("{name}: {}\n{text}", e.0)).prediction;
        // The same shape, but that Percept drops a global pooling's trailing 1×1.
        let batch = x.len() / model.spec.input.shape.iter().product::<usize>();
        let shape = |s: &[usize]| {
            let mut s = s.to_vec();
            while s.len() > 2 && s.last() == Some(&1) {
                s.pop();
            }
            s
        };
        let got_shape = [&[batch][..], model.spec.output_shape()].concat();
        assert_eq!(shape(&got_shape), shape(&io.get("output").unwrap().shape), "{name}: output shape\n{text}");
        assert_eq!(got.len(), want.len(), "{name}: output size\n{text}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}: output [{i}] = {a}, ONNX expects {b}\n{text}");
        }
        report += &format!("{name}: passes\n");
        passed += 1;
    }
    report = format!("# {passed} of {} node tests pass; the others are refused.\n{report}", names.len());
    expect_test::expect_file!["onnx/node/RESULTS.txt"].assert_eq(&report);
}

/// The constant folding (weight transforms, shape arithmetic) against ONNX's node tests of
/// the folded op types: each single-node test's inputs as constants, folded, must give
/// ONNX's expected output (exactly; within 1 ulp for Div) or be refused. The import
/// refuses these tests (their input is data), so this is what checks the folding.
#[test]
fn constant_folding_matches_onnx_node_tests() {
    use percept::onnx::fold::{fold, Const, Data};
    use percept::onnx::proto::ModelProto;
    use prost::Message;
    let dir = node_tests();
    let names = named(&dir, ".fold.safetensors");
    assert!(names.len() > 50, "{}", names.len());
    let (mut report, mut matched) = (String::new(), 0);
    for name in &names {
        let model = ModelProto::decode(&std::fs::read(dir.join(format!("{name}.onnx"))).unwrap()[..]).unwrap();
        let node = &model.graph.as_ref().unwrap().node[0];
        let file = TensorFile::read(&dir.join(format!("{name}.fold.safetensors"))).unwrap();
        let konst =
            |t: &percept_runtime::tensorfile::NamedTensor| Const { dims: t.shape.clone(), data: t.data.clone() };
        let inputs: Vec<Const> = (0..).map_while(|i| file.get(&format!("in{i}"))).map(konst).collect();
        let want = konst(file.get("out").unwrap());
        match fold(node, &inputs.iter().collect::<Vec<_>>(), usize::MAX) {
            Ok(Some(got)) => {
                assert_eq!(got.dims, want.dims, "{name}");
                match (&got.data, &want.data) {
                    (Data::F32(g), Data::F32(w)) => {
                        for (i, (a, b)) in g.iter().zip(w).enumerate() {
                            assert!(a == b || (a - b).abs() <= f32::EPSILON * b.abs(), "{name} [{i}]: {a} vs {b}");
                        }
                    }
                    (g, w) => assert_eq!(g, w, "{name}"),
                }
                report += &format!("{name}: matches\n");
                matched += 1;
            }
            Ok(None) => report += &format!("{name}: not folded\n"),
            Err(e) => {
                assert_eq!(e.0.lines().count(), 1, "{name}: {}", e.0);
                report += &format!("{name}: refused: {}\n", e.0);
            }
        }
    }
    report =
        format!("# {matched} of {} node tests of folded ops match; the others are refused.\n{report}", names.len());
    expect_test::expect_file!["onnx/node/FOLDED.txt"].assert_eq(&report);
}
