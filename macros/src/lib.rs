//! The `network!` proc-macro (work in progress: see issue "network!").
