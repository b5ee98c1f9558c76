//! Fuzzes the payload codec's decoding of argument tuples under a limit on their memory; see
//! `../payload_harness.rs`.
#![no_main]

#[path = "../payload_harness.rs"]
mod payload_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| payload_harness::run(data));
