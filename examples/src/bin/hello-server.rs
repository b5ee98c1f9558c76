//! Serves the `Greeter` service until Ctrl-C or SIGTERM, then drains gracefully: tells its clients go-away,
//! finishes the calls in flight and exits 0.
//!
//! Run with `cargo run -p examples --bin hello-server -- --listen 127.0.0.1:7000` (or `--listen
//! unix:/tmp/hello.sock` for a Unix domain socket); the first line it prints is the address it serves on.
//! With `--metrics ADDR` it serves Prometheus metrics at `http://ADDR/metrics`.

use clap::Parser;
use examples::address;
use examples::hello::{GreeterServer, Greetings};
use examples::ops::MetricsArgs;
use rpc_core::Server;

/// Serves the Greeter service.
#[derive(Parser)]
struct Args {
    /// Address to listen on: `host:port` (port 0: one the OS picks), or `unix:PATH` for a Unix domain socket
    /// (removed at exit).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: String,
    #[command(flatten)]
    metrics: MetricsArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (listener, shown) = address::listen(&args.listen).await?;
    println!("{shown}");
    let builder = Server::builder().add_service(GreeterServer::new(Greetings));
    let builder = match args.metrics.start("hello-server").await? {
        Some(metrics) => builder.metrics(metrics),
        None => builder,
    };
    let server = builder.build()?;
    let stop = rpc_core::server::shutdown_signal();
    let served = server
        .serve_with_shutdown(listener, async {
            let signal = stop.await;
            eprintln!("{signal}: shutting down, finishing calls in flight");
        })
        .await;
    address::remove(&args.listen);
    served?;
    eprintln!("stopped");
    Ok(())
}
