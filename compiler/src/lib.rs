//! Percept's compiler.
//!
//! The pipeline, one module per stage (see `docs/ARCHITECTURE.md`):
//! `.nn` text —[`lex`] (nom)→ tokens —[`grammar`]→ [`ast`] —[`check`]→ [`spec::ModelSpec`]
//! (shapes per statement) —[`build`]→ [`ir::Graph`] (forward, batch N) —[`autodiff`]→ training
//! graph —[`interp`] (reference) or the Cranelift back end (feature `codegen`).

pub mod ast;
pub mod autodiff;
pub mod build;
pub mod check;
#[cfg(feature = "codegen")]
pub mod codegen;
pub mod diag;
pub mod error;
pub mod exec;
pub mod grammar;
pub mod interp;
pub mod ir;
pub mod layers;
pub mod lex;
pub mod ops;
pub mod parse;
pub mod shape;
pub mod span;
pub mod spec;
pub mod tensor;
pub mod text;

pub use check::check;
pub use diag::Diagnostic;
pub use error::Error;
pub use parse::{parse, parse_and_check};
pub use span::{SourceFile, Span};
pub use spec::ModelSpec;
