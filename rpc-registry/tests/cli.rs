//! The `rpc-registry` binary as a user runs it: `serve` over TLS with a credentials file, checked by clients
//! over 127.0.0.1 (a granted client certificate registers, others are refused with the reason, a plain client is
//! told the registry speaks TLS), the warning of an open registry, and `--help` naming every flag.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rpc_core::tls::ClientTls;
use rpc_core::{Client, ClientConfig};
use rpc_registry::{NewInstance, RegistryClient};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/src/certs.rs"]
mod certs;

/// Starts `rpc-registry serve` with `args`; returns the child and the API address it printed first.
async fn serve(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the rpc-registry binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("rpc-registry prints its address within 10 s")
    .unwrap();
    let addr = line
        .split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches(',')
        .to_owned();
    (child, addr)
}

async fn register(addr: &str, tls: Option<ClientTls>, service: &str) -> Result<(), String> {
    let config = ClientConfig {
        tls,
        default_deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = RegistryClient::new(
        Client::lazy_with(addr, config)
            .await
            .map_err(|e| e.to_string())?,
    );
    let instance = NewInstance {
        service: service.to_owned(),
        address: "127.0.0.1:7001".to_owned(),
        weight: 1,
        metadata: Default::default(),
    };
    match client.register(instance).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn file(dir: &Path, name: &str, text: &str) -> String {
    certs::write(dir, name, text).display().to_string()
}

#[tokio::test]
async fn serve_over_tls_with_a_credentials_file() {
    let dir = certs::scratch_dir("registry-cli");
    let ca = certs::Ca::new("test CA");
    let server = ca.server(&["127.0.0.1"]);
    let ca_pem = file(&dir, "ca.pem", &ca.pem);
    let cert = file(&dir, "registry.pem", &server.cert);
    let key = file(&dir, "registry.key", &server.key);
    let credentials = file(
        &dir,
        "credentials.json",
        r#"{"identities": [{"name": "calc.client.test", "services": ["Calc"]}]}"#,
    );
    let (child, addr) = serve(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-ca",
        &ca_pem,
        "--credentials",
        &credentials,
    ])
    .await;
    let identity = |names: &[&str]| {
        let id = ca.client(names);
        ClientTls::from_pem(
            ca.pem.as_bytes(),
            Some((id.cert.as_bytes(), id.key.as_bytes())),
        )
        .unwrap()
    };
    assert_eq!(
        register(&addr, Some(identity(&["calc.client.test"])), "Calc").await,
        Ok(())
    );
    assert_eq!(
        register(&addr, Some(identity(&["calc.client.test"])), "Billing").await,
        Err("registration of Billing refused: the client certificate calc.client.test may write Calc, not \
             Billing"
            .to_owned())
    );
    let plain = register(&addr, None, "Calc").await.unwrap_err();
    assert!(plain.contains("this looks like TLS"), "{plain}");
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_open_registry_says_so_and_the_peer_check_is_on() {
    let (mut child, addr) = serve(&[]).await;
    // Open: anyone may register, but only their own address (the binary checks the peer by default).
    assert_eq!(register(&addr, None, "Calc").await, Ok(()));
    let config = ClientConfig::default();
    let client = RegistryClient::new(Client::lazy_with(addr.as_str(), config).await.unwrap());
    let foreign = NewInstance {
        service: "Calc".into(),
        address: "10.0.0.9:9".into(),
        weight: 1,
        metadata: Default::default(),
    };
    let err = client.register(foreign).await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("is not the caller's 127.0.0.1"),
        "{err}"
    );
    let _ = child.start_kill();
    let mut stderr = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut stderr),
    )
    .await;
    assert!(stderr.starts_with("warning: no token"), "{stderr}");
}

#[test]
fn help_names_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--http",
        "--ttl-ms",
        "--token",
        "--credentials",
        "--address-check",
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--require-client-cert",
    ] {
        assert!(
            help.contains(flag),
            "`serve --help` does not mention {flag}:\n{help}"
        );
    }
}
