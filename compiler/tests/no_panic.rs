//! Bad input never panics: random bytes and mutated valid models go through parsing,
//! checking, graph building for small batches in both modes, and autodiff. Parsing and
//! checking may refuse with a diagnostic; once a model checks, graph building may refuse
//! only the one batch-dependent rule (batch norm in training with one value per channel),
//! and autodiff not at all — anything else is a compiler bug and fails the test.

mod common;

use percept_compiler::autodiff::{differentiate, GradOptions};
use percept_compiler::build::{forward_graph, BuildOptions};
use percept_compiler::lex::{lex, TokenKind};
use percept_compiler::{parse_and_check, SourceFile};
use proptest::prelude::*;

fn pipeline(text: &str) {
    let src = SourceFile::new("fuzz.nn", text);
    match parse_and_check(&src) {
        Err(d) => {
            let _ = d.render(&src);
        }
        Ok(spec) => {
            let _ = spec.summary();
            for batch in [1, 3] {
                for opts in [BuildOptions::train(), BuildOptions::eval(), BuildOptions::inference()] {
                    let g = match forward_graph(&spec, batch, &opts) {
                        Ok(g) => g,
                        Err(d) if d.message.contains("batchnorm in training needs more than one value per channel") => {
                            continue
                        }
                        Err(d) => panic!("a checked model failed to build (batch {batch}): {}\n{text}", d.render(&src)),
                    };
                    let _ = g.to_string();
                    if opts.loss && spec.loss.is_some() && opts.mode == percept_compiler::ir::Mode::Train {
                        let grads = differentiate(&g, &GradOptions { params: None, input_grad: true });
                        let grads = grads.unwrap_or_else(|e| panic!("autodiff failed: {e}\n{text}"));
                        let _ = grads.to_string();
                    }
                }
            }
        }
    }
}

const EXAMPLES: [&str; 8] =
    ["lenet5.nn", "mlp.nn", "cnn_bn.nn", "xor.nn", "perceptron.nn", "activations.nn", "residual.nn", "strided.nn"];

const WORDS: [&str; 31] = [
    "dense",
    "conv2d",
    "conv_transpose2d",
    "groups",
    "dilation",
    "output_padding",
    "relu",
    "maxpool",
    "add",
    "concat",
    "upsample",
    "stem",
    "x",
    "input",
    "loss",
    "model",
    "kernel",
    "padding",
    "same",
    "valid",
    "true",
    "sigmoid",
    "batchnorm",
    "flatten",
    "softmax",
    "mse",
    "maxout",
    "pieces",
    "zz",
    "global_avgpool",
    "global_maxpool",
];

/// Rebuild text from tokens (spacing normalized), applying one edit.
fn mutate(text: &str, op: u8, at: usize, pick: usize, number: i64) -> String {
    let tokens = lex(text).unwrap();
    let mut words: Vec<String> = tokens
        .iter()
        .map(|t| match &t.kind {
            TokenKind::Ident(s) => s.clone(),
            TokenKind::Int(i) => i.to_string(),
            TokenKind::Float(x) => format!("{x:?}"),
            TokenKind::Punct(c) => c.to_string(),
        })
        .collect();
    let i = at % words.len();
    match op % 5 {
        0 => {
            words.remove(i);
        }
        1 => {
            let w = words[i].clone();
            words.insert(i, w);
        }
        2 => {
            let n = words.iter().enumerate().filter(|(_, w)| w.parse::<i64>().is_ok()).map(|(j, _)| j).nth(pick % 7);
            words[n.unwrap_or(i)] = number.to_string();
        }
        3 => words[i] = WORDS[pick % WORDS.len()].to_string(),
        _ => words.insert(i, [";", ",", ":", "(", ")", "[", "]", "{", "}", "-"][pick % 10].to_string()),
    }
    words.join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        pipeline(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_model_text_never_panics(
        words in proptest::collection::vec(proptest::sample::select(&WORDS[..]), 0..20),
        seps in proptest::collection::vec(proptest::sample::select(&["(", ")", "[", "]", ",", ":", ";", "3", "0", "-2", "1.5", "{", "}"][..]), 0..20),
    ) {
        let mut text = String::from("model m { input [1, 6, 6] ");
        for (w, s) in words.iter().zip(seps.iter().chain(std::iter::repeat(&" "))) {
            text.push_str(w);
            text.push(' ');
            text.push_str(s);
            text.push(' ');
        }
        text.push('}');
        pipeline(&text);
    }

    #[test]
    fn mutated_examples_never_panic(
        ex in 0..EXAMPLES.len(),
        edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), prop_oneof![Just(0i64), Just(-1), Just(1), Just(2), Just(5), Just(64), Just(1 << 30), Just(i64::MAX), any::<i64>()]), 1..4),
    ) {
        let mut text = common::example(EXAMPLES[ex]);
        for (op, at, pick, number) in edits {
            text = mutate(&text, op, at, pick, number);
        }
        pipeline(&text);
    }
}
