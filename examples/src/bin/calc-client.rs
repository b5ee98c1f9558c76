//! Calls `Calc` through the registry: discovers its instances and spreads calls over them by weight.
//!
//! `calc-client --registry ADDR[,ADDR...] --calls N [--concurrency C] [--token T] [--tls-ca F [--tls-cert F --tls-key F]]`:
//! the last line it prints is JSON, `{"ok":N,"failed":M,"by_instance":{"ADDR":count,...}}`; it exits non-zero
//! when any call failed, and when no instance can be found within `--wait-ms` (saying whether the registry has
//! none or did not answer). With `--tls-ca` it talks to the registry and to the instances over TLS (presenting
//! `--tls-cert` if given). On a terminal it shows its progress (calls done, rate, failures) on stderr;
//! `--progress always|never` overrides that. `--fault-delay-ms MS [--fault-delay-percent P]` and
//! `--fault-abort-percent P [--fault-abort-status NAME]` inject faults before calls are sent (an aborted call
//! fails without being sent); it says on stderr which. `--subset KEY=VALUE,...` calls only the instances
//! registered with those labels (`calc-server --label version=v2`); `--metadata KEY=VALUE` (repeatable) sets
//! an entry of every call's metadata.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use examples::calc::CalcClient;
use examples::labels::SubsetArgs;
use examples::ops::{Counts, Progress, ProgressMode};
use examples::protect::{FaultArgs, LimitArgs};
use examples::tls::TlsArgs;
use rpc_core::ClientConfig;
use rpc_registry::cli::{MAX_FIELD_CHARS, MAX_LINE_CHARS, escape};
use rpc_registry::{Discovery, DiscoveryConfig, TOKEN_ENV, check_token};

/// Calls Calc through the registry.
#[derive(Parser)]
struct Args {
    /// Address of the registry's API, or of its replicas separated by commas (h1:7070,h2:7070).
    #[arg(long, default_value = "127.0.0.1:7070")]
    registry: String,
    /// Calls to make.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// The registry's token, if it wants one for reads (at least 8 visible ASCII characters).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Show calls done, rate and failures on stderr: `auto` when it is a terminal.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Milliseconds between progress updates.
    #[arg(long, default_value_t = 250)]
    progress_ms: u64,
    /// Milliseconds to wait for the registry to name a first instance of Calc.
    #[arg(long, default_value_t = 5000)]
    wait_ms: u64,
    #[command(flatten)]
    fault: FaultArgs,
    #[command(flatten)]
    subset: SubsetArgs,
    /// An entry of every call's metadata, as KEY=VALUE (for example x-canary=1); repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_metadata)]
    metadata: Vec<(String, String)>,
}

/// One `KEY=VALUE` call metadata entry (its key and value are checked as metadata before the first call).
fn parse_metadata(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(format!(
            "expected KEY=VALUE, found `{}`",
            escape(text, MAX_FIELD_CHARS)
        )),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calc-client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Tally {
    by_instance: BTreeMap<String, u64>,
    first_error: Option<String>,
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(token) = &args.token {
        check_token(token).map_err(|e| format!("--token (or {TOKEN_ENV}): {e}"))?;
    }
    let registries = examples::registry::resolve(&args.registry).await?;
    let tls = args.tls.client()?;
    let defaults = DiscoveryConfig::default();
    let config = DiscoveryConfig {
        token: args.token,
        client: ClientConfig {
            tls: tls.clone(),
            ..defaults.client.clone()
        },
        ..defaults
    };
    let discovery = Discovery::new(registries.as_slice(), config).await?;
    let wait = Duration::from_millis(args.wait_ms);
    let mut instances = discovery.wait_for("Calc", 1, wait).await;
    // Calls follow the registry's rules for Calc (routes to subsets) from the first one.
    discovery.wait_for_rules("Calc", wait).await;
    if let Some(subset) = &args.subset.subset {
        let registered = instances.len();
        instances.retain(|i| {
            subset
                .pairs()
                .all(|(k, v)| i.metadata.get(k).is_some_and(|have| have == v))
        });
        if instances.is_empty() && registered > 0 {
            return Err(format!(
                "none of the {registered} instances of Calc at the registry {} is in the subset {}",
                escape(&args.registry, MAX_FIELD_CHARS),
                escape(&subset.to_string(), MAX_FIELD_CHARS)
            )
            .into());
        }
    }
    if instances.is_empty() {
        return Err(match discovery.last_error("Calc") {
            Some(e) => format!(
                "cannot watch Calc at the registry {}: {}",
                escape(&args.registry, MAX_FIELD_CHARS),
                escape(&e, MAX_LINE_CHARS)
            ),
            None if !discovery.answered("Calc") => format!(
                "the registry at {} did not answer within {:.1} s (is it running, or stopped?)",
                escape(&args.registry, MAX_FIELD_CHARS),
                wait.as_secs_f64()
            ),
            None => format!(
                "no instance of Calc is registered with the registry at {} (waited {:.1} s)",
                escape(&args.registry, MAX_FIELD_CHARS),
                wait.as_secs_f64()
            ),
        }
        .into());
    }
    eprintln!(
        "calc-client: {} instances of Calc: {}",
        instances.len(),
        instances
            .iter()
            .map(|i| format!(
                "{} (weight {})",
                escape(&i.address, MAX_FIELD_CHARS),
                i.weight
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut calls = ClientConfig {
        tls,
        ..ClientConfig::default()
    };
    if let Some(fault) = args.fault.fault("calc-client") {
        if let Some(faults) = examples::protect::describe(&LimitArgs::default(), Some(&fault)) {
            eprintln!("calc-client: {faults}");
        }
        calls = calls.layer(rpc_core::client::layer::InjectFault::new(fault));
    }
    let calc = match args.subset.subset {
        Some(subset) => CalcClient::discover_with(subset.of(&discovery), "Calc", calls),
        None => CalcClient::discover_with(&discovery, "Calc", calls),
    };
    let calc = if args.metadata.is_empty() {
        calc
    } else {
        let metadata = rpc_core::Metadata::from_pairs(args.metadata.iter().map(|(k, v)| (k, v)))
            .map_err(|e| format!("--metadata: {e}"))?;
        calc.with_metadata(metadata)
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counts = Arc::new(Counts::default());
    let progress = Progress::start(
        args.progress,
        args.calls,
        Arc::clone(&counts),
        Duration::from_millis(args.progress_ms.max(10)),
    );
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.clamp(1, args.calls.max(1)) {
        let (calc, tally, next) = (calc.clone(), Arc::clone(&tally), Arc::clone(&next));
        let counts = Arc::clone(&counts);
        let calls = args.calls;
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    return;
                }
                let result = calc.add(i as i64, 1).await;
                let mut t = rpc_core::sync::lock(&tally);
                let counter = match result {
                    Ok(answer) if answer.value == i as i64 + 1 => {
                        *t.by_instance.entry(answer.instance).or_default() += 1;
                        &counts.ok
                    }
                    Ok(answer) => {
                        t.first_error
                            .get_or_insert(format!("wrong answer {answer:?}"));
                        &counts.failed
                    }
                    Err(e) => {
                        t.first_error.get_or_insert(e.to_string());
                        &counts.failed
                    }
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    progress.finish();
    let t = rpc_core::sync::lock(&tally);
    eprintln!(
        "calc-client: {} calls in {:.2} s ({:.0} calls/s)",
        args.calls,
        elapsed.as_secs_f64(),
        args.calls as f64 / elapsed.as_secs_f64()
    );
    if let Some(e) = &t.first_error {
        eprintln!("calc-client: first failure: {}", escape(e, MAX_LINE_CHARS));
    }
    let (ok, failed) = (
        counts.ok.load(std::sync::atomic::Ordering::Relaxed),
        counts.failed.load(std::sync::atomic::Ordering::Relaxed),
    );
    let summary = serde_json::json!({ "ok": ok, "failed": failed, "by_instance": t.by_instance });
    println!("{summary}");
    if failed > 0 {
        return Err(format!("{failed} of {} calls failed", args.calls).into());
    }
    Ok(())
}
