//! SIGTERM, which systemd, Docker and Kubernetes send to stop a process, drains each example server exactly as
//! Ctrl-C does: `hello-server` tells its clients go-away and finishes the calls in flight, `calc-server` first
//! deregisters, then drains. Each runs as a process of its own, gets SIGTERM (by pid) in the middle of a run of
//! calls, and must exit 0 with no call lost. (The registry's own test is in `rpc-registry/tests/cli.rs`.)
//! `hello-server` on a Unix socket, called by `hello-client`, removes the socket file when SIGTERM stops it.

#![cfg(unix)]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use examples::calc::CalcClient;
use examples::hello::GreeterClient;
use rpc_registry::{Discovery, DiscoveryConfig, RegistryClient, RegistryConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

mod support;

/// A child process, its first line of stdout (its address), and its stderr gathered as it comes.
struct Server {
    child: Child,
    addr: String,
    stderr: watch::Receiver<String>,
}

/// Starts `program` with `args`; waits (at most 10 s) for the address it prints first.
async fn start(program: &str, args: &[&str]) -> Server {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("RPC_REGISTRY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .unwrap_or_else(|_| panic!("{program} prints its address within 10 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("{program} printed nothing"));
    let (tx, stderr) = watch::channel(String::new());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tx.send_modify(|all| {
                all.push_str(&line);
                all.push('\n');
            });
        }
    });
    Server {
        child,
        addr,
        stderr,
    }
}

impl Server {
    /// Waits (at most 10 s) until stderr has a line starting with `prefix`.
    async fn said(&mut self, prefix: &str) {
        let wait = self
            .stderr
            .wait_for(|all| all.lines().any(|l| l.starts_with(prefix)));
        let found = matches!(
            tokio::time::timeout(Duration::from_secs(10), wait).await,
            Ok(Ok(_))
        );
        assert!(
            found,
            "no line `{prefix}...` in 10 s: {}",
            *self.stderr.borrow()
        );
    }

    /// Sends SIGTERM, then waits (at most 30 s) for the exit: its code.
    async fn sigterm(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid}");
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server drains and exits within 30 s")
            .unwrap();
        exit.code()
    }
}

/// Calls counted by outcome.
#[derive(Default)]
struct Tally {
    /// Calls answered, watched so that a test waits for a count instead of polling.
    ok: watch::Sender<u64>,
    /// Calls whose fate is unknown or that failed after the server took them: lost.
    lost: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn answered(&self) {
        self.ok.send_modify(|n| *n += 1);
    }

    fn answers(&self) -> u64 {
        *self.ok.borrow()
    }

    /// Waits (at most 20 s) until `n` calls were answered.
    async fn reach(&self, n: u64) {
        let mut ok = self.ok.subscribe();
        let reached =
            tokio::time::timeout(Duration::from_secs(20), ok.wait_for(|&ok| ok >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{} of {n} calls answered in 20 s",
            self.answers()
        );
    }
}

#[tokio::test]
async fn sigterm_drains_hello_server_with_no_call_lost() {
    let mut server = start(
        env!("CARGO_BIN_EXE_hello-server"),
        &["--listen", "127.0.0.1:0"],
    )
    .await;
    let greeter = GreeterClient::connect(server.addr.as_str()).await.unwrap();
    let tally = Arc::new(Tally::default());
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (greeter, tally) = (greeter.clone(), Arc::clone(&tally));
        workers.spawn(async move {
            for i in 0..1_000_000u64 {
                match greeter.hello(format!("worker {w} call {i}")).await {
                    Ok(_) => tally.answered(),
                    // Refused unprocessed (go-away, then the server gone): the run is over for this worker.
                    Err(e) if e.is_not_processed() => return,
                    Err(e) => tally.lost.lock().unwrap().push(e.to_string()),
                }
            }
        });
    }
    tally.reach(200).await;
    let code = server.sigterm().await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while workers.join_next().await.is_some() {}
    })
    .await
    .expect("every worker stops once the server is gone");
    assert_eq!(
        *tally.lost.lock().unwrap(),
        Vec::<String>::new(),
        "calls lost to SIGTERM"
    );
    assert_eq!(code, Some(0), "exit status after SIGTERM");
    server.said("SIGTERM: shutting down").await;
    server.said("stopped").await;
}

#[tokio::test]
async fn hello_client_calls_hello_server_over_a_unix_socket_whose_file_goes_at_sigterm() {
    let dir = std::env::temp_dir().join(format!("rpc-hello-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hello.sock");
    let listen = format!("unix:{}", path.display());
    let mut server = start(env!("CARGO_BIN_EXE_hello-server"), &["--listen", &listen]).await;
    assert_eq!(server.addr, listen, "it prints the address it serves on");
    let client = Command::new(env!("CARGO_BIN_EXE_hello-client"))
        .args(["--server", &listen, "Ada", "Grace"])
        .kill_on_drop(true)
        .output();
    let client = tokio::time::timeout(Duration::from_secs(30), client)
        .await
        .expect("hello-client finishes within 30 s")
        .unwrap();
    let printed = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(
        printed.lines().any(|l| l == "hello, Ada; hello, Grace"),
        "{printed}"
    );
    assert_eq!(server.sigterm().await, Some(0), "exit status after SIGTERM");
    assert!(!path.exists(), "the socket file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sigterm_deregisters_calc_server_then_drains_with_no_call_failed() {
    let registry = support::start_registry(RegistryConfig::default()).await;
    let program = env!("CARGO_BIN_EXE_calc-server");
    let args = ["--registry", registry.as_str(), "--listen", "127.0.0.1:0"];
    let mut leaving = start(program, &args).await;
    let mut staying = start(program, &args).await;
    leaving.said("calc-server: registered").await;
    staying.said("calc-server: registered").await;

    let discovery = Discovery::new(registry.as_str(), DiscoveryConfig::default())
        .await
        .unwrap();
    let found = discovery.wait_for("Calc", 2, Duration::from_secs(10)).await;
    assert_eq!(found.len(), 2);
    let calc = CalcClient::discover(&discovery, "Calc");
    let tally = Arc::new(Tally::default());
    let by_leaving = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (calc, tally, stop) = (calc.clone(), Arc::clone(&tally), Arc::clone(&stop));
        let (by_leaving, leaving_addr) = (Arc::clone(&by_leaving), leaving.addr.clone());
        workers.spawn(async move {
            for i in 0..1_000_000i64 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                // Every failure counts here: the balancer sends a call the leaving server refused elsewhere.
                match calc.add(i, 1).await {
                    Ok(answer) if answer.value == i + 1 => {
                        tally.answered();
                        if answer.instance == leaving_addr {
                            by_leaving.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(answer) => tally.lost.lock().unwrap().push(format!("{answer:?}")),
                    Err(e) => tally.lost.lock().unwrap().push(e.to_string()),
                }
            }
        });
    }
    // Weights are equal and round-robin alternates: of 1,000 answers, the leaving instance gave about half.
    tally.reach(1000).await;
    let before = by_leaving.load(Ordering::Relaxed);
    assert!(
        before >= 100,
        "the leaving instance answered {before} of 1,000 calls"
    );

    let code = leaving.sigterm().await;
    // It deregistered before it drained: the registry no longer lists it, well before its TTL.
    let registry_client =
        RegistryClient::new(rpc_core::Client::connect(registry.as_str()).await.unwrap());
    let listed = registry_client.instances("Calc".into()).await.unwrap();
    let addresses: Vec<&str> = listed
        .instances
        .iter()
        .map(|i| i.address.as_str())
        .collect();
    assert_eq!(
        addresses,
        [staying.addr.as_str()],
        "deregistered at SIGTERM"
    );
    // The run goes on with the other instance.
    tally.reach(tally.answers() + 300).await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), async {
        while workers.join_next().await.is_some() {}
    })
    .await
    .expect("the workers stop");
    assert_eq!(
        *tally.lost.lock().unwrap(),
        Vec::<String>::new(),
        "calls failed around SIGTERM"
    );
    assert_eq!(code, Some(0), "exit status after SIGTERM");
    leaving
        .said("calc-server: SIGTERM: deregistering, then finishing calls in flight")
        .await;
    leaving.said("calc-server: stopped").await;
}
