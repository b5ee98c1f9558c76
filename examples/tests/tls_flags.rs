//! `calc-server` and `calc-client` over TLS, as a user runs them: a registry in this process serves its API
//! over TLS and grants the calc server's certificate the `Calc` service; the calc server (a child process)
//! serves over TLS and registers over mutual TLS; the calc client (a child process) discovers it and calls it
//! over TLS. A client without `--tls-ca` is told the registry speaks TLS.

use std::process::Stdio;
use std::time::Duration;

use rpc_core::tls::{ClientCa, ServerTls};
use rpc_registry::server::credentials::IdentityGrant;
use rpc_registry::{Credentials, RegistryConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod support;

#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/src/certs.rs"]
mod certs;

#[tokio::test]
async fn calc_server_and_calc_client_talk_over_tls_through_a_tls_registry() {
    let dir = certs::scratch_dir("examples-tls");
    let ca = certs::Ca::new("test CA");
    let registry_id = ca.server(&["127.0.0.1"]);
    let calc_id = ca.peer(&["127.0.0.1", "calc.client.test"]);
    let ca_pem = certs::write(&dir, "ca.pem", &ca.pem);
    let calc_cert = certs::write(&dir, "calc.pem", &calc_id.cert);
    let calc_key = certs::write(&dir, "calc.key", &calc_id.key);

    let config = RegistryConfig {
        credentials: Credentials {
            identities: vec![IdentityGrant {
                name: "calc.client.test".into(),
                services: vec!["Calc".into()],
            }],
            ..Credentials::default()
        },
        tls: Some(
            ServerTls::from_pem(
                registry_id.cert.as_bytes(),
                registry_id.key.as_bytes(),
                Some(ClientCa {
                    pem: ca.pem.as_bytes(),
                    required: false,
                }),
            )
            .unwrap(),
        ),
        ..RegistryConfig::default()
    };
    let registry = support::start_registry(config).await;

    let mut server = Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args(["--registry", &registry, "--weight", "1"])
        .arg("--tls-cert")
        .arg(&calc_cert)
        .arg("--tls-key")
        .arg(&calc_key)
        .arg("--tls-ca")
        .arg(&ca_pem)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut address = String::new();
    let stdout = server.stdout.take().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut address),
    )
    .await
    .expect("calc-server prints its address")
    .unwrap();
    let address = address.trim().to_owned();

    let client = Command::new(env!("CARGO_BIN_EXE_calc-client"))
        .args(["--registry", &registry, "--calls", "200"])
        .arg("--tls-ca")
        .arg(&ca_pem)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), client)
        .await
        .expect("calc-client finishes within 30 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "{e}: {last:?}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(summary["ok"], 200);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["by_instance"][address.as_str()], 200);

    let plain = Command::new(env!("CARGO_BIN_EXE_calc-client"))
        .args(["--registry", &registry, "--calls", "1"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), plain)
        .await
        .expect("calc-client gives up within 30 s")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("this looks like TLS"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
