//! `rpc-registry weight SERVICE ADDRESS WEIGHT` as an operator runs it against `rpc-registry serve`: refused
//! without the registry's token, a drain that `ls` shows beside the instance's own weight, an undo, and a
//! weight that is not one refused before anything is sent.

use std::time::Duration;

use rpc_core::{Client, Metadata};
use rpc_registry::{NewInstance, RegistryClient};

mod support;

const TOKEN: &str = "the-registry-token";

/// Runs `rpc-registry ARGS... --registry ADDR`, with `token` if given: its status, stdout and stderr.
async fn run(registry: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rpc-registry"));
    command.args(args).args(["--registry", registry]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("rpc-registry ends within 30 s")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drains_an_instance_and_gives_it_back_its_weight() {
    let dir = std::env::temp_dir().join(format!("cli-weight-{}", std::process::id()));
    let data_dir = dir.display().to_string();
    let (mut registry, addr) = support::serve(&[
        "--token",
        TOKEN,
        "--data-dir",
        &data_dir,
        "--address-check",
        "off",
    ])
    .await;
    let client = RegistryClient::new(Client::connect(addr.as_str()).await.unwrap()).with_metadata(
        Metadata::from_pairs([("authorization", format!("Bearer {TOKEN}"))]).unwrap(),
    );
    let instance = NewInstance {
        service: "Calc".into(),
        address: "127.0.0.1:7001".into(),
        weight: 5,
        metadata: Default::default(),
    };
    client.register(instance).await.unwrap().unwrap();

    let (ok, _, err) = run(&addr, None, &["weight", "Calc", "127.0.0.1:7001", "0"]).await;
    assert!(!ok);
    assert!(
        err.contains(
            "setting a weight refused: writing rules or weights needs the registry's own token"
        ),
        "{err}"
    );
    let (ok, out, err) = run(
        &addr,
        Some(TOKEN),
        &["weight", "Calc", "127.0.0.1:7001", "0"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "drained Calc 127.0.0.1:7001: clients see weight 0"
    );
    let (ok, out, err) = run(&addr, None, &["ls", "Calc"]).await;
    assert!(ok, "{err}");
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.contains("127.0.0.1:7001   0 (own 5)"), "{out}");

    let (ok, out, err) = run(
        &addr,
        Some(TOKEN),
        &["weight", "Calc", "127.0.0.1:7001", "registered"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "Calc 127.0.0.1:7001 has its own weight again: 5"
    );
    let (ok, _, err) = run(
        &addr,
        Some(TOKEN),
        &["weight", "Calc", "127.0.0.1:7001", "heavy"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("expected a weight (0 to 4294967295) or `registered`"),
        "{err}"
    );
    let (ok, _, err) = run(&addr, Some(TOKEN), &["weight", "Calc", "127.0.0.1:9", "2"]).await;
    assert!(!ok);
    assert!(
        err.contains("no instance of Calc is registered at 127.0.0.1:9"),
        "{err}"
    );
    registry.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
