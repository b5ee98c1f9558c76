//! The `rpc-registry` binary: parses its command line and runs the registry (`rpc_registry::serve`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rpc_registry::{RegistryConfig, TOKEN_ENV};

/// The service registry of the rpc framework: instances register and heartbeat, clients watch and balance.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a registry until Ctrl-C.
    Serve {
        /// Address of the registry's RPC API (what instances and clients connect to).
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Address of the HTTP JSON view (`GET /v1/services`, `GET /v1/services/{name}`).
        #[arg(long, default_value = "127.0.0.1:7071")]
        http: SocketAddr,
        /// Milliseconds after its last heartbeat at which an instance is evicted; instances heartbeat every
        /// third of it.
        #[arg(long, default_value_t = 3000)]
        ttl_ms: u64,
        /// Token that registrations, heartbeats and deregistrations must carry. Without one, anyone who can
        /// reach the registry can register.
        #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
        token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpc-registry: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Serve {
            listen,
            http,
            ttl_ms,
            token,
        } => {
            if ttl_ms == 0 {
                return Err("--ttl-ms must be at least 1".into());
            }
            let rpc = tokio::net::TcpListener::bind(listen).await?;
            let http = tokio::net::TcpListener::bind(http).await?;
            println!(
                "rpc-registry: API on {}, HTTP on http://{}, TTL {ttl_ms} ms",
                rpc.local_addr()?,
                http.local_addr()?
            );
            if token.is_none() {
                eprintln!(
                    "warning: no token (--token or {TOKEN_ENV}): anyone who can reach this registry can register \
                     instances and take their traffic"
                );
            }
            let config = RegistryConfig {
                ttl: Duration::from_millis(ttl_ms),
                token,
                ..RegistryConfig::default()
            };
            rpc_registry::serve(config, rpc, Some(http), async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("rpc-registry: shutting down");
            })
            .await?;
            Ok(())
        }
    }
}
