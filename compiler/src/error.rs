//! The compiler's error: what went wrong below the checker. User mistakes in a model are
//! [`crate::Diagnostic`]s, reported with their place by the checker; these are the rest —
//! failures that a checked model should never cause (an op's shape rule refusing its
//! inputs, a kernel that cannot be proved in bounds, Cranelift refusing a function), or a
//! program run with inputs it was not compiled for.

/// One error type for the whole compiler crate.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// The graph IR: an op's inputs do not fit its shape rule, a graph text that does not
    /// read, a gradient that cannot be taken.
    #[error("{0}")]
    Ir(String),
    /// The reference interpreter failed in an op (`tag` is the statement, if any).
    #[error("{op}{}: {message}", if tag.is_empty() { String::new() } else { format!(" ({tag})") })]
    Interp { tag: String, op: String, message: String },
    /// Code generation: fusion, the memory plan, lowering, Cranelift.
    #[error("{0}")]
    Codegen(String),
    /// A program run with a state, feed or item range it was not compiled for.
    #[error("{0}")]
    Exec(String),
    /// A program needs more memory than the process may use.
    #[error("{0}")]
    Memory(String),
}
