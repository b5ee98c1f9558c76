//! `registry-load`: the registry at scale, with and without a dashboard open. Not part of `cargo test`:
//!
//! ```sh
//! cargo run --release -p benches --bin registry-load                        # 100,000 instances, ~2 minutes
//! cargo run --release -p benches --bin registry-load -- --instances 10000 --phase-secs 5   # a quick look
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
//! # Layout
//! - `registry`: the registry's child process.
//! - `load`: the instances and their heartbeats.
//! - `probe`: the watch latency.
//! - `dashboard`: the open page.
//! - `histogram`: a lock-free histogram of durations.

mod dashboard;
mod histogram;
mod load;
mod probe;
mod registry;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use rpc_core::{Client, ClientConfig};
use rpc_registry::RegistryClient;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use dashboard::Polls;
use histogram::Histogram;
use load::Counts;
use registry::Registry;

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
    /// Run as the registry (the child process); used by the driver itself.
    #[arg(long, hide = true)]
    serve: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ttl = Duration::from_millis(args.ttl_ms);
    let result = if args.serve {
        registry::serve(registry::config(args.instances, args.per_service, ttl))
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
    let registry = Registry::spawn(&[
        format!("--instances={}", args.instances),
        format!("--per-service={}", args.per_service),
        format!("--ttl-ms={}", args.ttl_ms),
    ])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.driver_threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the driver's runtime: {e}"))?;
    runtime.block_on(drive(args, &registry))
}

/// One measured phase.
struct Phase {
    dashboard: bool,
    secs: f64,
    heartbeats: u64,
    lost: u64,
    failed: u64,
    evictions: f64,
    cpu: Duration,
    polls: u64,
    poll_bytes: u64,
    rss: f64,
    peak: f64,
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

async fn drive(args: &Args, registry: &Registry) -> Result<(), String> {
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
        "registry-load: {} instances in services of {}, TTL {} ms (heartbeats every {} ms), over {} connections x {} callers",
        args.instances,
        args.per_service,
        args.ttl_ms,
        interval.as_millis(),
        args.connections,
        args.callers
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
    println!(
        "registered {target} instances in {:.1} s; warming up for {} s",
        began.elapsed().as_secs_f64(),
        args.warm_up_secs
    );
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
        );
        let from = Instant::now();
        counts.phase.store(p, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(args.phase_secs)).await;
        counts.phase.store(0, Ordering::Relaxed);
        let secs = from.elapsed().as_secs_f64();
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
        };
        print_phase(p, &phase, &counts.round_trips[p], &latencies[p]);
        results.push((p, phase));
    }
    stop.send_replace(true);
    open.send_replace(false);
    drop(open);
    tasks.shutdown().await;
    summary(&results, &counts, &latencies);
    Ok(())
}

fn ms(h: &Histogram, q: f64) -> String {
    h.quantile_ms(q)
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn print_phase(p: usize, phase: &Phase, round_trips: &Histogram, latencies: &Histogram) {
    println!(
        "phase {p} ({}): {:.0} heartbeats/s, heartbeat p50 {} p99 {} ms, watch p50 {} p99 {} ms ({} changes), \
         registry CPU {:.0} %, RSS {:.0} MiB (peak {:.0}), {} polls ({:.1} MB), {} leases lost, {} calls failed, {} evictions",
        if phase.dashboard {
            "dashboard open"
        } else {
            "no dashboard"
        },
        phase.heartbeats as f64 / phase.secs,
        ms(round_trips, 0.5),
        ms(round_trips, 0.99),
        ms(latencies, 0.5),
        ms(latencies, 0.99),
        latencies.count(),
        phase.cpu.as_secs_f64() * 100.0 / phase.secs,
        phase.rss,
        phase.peak,
        phase.polls,
        phase.poll_bytes as f64 / 1e6,
        phase.lost,
        phase.failed,
        phase.evictions,
    );
}

/// The median of `values` (NaN if empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The table for docs/BENCHMARKS.md, then the medians over the phases of each kind and their ratio.
fn summary(results: &[(usize, Phase)], counts: &Counts, latencies: &[Histogram]) {
    println!();
    println!(
        "| phase | dashboard | heartbeats/s | heartbeat p50 ms | heartbeat p99 ms | watch p50 ms | watch p99 ms | \
         registry CPU | RSS MiB (peak) | polls/s | KB/poll | evictions |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (p, phase) in results {
        println!(
            "| {p} | {} | {:.0} | {} | {} | {} | {} | {:.0} % | {:.0} ({:.0}) | {:.1} | {:.0} | {} |",
            if phase.dashboard { "open" } else { "none" },
            phase.heartbeats as f64 / phase.secs,
            ms(&counts.round_trips[*p], 0.5),
            ms(&counts.round_trips[*p], 0.99),
            ms(&latencies[*p], 0.5),
            ms(&latencies[*p], 0.99),
            phase.cpu.as_secs_f64() * 100.0 / phase.secs,
            phase.rss,
            phase.peak,
            phase.polls as f64 / phase.secs,
            if phase.polls > 0 {
                phase.poll_bytes as f64 / phase.polls as f64 / 1e3
            } else {
                0.0
            },
            phase.evictions,
        );
    }
    println!();
    /// One figure of a phase.
    type Figure<'a> = &'a dyn Fn(usize, &Phase) -> f64;
    let of = |open: bool, value: Figure<'_>| {
        median(
            results
                .iter()
                .filter(|(_, phase)| phase.dashboard == open)
                .map(|(p, phase)| value(*p, phase))
                .collect(),
        )
    };
    let q = |h: &Histogram, q: f64| h.quantile_ms(q).unwrap_or(f64::NAN);
    let rows: [(&str, Figure<'_>); 6] = [
        ("heartbeats/s", &|_, ph| ph.heartbeats as f64 / ph.secs),
        ("heartbeat p50 ms", &|p, _| q(&counts.round_trips[p], 0.5)),
        ("heartbeat p99 ms", &|p, _| q(&counts.round_trips[p], 0.99)),
        ("watch p50 ms", &|p, _| q(&latencies[p], 0.5)),
        ("watch p99 ms", &|p, _| q(&latencies[p], 0.99)),
        ("registry RSS MiB", &|_, ph| ph.rss),
    ];
    println!("| median over the phases | no dashboard | dashboard open | open / none |");
    println!("|---|---:|---:|---:|");
    for (name, value) in rows {
        let (none, open) = (of(false, value), of(true, value));
        println!("| {name} | {none:.2} | {open:.2} | {:.2}x |", open / none);
    }
}
