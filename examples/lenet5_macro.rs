//! LeNet-5 written inside Rust with `network!`, trained on the bundled MNIST.
//!
//!     cargo run --release --example lenet5_macro
//!
//! The model below is checked when this file compiles: a shape error is a compile error
//! pointing at the layer.

use percept::runtime::data::{self, Norm};
use percept::runtime::train::{EpochReport, Observer};
use percept::runtime::{Model, TrainConfig};

percept::network! {
    pub model Lenet5 {
        input [1, 28, 28]
        conv2d(6, kernel: 5, padding: 2)
        relu
        maxpool(2)
        conv2d(16, kernel: 5)
        relu
        maxpool(2)
        flatten
        dense(120)
        relu
        dense(84)
        relu
        dense(10)
        loss softmax_cross_entropy
    }
}

/// Prints test accuracy after each epoch.
struct Report;

impl Observer for Report {
    fn epoch(&mut self, _: &Model, r: &EpochReport) -> percept::runtime::Result<()> {
        let test = r.test.as_ref().and_then(|t| t.accuracy).unwrap_or(f64::NAN);
        println!(
            "epoch {}: train loss {:.4}, test accuracy {:.2}% ({:.0} samples/s)",
            r.epoch,
            r.train_loss,
            100.0 * test,
            r.samples_per_s
        );
        Ok(())
    }
}

fn main() -> Result<(), percept::runtime::Error> {
    println!(
        "{}: input {:?}, output {:?}, {} parameters",
        Lenet5::NAME,
        Lenet5::INPUT_SHAPE,
        Lenet5::OUTPUT_SHAPE,
        Lenet5::PARAMETERS
    );
    let mut splits = data::load("data/mnist", &Lenet5::INPUT_SHAPE)?;
    let norm = Norm::of(&splits.train);
    splits.apply_norm(&norm);
    let mut net = Lenet5::with_config(TrainConfig { epochs: 2, ..TrainConfig::default() })?;
    net.model_mut().data_meta.norm = norm;
    net.fit(&splits, &mut Report)?;
    net.save("runs/lenet5_macro.safetensors")?;
    println!("weights saved to runs/lenet5_macro.safetensors");
    Ok(())
}
