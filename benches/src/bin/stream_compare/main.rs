//! The streaming comparison: this framework's server streams (protocol 1.1) beside tonic's server streaming
//! (one HTTP/2 connection) and raw tokio TCP (the floor), in one run on this machine.
//!
//! ```sh
//! cargo run --release -p benches --features peers --bin stream-compare     # about 30 s on 2 cores
//! ```
//!
//! Cases (`--cases`): `small`, 32-byte items on one stream (items/s); `concurrent`, 32-byte items on 100
//! streams of one connection (all items/s); `large`, 64 KiB items on one stream (bytes/s); `stall`, one stream
//! of 64 KiB items whose consumer never reads, after a second: the process's resident memory growth and the
//! blocks the producer made. Each server runs on a thread of its own with a current-thread tokio runtime, the
//! client on the main thread with another, pinned to different CPUs (`--pin`), over 127.0.0.1; `TCP_NODELAY`
//! is set everywhere, every other setting is each system's default. Every run starts a fresh server and client,
//! opens one connection, drains a warm-up stream (a twentieth of the items), then times the workload; rounds
//! rotate the systems' order. The table gives medians over the rounds, the lowest and highest round, CPU time
//! per item (the whole process: client and server) and ratios; `--json` adds one JSON object per row.
//!
//! # Layout
//! - `workload`: the systems, the cases, the items' bytes.
//! - `run`: one measured run, from a fresh server to its teardown.
//! - `stall`: the consumer that stops reading.
//! - `ours`: this framework's `Blocks` service and client.
//! - `tonic_stream`: the peer, tonic's server streaming written by hand.
//! - `raw`: the floor, length-prefixed chunks over raw TCP.
//! - `report`: medians, spread, ratios; the tables and the JSON lines.

mod ours;
mod raw;
mod report;
mod run;
mod stall;
mod tonic_stream;
mod workload;

use benches::rounds::rotated;
use std::time::{Duration, Instant};

use benches::server_thread::{pin_current_thread, pin_servers_to};
use clap::Parser;

use report::Results;
use workload::{Case, LARGE, System, Workload};

/// Compares this framework's server streams with tonic's and with raw TCP: items/s of 32-byte items on one
/// stream and on many, bytes/s of 64 KiB items, and the memory a consumer that stops reading costs.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// 32-byte items per run of the `small` and `concurrent` cases (over all streams).
    #[arg(long, default_value_t = 2_000_000)]
    items: u64,
    /// Bytes per run of the `large` case, in 64 KiB items: a count of bytes, or with a suffix KiB, MiB, GiB.
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    bytes_total: u64,
    /// Streams open at once on one connection in the `concurrent` case.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Rounds; the table reports medians over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Systems, comma-separated: rpc, tonic, raw (raw takes no part in `concurrent` and `stall`).
    #[arg(long, value_delimiter = ',', default_value = "rpc,tonic,raw")]
    systems: Vec<String>,
    /// Cases, comma-separated: small, concurrent, large, stall.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "small,concurrent,large,stall"
    )]
    cases: Vec<String>,
    /// The window of this framework's client streams (`ClientConfig::stream_window`), in bytes or with a suffix
    /// KiB, MiB, GiB; the framework's default unless given.
    #[arg(long, value_parser = parse_bytes)]
    rpc_window: Option<u64>,
    /// Milliseconds the `stall` case leaves its stream unread before reading the memory.
    #[arg(long, default_value_t = 1000)]
    stall_ms: u64,
    /// Pins the client (main) thread to CPU CLIENT and each server thread to CPU SERVER, given as CLIENT,SERVER;
    /// `none` pins nothing.
    #[arg(long, default_value = "0,1")]
    pin: String,
    /// Prints one JSON object per row after the tables.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream-compare: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads `1073741824`, `512KiB`, `64MiB` or `2GiB`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unit `{other}`: expected KiB, MiB or GiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("`{text}`: expected a count of bytes like 1073741824 or 2GiB"))
}

/// Pins the main thread and every server thread as `--pin` asks.
fn pin(flag: &str) -> Result<(), String> {
    if flag == "none" {
        return Ok(());
    }
    let (client, server) = flag
        .split_once(',')
        .and_then(|(c, s)| Some((c.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| {
            format!("--pin `{flag}`: expected CLIENT,SERVER CPU numbers like 0,1, or none")
        })?;
    pin_current_thread(client)
        .map_err(|e| format!("cannot pin the client to CPU {client}: {e}"))?;
    pin_servers_to(Some(server));
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    let systems = args
        .systems
        .iter()
        .map(|s| System::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cases = args
        .cases
        .iter()
        .map(|c| Case::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    pin(&args.pin)?;
    let rpc_window = args
        .rpc_window
        .unwrap_or(rpc_core::stream::DEFAULT_STREAM_WINDOW);
    let started = Instant::now();
    // The stalled consumers first, while the heap holds nothing of the other runs.
    let mut stalled = Vec::new();
    if cases.contains(&Case::Stall) {
        let wait = Duration::from_millis(args.stall_ms);
        for &system in systems.iter().filter(|&&s| Case::Stall.has(s)) {
            let result = stall::run(system, LARGE, wait, rpc_window)
                .map_err(|e| format!("{} on stall: {e}", system.name()))?;
            eprintln!(
                "stall: {} made {} blocks, resident memory grew {:.1} MiB",
                system.name(),
                result.made,
                result.growth() as f64 / (1024.0 * 1024.0)
            );
            stalled.push(result);
        }
    }
    let workloads: Vec<Workload> = cases
        .iter()
        .filter_map(|&case| match case {
            Case::Small => Some((case, args.items, 1)),
            Case::Concurrent => Some((case, args.items, args.streams)),
            Case::Large => Some((case, (args.bytes_total / u64::from(LARGE)).max(1), 1)),
            Case::Stall => None,
        })
        .map(|(case, items, streams)| Workload {
            case,
            items,
            streams,
        })
        .collect();
    let mut results = Results::default();
    for round in 0..args.rounds {
        for &workload in &workloads {
            let mut line = format!("round {}/{}: {workload}:", round + 1, args.rounds);
            for system in rotated(&systems, round) {
                if !workload.case.has(system) {
                    continue;
                }
                let sample = run::run_one(system, workload, rpc_window)
                    .map_err(|e| format!("{} on {workload}: {e}", system.name()))?;
                line.push_str(&format!(
                    " {} {}/s {:.0} MiB/s;",
                    system.name(),
                    report::thousands(sample.items_per_second()),
                    sample.bytes_per_second() / (1024.0 * 1024.0)
                ));
                results.add(workload, system, sample);
            }
            eprintln!("{line}");
        }
    }
    println!(
        "\nMedians of {} rounds; {:.0} s in all; client and server pinned: {}.\n",
        args.rounds,
        started.elapsed().as_secs_f64(),
        args.pin
    );
    if !workloads.is_empty() {
        println!("{}", results.table(&systems));
    }
    if !stalled.is_empty() {
        println!(
            "A consumer that never reads one stream of {} KiB items, after {} ms (resident memory of the whole \
             process; this framework's window is {} KiB):\n",
            LARGE / 1024,
            args.stall_ms,
            rpc_window / 1024
        );
        println!("{}", report::stall_table(&stalled));
    }
    if args.json {
        for line in results.json_lines(&systems) {
            println!("{line}");
        }
        for line in report::stall_json_lines(&stalled, args.stall_ms) {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_with_and_without_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert!(parse_bytes("2GB").is_err());
        assert!(parse_bytes("GiB").is_err());
    }
}
