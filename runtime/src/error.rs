//! The runtime's error: a message for the user that says what is wrong and where.

/// One error type for the runtime: the message says what is wrong and where.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `Err(Error)` with a formatted message.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::Error(format!($($t)*))) };
}

impl From<percept_compiler::Error> for Error {
    fn from(e: percept_compiler::Error) -> Error {
        Error(e.to_string())
    }
}
