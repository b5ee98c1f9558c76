//! Fuzzes the decoding of a JSON call's arguments: `named_args` on the object keyed by name, then
//! `JsonCall.decode_within` on the array it makes; see `../json_harness.rs`.
#![no_main]

#[path = "../json_harness.rs"]
mod json_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| json_harness::run(data));
