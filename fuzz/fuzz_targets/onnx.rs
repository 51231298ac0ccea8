//! See `percept::onnx::fuzz`: an ONNX file must be imported or refused, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    percept::onnx::fuzz(data);
});
