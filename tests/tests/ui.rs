//! Every diagnostic of `#[service]`: each `tests/ui/*.rs` must fail to compile with exactly the error in its
//! `.stderr` file, pointing at the offending tokens. Regenerate the expectations with `TRYBUILD=overwrite`
//! after a deliberate change, and review the diff.

#[test]
fn service_macro_diagnostics() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/*.rs");
}
