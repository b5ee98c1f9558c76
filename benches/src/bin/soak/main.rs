//! `soak`: one process, a server and its clients, under a high and varied load for minutes, watching its own
//! memory. Not part of `cargo test`:
//!
//! ```sh
//! cargo run --release -p benches --bin soak -- --minutes 5
//! cargo run --release -p benches --bin soak -- --minutes 0.2   # a quick check
//! ```
//!
//! The `Soak` service is served on a thread of its own (a current-thread runtime, as in the benchmarks); the
//! clients run on the main thread. `--connections` long-lived connections each carry `--concurrency` fast
//! callers, each making its next call as soon as the last is answered (echoes of 16 to 8192 bytes, and one
//! call in ten answered with the application's error), and `--slow-callers` that alternate calls dropped
//! (a 1 ms timeout) before their answer and calls whose 10 ms deadline passes while the handler sleeps
//! 200 ms; every `--churn-every-secs` seconds `--churn-clients` fresh connections are opened, used for 50
//! echoes and dropped. Every few seconds it prints elapsed time, resident memory (`/proc/self/statm`), open
//! file descriptors, calls so far and calls per second; at the end, a summary.
//!
//! Verdict and exit code: after warm-up (the first `--warm-up-percent` of the run, 20 % by default) the
//! resident set may not rise above its value at the end of warm-up by more than 10 % or 8 MiB, whichever is
//! larger (see `memory.rs` for why); and no call may have an outcome its kind should never have (an echo that
//! fails, a late call that does not fail with `DeadlineExceeded`, ...). Exit code 0 if both hold, 1 if not,
//! 2 if the run could not be made.
//!
//! # Layout
//! - `service`: the `Soak` service.
//! - `load`: the callers, the churner and the counts of outcomes.
//! - `memory`: resident memory and the growth limit.
//! - `report`: the sample lines and the summary.

mod load;
mod memory;
mod report;
mod service;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use benches::server_thread::ServerThread;
use clap::Parser;
use rpc_core::Server;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use load::Counts;
use report::Sample;
use service::{SoakClient, SoakImpl, SoakServer};

/// Runs a server and its clients under load for minutes and checks that memory stays flat after warm-up.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Length of the run in minutes; fractions allowed (0.2 is 12 s).
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Long-lived connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Fast callers on each long-lived connection, each with one call in flight at a time.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Slow callers (dropped calls, calls past their deadline) on each long-lived connection.
    #[arg(long, default_value_t = 2)]
    slow_callers: usize,
    /// Fresh connections opened, used and dropped in each churn round.
    #[arg(long, default_value_t = 8)]
    churn_clients: usize,
    /// Seconds between churn rounds.
    #[arg(long, default_value_t = 2.0)]
    churn_every_secs: f64,
    /// Seconds between memory samples; by default a twentieth of the run, from 0.5 s to 5 s.
    #[arg(long)]
    sample_secs: Option<f64>,
    /// The share of the run, in percent, that is warm-up.
    #[arg(long, default_value_t = 20.0)]
    warm_up_percent: f64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

/// A positive, finite number of seconds.
fn seconds(what: &str, secs: f64) -> Result<Duration, String> {
    if secs.is_finite() && secs > 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "{what}: expected a positive number of seconds, got {secs}"
        ))
    }
}

fn run(args: Args) -> Result<bool, String> {
    let length = seconds("--minutes", args.minutes * 60.0)?;
    let churn_every = seconds("--churn-every-secs", args.churn_every_secs)?;
    let every = match args.sample_secs {
        Some(s) => seconds("--sample-secs", s)?,
        None => (length / 20).clamp(Duration::from_millis(500), Duration::from_secs(5)),
    };
    if args.connections == 0 || args.concurrency == 0 {
        return Err("--connections and --concurrency must be at least 1".to_owned());
    }
    if !(0.0..100.0).contains(&args.warm_up_percent) {
        return Err(format!(
            "--warm-up-percent: expected 0 to 100, got {}",
            args.warm_up_percent
        ));
    }
    let server = Server::builder()
        .add_service(SoakServer::new(SoakImpl))
        .build()
        .map_err(|e| format!("cannot build the server: {e}"))?;
    let server = ServerThread::rpc("soak-server", server)
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the client runtime: {e}"))?;
    println!(
        "soak: {:.1} min against {}; {} connections x ({} fast + {} slow callers), {} churned connections every {:.1} s",
        args.minutes,
        server.addr(),
        args.connections,
        args.concurrency,
        args.slow_callers,
        args.churn_clients,
        churn_every.as_secs_f64()
    );
    let counts = Arc::new(Counts::default());
    let (samples, after) =
        runtime.block_on(drive(&args, &server, length, churn_every, every, &counts))?;
    drop(runtime);
    drop(server);
    let warm_up_secs = length.as_secs_f64() * args.warm_up_percent / 100.0;
    Ok(report::summary(&samples, &after, warm_up_secs, &counts))
}

/// Runs the load for `length`, sampling memory every `every`; returns the samples, and one more taken once the
/// load has stopped and its connections have closed.
async fn drive(
    args: &Args,
    server: &ServerThread,
    length: Duration,
    churn_every: Duration,
    every: Duration,
    counts: &Arc<Counts>,
) -> Result<(Vec<Sample>, Sample), String> {
    let addr = server.addr();
    let page_size = memory::page_size();
    let start = Instant::now();
    let end = start + length;
    // The load stops once the last sample is taken, so that every sample, the last too, sees it at full strength.
    let (stop, stopped) = watch::channel(false);
    let mut load = JoinSet::new();
    for c in 0..args.connections {
        let client = SoakClient::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        for k in 0..args.concurrency {
            // Callers start at different points, so that sizes and kinds of call mix at every moment.
            let from = c * args.concurrency + k;
            load.spawn(load::caller(
                client.clone(),
                stopped.clone(),
                Arc::clone(counts),
                from,
            ));
        }
        for k in 0..args.slow_callers {
            load.spawn(load::slow_caller(
                client.clone(),
                stopped.clone(),
                Arc::clone(counts),
                k,
            ));
        }
    }
    load.spawn(load::churn(
        addr,
        stopped,
        churn_every,
        args.churn_clients,
        Arc::clone(counts),
    ));

    report::header();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = start + every;
    loop {
        let last = next >= end;
        tokio::time::sleep_until(next.min(end)).await;
        let sample = Sample {
            secs: start.elapsed().as_secs_f64(),
            rss_mib: memory::rss_mib(page_size)?,
            fds: open_fds(),
            calls: counts.calls(),
        };
        report::line(&sample, samples.last());
        samples.push(sample);
        if last {
            break;
        }
        next += every;
    }
    let _ = stop.send(true);
    // The slowest call left is a late one (10 ms) or a churned connection's echoes.
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        while load.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        return Err("the load did not stop within 30 s of the end".to_owned());
    }
    // Every client is gone; give the server a moment to close its side of their connections.
    drop(load);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = Sample {
        secs: start.elapsed().as_secs_f64(),
        rss_mib: memory::rss_mib(page_size)?,
        fds: open_fds(),
        calls: counts.calls(),
    };
    Ok((samples, after))
}

/// Open file descriptors of this process, from `/proc/self/fd` (0 if it cannot be read).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}
