//! See `percept_runtime::fuzzing::graph_text`: it must refuse bad input with an error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    percept_runtime::fuzzing::graph_text(data);
});
