//! Fuzzes the registry's API with sequences of decoded requests on a paused clock; see `../harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
