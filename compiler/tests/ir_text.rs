//! The graph IR's text form parses back: for every example's graphs (forward in both
//! modes, the training graph, the grad, update and evaluation programs with each
//! optimizer), print → parse gives the same graph, and printing that gives the same text.

mod common;

use common::{example, spec};
use percept_compiler::build::{forward_graph, BuildOptions};
use percept_compiler::exec::{self, Optimizer};
use percept_compiler::ir::{parse::parse, Graph};

fn round_trip(g: &Graph, what: &str) {
    let text = g.to_string();
    let back = parse(&text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    assert_eq!(back.to_string(), text, "{what}: printing the parsed graph");
    assert_eq!(&back, g, "{what}: the parsed graph");
}

#[test]
fn every_graph_of_every_example_parses_back() {
    let optimizers = [
        Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay: 0.0 },
        Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 },
        Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2 },
    ];
    let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).filter(|f| f.ends_with(".nn")) else { continue };
        let spec = spec(&example(file));
        round_trip(&forward_graph(&spec, 3, &BuildOptions::train()).unwrap(), file);
        round_trip(&forward_graph(&spec, 3, &BuildOptions::inference()).unwrap(), file);
        round_trip(&exec::eval_program(&spec, 2, false, &[]).unwrap(), file);
        if spec.loss.is_some() {
            round_trip(&exec::grad_program(&spec, 4, &[]).unwrap(), file);
            for opt in &optimizers {
                round_trip(&exec::update_program(&spec, opt, &[]), file);
            }
        }
        seen += 1;
    }
    assert!(seen >= 8, "{seen} examples");
}

#[test]
fn bad_text_is_an_error_with_its_line() {
    let good = "graph g eval batch=2 {\n  %0 = data : [2, 3]\n  // forward\n  %1 = relu(%0) : [2, 3]  # relu_0\n  output prediction = %1\n}\n";
    assert_eq!(parse(good).unwrap().to_string(), good);
    let cases = [
        ("%1 = relu(%0) : [2, 4]", "line 4: `relu` gives shapes [[2, 3]], the text says [[2, 4]]"),
        ("%1 = relu(%7) : [2, 3]", "line 4: input `%7` is not defined before this line"),
        ("%1 = frobnicate(%0) : [2, 3]", "line 4: no op is named `frobnicate`"),
        ("%1 = leaky_relu(%0) : [2, 3]", "line 4: `leaky_relu` needs `slope=`"),
        ("%1 = relu(%0) slope=2 : [2, 3]", "line 4: `relu` writes its attributes as ``, not `slope=2`"),
        ("%1 = maxpool(%0) size=[2, 2] stride=[2, 2] : [1]", "line 4: maxpool (relu_0) on inputs [2, 3]"),
        // Found by the fuzzer (fuzz/graph_text): a zero stride divided by zero, a huge
        // shape overflowed its element count.
        ("%1 = maxpool(%0) size=[2, 2] stride=[0, 2] : [1]", "line 4: `stride=` must be at least 1, not [0, 2]"),
        ("%1 = maxpool(%0) size=[0, 2] stride=[1, 2] : [1]", "line 4: `size=` must be at least 1, not [0, 2]"),
        ("%1 = relu(%0) : [4294967296, 4294967296]", "line 4: the shape [4294967296, 4294967296] has more than 2^40"),
        ("%1 = reshape(%0) shape=[18446744073709551615, 2] : [6]", "line 4: reshape (relu_0) on inputs [2, 3]: cannot"),
    ];
    for (line, want) in cases {
        let text = good.replace("%1 = relu(%0) : [2, 3]", line);
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().starts_with(want), "{line}: {e}");
    }
    let outer = "graph g eval batch=1 {\n  %0 = data : [2097152, 1]\n  %1 = matmul(%0, %0) trans_b : [1, 1]  # d\n}\n";
    let e = parse(outer).unwrap_err().to_string();
    assert!(e.starts_with("line 3: matmul (d) gives a tensor [2097152, 2097152] of more than 2^40 elements"), "{e}");
    assert!(parse("graph g eval batch=2 {\n").unwrap_err().to_string().contains("not closed"));
    assert!(parse("model m {}").unwrap_err().to_string().starts_with("line 1: expected `graph NAME MODE batch=N {`"));
}
