//! Serves `Calc` and registers it with a registry; on Ctrl-C deregisters, then drains.
//!
//! `calc-server --listen ADDR --registry ADDR --weight W [--token T]`: the first line it prints is the address
//! it serves on.

use std::collections::BTreeMap;

use clap::Parser;
use examples::calc::{CalcServer, Calculator};
use rpc_core::Server;
use rpc_registry::{NewInstance, Registration, RegistrationConfig, TOKEN_ENV};

/// Serves Calc and registers it with a registry.
#[derive(Parser)]
struct Args {
    /// Address to serve on (port 0: one the OS picks).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Address of the registry's API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    registry: String,
    /// This instance's share of the calls, relative to the others'.
    #[arg(long, default_value_t = 1)]
    weight: u32,
    /// The registry's token, if it has one.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calc-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let address = listener.local_addr()?.to_string();
    println!("{address}");
    let server = Server::builder()
        .add_service(CalcServer::new(Calculator {
            instance: address.clone(),
        }))
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    let instance = NewInstance {
        service: String::from("Calc"),
        address: address.clone(),
        weight: args.weight,
        metadata: BTreeMap::from([(String::from("pid"), std::process::id().to_string())]),
    };
    let config = RegistrationConfig {
        token: args.token,
        ..RegistrationConfig::default()
    };
    let registration = Registration::register(&args.registry, instance, config).await?;
    let lease = registration.lease();
    eprintln!(
        "calc-server: registered {address} (weight {}) with {}: lease {}, heartbeat every {} ms",
        args.weight, args.registry, lease.id, lease.heartbeat_ms
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("calc-server: deregistering, then finishing calls in flight");
    registration.deregister().await?;
    let _ = stop.send(());
    serving.await??;
    Ok(())
}
