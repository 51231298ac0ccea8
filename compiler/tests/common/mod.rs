//! Helpers shared by the compiler's integration tests.
#![allow(dead_code)]

use percept_compiler::build::{forward_graph, BuildOptions};
use percept_compiler::ir::Graph;
use percept_compiler::layers::Loss;
use percept_compiler::ops::SourceKind;
use percept_compiler::tensor::{Real, Tensor};
use percept_compiler::{parse_and_check, ModelSpec, SourceFile};
use std::collections::HashMap;

pub fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn spec(text: &str) -> ModelSpec {
    let src = SourceFile::new("test.nn", text);
    parse_and_check(&src).unwrap_or_else(|d| panic!("{}", d.render(&src)))
}

pub fn train_graph(spec: &ModelSpec, batch: usize) -> Graph {
    forward_graph(spec, batch, &BuildOptions::train()).expect("graph builds")
}

/// A small deterministic generator (xorshift64*), enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545f4914f6cdd1d)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn tensor<T: Real>(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor<T> {
        let n = shape.iter().product();
        Tensor::new(shape.to_vec(), (0..n).map(|_| T::from_f64(self.uniform(lo, hi))).collect())
    }
}

/// Random values for every source of a graph: data and parameters in [-1, 1), targets
/// that fit the loss, running variances positive.
pub fn random_feeds<T: Real>(g: &Graph, spec: &ModelSpec, rng: &mut Rng) -> HashMap<SourceKind, Tensor<T>> {
    let mut feeds = HashMap::new();
    for (kind, v) in g.sources() {
        let shape = g.shape(v).to_vec();
        let t = match kind {
            SourceKind::Target => match spec.loss.map(|l| l.loss) {
                Some(Loss::SoftmaxCrossEntropy) => {
                    let k = spec.output_shape()[0];
                    Tensor::new(shape.clone(), (0..shape[0]).map(|_| T::from_usize(rng.below(k))).collect())
                }
                Some(Loss::BinaryCrossEntropy) => {
                    let n = shape.iter().product();
                    Tensor::new(shape.clone(), (0..n).map(|_| T::from_usize(rng.below(2))).collect())
                }
                _ => rng.tensor(&shape, -1.0, 1.0),
            },
            SourceKind::State(name) if name.ends_with("running_var") => rng.tensor(&shape, 0.5, 1.5),
            _ => rng.tensor(&shape, -1.0, 1.0),
        };
        feeds.insert(kind.clone(), t);
    }
    feeds
}
