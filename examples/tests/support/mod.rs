//! What the example programs' tests share: a registry served in the test's process, on 127.0.0.1 at a port the
//! OS assigns, for the programs under test to register with and discover through; `calc-server` started with
//! such a registry; and whether `python3` runs, for the tests of the Python clients.

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

/// Starts `calc-server` on 127.0.0.1 at a port the OS assigns, registered with a registry of this test's, with
/// `args` besides; the process (killed when dropped) and the address it printed, within `patience`.
#[allow(
    dead_code,
    reason = "only the tests of the Python clients start calc-server so"
)]
pub(crate) async fn calc_server(
    args: &[&str],
    patience: std::time::Duration,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let registry = start_registry(RegistryConfig::default()).await;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args(["--listen", "127.0.0.1:0", "--registry", &registry])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let address = tokio::time::timeout(patience, lines.next_line())
        .await
        .expect("calc-server prints its address")
        .unwrap()
        .expect("calc-server prints its address");
    (server, address)
}
