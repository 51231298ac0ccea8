//! Percept: a declarative deep-learning model compiler for computer vision.
//!
//! Load a `.nn` model at run time, compile it, train it with mini-batches, evaluate it
//! and save PyTorch-compatible weights:
//!
//! ```no_run
//! use percept::runtime::{data, eval::evaluate, Model, TrainConfig, Trainer};
//!
//! # fn main() -> Result<(), percept::runtime::Error> {
//! let mut model = Model::from_file("examples/lenet5.nn")?; // parse + check
//! let mut splits = data::load("data/mnist", &model.spec.input.shape)?;
//! let norm = data::Norm::of(&splits.train);
//! splits.apply_norm(&norm);
//! model.data_meta.norm = norm;
//!
//! let mut trainer = Trainer::new(TrainConfig { epochs: 1, ..TrainConfig::default() })?;
//! trainer.init_model(&mut model)?; // seeded initialization + the optimizer
//! trainer.fit(&mut model, &splits, &mut ())?; // JIT-compiled training steps
//!
//! let report = evaluate(&mut model, splits.test.as_ref().unwrap(), 500)?;
//! println!("test accuracy {:.2}%", 100.0 * report.accuracy.unwrap());
//! model.save_weights("lenet5.safetensors".as_ref())?;
//! # Ok(())
//! # }
//! ```
//!
//! The compiler (`percept::compiler`) and the runtime (`percept::runtime`) are
//! re-exported whole; `percept::cli` is the command line and `percept::explorer` the
//! kernel explorer's HTML page.

pub use percept_compiler as compiler;
pub use percept_macros::network;
pub use percept_runtime as runtime;

pub mod aot;
pub mod cli;
pub mod explorer;
pub mod onnx;
pub mod torch;
