//! The `rpc-registry` binary: parses its command line and runs the registry (`rpc_registry::serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rpc_core::tls::{ClientAuth, ServerTls};
use rpc_registry::{AddressCheck, Credentials, RegistryConfig, TOKEN_ENV};

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
        /// Token that registrations, heartbeats and deregistrations must carry; it may write every service.
        /// Without a token or a credentials file, anyone who can reach the registry can register.
        #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
        token: Option<String>,
        /// JSON file of per-service tokens and client-certificate names:
        /// {"tokens": [{"token": "...", "services": ["Calc"]}], "identities": [{"name": "calc.example", "services": ["*"]}]}.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// What to check of the address an instance registers: `peer` (its IP is the caller's), `reachable`
        /// (something accepts connections there), or `off`.
        #[arg(long, value_enum, default_value_t = Check::Peer)]
        address_check: Check,
        /// Certificate chain (PEM) to serve the API over TLS with; needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// CA (PEM) that client certificates are verified against (mutual TLS); the DNS names of a verified
        /// client certificate then count as credentials (see --credentials). Needs --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_ca: Option<PathBuf>,
        /// With --tls-ca: refuse clients without a certificate (otherwise they may prove themselves with a
        /// token).
        #[arg(long, requires = "tls_ca")]
        require_client_cert: bool,
    },
}

/// `--address-check`.
#[derive(Clone, Copy, ValueEnum)]
enum Check {
    Off,
    Peer,
    Reachable,
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
            credentials,
            address_check,
            tls_cert,
            tls_key,
            tls_ca,
            require_client_cert,
        } => {
            if ttl_ms == 0 {
                return Err("--ttl-ms must be at least 1".into());
            }
            let credentials = match credentials {
                Some(path) => Credentials::from_file(path)?,
                None => Credentials::default(),
            };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => {
                    let client_auth = match (&tls_ca, require_client_cert) {
                        (Some(ca), true) => ClientAuth::Required(ca),
                        (Some(ca), false) => ClientAuth::Optional(ca),
                        (None, _) => ClientAuth::None,
                    };
                    Some(ServerTls::from_pem_files(cert, key, client_auth)?)
                }
                _ => None,
            };
            let rpc = tokio::net::TcpListener::bind(listen).await?;
            let http = tokio::net::TcpListener::bind(http).await?;
            println!(
                "rpc-registry: API on {}{}, HTTP on http://{}, TTL {ttl_ms} ms",
                rpc.local_addr()?,
                if tls.is_some() { " (TLS)" } else { "" },
                http.local_addr()?
            );
            let config = RegistryConfig {
                ttl: Duration::from_millis(ttl_ms),
                token,
                credentials,
                address_check: match address_check {
                    Check::Off => AddressCheck::Off,
                    Check::Peer => AddressCheck::Peer,
                    Check::Reachable => AddressCheck::Reachable,
                },
                tls,
                ..RegistryConfig::default()
            };
            if config.is_open() {
                eprintln!(
                    "warning: no token (--token or {TOKEN_ENV}) and no --credentials: anyone who can reach this \
                     registry can register instances and take their traffic"
                );
            }
            rpc_registry::serve(config, rpc, Some(http), async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("rpc-registry: shutting down");
            })
            .await?;
            Ok(())
        }
    }
}
