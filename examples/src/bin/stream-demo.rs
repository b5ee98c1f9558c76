//! Streams 100,000 items from a server to a client, both in this process over 127.0.0.1, and prints the rate;
//! its last line is JSON: `{"items":100000,"ok":true}`.
//!
//! Run with `cargo run --release -p examples --bin stream-demo` (`--items N` for another count).

use std::time::Instant;

use clap::Parser;
use rpc_core::{Server, Stream, service};
use serde::{Deserialize, Serialize};

/// A reading of a sensor, as a stream carries it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reading {
    /// Its number in the stream, from 0.
    pub seq: u64,
    /// The value read.
    pub celsius: f32,
}

/// A sensor's readings, streamed.
#[service]
pub trait Sensor {
    /// `n` readings, as fast as the client takes them.
    async fn readings(&self, n: u64) -> impl Stream<Item = Reading>;
}

struct Thermometer;

impl Sensor for Thermometer {
    async fn readings(&self, n: u64) -> impl Stream<Item = Reading> {
        futures_util::stream::iter((0..n).map(|seq| Reading {
            seq,
            celsius: 20.0 + (seq % 10) as f32 / 10.0,
        }))
    }
}

/// Streams readings from a server to a client in one process.
#[derive(Parser)]
struct Args {
    /// How many items to stream.
    #[arg(long, default_value_t = 100_000)]
    items: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (got, ok) = match run(args.items).await {
        Ok(got) => (got, got == args.items),
        Err(e) => {
            eprintln!("stream-demo: {e}");
            (0, false)
        }
    };
    println!("{{\"items\":{got},\"ok\":{ok}}}");
    match ok {
        true => std::process::ExitCode::SUCCESS,
        false => std::process::ExitCode::FAILURE,
    }
}

/// Serves the sensor on a port the OS assigns, streams `items` readings from it, and returns how many came in
/// order.
async fn run(items: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .add_service(SensorServer::new(Thermometer))
        .build()?;
    tokio::spawn(server.serve(listener));

    let sensor = SensorClient::connect(addr).await?;
    let start = Instant::now();
    let mut readings = sensor.readings(items).await?;
    let mut got = 0u64;
    while let Some(reading) = readings.next().await {
        let reading = reading?;
        if reading.seq != got {
            return Err(format!("reading {} came where {got} was due", reading.seq).into());
        }
        got += 1;
    }
    let elapsed = start.elapsed();
    println!(
        "{got} items in {:.1} ms: {:.0} items/s",
        elapsed.as_secs_f64() * 1e3,
        got as f64 / elapsed.as_secs_f64()
    );
    Ok(got)
}
