//! The `Store` service of the resilience tests: instances whose behaviour a test switches at any time (serve,
//! stall, fail, answer slowly) and that count the calls they started and those dropped before they finished,
//! with balanced clients over them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::balance::{Balancer, Instance, SmoothWrr};
use rpc_core::{Client, ClientConfig, Metrics, Server, service};
use tokio::net::TcpListener;

/// The service under test: a read that may be sent twice, and a write that may not.
#[service]
pub trait Store {
    /// Answers `key` (a read).
    #[idempotent]
    async fn get(&self, key: u64) -> u64;
    /// Answers `key` (a write).
    async fn put(&self, key: u64) -> u64;
}

/// Answers at once.
pub const SERVE: u8 = 0;
/// Never answers.
pub const STALL: u8 = 1;
/// Panics (the call fails `Internal`).
pub const FAIL: u8 = 2;
/// Answers after 500 ms.
pub const SLOW: u8 = 3;

/// One instance: how it behaves now, and what it saw.
#[derive(Default)]
pub struct Behaviour {
    /// [`SERVE`], [`STALL`], [`FAIL`] or [`SLOW`].
    pub mode: AtomicU8,
    /// Calls its handler started.
    pub started: AtomicUsize,
    /// Calls whose handler was dropped before it finished (cancelled, or its connection closed).
    pub dropped: AtomicUsize,
}

/// Counts a handler dropped before it finished.
struct Dropped<'a>(&'a Behaviour, bool);

impl Drop for Dropped<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An instance's implementation of `Store`, behaving as its [`Behaviour`] says.
#[derive(Clone)]
pub struct Stored(pub Arc<Behaviour>);

impl Stored {
    async fn answer(&self, key: u64) -> u64 {
        let b = &*self.0;
        b.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = Dropped(b, false);
        match b.mode.load(Ordering::SeqCst) {
            STALL => std::future::pending::<()>().await,
            FAIL => panic!("this instance fails every call"),
            SLOW => tokio::time::sleep(Duration::from_millis(500)).await,
            _ => {}
        }
        guard.1 = true;
        key
    }
}

impl Store for Stored {
    async fn get(&self, key: u64) -> u64 {
        self.answer(key).await
    }

    async fn put(&self, key: u64) -> u64 {
        self.answer(key).await
    }
}

/// Starts `n` instances; their addresses and behaviours.
pub async fn instances(n: usize) -> Vec<(String, Arc<Behaviour>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let behaviour = Arc::new(Behaviour::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = Server::builder()
            .add_service(StoreServer::new(Stored(Arc::clone(&behaviour))))
            .build()
            .unwrap();
        tokio::spawn(server.serve(listener));
        out.push((addr, behaviour));
    }
    out
}

/// A balanced client over `instances` (smooth weighted round-robin, weight 1 each) with `config`.
pub fn client_of(instances: &[(String, Arc<Behaviour>)], config: ClientConfig) -> StoreClient {
    let list: Vec<Instance> = instances.iter().map(|(a, _)| Instance::new(a, 1)).collect();
    StoreClient::new(Client::balanced(
        Balancer::new(SmoothWrr::default(), list),
        config,
    ))
}

/// A client configuration with metrics (and them) and a deadline of 1 s.
pub fn metered() -> (ClientConfig, Metrics) {
    let metrics = Metrics::client();
    let config = ClientConfig {
        metrics: Some(metrics.clone()),
        default_deadline: Duration::from_secs(1),
        ..ClientConfig::default()
    };
    (config, metrics)
}

/// The value of an unlabelled client counter in the Prometheus text.
pub fn counter(metrics: &Metrics, name: &str) -> u64 {
    let text = metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}
