//! Percept: a declarative deep-learning model compiler for computer vision.
pub use percept_compiler as compiler;
pub use percept_runtime as runtime;

pub mod cli;
