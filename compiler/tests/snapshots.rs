//! Snapshots of printed compiler stages, so changes to autodiff or graph building show up
//! in review. Update with `UPDATE_EXPECT=1 cargo test -p percept-compiler --test snapshots`.

mod common;

use common::{spec, train_graph};
use expect_test::expect_file;
use percept_compiler::autodiff::{differentiate, GradOptions};

fn training_graph(text: &str, batch: usize) -> String {
    let spec = spec(text);
    differentiate(&train_graph(&spec, batch), &GradOptions::default()).unwrap().to_string()
}

#[test]
fn training_graph_of_a_small_mlp() {
    let g = training_graph("model mlp { input [3] dense(4) relu dense(2) loss softmax_cross_entropy }", 2);
    expect_file!["snapshots/mlp_train.ir"].assert_eq(&g);
}

#[test]
fn training_graph_of_a_residual_cnn_with_batchnorm_and_dropout() {
    let text = "model res {
        input [1, 6, 6]
        stem: conv2d(2, kernel: 3, padding: same)
        batchnorm
        relu
        conv2d(2, kernel: 3, padding: 1)
        add(stem)
        maxpool(2)
        flatten
        dropout(p: 0.25)
        dense(3)
        sigmoid
        loss binary_cross_entropy
    }";
    expect_file!["snapshots/residual_train.ir"].assert_eq(&training_graph(text, 2));
}

#[test]
fn ast_dump() {
    let src = percept_compiler::SourceFile::new("x.nn", common::example("xor.nn"));
    let ast = percept_compiler::parse(&src).unwrap();
    let dump = ast.dump(&|s| {
        let (l, c) = src.line_col(s.start);
        format!("{l}:{c}")
    });
    expect_file!["snapshots/xor.ast"].assert_eq(&dump);
}
