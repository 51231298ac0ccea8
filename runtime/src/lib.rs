//! Percept's runtime: data, initialization, optimizers and schedules, the training loop,
//! evaluation, and PyTorch-compatible checkpoints, over the programs the compiler builds.

pub mod data;
pub mod error;
pub mod fuzzing;
pub mod init;
pub mod machine;
pub mod memory;
pub mod model;
pub mod npy;
pub mod parallel;
pub mod rng;
pub mod tensorfile;
pub mod viz;

pub use error::{Error, Result};
pub use model::{Backend, Model};
pub mod eval;
pub mod schedule;
pub mod train;

pub use train::{TrainConfig, Trainer};
