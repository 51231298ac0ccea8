//! The native tiles alone, as `build.rs` compiles them into the object file libraries
//! built by `percept build` link (`no_std`: a library must not need Rust's runtime).
#![no_std]
#![allow(clippy::missing_safety_doc)]

include!("tiles.rs");
