//! What the example programs' tests share: a registry served in the test's process, on 127.0.0.1 at a port the
//! OS assigns, for the programs under test to register with and discover through; and whether `python3` runs,
//! for the tests of the Python clients.

use rpc_registry::RegistryConfig;

/// Serves a registry with `config` on this test's runtime (which stops it when the test ends); its address.
pub(crate) async fn start_registry(config: RegistryConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = listener.local_addr().unwrap().to_string();
    tokio::spawn(rpc_registry::serve(
        config,
        listener,
        None,
        std::future::pending(),
    ));
    registry
}

/// Whether `python3` runs. Without it a test of a Python client says it did not run `what` and passes, unless
/// `RPC_REQUIRE_PYTHON` is set (CI sets it), when this panics.
#[allow(dead_code, reason = "only the tests of the Python clients ask")]
pub(crate) fn python3_runs(what: &str) -> bool {
    let present = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("RPC_REQUIRE_PYTHON").is_none(),
            "RPC_REQUIRE_PYTHON is set but python3 does not run"
        );
        eprintln!("python3 not found: {what} not run");
    }
    present
}
