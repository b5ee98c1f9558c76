//! Every diagnostic of `#[service]`: each `tests/ui/*.rs` must fail to compile with exactly the errors in its
//! `.stderr` file, pointing at the offending tokens. Regenerate the expectations with `TRYBUILD=overwrite`
//! after a deliberate change, and review the diff.
//!
//! The cases live here, in the macro's own crate, because trybuild builds them as a crate of its own (in
//! `target/tests/trybuild`) that depends on everything the testing crate depends on: rpc-core and serde here,
//! not the end-to-end suite's registry, TLS and HTTP stacks.

#[test]
fn service_macro_diagnostics() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
