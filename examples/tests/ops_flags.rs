//! What the example programs show their operators, run as a user runs them: `calc-server --metrics ADDR`
//! serves Prometheus metrics that count the calls `calc-client` made, and `calc-client --progress always`
//! reports calls done and their rate.

use std::process::Stdio;
use std::time::Duration;

use rpc_registry::RegistryConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/src/prom.rs"]
mod prom;

#[tokio::test]
async fn calc_server_serves_metrics_and_calc_client_shows_progress() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = listener.local_addr().unwrap().to_string();
    tokio::spawn(rpc_registry::serve(
        RegistryConfig::default(),
        listener,
        None,
        std::future::pending(),
    ));

    let mut server = Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args(["--registry", &registry, "--metrics", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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

    let client = Command::new(env!("CARGO_BIN_EXE_calc-client"))
        .args([
            "--registry",
            &registry,
            "--calls",
            "3000",
            "--progress",
            "always",
        ])
        .args(["--progress-ms", "20"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), client)
        .await
        .expect("calc-client finishes within 60 s")
        .unwrap();
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
