//! `chaos`: a balanced client against instances that stall, slow down, crash or drown, behind a real
//! registry. Not part of `cargo test` (a short smoke of each scenario is, in `tests/tests/chaos_smoke.rs`):
//!
//! ```sh
//! cargo run --release -p benches --bin chaos -- --scenario stall --policy swrr --json
//! cargo run --release -p benches --bin chaos -- --scenario stall-511 --policy swrr --hedge
//! ```
//!
//! The driver serves a registry in its own process, starts the scenario's instances as child processes (this
//! binary again, with `--instance`), each registered with it, and calls them through discovery at a fixed
//! rate with a deadline per call while the scenario happens to them. It prints a table row and, with `--json`,
//! one JSON line: `{"scenario":..,"policy":..,"calls":..,"failed":..,"success_rate":..,"p50_us":..,
//! "p99_us":..,"p999_us":..,"max_gap_ms":..}`, where `max_gap_ms` is the longest window in which no call
//! succeeded. `docs/RESILIENCE.md` has the table and how to read it.
//!
//! # Layout
//! - `scenario`: what each scenario does, and when.
//! - `fleet`: the instances' processes (start, stop, resume, kill, restart).
//! - `instance`: an instance's process.
//! - `service`: the service called.
//! - `protect`: how an instance protects itself from overload (`--protect`).
//! - `policy`: the balancing policies by name.
//! - `load`: the calls at a fixed rate.
//! - `report`: the figures.

mod fleet;
mod instance;
mod load;
mod policy;
mod protect;
mod report;
mod scenario;
mod service;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rpc_core::balance::Balancer;
use rpc_core::client::layer::HedgeConfig;
use rpc_core::{Client, ClientConfig};
use rpc_registry::{Discovery, DiscoveryConfig, RegistryConfig};

use fleet::Fleet;
use instance::Spec;
use report::Summary;
use scenario::Event;
use service::ChaosClient;

/// Calls instances through a balanced client while a scenario happens to them.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The scenario: none, stall, stall-511, slow, flap, overload.
    #[arg(long, default_value = "stall")]
    scenario: String,
    /// The balancing policy (see `policy.rs`), or `default` for the one discovery names.
    #[arg(long, default_value = "default")]
    policy: String,
    /// Hedge the calls (a second attempt after the method's 95th-percentile latency).
    #[arg(long)]
    hedge: bool,
    /// Instances shed what they cannot serve at once instead of queueing it.
    #[arg(long)]
    protect: bool,
    /// The deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// Calls a second (default: the scenario's).
    #[arg(long)]
    rate: Option<u32>,
    /// Seconds of load (default: the scenario's).
    #[arg(long)]
    secs: Option<f64>,
    /// How long the `stall` scenario's instance stays stopped, in seconds.
    #[arg(long, default_value_t = 30.0)]
    stall_secs: f64,
    /// Print one JSON line after the table.
    #[arg(long)]
    json: bool,
    /// Run as an instance (started by the driver).
    #[arg(long, hide = true)]
    instance: bool,
    #[arg(long, hide = true, default_value = "")]
    registry: String,
    #[arg(long, hide = true, default_value = "")]
    token: String,
    #[arg(long, hide = true, default_value_t = 1)]
    weight: u32,
    #[arg(long, hide = true, default_value_t = 1000)]
    service_us: u64,
    #[arg(long, hide = true, default_value_t = 0)]
    capacity: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.instance {
        instance::run(Spec {
            registry: args.registry.clone(),
            token: args.token.clone(),
            weight: args.weight,
            service_time: Duration::from_micros(args.service_us),
            capacity: args.capacity,
            protect: args.protect,
        })
    } else {
        drive(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The driver: registry, instances, load, report.
fn drive(args: &Args) -> Result<(), String> {
    let plan = scenario::plan(
        &args.scenario,
        args.rate,
        args.secs.map(Duration::from_secs_f64),
        Duration::from_secs_f64(args.stall_secs),
    )?;
    let policy_name = match args.hedge {
        true => format!("{}+hedge", args.policy),
        false => args.policy.clone(),
    };
    let policy = match args.policy.as_str() {
        "default" => None,
        name => Some(policy::by_name(name)?),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the driver's runtime: {e}"))?;
    let token = format!("chaos-{}", std::process::id());
    let registry = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the registry's port: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let config = RegistryConfig {
            token: Some(token.clone()),
            ..RegistryConfig::default()
        };
        tokio::spawn(rpc_registry::serve(
            config,
            listener,
            None,
            std::future::pending(),
        ));
        Ok::<_, String>(addr)
    })?;
    let specs: Vec<Spec> = plan
        .weights
        .iter()
        .zip(&plan.service_times)
        .map(|(&weight, &service_time)| Spec {
            registry: registry.to_string(),
            token: token.clone(),
            weight,
            service_time,
            capacity: plan.capacity,
            protect: args.protect,
        })
        .collect();
    let fleet = Fleet::start(&specs)?;
    let config = ClientConfig {
        default_deadline: Duration::from_millis(args.deadline_ms),
        hedge: args.hedge.then(HedgeConfig::default),
        ..ClientConfig::default()
    };
    let record = runtime.block_on(async {
        let discovery = Discovery::new(registry, DiscoveryConfig::default())
            .await
            .map_err(|e| format!("cannot discover through {registry}: {e}"))?;
        let balancer = match policy {
            Some(policy) => Balancer::discovered_with(&discovery, "Chaos", policy),
            None => Balancer::discovered(&discovery, "Chaos"),
        };
        let client = ChaosClient::new(Client::balanced(balancer, config));
        // Every instance discovered and called once before the load.
        let ready = async {
            loop {
                if discovery.instances("Chaos").len() == specs.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .map_err(|_| "the instances were not all discovered within 10 s".to_owned())?;
        for n in 0..(4 * specs.len() as u64) {
            client
                .work(n)
                .await
                .map_err(|e| format!("a warm-up call failed: {e}"))?;
        }
        let events = std::thread::spawn({
            let events = plan.events.clone();
            move || happen(fleet, &events)
        });
        let record = load::run(
            client,
            plan.rate,
            plan.length,
            Duration::from_millis(args.deadline_ms),
        )
        .await;
        let fleet = events
            .join()
            .map_err(|_| "the scenario's thread panicked".to_owned())??;
        // What the servers saw of the calls they served (a stopped instance was resumed by its scenario).
        let mut served = Vec::new();
        for address in fleet.addresses() {
            if let Ok(client) = ChaosClient::connect(address.as_str()).await
                && let Ok(latencies) = client.with_deadline(Duration::from_secs(2)).served().await
            {
                served.extend(latencies);
            }
        }
        let memory = fleet.peak_memory_mib();
        drop(fleet);
        Ok::<_, String>((record, served, memory))
    })?;
    let (record, mut served, memory) = record;
    let summary = Summary::of(&args.scenario, &policy_name, &record, plan.length);
    println!("{}", report::HEADER);
    println!("{}", summary.row());
    if let Some(capacity) = scenario::capacity(&plan) {
        let goodput = (summary.calls - summary.failed) as f64 / plan.length.as_secs_f64();
        println!(
            "offered {} calls/s against a capacity of {capacity:.0}: goodput {goodput:.0} calls/s ({:.0}% of capacity)",
            plan.rate,
            100.0 * goodput / capacity
        );
    }
    served.sort_unstable();
    if let Some(&p99) = served.get((served.len() * 99 / 100).min(served.len().saturating_sub(1))) {
        println!(
            "the servers served {} calls: p50 {} µs, p99 {p99} µs (from the handler's start, with any wait for a place)",
            served.len(),
            served[served.len() / 2]
        );
    }
    println!("the instances' peak resident memory: at most {memory:.1} MiB each");
    for error in &record.errors {
        println!("error: {error}");
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

/// Plays `events` against `fleet` on this thread, each at its time from now; gives the fleet back.
fn happen(mut fleet: Fleet, events: &[(Duration, Event)]) -> Result<Fleet, String> {
    let start = std::time::Instant::now();
    for &(at, event) in events {
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match event {
            Event::Stop(i) => fleet.stop(i)?,
            Event::Resume(i) => fleet.resume(i)?,
            Event::Kill(i) => fleet.kill(i),
            Event::Restart(i) => fleet.restart(i)?,
        }
    }
    Ok(fleet)
}
