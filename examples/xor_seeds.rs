//! The local-minima slide made concrete: over 20 seeds, how often does gradient descent
//! solve XOR with 2 hidden tanh units, and how often with 8?
//!
//!     cargo run --release --example xor_seeds
//!
//! Each run: Glorot-uniform initialization from the seed, full-batch SGD (lr 0.1,
//! momentum 0.9) for 500 epochs on the four XOR points, binary cross-entropy; "solved"
//! means all four points classified correctly.

use percept::runtime::{data, eval::evaluate, Model, TrainConfig, Trainer};

fn solved(text: &str, seed: u64) -> Result<bool, percept::runtime::Error> {
    let mut model = Model::from_source("xor.nn", text)?;
    let config = TrainConfig { epochs: 500, batch: 4, lr: 0.1, seed, init: "glorot".into(), ..TrainConfig::default() };
    let mut trainer = Trainer::new(config)?;
    trainer.init_model(&mut model)?;
    let splits = data::xor();
    trainer.fit(&mut model, &splits, &mut ())?;
    let report = evaluate(&mut model, splits.test.as_ref().expect("xor has a test set"), 4)?;
    Ok(report.accuracy == Some(1.0))
}

fn main() -> Result<(), percept::runtime::Error> {
    let net = |hidden: usize| {
        format!("model xor_{hidden} {{ input [2] dense({hidden}) tanh dense(1) sigmoid loss binary_cross_entropy }}")
    };
    println!("hidden units  solved (of 20 seeds)  seeds that failed");
    for hidden in [2, 8] {
        let mut failed = Vec::new();
        for seed in 1..=20 {
            if !solved(&net(hidden), seed)? {
                failed.push(seed);
            }
        }
        println!("{hidden:>12}  {:>20}  {failed:?}", 20 - failed.len());
    }
    Ok(())
}
