//! Serves the `Greeter` service until Ctrl-C or SIGTERM, then drains gracefully: tells its clients go-away,
//! finishes the calls in flight and exits 0.
//!
//! Run with `cargo run -p examples --bin hello-server -- --listen 127.0.0.1:7000` (or `--listen
//! unix:/tmp/hello.sock` for a Unix domain socket); the first line it prints is the address it serves on.
//! With `--metrics ADDR` it serves Prometheus metrics at `http://ADDR/metrics`. With `--registry ADDR` it
//! registers `Greeter` there (with `--token`, and its `--label KEY=VALUE` labels), and deregisters before it
//! drains; `--registry ADDR,ADDR` names the registry's replicas, and the registration moves between them.

use std::collections::BTreeMap;

use clap::Parser;
use examples::address;
use examples::hello::{GreeterServer, Greetings};
use examples::labels::LabelArgs;
use examples::ops::MetricsArgs;
use rpc_core::Server;
use rpc_registry::{NewInstance, Registration, RegistrationConfig, TOKEN_ENV, check_token};

/// Serves the Greeter service.
#[derive(Parser)]
struct Args {
    /// Address to listen on: `host:port` (port 0: one the OS picks), or `unix:PATH` for a Unix domain socket
    /// (removed at exit).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: String,
    #[command(flatten)]
    metrics: MetricsArgs,
    /// Address of a registry's API to register `Greeter` with, or of its replicas separated by commas
    /// (h1:7070,h2:7070). [default: none]
    #[arg(long)]
    registry: Option<String>,
    /// The registry's token, if it has one (8 to 4,096 visible ASCII characters).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true, requires = "registry")]
    token: Option<String>,
    #[command(flatten)]
    labels: LabelArgs,
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
    // What cannot work is refused before anything is bound.
    if args.registry.is_none() && !args.labels.labels.is_empty() {
        return Err("--label needs --registry: labels are registered with the instance".into());
    }
    if args.registry.is_some() && args.listen.starts_with("unix:") {
        return Err(
            "--registry needs a TCP --listen address: clients cannot dial a Unix socket".into(),
        );
    }
    if let Some(token) = &args.token {
        check_token(token).map_err(|e| format!("--token (or {TOKEN_ENV}): {e}"))?;
    }
    let (listener, shown) = address::listen(&args.listen).await?;
    println!("{shown}");
    let builder = Server::builder().add_service(GreeterServer::new(Greetings));
    let builder = match args.metrics.start("hello-server").await? {
        Some(metrics) => builder.metrics(metrics),
        None => builder,
    };
    let server = builder.build()?;
    let stop = rpc_core::server::shutdown_signal();
    let registration = register(&args, &shown).await?;
    let served = server
        .serve_with_shutdown(listener, async {
            let signal = stop.await;
            if let Some(registration) = registration {
                eprintln!("{signal}: deregistering");
                if let Err(e) = registration.deregister().await {
                    eprintln!("hello-server: could not deregister: {e}");
                }
            }
            eprintln!("{signal}: shutting down, finishing calls in flight");
        })
        .await;
    address::remove(&args.listen);
    served?;
    eprintln!("stopped");
    Ok(())
}

/// Registers `Greeter` at `address` with the registry of `--registry`, if one is given.
async fn register(
    args: &Args,
    address: &str,
) -> Result<Option<Registration>, Box<dyn std::error::Error>> {
    let Some(registry) = &args.registry else {
        return Ok(None);
    };
    let instance = NewInstance {
        service: String::from("Greeter"),
        address: address.to_owned(),
        weight: 1,
        metadata: args.labels.merged(BTreeMap::new()),
    };
    let config = RegistrationConfig {
        token: args.token.clone(),
        ..RegistrationConfig::default()
    };
    let registries = examples::registry::resolve(registry).await?;
    let registration = Registration::register(registries.as_slice(), instance, config).await?;
    eprintln!(
        "hello-server: registered {address} with {registry}: lease {}",
        registration.lease().id
    );
    Ok(Some(registration))
}
