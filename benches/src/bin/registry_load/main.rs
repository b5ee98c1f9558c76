//! `registry-load`: the registry at scale, with and without a dashboard open. Not part of `cargo test`:
//!
//! ```sh
//! cargo run --release -p benches --bin registry-load                        # 100,000 instances, ~2 minutes
//! cargo run --release -p benches --bin registry-load -- --instances 10000 --phase-secs 5   # a quick look
//! cargo run --release -p benches --features etcd --bin registry-load -- --store etcd        # over etcd
//! ```
//!
//! A registry runs in a child process (this binary with `--serve`), with room for `--instances` instances in
//! services of `--per-service`. The driver holds that many leases over `--connections` connections (each
//! instance heartbeats every third of `--ttl-ms`, as registered instances do), and measures, in alternating
//! phases of `--phase-secs` without and with an open dashboard (a client that polls `/v1/overview` as the page
//! at `/` does):
//! - the heartbeat round trip (every heartbeat of the load);
//! - the watch latency: from a write to the service `probe` being sent to a waiting watch of it answering with
//!   the change (one change at a time, see `probe`);
//! - heartbeats per second, the registry's CPU time and resident memory (and its peak), evictions, and the
//!   dashboard's polls and bytes.
//!
//! With `--store etcd` (feature `etcd`) the registry keeps its instances in etcd: a single-member etcd the
//! driver starts (ports of 127.0.0.1 the OS picked, a temporary directory, all gone at exit) unless
//! `--etcd-endpoints` names one. The driver then also reports etcd's own metrics over the registration ramp and
//! each phase (proposals, puts, deletes, transactions, lease keep-alives, fsyncs, etcd's CPU), and, after the
//! phases, starts a second replica beside the first to time how long it takes to read every instance from etcd.
//!
//! # Layout
//! - `registry`: the registry's child process.
//! - `load`: the instances and their heartbeats.
//! - `probe`: the watch latency.
//! - `dashboard`: the open page.
//! - `histogram`: a lock-free histogram of durations.
//! - `etcd`: the etcd member and its metrics (`--store etcd`).
//! - `process`: a child process's CPU time and memory.
//! - `report`: what a run prints.

mod dashboard;
mod etcd;
mod histogram;
mod load;
mod probe;
mod process;
mod registry;
mod report;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rpc_core::{Client, ClientConfig};
use rpc_registry::RegistryClient;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use dashboard::Polls;
use etcd::Etcd;
use histogram::Histogram;
use load::Counts;
use registry::Registry;
use report::{Phase, Ramp};

/// How many times a second replica starts beside the first (etcd store), one after another.
const JOINS: usize = 3;

/// Why `--store etcd` cannot run in a binary built without the feature.
const NO_ETCD: &str = "--store etcd needs the registry's etcd store, which this binary was built without: \
     cargo run --release -p benches --features etcd --bin registry-load -- --store etcd";

/// Where the registry keeps its instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Store {
    /// In its own memory (the default store).
    Memory,
    /// In etcd (feature `etcd`).
    Etcd,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Etcd => "etcd",
        }
    }
}

/// Measures heartbeat round trips and watch latency at scale, with and without an open dashboard.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Instances registered (leases held), all renewed by heartbeats.
    #[arg(long, default_value_t = 100_000)]
    instances: usize,
    /// Instances per service (services `load-000`, `load-001`, ...).
    #[arg(long, default_value_t = 1000)]
    per_service: usize,
    /// The registry's TTL in milliseconds; instances heartbeat every third of it.
    #[arg(long, default_value_t = 3000)]
    ttl_ms: u64,
    /// Connections that carry the instances' registrations and heartbeats.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Tasks on each connection, each renewing its share of the instances one after another.
    #[arg(long, default_value_t = 256)]
    callers: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 20.0)]
    phase_secs: f64,
    /// Seconds between the last registration and the first phase.
    #[arg(long, default_value_t = 5.0)]
    warm_up_secs: f64,
    /// Pairs of phases (without, then with, a dashboard open).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The dashboard's pause after an answer, in milliseconds (the page's `POLL_MIN_MS`); 0 polls again at
    /// once, as the page did before it was paged.
    #[arg(long, default_value_t = 250)]
    dashboard_pause_ms: u64,
    /// The driver's worker threads.
    #[arg(long, default_value_t = 2)]
    driver_threads: usize,
    /// Where the registry keeps its instances: `etcd` needs the `etcd` feature.
    #[arg(long, value_enum, default_value_t = Store::Memory)]
    store: Store,
    /// etcd's client URLs, comma-separated (`http://HOST:PORT`), for `--store etcd`; without it the driver
    /// starts a single-member etcd of its own (`$ETCD_BIN`, else /usr/bin/etcd).
    #[arg(long)]
    etcd_endpoints: Option<String>,
    /// Run as the registry (the child process); used by the driver itself.
    #[arg(long, hide = true)]
    serve: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ttl = Duration::from_millis(args.ttl_ms);
    let result = if args.serve {
        registry::store(args.store, args.etcd_endpoints.as_deref()).and_then(|store| {
            registry::serve(registry::config(
                args.instances,
                args.per_service,
                ttl,
                store,
            ))
        })
    } else {
        run(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.instances == 0 || args.per_service == 0 || args.connections == 0 || args.callers == 0 {
        return Err(
            "--instances, --per-service, --connections and --callers must be at least 1".into(),
        );
    }
    if !(args.phase_secs.is_finite() && args.phase_secs > 0.0 && args.warm_up_secs >= 0.0) {
        return Err("--phase-secs must be positive and --warm-up-secs not negative".into());
    }
    if args.store == Store::Etcd && !cfg!(feature = "etcd") {
        return Err(NO_ETCD.into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.driver_threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the driver's runtime: {e}"))?;
    // Dropped after the registry (declared before it): the registry stops first, then etcd.
    let etcd = match (args.store, &args.etcd_endpoints) {
        (Store::Memory, _) => None,
        (Store::Etcd, Some(endpoints)) => Some(Etcd::external(endpoints)?),
        (Store::Etcd, None) => Some(runtime.block_on(Etcd::start())?),
    };
    if let Some(etcd) = &etcd {
        println!(
            "etcd at {}{}",
            etcd.endpoints,
            etcd.pid().map_or_else(
                || String::from(" (not the driver's)"),
                |pid| format!(" (pid {pid})")
            )
        );
    }
    let registry = Registry::spawn(&child_args(args, etcd.as_ref()))?;
    runtime.block_on(drive(args, &registry, etcd.as_ref()))
}

/// The registry child's flags.
fn child_args(args: &Args, etcd: Option<&Etcd>) -> Vec<String> {
    let mut child = vec![
        format!("--instances={}", args.instances),
        format!("--per-service={}", args.per_service),
        format!("--ttl-ms={}", args.ttl_ms),
        format!("--store={}", args.store.name()),
    ];
    if let Some(etcd) = etcd {
        child.push(format!("--etcd-endpoints={}", etcd.endpoints));
    }
    child
}

/// etcd's counters now, if the store is etcd.
async fn sample(etcd: Option<&Etcd>) -> Option<etcd::Sample> {
    match etcd {
        Some(etcd) => Some(etcd.sample().await),
        None => None,
    }
}

async fn client(addr: std::net::SocketAddr) -> Result<RegistryClient, String> {
    let client = Client::connect_with(addr, ClientConfig::default())
        .await
        .map_err(|e| format!("cannot connect to the registry at {addr}: {e}"))?;
    Ok(RegistryClient::new(client))
}

/// The registry's `rpc_registry_evictions_total`.
async fn evictions(registry: &Registry) -> f64 {
    let Ok(body) = dashboard::get(registry.http, "/metrics").await else {
        return f64::NAN;
    };
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("rpc_registry_evictions_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

async fn drive(args: &Args, registry: &Registry, etcd: Option<&Etcd>) -> Result<(), String> {
    let phases = 1 + 2 * args.rounds;
    let counts = Arc::new(Counts::new(phases));
    let latencies: Arc<Vec<Histogram>> = Arc::new((0..phases).map(|_| Histogram::new()).collect());
    let polls = Arc::new(Polls::default());
    let (stop, stopped) = watch::channel(false);
    let (open, opened) = watch::channel(false);
    let interval = Duration::from_millis((args.ttl_ms / 3).max(1));
    let mut tasks = JoinSet::new();

    // The instances: instance i goes to caller i modulo the callers, so every caller renews many services.
    let callers = args.connections * args.callers;
    let mut owned: Vec<Vec<_>> = vec![Vec::new(); callers];
    for i in 0..args.instances {
        owned[i % callers].push(load::instance(i, args.per_service));
    }
    let ramp_from = (
        sample(etcd).await,
        registry.cpu(),
        registry.memory_mib().0,
        process::cpu(std::process::id()),
    );
    let start = Instant::now() + Duration::from_millis(100);
    let mut owned = owned.into_iter().enumerate();
    for _ in 0..args.connections {
        let connection = client(registry.rpc).await?;
        for (j, mine) in owned.by_ref().take(args.callers) {
            // Callers start spread over one of their ticks, so that the registry sees an even stream.
            let tick = interval / mine.len().max(1) as u32;
            let at = start + tick * j as u32 / callers as u32;
            tasks.spawn(load::caller(
                connection.clone(),
                mine,
                interval,
                at,
                Arc::clone(&counts),
                stopped.clone(),
            ));
        }
    }
    let pending = Arc::new(probe::Pending::default());
    let probe_writes = Arc::clone(&pending);
    tasks.spawn(probe::watcher(
        client(registry.rpc).await?,
        Arc::clone(&pending),
        Arc::clone(&counts),
        Arc::clone(&latencies),
        stopped.clone(),
    ));
    tasks.spawn(probe::writer(
        client(registry.rpc).await?,
        pending,
        stopped.clone(),
    ));
    tasks.spawn(dashboard::page(
        registry.http,
        Duration::from_millis(args.dashboard_pause_ms),
        Arc::clone(&polls),
        opened,
    ));

    println!(
        "registry-load: {} instances in services of {}, TTL {} ms (heartbeats every {} ms), over {} connections x {} callers, \
         {} store",
        args.instances,
        args.per_service,
        args.ttl_ms,
        interval.as_millis(),
        args.connections,
        args.callers,
        args.store.name(),
    );
    let began = Instant::now();
    let target = args.instances as u64;
    let registered_by = began + Duration::from_secs(600);
    while counts.registered.load(Ordering::Relaxed) < target {
        if Instant::now() > registered_by {
            return Err(format!(
                "only {} of {target} instances registered after 10 minutes",
                counts.registered.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp = Ramp {
        instances: target,
        secs: began.elapsed().as_secs_f64(),
        cpu: registry.cpu().saturating_sub(ramp_from.1),
        driver_cpu: process::cpu(std::process::id()).saturating_sub(ramp_from.3),
        rss: (ramp_from.2, registry.memory_mib().0),
        etcd: match (ramp_from.0, sample(etcd).await) {
            (Some(before), Some(after)) => Some(after.since(&before)),
            _ => None,
        },
    };
    report::print_ramp(&ramp);
    println!("warming up for {} s", args.warm_up_secs);
    tokio::time::sleep(Duration::from_secs_f64(args.warm_up_secs)).await;

    let mut results = Vec::new();
    for p in 1..phases {
        let dashboard = p % 2 == 0;
        open.send_replace(dashboard);
        // The dashboard's first answer, and the end of the last one, settle before the phase counts.
        counts.phase.store(0, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = (
            counts.heartbeats.load(Ordering::Relaxed),
            counts.lost.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
            evictions(registry).await,
            registry.cpu(),
            polls.answered.load(Ordering::Relaxed),
            polls.bytes.load(Ordering::Relaxed),
            probe_writes.writes.load(Ordering::Relaxed),
            sample(etcd).await,
        );
        let from = Instant::now();
        counts.phase.store(p, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(args.phase_secs)).await;
        counts.phase.store(0, Ordering::Relaxed);
        let secs = from.elapsed().as_secs_f64();
        let etcd_after = sample(etcd).await;
        let (rss, peak) = registry.memory_mib();
        let phase = Phase {
            dashboard,
            secs,
            heartbeats: counts.heartbeats.load(Ordering::Relaxed) - before.0,
            lost: counts.lost.load(Ordering::Relaxed) - before.1,
            failed: counts.failed.load(Ordering::Relaxed) - before.2,
            evictions: evictions(registry).await - before.3,
            cpu: registry.cpu().saturating_sub(before.4),
            polls: polls.answered.load(Ordering::Relaxed) - before.5,
            poll_bytes: polls.bytes.load(Ordering::Relaxed) - before.6,
            rss,
            peak,
            probe_writes: probe_writes.writes.load(Ordering::Relaxed) - before.7,
            etcd: match (before.8, etcd_after) {
                (Some(before), Some(after)) => Some(after.since(&before)),
                _ => None,
            },
        };
        report::print_phase(p, &phase, &counts.round_trips[p], &latencies[p]);
        results.push((p, phase));
    }
    // A second replica, while the first still holds every instance and the load goes on: how long it takes to
    // read them from etcd, a few times over.
    if let Some(etcd) = etcd {
        for _ in 0..JOINS {
            let before = etcd.sample().await;
            let joined = registry::join(child_args(args, Some(etcd))).await;
            let after = etcd.sample().await;
            match joined {
                Ok(joined) => {
                    report::print_joined(&joined, target, after.keys, &after.since(&before))
                }
                Err(e) => println!("the second replica did not start: {e}"),
            }
        }
    }
    stop.send_replace(true);
    open.send_replace(false);
    drop(open);
    tasks.shutdown().await;
    report::summary(&results, &counts, &latencies);
    Ok(())
}
