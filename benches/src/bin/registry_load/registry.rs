//! The registry under test, in a process of its own (this binary again, with `--serve`), so that its memory
//! and threads are its own: the child serves `rpc_registry::serve` on two ports of 127.0.0.1 that the OS
//! assigns, prints them on one line, and exits when its standard input closes (when the driver goes away). With
//! `--store etcd` it keeps its instances in etcd (a replica of the etcd store), and the driver can start a second
//! replica beside it to time how long one takes to read every instance from etcd.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rpc_registry::{RegistryConfig, StoreConfig};
use tokio::time::Instant;

use crate::{Store, dashboard, process};

/// What the child prints once it listens.
const READY: &str = "registry listening";

/// The registry's configuration for `instances` instances in services of `per_service`, over `store`.
pub(crate) fn config(
    instances: usize,
    per_service: usize,
    ttl: Duration,
    store: StoreConfig,
) -> RegistryConfig {
    RegistryConfig {
        ttl,
        // The instances of the load, and the probe's.
        max_instances: instances + 16,
        max_instances_per_service: per_service.max(16),
        store,
        ..RegistryConfig::default()
    }
}

/// The store `--store` names; `endpoints` are etcd's client URLs, comma-separated.
pub(crate) fn store(store: Store, endpoints: Option<&str>) -> Result<StoreConfig, String> {
    match store {
        Store::Memory => Ok(StoreConfig::Memory),
        #[cfg(feature = "etcd")]
        Store::Etcd => {
            let endpoints: Vec<String> = endpoints
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            if endpoints.is_empty() {
                return Err("the registry's --store etcd needs --etcd-endpoints".into());
            }
            Ok(StoreConfig::Etcd(rpc_registry::EtcdConfig::new(endpoints)))
        }
        #[cfg(not(feature = "etcd"))]
        Store::Etcd => {
            let _ = endpoints;
            Err(crate::NO_ETCD.into())
        }
    }
}

/// The child's side: serves a registry with `config` until standard input closes.
pub(crate) fn serve(mut config: RegistryConfig) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the registry's runtime: {e}"))?;
    runtime.block_on(async move {
        let rpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the registry's port: {e}"))?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the registry's HTTP port: {e}"))?;
        let (a, b) = (
            rpc.local_addr().map_err(|e| e.to_string())?,
            http.local_addr().map_err(|e| e.to_string())?,
        );
        // A replica announces where clients reach it, as `rpc-registry serve` does.
        #[cfg(feature = "etcd")]
        if let StoreConfig::Etcd(etcd) = &mut config.store {
            (etcd.api, etcd.http) = (a.to_string(), Some(b.to_string()));
        }
        #[cfg(not(feature = "etcd"))]
        let _ = &mut config;
        println!("{READY} {a} {b}");
        let stdin_closed = async {
            // A blocking read on a thread of its own: EOF (or an error) means the driver is gone.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
        };
        rpc_registry::serve(config, rpc, Some(http), stdin_closed)
            .await
            .map_err(|e| format!("the registry failed: {e}"))
    })
}

/// The registry process, stopped (by its pid) when dropped.
pub(crate) struct Registry {
    child: Child,
    /// Its RPC API.
    pub(crate) rpc: SocketAddr,
    /// Its HTTP port.
    pub(crate) http: SocketAddr,
}

impl Registry {
    /// Starts this binary with `--serve` and `args`, and waits for its ports.
    pub(crate) fn spawn(args: &[String]) -> Result<Registry, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut child = Command::new(exe)
            .arg("--serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the registry process: {e}"))?;
        let stdout = child.stdout.take().ok_or("the registry has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the registry's ports: {e}"))?;
        let ports: Vec<&str> = line
            .trim()
            .strip_prefix(READY)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let parse = |s: Option<&&str>| s.and_then(|s| s.parse::<SocketAddr>().ok());
        match (parse(ports.first()), parse(ports.get(1))) {
            (Some(rpc), Some(http)) => Ok(Registry { child, rpc, http }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the registry said {line:?}, expected `{READY} RPC HTTP`"
                ))
            }
        }
    }

    /// The registry's resident memory and its peak so far, in MiB.
    pub(crate) fn memory_mib(&self) -> (f64, f64) {
        process::memory_mib(self.child.id())
    }

    /// The registry's CPU time so far (user plus system).
    pub(crate) fn cpu(&self) -> Duration {
        process::cpu(self.child.id())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a new replica took to start beside a running one, reading every instance from the store.
pub(crate) struct Joined {
    /// From starting its process to its ports being bound (before it opens the store).
    pub(crate) bound: Duration,
    /// From its ports being bound to its first HTTP answer: opening the store (for etcd: a lease, the replica's
    /// key, then every key read in pages and put into the index).
    pub(crate) opened: Duration,
    /// The instances its first answer counts (the sum of `rpc_registry_instances`).
    pub(crate) instances: f64,
    /// Its resident memory then, in MiB.
    pub(crate) rss: f64,
    /// Its CPU time then.
    pub(crate) cpu: Duration,
}

/// Starts another registry with `args` (a replica of the same etcd), waits for its first answer, and stops it.
pub(crate) async fn join(args: Vec<String>) -> Result<Joined, String> {
    let began = Instant::now();
    let replica = tokio::task::spawn_blocking(move || Registry::spawn(&args))
        .await
        .map_err(|e| format!("cannot start the second replica: {e}"))??;
    let bound = began.elapsed();
    // The HTTP port is bound before the store opens, and answers once it has: the request waits till then.
    let body = dashboard::get(replica.http, "/metrics").await?;
    let opened = began.elapsed() - bound;
    let instances = String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("rpc_registry_instances{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    let (rss, _) = replica.memory_mib();
    Ok(Joined {
        bound,
        opened,
        instances,
        rss,
        cpu: replica.cpu(),
    })
}
