//! The side-by-side comparison: the same echo workload against raw tokio TCP echo (the floor), this framework,
//! tarpc (bincode transport) and tonic (one HTTP/2 connection), in one run.
//!
//! ```sh
//! cargo run --release -p benches --features peers --bin compare
//! ```
//!
//! Workloads: 32 B and 1 KiB payloads, each in a closed loop with 1, 16 and 128 calls in flight on one
//! connection and 128 over 4 connections. Each server runs on a thread of its own with a current-thread tokio
//! runtime, pinned to CPU 1; the client runs on the main thread with a current-thread runtime, pinned to CPU 0
//! (`--pin`); `TCP_NODELAY` is set on every socket. Rounds interleave the systems (their order rotates from
//! round to round); the table gives the medians over the rounds of calls per second, latency quantiles (hdrhistogram) and CPU time per call (getrusage, the
//! whole process: client and server), and the ratios of calls per second against the floor and the peers.
//!
//! # Layout
//! - `driver`: the closed loop, the latency histogram and the CPU clock.
//! - `raw`: the floor, raw tokio echo with coalesced writes and its pipelined client.
//! - `ours`: this framework's echo server and client.
//! - `tarpc_echo`, `tonic_echo`: the peers.
//! - `report`: medians, ratios, the table and the targets.

mod driver;
mod ours;
mod raw;
mod report;
mod tarpc_echo;
mod tonic_echo;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;

use driver::{EchoCall, Sample};
use report::{Results, System, Workload};

/// Compares this framework with raw tokio echo, tarpc and tonic on the same echo workloads.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// Rounds; each runs every workload on every system, and the table reports medians over them. Five short
    /// rounds give steadier medians than three long ones on a machine whose speed moves from run to run.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Milliseconds of each run before measuring starts.
    #[arg(long, default_value_t = 200)]
    warm_up_ms: u64,
    /// Milliseconds measured in each run.
    #[arg(long, default_value_t = 700)]
    measure_ms: u64,
    /// Systems to run, comma-separated: raw, rpc, tarpc, tonic; also rpc-metrics (this framework with
    /// metrics on, on both sides), to measure what metrics cost.
    #[arg(long, value_delimiter = ',', default_value = "raw,rpc,tarpc,tonic")]
    systems: Vec<String>,
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,1024")]
    payloads: Vec<usize>,
    /// Shapes as CALLSxCONNECTIONS (calls in flight over how many connections), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1x1,16x1,128x1,128x4")]
    shapes: Vec<String>,
    /// CPUs for the client thread and the server threads, as CLIENT,SERVER; `none` leaves placement to the
    /// kernel (on a 2-core machine, whether the two threads share a core then changes latency by a third).
    #[arg(long, default_value = "0,1")]
    pin: String,
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

/// The CPUs of `--pin`, or `None`.
fn parse_pin(pin: &str) -> Result<Option<(usize, usize)>, String> {
    if pin == "none" {
        return Ok(None);
    }
    pin.split_once(',')
        .and_then(|(c, s)| Some((c.parse().ok()?, s.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            format!("--pin `{pin}`: expected CLIENT,SERVER CPU numbers like 0,1, or none")
        })
}

fn run(args: Args) -> Result<(), String> {
    if let Some((client, server)) = parse_pin(&args.pin)? {
        benches::server_thread::pin_current_thread(client)
            .map_err(|e| format!("cannot pin the client to CPU {client}: {e}"))?;
        benches::server_thread::pin_servers_to(Some(server));
    }
    let systems = args
        .systems
        .iter()
        .map(|s| System::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut workloads = Vec::new();
    for &payload in &args.payloads {
        for shape in &args.shapes {
            let (concurrency, connections) = parse_shape(shape)?;
            workloads.push(Workload {
                payload,
                concurrency,
                connections,
            });
        }
    }
    let warm_up = Duration::from_millis(args.warm_up_ms);
    let measure = Duration::from_millis(args.measure_ms);
    let started = Instant::now();
    let mut results = Results::default();
    for round in 0..args.rounds {
        for &workload in &workloads {
            // Rotate the order each round, so that no system always runs first or last.
            let mut order = systems.clone();
            let turn = round % order.len().max(1);
            order.rotate_left(turn);
            let mut line = format!("round {}/{}: {workload}:", round + 1, args.rounds);
            for &system in &order {
                let sample = run_one(system, workload, warm_up, measure)
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
    println!(
        "\nMedians of {} rounds; {} ms measured per run after {} ms of warm-up; {:.0} s in all.\n",
        args.rounds,
        args.measure_ms,
        args.warm_up_ms,
        started.elapsed().as_secs_f64()
    );
    println!("{}", results.table());
    if systems.contains(&System::Rpc) {
        println!("Targets (issue 5):\n");
        println!("{}", results.targets());
    }
    Ok(())
}

/// One run: a fresh server thread for `system`, and the workload driven from this thread.
fn run_one(
    system: System,
    workload: Workload,
    warm_up: Duration,
    measure: Duration,
) -> Result<Sample, String> {
    let server = match system {
        System::Raw => raw::start_server(),
        System::Rpc => ours::start_server(false),
        System::RpcMetrics => ours::start_server(true),
        System::Tarpc => tarpc_echo::start_server(),
        System::Tonic => tonic_echo::start_server(),
    }
    .map_err(|e| format!("cannot start the server: {e}"))?;
    let addr = server.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the client's runtime: {e}"))?;
    let payload = Bytes::from(vec![0xa5; workload.payload]);
    let sample = runtime.block_on(async move {
        match system {
            System::Raw => Ok(raw::closed_loop(
                addr,
                workload.concurrency,
                workload.connections,
                payload,
                warm_up,
                measure,
            )
            .await),
            System::Rpc => {
                drive(
                    addr,
                    workload,
                    payload,
                    warm_up,
                    measure,
                    ours::Client::connect,
                )
                .await
            }
            System::RpcMetrics => {
                drive(
                    addr,
                    workload,
                    payload,
                    warm_up,
                    measure,
                    ours::Client::connect_with_metrics,
                )
                .await
            }
            System::Tarpc => {
                drive(
                    addr,
                    workload,
                    payload,
                    warm_up,
                    measure,
                    tarpc_echo::Client::connect,
                )
                .await
            }
            System::Tonic => {
                drive(
                    addr,
                    workload,
                    payload,
                    warm_up,
                    measure,
                    tonic_echo::Client::connect,
                )
                .await
            }
        }
    });
    // The client's connections close before the server stops.
    drop(runtime);
    drop(server);
    sample
}

/// Opens the workload's connections with `connect`, then runs the closed loop over them.
async fn drive<C, F>(
    addr: SocketAddr,
    workload: Workload,
    payload: Bytes,
    warm_up: Duration,
    measure: Duration,
    connect: fn(SocketAddr) -> F,
) -> Result<Sample, String>
where
    C: EchoCall,
    F: Future<Output = Result<C, String>>,
{
    let mut clients = Vec::with_capacity(workload.connections);
    for _ in 0..workload.connections {
        clients.push(connect(addr).await?);
    }
    Ok(driver::closed_loop(&clients, workload.concurrency, payload, warm_up, measure).await)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{System, Workload, run_one};

    /// Every system answers the workload `compare` measures, through the same path a run takes: 16 echoes in
    /// flight on one connection, each checked for its length (a wrong one counts as failed).
    #[test]
    fn every_system_echoes_through_the_measured_path() {
        for payload in [32, 1024] {
            let workload = Workload {
                payload,
                concurrency: 16,
                connections: 1,
            };
            for system in System::ALL {
                let sample = run_one(
                    system,
                    workload,
                    Duration::from_millis(10),
                    Duration::from_millis(100),
                )
                .unwrap_or_else(|e| panic!("{system:?}: {e}"));
                assert!(sample.calls > 0, "{system:?} {workload}: no call finished");
                assert_eq!(
                    sample.failed, 0,
                    "{system:?} {workload}: {:?}",
                    sample.first_error
                );
            }
        }
    }
}
