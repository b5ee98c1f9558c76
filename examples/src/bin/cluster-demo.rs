//! The whole story in one process: a registry, three `Calc` servers of weights 5, 1 and 1 that register and
//! heartbeat, and a client that discovers them and spreads calls by weight. Mid-run one server dies without
//! deregistering (a crash): calls keep succeeding (retried on the others), the registry evicts it when its lease
//! runs out, and the client's discovery hears of it at once.
//!
//! Run with `cargo run --release -p examples --bin cluster-demo`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use examples::calc::{CalcClient, CalcServer, Calculator};
use rpc_core::Server;
use rpc_registry::{
    Discovery, DiscoveryConfig, NewInstance, Registration, RegistrationConfig, RegistryConfig,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TTL: Duration = Duration::from_secs(3);
const CONCURRENCY: usize = 16;

/// A calc server of the demo.
struct Node {
    name: &'static str,
    address: String,
    weight: u32,
    server: JoinHandle<std::io::Result<()>>,
    registration: Registration,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let at = move || format!("[{:5.2}s]", start.elapsed().as_secs_f64());

    // The registry.
    let rpc = TcpListener::bind("127.0.0.1:0").await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let registry = rpc.local_addr()?.to_string();
    println!(
        "{} registry: API {registry}, HTTP http://{}/v1/services, TTL {} ms",
        at(),
        http.local_addr()?,
        TTL.as_millis()
    );
    let config = RegistryConfig {
        ttl: TTL,
        ..RegistryConfig::default()
    };
    tokio::spawn(rpc_registry::serve(
        config,
        rpc,
        Some(http),
        std::future::pending(),
    ));

    // The client's discovery, watching before the servers register, to time how soon it hears.
    let discovery = Discovery::new(&registry, DiscoveryConfig::default()).await?;
    let mut watch = discovery.watch("Calc");
    watch.borrow_and_update();

    // Three servers.
    let mut nodes = Vec::new();
    for (name, weight) in [("A", 5), ("B", 1), ("C", 1)] {
        let registering = Instant::now();
        let node = start_node(name, weight, &registry).await?;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            watch.wait_for(|s| s.instances.iter().any(|i| i.address == node.address)),
        )
        .await;
        println!(
            "{} calc {name} (weight {weight}) on {}: registered, lease {}; discovery heard {:.2} ms after \
             the registration was sent",
            at(),
            node.address,
            node.registration.lease().id,
            registering.elapsed().as_secs_f64() * 1e3
        );
        nodes.push(node);
    }
    let names: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| (n.address.clone(), format!("{}({})", n.name, n.weight)))
        .collect();
    let calc = CalcClient::discover(&discovery, "Calc");

    // Phase 1: calls one at a time, so the weighted round-robin shows exactly.
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..7000 {
        let answer = calc.add(i, 1).await?;
        *counts.entry(names[&answer.instance].clone()).or_default() += 1;
    }
    println!("{} 7000 calls, one at a time: {}", at(), show(&counts));

    // Phase 2: continuous load, and A dies mid-run.
    println!(
        "{} continuous load, {CONCURRENCY} calls in flight; A will die at +1.0 s without deregistering",
        at()
    );
    let load = Load::start(calc.clone(), names.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut nodes = nodes.into_iter();
    let a = nodes.next().ok_or("no node A")?;
    let killed = Instant::now();
    a.server.abort();
    drop(a.registration);
    println!(
        "{} killed A: its connections close, its heartbeats stop",
        at()
    );
    let _ = tokio::time::timeout(
        TTL * 3,
        watch.wait_for(|s| !s.instances.iter().any(|i| i.address == a.address)),
    )
    .await;
    let heard = killed.elapsed();
    println!(
        "{} discovery: A is gone, {:.0} ms after its death (evicted a TTL of {} ms after its last heartbeat)",
        at(),
        heard.as_secs_f64() * 1e3,
        TTL.as_millis()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let report = load.stop().await;
    println!("{} load stopped. Calls per half second:", at());
    println!("{}", report);

    // Graceful shutdown of the others: deregistration is seen at once.
    for node in nodes {
        let left = Instant::now();
        node.registration.deregister().await?;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            watch.wait_for(|s| !s.instances.iter().any(|i| i.address == node.address)),
        )
        .await;
        println!(
            "{} calc {} deregistered; discovery heard {:.2} ms after the deregistration was sent",
            at(),
            node.name,
            left.elapsed().as_secs_f64() * 1e3
        );
        node.server.abort();
    }
    Ok(())
}

async fn start_node(
    name: &'static str,
    weight: u32,
    registry: &str,
) -> Result<Node, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = Server::builder()
        .add_service(CalcServer::new(Calculator {
            instance: address.clone(),
        }))
        .build()?;
    let server = tokio::spawn(server.serve(listener));
    let instance = NewInstance {
        service: String::from("Calc"),
        address: address.clone(),
        weight,
        metadata: BTreeMap::from([(String::from("name"), String::from(name))]),
    };
    let registration =
        Registration::register(registry, instance, RegistrationConfig::default()).await?;
    Ok(Node {
        name,
        address,
        weight,
        server,
        registration,
    })
}

fn show(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The calls of one half second.
#[derive(Default)]
struct Bucket {
    by_instance: BTreeMap<String, u64>,
    failed: u64,
}

/// Continuous calls, counted per half second and per instance.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    buckets: Arc<Mutex<BTreeMap<u64, Bucket>>>,
    started: Instant,
    failed_total: Arc<AtomicU64>,
}

impl Load {
    fn start(calc: CalcClient, names: BTreeMap<String, String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let buckets: Arc<Mutex<BTreeMap<u64, Bucket>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let failed_total = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let names = Arc::new(names);
        let workers = (0..CONCURRENCY)
            .map(|w| {
                let (calc, stop, buckets) = (calc.clone(), Arc::clone(&stop), Arc::clone(&buckets));
                let (names, failed_total) = (Arc::clone(&names), Arc::clone(&failed_total));
                tokio::spawn(async move {
                    let mut i = w as i64;
                    while !stop.load(Ordering::Relaxed) {
                        let result = calc.add(i, 1).await;
                        let bucket = (started.elapsed().as_millis() / 500) as u64;
                        let mut b = buckets.lock().unwrap_or_else(|p| p.into_inner());
                        let entry = b.entry(bucket).or_default();
                        match result {
                            Ok(answer) if answer.value == i + 1 => {
                                let name = names
                                    .get(&answer.instance)
                                    .cloned()
                                    .unwrap_or(answer.instance);
                                *entry.by_instance.entry(name).or_default() += 1;
                            }
                            _ => {
                                entry.failed += 1;
                                failed_total.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        i += CONCURRENCY as i64;
                    }
                })
            })
            .collect();
        Load {
            stop,
            workers,
            buckets,
            started,
            failed_total,
        }
    }

    async fn stop(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = vec![format!(
            "  {:>9} {:>8} {:>7}  by instance",
            "from", "calls", "failed"
        )];
        let mut total = 0;
        for (bucket, b) in buckets.iter() {
            let calls: u64 = b.by_instance.values().sum::<u64>() + b.failed;
            total += calls;
            lines.push(format!(
                "  {:>8.1}s {:>8} {:>7}  {}",
                *bucket as f64 / 2.0,
                calls,
                b.failed,
                show(&b.by_instance)
            ));
        }
        lines.push(format!(
            "  total {total} calls in {:.1} s, {} failed",
            self.started.elapsed().as_secs_f64(),
            self.failed_total.load(Ordering::Relaxed)
        ));
        lines.join("\n")
    }
}
