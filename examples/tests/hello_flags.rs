//! `hello-server --registry ADDR --label KEY=VALUE` as a user runs it: it registers `Greeter` with its labels,
//! and `--label` without `--registry` is refused, saying why. Real processes; every wait is bounded.

use std::process::Stdio;
use std::time::Duration;

use rpc_registry::RegistryConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod support;

#[tokio::test]
async fn hello_server_registers_with_its_labels() {
    let registry = support::start_registry(RegistryConfig::default()).await;
    let mut server = Command::new(env!("CARGO_BIN_EXE_hello-server"))
        .args(["--listen", "127.0.0.1:0", "--registry", &registry])
        .args(["--label", "version=v2", "--label", "zone=a"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("hello-server registers within 10 s")
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with("hello-server: registered 127.0.0.1:"),
        "{line}"
    );
    let client = rpc_registry::RegistryClient::new(
        rpc_core::Client::connect(registry.as_str()).await.unwrap(),
    );
    let snapshot = client.instances("Greeter".to_owned()).await.unwrap();
    assert_eq!(snapshot.instances.len(), 1);
    let labels = &snapshot.instances[0].metadata;
    assert_eq!(labels.get("version").map(String::as_str), Some("v2"));
    assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
}

#[tokio::test]
async fn a_label_without_a_registry_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_hello-server"))
        .args(["--listen", "127.0.0.1:0", "--label", "version=v2"])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("hello-server ends within 30 s")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--label needs --registry: labels are registered with the instance"),
        "{stderr}"
    );
}
