//! Model text: lexing, parsing, checking, and for what checks, graph building in both modes
//! and autodiff. Any panic is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    percept_runtime::fuzzing::model_text(data);
});
