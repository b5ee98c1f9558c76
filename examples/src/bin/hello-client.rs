//! Calls the `Greeter` service served by `hello-server`.
//!
//! Run with `cargo run -p examples --bin hello-client -- --server 127.0.0.1:7000 Ada Grace` (or `--server
//! unix:/tmp/hello.sock` for a server on a Unix domain socket).

use std::time::{Duration, Instant};

use clap::Parser;
use examples::address;
use examples::hello::GreeterClient;
use rpc_core::Metadata;

/// Calls the Greeter service.
#[derive(Parser)]
struct Args {
    /// Address of the server: `host:port`, or `unix:PATH` for a Unix domain socket.
    #[arg(long, default_value = "127.0.0.1:7000")]
    server: String,
    /// Names to greet.
    #[arg(default_values_t = [String::from("world")])]
    names: Vec<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let greeter: GreeterClient = address::connect(&args.server).await?;

    let start = Instant::now();
    println!("{}", greeter.hello(args.names[0].clone()).await?);
    println!("  (one call: {:?})", start.elapsed());

    let traced = greeter
        .with_deadline(Duration::from_secs(1))
        .with_metadata(Metadata::from_pairs([("trace-id", "4bf92f35")])?);
    println!("{}", traced.hello(args.names[0].clone()).await?);

    match greeter.greet_all(args.names.clone()).await? {
        Ok(greetings) => println!("{}", greetings.join("; ")),
        Err(refused) => println!("the greeter refused: {refused}"),
    }
    match greeter.greet_all(Vec::new()).await? {
        Ok(greetings) => println!("{greetings:?}"),
        Err(refused) => println!("the greeter refused an empty list: {refused}"),
    }
    Ok(())
}
