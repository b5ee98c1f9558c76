//! The side-by-side comparison: the same echo workload against raw tokio TCP echo (the floor), this framework,
//! tarpc (bincode transport; the payload as `serde_bytes::ByteBuf`, and as a plain `Vec<u8>` in `tarpc-vec`)
//! and tonic (one HTTP/2 connection), on both kinds of tokio runtime, in one run.
//!
//! ```sh
//! cargo run --release -p benches --features peers --bin compare     # about 3 minutes on 2 cores
//! ```
//!
//! Workloads: 32 B, 1 KiB and 64 KiB payloads, each in a closed loop with 1 and 128 calls in flight on one
//! connection and 128 over 4 connections, on two runtime flavours (`--runtime`). `current`: each server runs on a
//! thread of its own with a current-thread tokio runtime and the client on the main thread with another.
//! `multi`: what `#[tokio::main]` gives a user on each side: the server's thread and the client's main thread
//! each block on a multi-thread runtime with tokio's default worker count, and the connection tasks and the
//! client's callers run on its workers. No thread is pinned unless `--pin CLIENT,SERVER` asks (current-thread
//! runs only); `TCP_NODELAY` is set on every socket. Every run starts a fresh server and client runtime and tears
//! both down. Rounds interleave the runtimes and the systems (their orders rotate from round to round); the table
//! gives the medians over the rounds of calls per second, latency quantiles (hdrhistogram) and CPU time per call
//! (getrusage, the whole process: client and server), and the ratios of calls per second against the floor and
//! the peers; then issue 13's targets, met or missed.
//!
//! # Layout
//! - `driver`: the closed loop, the latency histogram and the CPU clock.
//! - `run`: one run, from a fresh server and client runtime to their teardown.
//! - `pin`: `--pin`, where the threads run.
//! - `raw`: the floor, raw tokio echo with coalesced writes and its pipelined client.
//! - `ours`: this framework's echo server and client.
//! - `tarpc_echo`, `tonic_echo`: the peers.
//! - `http_json`: this framework over HTTP/1.1 and JSON (`rpc-http-json`), as tools and other languages call it.
//! - `report`: medians, ratios and the table.
//! - `targets`: issue 13's targets, computed from the results.

mod driver;
mod http_json;
mod ours;
mod pin;
mod raw;
mod report;
mod run;
mod targets;
mod tarpc_echo;
mod tonic_echo;

use benches::rounds::rotated;
use std::time::{Duration, Instant};

use benches::server_thread::Flavor;
use clap::Parser;

use pin::Pinning;
use report::{Results, System, Workload};

/// Compares this framework with raw tokio echo, tarpc and tonic on the same echo workloads, on current-thread
/// and multi-thread tokio runtimes.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// Rounds; each runs every workload on every runtime and system, and the table reports medians over them.
    /// Five short rounds give steadier medians than three long ones on a machine whose speed moves from run to
    /// run.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Milliseconds of each run before measuring starts.
    #[arg(long, default_value_t = 100)]
    warm_up_ms: u64,
    /// Milliseconds measured in each run.
    #[arg(long, default_value_t = 300)]
    measure_ms: u64,
    /// Runtime flavours, comma-separated: `current` (a current-thread runtime on the server's thread and another
    /// on the client's) and `multi` (a multi-thread runtime with tokio's default worker count on each side, as
    /// `#[tokio::main]` builds).
    #[arg(long, value_delimiter = ',', default_value = "current,multi")]
    runtime: Vec<String>,
    /// Systems to run, comma-separated: raw, rpc, tarpc (payload as `ByteBuf`), tarpc-vec (payload as
    /// `Vec<u8>`), tonic; also rpc-metrics (this framework with metrics on, on both sides), to measure what
    /// metrics cost, and rpc-balanced (its balanced client with the default resilience, over the one server),
    /// to measure what the balancing and resilience layers cost; and rpc-http-json (the same server with HTTP on
    /// its port, called in JSON over HTTP/1.1 keep-alive connections, one call at a time on each: give it a
    /// shape with as many connections as calls in flight, `16x16`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw,rpc,tarpc,tarpc-vec,tonic"
    )]
    systems: Vec<String>,
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,1024,65536")]
    payloads: Vec<usize>,
    /// Shapes as CALLSxCONNECTIONS (calls in flight over how many connections), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1x1,128x1,128x4")]
    shapes: Vec<String>,
    /// Pins current-thread runs: the client (main) thread to CPU CLIENT and each server thread to CPU SERVER,
    /// given as CLIENT,SERVER (like 0,1). Off by default. Multi-thread runs are never pinned (a note says so):
    /// their threads go where the kernel puts them, as a user's would. On a 2-core machine, whether an unpinned
    /// client and server share a core changes latency by a third.
    #[arg(long)]
    pin: Option<String>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_shape(shape: &str) -> Result<(usize, usize), String> {
    let parsed = shape
        .split_once('x')
        .and_then(|(c, n)| Some((c.parse().ok()?, n.parse().ok()?)));
    match parsed {
        Some((c, n)) if c >= n && n >= 1 => Ok((c, n)),
        _ => Err(format!(
            "shape `{shape}`: expected CALLSxCONNECTIONS with at least one call per connection, like 128x4"
        )),
    }
}

fn parse_runtime(name: &str) -> Result<Flavor, String> {
    Flavor::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(|| format!("unknown runtime `{name}`; expected current or multi"))
}

fn run(args: Args) -> Result<(), String> {
    let runtimes = args
        .runtime
        .iter()
        .map(|r| parse_runtime(r))
        .collect::<Result<Vec<_>, _>>()?;
    let systems = args
        .systems
        .iter()
        .map(|s| System::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cases = Vec::new();
    for &payload in &args.payloads {
        for shape in &args.shapes {
            cases.push((payload, parse_shape(shape)?));
        }
    }
    let pinning = args
        .pin
        .as_deref()
        .map(Pinning::from_flag)
        .transpose()?
        .flatten();
    if let Some(pinning) = &pinning
        && runtimes.contains(&Flavor::MultiThread)
    {
        eprintln!("note: {}", pinning.multi_note());
    }
    let warm_up = Duration::from_millis(args.warm_up_ms);
    let measure = Duration::from_millis(args.measure_ms);
    let runs = args.rounds * cases.len() * runtimes.len() * systems.len();
    eprintln!(
        "{runs} runs of {} ms each, {:.0} s at the least",
        args.warm_up_ms + args.measure_ms,
        runs as f64 * (warm_up + measure).as_secs_f64()
    );
    let started = Instant::now();
    let mut results = Results::default();
    for round in 0..args.rounds {
        for &(payload, (concurrency, connections)) in &cases {
            for runtime in rotated(&runtimes, round) {
                if let Some(pinning) = &pinning {
                    pinning.enter(runtime)?;
                }
                let workload = Workload {
                    runtime,
                    payload,
                    concurrency,
                    connections,
                };
                let mut line = format!("round {}/{}: {workload}:", round + 1, args.rounds);
                for system in rotated(&systems, round) {
                    let sample = run::run_one(system, workload, warm_up, measure)
                        .map_err(|e| format!("{} on {workload}: {e}", system.name()))?;
                    line.push_str(&format!(
                        " {} {:.0}k/s p50 {:.1} µs{};",
                        system.name(),
                        sample.per_second() / 1e3,
                        sample.latency_us(0.5),
                        match &sample.first_error {
                            Some(e) => format!(" ({} failed: {e})", sample.failed),
                            None => String::new(),
                        }
                    ));
                    results.add(workload, system, sample);
                }
                eprintln!("{line}");
            }
        }
    }
    println!(
        "\nMedians of {} rounds; {} ms measured per run after {} ms of warm-up; {:.0} s in all.\n",
        args.rounds,
        args.measure_ms,
        args.warm_up_ms,
        started.elapsed().as_secs_f64()
    );
    println!("{}", results.table());
    println!("Targets (issue 13):\n");
    println!("{}", targets::report(&results));
    Ok(())
}
