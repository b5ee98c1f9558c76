//! The Python client of HTTP/JSON (`examples/python/calc_client.py`, Python's standard library alone) against
//! `calc-server --http`, a real process registered with a registry in this test: its three calls answer as the
//! script expects, the method's own error as `422 CalcError`. Needs `python3`: without it the test says so and
//! passes, unless `RPC_REQUIRE_PYTHON` is set (CI sets it), when it fails. Real processes, so real time; every
//! wait is bounded.

use std::time::Duration;

use tokio::process::Command;

mod support;

/// The longest any step may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// The script, beside this package's sources.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/calc_client.py");

#[tokio::test]
async fn the_python_client_calls_calc_server_over_http() {
    if !support::python3_runs("examples/python/calc_client.py") {
        return;
    }
    let (mut server, address) = support::calc_server(&["--http"], PATIENCE).await;

    let run = Command::new("python3")
        .arg(SCRIPT)
        .arg(&address)
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("the Python client finishes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let expected = [
        format!(r#"Calc.add {{"a": 2, "b": 3}} -> 5 (from {address})"#),
        format!(r#"Calc.div {{"a": 7, "b": 2}} -> 3 (from {address})"#),
        String::from(r#"Calc.div {"a": 1, "b": 0} -> 422 CalcError: "DivisionByZero""#),
    ];
    let printed: Vec<&str> = std::str::from_utf8(&run.stdout).unwrap().lines().collect();
    assert_eq!(printed, expected, "{stderr}");
    server.kill().await.unwrap();
}
