//! The `rpc-registry` binary: parses its command line and calls into the library. `serve` runs a registry
//! (`rpc_registry::serve`); `ls [SERVICE]` prints a table of the instances a running registry knows, and
//! `watch SERVICE` prints a service's instances, then a line per change until Ctrl-C (`rpc_registry::cli`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rpc_core::tls::{ClientAuth, ClientTls, ServerTls};
use rpc_registry::cli::{Options, WatchConfig};
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
        /// Address of the HTTP port: the dashboard (`/`), the JSON API (`/v1/services`, `/v1/services/{name}`,
        /// `/v1/overview`, `/healthz`) and Prometheus metrics (`/metrics`).
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
    /// Lists the instances a running registry knows, as a table.
    ///
    /// One row per instance of SERVICE (of every service without it): its weight, state (up, or late with its
    /// heartbeats), the age of its last heartbeat, its incarnation and metadata.
    Ls {
        /// The service to list; every service if left out.
        service: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prints the instances of a service, then each change as it happens, until Ctrl-C.
    ///
    /// One time-stamped line per change: `+` added, `-` removed, `~` weight, incarnation or metadata changed.
    /// When the registry goes away it says so on stderr, retries, and goes on when it is back.
    Watch {
        /// The service to watch.
        service: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How `ls` and `watch` reach the registry.
#[derive(Args)]
struct ClientArgs {
    /// Address of the registry's API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    registry: String,
    /// Token sent as `authorization: Bearer` (reads need none today).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust: talks to the registry over TLS.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) to present to the registry (mutual TLS); needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Milliseconds allowed to connect to the registry and for it to answer.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

impl ClientArgs {
    fn options(self) -> Result<Options, Box<dyn std::error::Error>> {
        let tls = match &self.tls_ca {
            Some(ca) => {
                let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
                Some(ClientTls::from_pem_files(ca, identity)?)
            }
            None => None,
        };
        if self.timeout_ms == 0 {
            return Err("--timeout-ms must be at least 1".into());
        }
        Ok(Options {
            tls,
            token: self.token,
            timeout: Duration::from_millis(self.timeout_ms),
            ..Options::new(self.registry)
        })
    }
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
        Command::Ls { service, client } => {
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            rpc_registry::cli::ls(&client.options()?, service.as_deref(), &mut out, &mut err)
                .await?;
            Ok(())
        }
        Command::Watch { service, client } => {
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let options = client.options()?;
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let config = WatchConfig::default();
            rpc_registry::cli::watch(&options, &service, &config, &mut out, &mut err, ctrl_c)
                .await?;
            Ok(())
        }
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
                "rpc-registry: API on {}{}, dashboard and metrics on http://{}/, TTL {ttl_ms} ms",
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
