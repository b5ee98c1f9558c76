//! The `rpc-registry` binary as a user runs it: `serve` over TLS with a credentials file, checked by clients
//! over 127.0.0.1 (a granted client certificate registers, others are refused with the reason, a plain client is
//! told the registry speaks TLS), the warning of an open registry and the open-file limit it raised, tokens
//! refused by the one rule without being shown, a drain on SIGTERM as on SIGINT, `--unix-socket` (a stale
//! socket file replaced, calls over it, the file removed at exit), and `--help` naming every flag with its
//! default.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rpc_core::tls::ClientTls;
use rpc_core::{Client, ClientConfig};
use rpc_registry::{NewInstance, RegistryClient};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/src/certs.rs"]
mod certs;
mod support;

use support::serve;

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
    match client.register(calc_instance(service)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// An instance of `service` at 127.0.0.1:7001, weight 1.
fn calc_instance(service: &str) -> NewInstance {
    NewInstance {
        service: service.to_owned(),
        address: "127.0.0.1:7001".to_owned(),
        weight: 1,
        metadata: Default::default(),
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
    assert!(
        stderr.lines().any(|l| l.starts_with("warning: no token")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("rpc-registry: open-file limit")),
        "the limit it raised, or found, is said: {stderr}"
    );
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
        "--unix-socket",
        "--ttl-ms",
        "--token",
        "--credentials",
        "--address-check",
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--require-client-cert",
        "--max-instances",
        "--max-connections",
        "--drain-timeout-ms",
        "--max-frame-len",
    ] {
        assert!(
            help.contains(flag),
            "`serve --help` does not mention {flag}:\n{help}"
        );
    }
    // Each flag's default: `rpc_registry::flags` checks every one; here, that the binary's help is that.
    for default in [
        "[default: 10000]",
        "[default: --max-instances + 1024]",
        "[default: 16777216]",
    ] {
        assert!(help.contains(default), "{default} missing:\n{help}");
    }
}

/// Runs `rpc-registry serve` with `args` and `env`, expecting it to refuse to start: its exit status and stderr.
/// Panics if it is still running after 10 s (it started instead).
async fn refused_to_serve(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .env_remove("RPC_REGISTRY_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the rpc-registry binary starts");
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("piped stderr");
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = pipe.read_to_string(&mut stderr).await;
        child.wait().await
    })
    .await
    .unwrap_or_else(|_| panic!("`serve {args:?}` with {env:?} started instead of refusing"))
    .unwrap();
    (status.code(), stderr)
}

#[tokio::test]
async fn serve_refuses_empty_and_short_tokens_without_showing_them() {
    let empty = "rpc-registry: --token (or RPC_REGISTRY_TOKEN): the token is empty; a token needs at least 8 bytes\n";
    assert_eq!(
        refused_to_serve(&["--token", ""], &[]).await,
        (Some(1), empty.to_owned())
    );
    assert_eq!(
        refused_to_serve(&[], &[("RPC_REGISTRY_TOKEN", "")]).await,
        (Some(1), empty.to_owned())
    );
    let (code, stderr) = refused_to_serve(&["--token", "k3y"], &[]).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "rpc-registry: --token (or RPC_REGISTRY_TOKEN): the token is too short: 3 of at least 8 bytes\n"
    );
    // The same rule in a credentials file, and a malformed file shows no token either.
    let dir = certs::scratch_dir("registry-cli-tokens");
    for (text, expected) in [
        (
            r#"{"tokens": [{"token": "k3y", "services": ["Calc"]}]}"#,
            "token 1: the token is too short: 3 of at least 8 bytes",
        ),
        (
            r#"{"tokens": ["SECRET-2b9f41d7"]}"#,
            "a value of the wrong type or form (not shown: it may be a secret), expected struct TokenGrant",
        ),
        (
            r#"{"tokens": [{"SECRET-2b9f41d7": ["Calc"]}]}"#,
            "an unknown key (not shown: it may be a secret)",
        ),
    ] {
        let path = file(&dir, "credentials.json", text);
        let (code, stderr) = refused_to_serve(&["--credentials", &path], &[]).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(
            !stderr.contains("SECRET") && !stderr.contains("k3y"),
            "{text}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends SIGTERM to process `pid`.
#[cfg(unix)]
fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}: {status}");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_the_registry_as_sigint_does() {
    let (mut child, addr) = serve(&[]).await;
    let pid = child.id().expect("the registry runs");
    let config = ClientConfig {
        default_deadline: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let client = RegistryClient::new(Client::lazy_with(addr.as_str(), config).await.unwrap());
    client
        .register(calc_instance("Calc"))
        .await
        .unwrap()
        .unwrap();
    // A watch waits for a change, and a run of reads goes on, while the registry is told to stop.
    let seen = client.instances("Calc".into()).await.unwrap();
    let watch = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .watch("Calc".into(), seen.epoch, seen.revision, 60_000)
                .await
        }
    });
    let (started, mut running) = tokio::sync::watch::channel(0u64);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, started) = (client.clone(), started.clone());
        workers.spawn(async move {
            let (mut ok, mut lost) = (0u64, Vec::new());
            for _ in 0..1_000_000 {
                match client.instances("Calc".into()).await {
                    Ok(_) => {
                        ok += 1;
                        started.send_modify(|n| *n += 1);
                    }
                    // Refused before it was processed (go-away, or the registry gone): the run is over.
                    Err(e) if e.is_not_processed() => break,
                    Err(e) => lost.push(e.to_string()),
                }
            }
            (ok, lost)
        });
    }
    tokio::time::timeout(Duration::from_secs(10), running.wait_for(|&n| n >= 100))
        .await
        .expect("reads are answered")
        .unwrap();
    sigterm(pid);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the registry drains and exits within 30 s")
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .expect("the watch ended")
        .unwrap();
    assert!(
        answered.is_ok(),
        "the waiting watch was answered, not cut: {answered:?}"
    );
    let mut ok = 0;
    while let Some(worker) = workers.join_next().await {
        let (answered, lost) = worker.unwrap();
        assert!(lost.is_empty(), "calls lost to SIGTERM: {lost:?}");
        ok += answered;
    }
    assert!(ok >= 100);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
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
    assert!(
        stderr.contains("rpc-registry: SIGTERM: shutting down\n")
            && stderr.ends_with("rpc-registry: stopped\n"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn serve_takes_calls_on_a_unix_socket_too_and_removes_its_file_at_exit() {
    let dir = certs::scratch_dir("registry-cli-unix");
    let path = dir.join("registry.sock");
    // A socket file left by a registry that is gone is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let shown = path.display().to_string();
    let (mut child, _) = serve(&["--unix-socket", &shown]).await;
    let client = RegistryClient::connect_unix(&path).await.unwrap();
    let instance = NewInstance {
        service: "Calc".into(),
        address: "127.0.0.1:7001".into(),
        weight: 1,
        metadata: Default::default(),
    };
    // `--address-check peer` (the default) takes an address of this host from a caller on the Unix socket.
    client.register(instance).await.unwrap().unwrap();
    let seen = client.instances("Calc".into()).await.unwrap();
    assert_eq!(seen.instances.len(), 1, "{seen:?}");
    sigterm(child.id().expect("the registry runs"));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the registry exits within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!path.exists(), "the socket file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}
