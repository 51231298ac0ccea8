//! Extracted features are better features: k-nearest-neighbour classification of MNIST
//! on LeNet-5's penultimate layer against k-NN on raw pixels, same protocol.
//!
//!     cargo run --release -- train examples/lenet5.nn          # the weights
//!     cargo run --release --example knn_features
//!
//! Protocol: the first 10,000 training images are the reference set, the 10,000 test
//! images are the queries, k = 3, Euclidean distance, majority vote (a three-way tie goes
//! to the nearest). Features: the output of statement 10 (the relu after dense(84)),
//! computed by the compiled forward pass; pixels: the 784 raw values in [0, 1].
//! Optionally `--weights FILE` (default runs/lenet5/weights.safetensors).

use percept::runtime::data::{self, Dataset};
use percept::runtime::Model;
use std::time::Instant;

const REFERENCES: u32 = 10_000;
const K: usize = 3;

/// Row-major [n, d] features of a data set's first `n` samples at layer `layer`.
fn features(model: &mut Model, ds: &Dataset, layer: usize) -> Result<Vec<f32>, percept::runtime::Error> {
    let per = ds.sample_len();
    let mut out = vec![];
    for chunk in ds.x.chunks(500 * per) {
        let fetch = model.forward(chunk, None, &[layer])?;
        out.extend(fetch.activations.into_iter().next().expect("exposed").1);
    }
    Ok(out)
}

/// k-NN accuracy of `queries` against `refs` (both [n, d]): distances through
/// ‖q‖² + ‖r‖² − 2·q·r, the products by `matrixmultiply` in blocks of queries.
fn knn_accuracy(refs: &[f32], ref_labels: &[u32], queries: &[f32], query_labels: &[u32], d: usize) -> f64 {
    let (nr, nq) = (ref_labels.len(), query_labels.len());
    let norms = |m: &[f32]| m.chunks(d).map(|r| r.iter().map(|v| v * v).sum::<f32>()).collect::<Vec<_>>();
    let (rn, qn) = (norms(refs), norms(queries));
    let block = 500;
    let mut dots = vec![0.0f32; block * nr];
    let mut correct = 0;
    for q0 in (0..nq).step_by(block) {
        let m = block.min(nq - q0);
        // SAFETY: the pointers and strides describe [m, d] · [d, nr] → [m, nr] inside the
        // three buffers.
        unsafe {
            matrixmultiply::sgemm(
                m,
                d,
                nr,
                1.0,
                queries[q0 * d..].as_ptr(),
                d as isize,
                1,
                refs.as_ptr(),
                1,
                d as isize,
                0.0,
                dots.as_mut_ptr(),
                nr as isize,
                1,
            );
        }
        for i in 0..m {
            let mut best = [(f32::INFINITY, 0u32); K];
            for j in 0..nr {
                let dist = qn[q0 + i] + rn[j] - 2.0 * dots[i * nr + j];
                if dist < best[K - 1].0 {
                    best[K - 1] = (dist, ref_labels[j]);
                    best.sort_by(|a, b| a.0.total_cmp(&b.0));
                }
            }
            let votes = |l: u32| best.iter().filter(|b| b.1 == l).count();
            let winner = best
                .iter()
                .map(|b| b.1)
                .max_by_key(|&l| (votes(l), std::cmp::Reverse(best.iter().position(|b| b.1 == l))))
                .unwrap();
            correct += (winner == query_labels[q0 + i]) as usize;
        }
    }
    correct as f64 / nq as f64
}

fn main() -> Result<(), percept::runtime::Error> {
    let args: Vec<String> = std::env::args().collect();
    let weights = args
        .iter()
        .position(|a| a == "--weights")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "runs/lenet5/weights.safetensors".into());
    let mut model = Model::from_file("examples/lenet5.nn")?;
    model.load_weights_file(weights.as_ref())?;
    let raw = data::load("data/mnist", &model.spec.input.shape)?;
    let refs = raw.train.subset(&(0..REFERENCES).collect::<Vec<_>>(), "references".into());
    let queries = raw.test.expect("MNIST has a test set");
    let labels = |ds: &Dataset| (0..ds.len()).map(|i| ds.label(i).expect("classes")).collect::<Vec<u32>>();
    let (rl, ql) = (labels(&refs), labels(&queries));

    let t = Instant::now();
    let pixels = knn_accuracy(&refs.x, &rl, &queries.x, &ql, 784);
    println!(
        "k-NN (k = {K}) on raw pixels (784 values):           {:.2}% ({:.1} s)",
        100.0 * pixels,
        t.elapsed().as_secs_f64()
    );

    let layer = 10;
    let (mut rf, mut qf) = (refs.clone(), queries.clone());
    rf.apply_norm(&model.data_meta.norm);
    qf.apply_norm(&model.data_meta.norm);
    let t = Instant::now();
    let (fr, fq) = (features(&mut model, &rf, layer)?, features(&mut model, &qf, layer)?);
    let d = model.spec.layers[layer].out_shape[0];
    let feats = knn_accuracy(&fr, &rl, &fq, &ql, d);
    println!(
        "k-NN (k = {K}) on LeNet-5 features ({} values, `{}`): {:.2}% ({:.1} s with extraction)",
        d,
        model.spec.layers[layer].tag(),
        100.0 * feats,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
