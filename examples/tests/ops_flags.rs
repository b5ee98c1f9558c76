//! What the example programs show their operators, run as a user runs them: `calc-server --metrics ADDR`
//! serves Prometheus metrics that count the calls `calc-client` made, and `calc-client --progress always`
//! reports calls done and their rate; calc-server says when it registers again, when another instance
//! supersedes it and when the registry refuses it for good (its `/healthz` then answers 503); calc-client tells
//! a registry that does not answer from one without instances, and exits non-zero when a call failed.

use std::process::Stdio;
use std::time::Duration;

use rpc_registry::server::credentials::TokenGrant;
use rpc_registry::{
    Credentials, LeaseRef, NewInstance, Registration, RegistrationConfig, RegistryClient,
    RegistryConfig,
};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, Command};

mod support;

#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/src/prom.rs"]
mod prom;

/// What `prom` makes its `GET` with.
#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/src/http.rs"]
mod http;

#[tokio::test]
async fn calc_server_serves_metrics_and_calc_client_shows_progress() {
    let registry = support::start_registry(RegistryConfig::default()).await;

    let mut server = calc_server(&registry, &[]);
    // stderr names the metrics address, then reports the registration: wait for both.
    let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
    let (mut metrics, mut registered) = (None, false);
    for _ in 0..10 {
        let line = tokio::time::timeout(Duration::from_secs(10), stderr.next_line())
            .await
            .expect("calc-server reports within 10 s")
            .unwrap()
            .expect("calc-server keeps running");
        if let Some(rest) = line.strip_prefix("calc-server: metrics on http://") {
            metrics = rest
                .strip_suffix("/metrics")
                .map(|a| a.parse::<std::net::SocketAddr>().unwrap());
        }
        registered |= line.starts_with("calc-server: registered");
        if metrics.is_some() && registered {
            break;
        }
    }
    let metrics = metrics.expect("calc-server names its metrics address");
    assert!(registered);

    let output = calc_client(&[
        "--registry",
        &registry,
        "--calls",
        "3000",
        "--progress",
        "always",
        "--progress-ms",
        "20",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("calls ")).collect();
    let last = progress
        .last()
        .unwrap_or_else(|| panic!("no progress line in {stderr}"));
    assert!(last.starts_with("calls 3,000/3,000 (100%)  "), "{last}");
    assert!(last.contains(" calls/s  0 failed  "), "{last}");

    let (body, samples) = prom::scrape(metrics).await;
    let labels = [("service", "Calc"), ("method", "add"), ("status", "Ok")];
    assert_eq!(
        prom::value(&samples, "rpc_server_calls_total", &labels),
        Some(3000.0),
        "{body}"
    );
}

/// Starts `calc-server` registering with `registry`, serving metrics on a port the OS picks, with `extra`
/// flags; its stdout (the address it serves) and stderr (what it reports) are piped.
fn calc_server(registry: &str, extra: &[&str]) -> tokio::process::Child {
    Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args(["--registry", registry, "--metrics", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs `calc-client` with `args` to its end (at most 60 s); what it printed and how it exited.
async fn calc_client(args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_calc-client"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("calc-client finishes within 60 s")
        .unwrap()
}

/// A stub of the registry at `addr`.
async fn registry_client(addr: &str) -> RegistryClient {
    let client = rpc_core::Client::lazy_with(addr, Default::default())
        .await
        .unwrap();
    RegistryClient::new(client)
}

/// Reads `lines` until one contains `text` (at most 20 lines, each within 10 s); returns it.
async fn line_with(lines: &mut Lines<BufReader<ChildStderr>>, text: &str) -> String {
    for _ in 0..20 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {text:?} within 10 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("the output ended before a line with {text:?}"));
        if line.contains(text) {
            return line;
        }
    }
    panic!("no line with {text:?} among the next 20");
}

/// `GET path` from `addr`: the status line and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let (status, _, body) = prom::http_get(addr, path).await.unwrap();
    (status, body)
}

#[tokio::test]
async fn calc_server_says_when_it_registers_again_and_when_another_instance_supersedes_it() {
    let registry = support::start_registry(RegistryConfig::default()).await;
    let mut server = calc_server(&registry, &[]);
    let mut stdout = BufReader::new(server.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .expect("calc-server prints its address within 10 s")
        .unwrap()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
    let metrics = line_with(&mut stderr, "calc-server: metrics on http://").await;
    let metrics: std::net::SocketAddr = metrics
        .trim_start_matches("calc-server: metrics on http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let registered = line_with(&mut stderr, "calc-server: registered").await;
    let lease: u64 = registered
        .split("lease ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no lease id in {registered:?}"));
    assert_eq!(
        get(metrics, "/healthz").await,
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );

    // The registry forgets the lease (as when it expires): calc-server registers again, and says so.
    let client = registry_client(&registry).await;
    let forgotten = LeaseRef {
        lease,
        incarnation: 1,
        service: "Calc".into(),
        address: address.clone(),
    };
    client.deregister(forgotten).await.unwrap().unwrap();
    let again = line_with(&mut stderr, "again").await;
    assert!(
        again.starts_with(&format!(
            "calc-server: registered {address} again with {registry}: lease "
        )),
        "{again}"
    );
    let (body, samples) = prom::scrape(metrics).await;
    assert_eq!(
        prom::value(&samples, "rpc_registration_registered_total", &[]),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        prom::value(&samples, "rpc_registration_superseded", &[]),
        Some(0.0)
    );

    // Another instance registers the same address: calc-server says so loudly, and its health turns.
    let other = NewInstance {
        service: "Calc".into(),
        address: address.clone(),
        weight: 9,
        metadata: Default::default(),
    };
    client.register(other).await.unwrap().unwrap();
    let warning = line_with(&mut stderr, "superseded").await;
    let expected = format!(
        "calc-server: WARNING: superseded: a newer registration of {address} with {registry} took over lease "
    );
    assert!(warning.starts_with(&expected), "{warning}");
    let (status, body) = get(metrics, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(
        body.starts_with(&format!("superseded: a newer registration of {address}")),
        "{body}"
    );
    let (body, samples) = prom::scrape(metrics).await;
    assert_eq!(
        prom::value(&samples, "rpc_registration_superseded", &[]),
        Some(1.0),
        "{body}"
    );
}

/// A registry that grants `Calc` to `token` alone.
fn granting(token: &str) -> RegistryConfig {
    RegistryConfig {
        credentials: Credentials {
            tokens: vec![TokenGrant {
                token: token.to_owned(),
                services: vec!["Calc".into()],
            }],
            ..Credentials::default()
        },
        ..RegistryConfig::default()
    }
}

#[tokio::test]
async fn calc_server_says_loudly_when_the_registry_refuses_it_for_good() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = addr.to_string();
    // Served on this test's runtime, which stops them when the test ends.
    let serve = |config, listener| {
        tokio::spawn(rpc_registry::serve(
            config,
            listener,
            None,
            std::future::pending(),
        ))
    };
    let first = serve(granting("calc-token-1"), listener);
    let mut server = calc_server(&registry, &["--token", "calc-token-1"]);
    let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
    let metrics = line_with(&mut stderr, "calc-server: metrics on http://").await;
    let metrics: std::net::SocketAddr = metrics
        .trim_start_matches("calc-server: metrics on http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    line_with(&mut stderr, "calc-server: registered").await;

    // The registry restarts with credentials that no longer grant calc-server's token (a rotated file).
    first.abort();
    let _ = first.await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _second = serve(granting("calc-token-2"), listener);
    let warning = line_with(&mut stderr, "WARNING").await;
    let expected =
        format!("calc-server: WARNING: refused: the registry at {registry} refused lease ");
    assert!(warning.starts_with(&expected), "{warning}");
    assert!(warning.contains("heartbeat of Calc refused"), "{warning}");
    let (status, body) = get(metrics, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(body.starts_with("refused: the registry at "), "{body}");
    let (body, samples) = prom::scrape(metrics).await;
    assert_eq!(
        prom::value(&samples, "rpc_registration_refused", &[]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        prom::value(&samples, "rpc_registration_superseded", &[]),
        Some(0.0),
        "{body}"
    );
}

#[tokio::test]
async fn calc_client_tells_a_registry_that_does_not_answer_from_one_without_instances() {
    // A registry stopped mid-run (SIGSTOP): the kernel accepts connections, nothing answers.
    let stopped = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = stopped.local_addr().unwrap().to_string();
    let output = calc_client(&["--registry", &addr, "--calls", "1"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(
        stderr,
        format!(
            "calc-client: the registry at {addr} did not answer within 5.0 s (is it running, or stopped?)\n"
        )
    );
    drop(stopped);

    // A registry that answers, with no instance of Calc.
    let registry = support::start_registry(RegistryConfig::default()).await;
    let output = calc_client(&["--registry", &registry, "--calls", "1", "--wait-ms", "200"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(
        stderr,
        format!(
            "calc-client: no instance of Calc is registered with the registry at {registry} (waited 0.2 s)\n"
        )
    );
}

#[tokio::test]
async fn calc_client_exits_non_zero_when_a_call_fails() {
    let registry = support::start_registry(RegistryConfig::default()).await;
    // An instance of Calc registered where nothing listens (a port free a moment ago): every call fails.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let instance = NewInstance {
        service: "Calc".into(),
        address: gone,
        weight: 1,
        metadata: Default::default(),
    };
    let _registration = Registration::register(&registry, instance, RegistrationConfig::default())
        .await
        .unwrap();
    let output = calc_client(&[
        "--registry",
        &registry,
        "--calls",
        "5",
        "--progress",
        "never",
    ])
    .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{stdout}{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(
        (summary["ok"].as_u64(), summary["failed"].as_u64()),
        (Some(0), Some(5))
    );
    assert!(
        stderr.ends_with("calc-client: 5 of 5 calls failed\n"),
        "{stderr}"
    );
}
